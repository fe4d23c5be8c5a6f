"""fruitnet — Keras-ResNet50 image features, PCA and Parquet, in plain C, for Python.

A ctypes binding over libfruitnet (numpy only; pandas and pyarrow for the
DataFrame functions, scikit-learn optional). Features equal Keras
``ResNet50(weights="imagenet")``'s ``avg_pool`` output with PIL's bicubic
resize, so they mix with features computed by the Keras pipeline.

Quick start::

    import fruitnet
    df = fruitnet.extract("fruits-360/Test")          # DataFrame: path, label, features
    X = fruitnet.feature_matrix(df)                   # float32 (n, 2048)
    pca = fruitnet.PCA(0.8).fit(X)                    # a scikit-learn transformer
    df["pcs"] = list(pca.transform(X))
    fruitnet.write_dataset(df, "out/features.parquet")  # pandas.read_parquet reads it

Main names:
  Model            the network: features(), classify(), preprocess()
  extract          images or folders -> DataFrame (path, label, features)
  read_dataset     Parquet file/folder -> DataFrame (pyarrow)
  write_dataset    DataFrame -> Spark-style Parquet dataset folder
  to_arrow         DataFrame -> pyarrow.Table
  PCA              scikit-learn PCA on streaming, mergeable statistics; save/load model.fnpca
  PcaStats         the statistics themselves (add, merge, save, load, fit)
  find_weights     where the weight file is; fetch_weights / `fruitnet weights` gets it
  FruitnetError    errors of the library (.code, message naming the file)

Weights: ``$FRUITNET_WEIGHTS``, the package's data folder, the install prefix
(``share/fruitnet``), ``~/.local/share/fruitnet``, or ``weights/`` of a clone;
``fruitnet weights`` downloads and verifies them.
"""
from __future__ import annotations

from ._lib import FEATURE_DIM, INPUT_SIZE, NUM_CLASSES, FruitnetError
from . import _lib
from .data import (IMAGE_EXTENSIONS, ParquetWriter, dataset_files, extract, feature_matrix, list_images,
                   read_dataset, read_parquet, to_arrow, write_dataset)
from .model import FeatureResult, ImageInput, Model
from .pca import PCA, PcaModel, PcaStats
from .weights import WeightsNotFoundError, fetch_weights, find_weights
from .classifier import Classifier

__version__ = "0.2.0"

__all__ = ["Model", "Classifier", "FeatureResult", "ImageInput", "extract", "read_dataset", "write_dataset", "to_arrow",
           "feature_matrix", "list_images", "ParquetWriter", "read_parquet", "dataset_files", "PCA", "PcaStats",
           "PcaModel", "find_weights", "fetch_weights", "WeightsNotFoundError", "FruitnetError", "version",
           "library_info", "FEATURE_DIM", "INPUT_SIZE", "NUM_CLASSES", "IMAGE_EXTENSIONS", "DEFAULT_WEIGHTS",
           "__version__"]


def version() -> str:
    """The package (and library) version, e.g. "0.2.0"."""
    return __version__


def library_info() -> dict:
    """Which libfruitnet is loaded, its JPEG decoder, and the weight file found (or None)."""
    return {"version": __version__, "library": _lib.lib._name,
            "jpeg_decoder": _lib.lib.fn_image_decoder_name().decode(),
            "weights": find_weights(required=False)}


def __getattr__(name: str) -> str:
    if name == "DEFAULT_WEIGHTS":  # kept for older code; prefer find_weights()
        return find_weights(required=False) or ""
    raise AttributeError(f"module 'fruitnet' has no attribute {name!r}")
