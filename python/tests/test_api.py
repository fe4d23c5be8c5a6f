"""The Python API: input forms of Model.features, errors="skip", batches, help(), hints, version."""
import inspect
import os
import pydoc
import re

import numpy as np
import pytest

import fruitnet
from conftest import PATHS, REPO, read_bytes


@pytest.fixture(scope="module")
def paths(sample):
    return [os.path.join(sample, p) for p in PATHS]


@pytest.fixture(scope="module")
def ref(model, paths):
    return model.features(paths, batch=8)


def same(a, b):
    # fewer images per call may run other convolution algorithms (see tests/test_golden.c): 2.5e-5
    np.testing.assert_allclose(a, b, rtol=0, atol=2.5e-5)


def test_input_forms_agree(model, paths, ref):
    from PIL import Image
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    blobs = [read_bytes(p) for p in paths]
    np.testing.assert_array_equal(model.features(blobs), ref)
    same(model.features([bytearray(b) for b in blobs[:2]]), ref[:2])
    same(model.features(memoryview(blobs[3])), ref[3:4])
    same(model.features(blobs[0]), ref[:1])          # bytes = one encoded image
    # decoded uint8 arrays (PIL's pixels, here the same libjpeg-turbo output): same features
    same(model.features(arrays), ref)
    same(model.features(np.stack(arrays)), ref)     # (n, H, W, 3) = n images
    same(model.features(arrays[2][:, ::-1][:, ::-1]), ref[2:3])  # non-contiguous view
    mixed = model.features([paths[0], blobs[1], arrays[2]])
    same(mixed, ref[:3])
    same(model.features(iter(paths[:2])), ref[:2])  # any iterable


def test_batches_agree(model, paths, ref):
    for b in (1, 3, 5, 16):
        f = model.features(paths, batch=b)
        assert f.shape == (8, 2048) and f.dtype == np.float32
        # different batch sizes may run different convolution algorithms (see tests/test_golden.c)
        np.testing.assert_allclose(f, ref, rtol=0, atol=2.5e-5)


def test_empty_input(model):
    f = model.features([])
    assert f.shape == (0, 2048) and f.dtype == np.float32
    r = model.features([], errors="skip")
    assert r.features.shape == (0, 2048) and r.index == [] and r.failures == []


def test_skip_keeps_order_and_reports(model, paths, ref, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    items = [str(bad), paths[0], "/nonexistent.png", paths[1], b"", paths[2]]
    r = model.features(items, batch=2, errors="skip")
    assert isinstance(r, fruitnet.FeatureResult)
    assert r.index == [1, 3, 5]
    np.testing.assert_allclose(r.features, ref[:3], rtol=0, atol=2.5e-5)
    assert [i for i, _ in r.failures] == [0, 2, 4]
    assert str(bad) in r.failures[0][1]
    assert "/nonexistent.png" in r.failures[1][1]
    with pytest.raises(fruitnet.FruitnetError, match="bad.jpg"):
        model.features(items, batch=2)


def test_classify_features_and_labels(model, paths):
    f = model.features(paths[:1])
    assert model.classify_features(f, k=3) == model.classify(paths[:1], k=3)
    labels = model.labels()
    assert len(labels) == 1000 and labels[954] == "banana"


def test_version_matches_header():
    with open(os.path.join(REPO, "include", "fruitnet.h")) as f:
        v = re.search(r'#define FRUITNET_VERSION "([^"]+)"', f.read()).group(1)
    assert fruitnet.__version__ == v == fruitnet.version()


def test_soname_matches_header_abi():
    from fruitnet import _paths
    with open(os.path.join(REPO, "include", "fruitnet.h")) as f:
        abi = re.search(r'#define FRUITNET_ABI ([0-9]+)', f.read()).group(1)
    assert _paths.SONAME == "libfruitnet.so." + abi


def test_help_and_hints():
    text = pydoc.render_doc(fruitnet, renderer=pydoc.plaintext)
    for name in ("Model", "extract", "read_dataset", "PCA", "features", "fit_transform", "fetch_weights"):
        assert name in text
    missing_doc, missing_hints = [], []
    for name in fruitnet.__all__:
        obj = getattr(fruitnet, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing_doc.append(name)
        members = [obj] if inspect.isfunction(obj) else [
            v for k, v in vars(obj).items() if inspect.isfunction(v) and (not k.startswith("_") or k == "__init__")]
        for fn in members:
            if fn.__name__ != "__init__" and not inspect.getdoc(fn):
                missing_doc.append(f"{name}.{fn.__name__}")
            hints = fn.__annotations__  # strings (from __future__ import annotations)
            params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
            if "return" not in hints or any(p not in hints for p in params if p not in ("args", "kw", "exc")):
                if not (inspect.isclass(obj) and obj.__module__.startswith("fruitnet.") and
                        fn.__name__ in ("fit", "partial_fit", "fit_transform") and "y" not in hints):
                    missing_hints.append(f"{name}.{fn.__name__}")
    assert missing_doc == []
    assert missing_hints == []
