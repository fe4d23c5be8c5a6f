"""The int8 precision from Python: Model(precision="int8") against the Keras features of the 8 golden
images (cosine >= 0.995, the C test's gate), the precision recorded in the extraction's Parquet metadata,
and the errors (an unknown precision; a CPU without AVX512-VNNI skips with the library's reason)."""
import os
import subprocess

import numpy as np
import pytest

import fruitnet
from conftest import BUILD, NAMES, PATHS, need


def open_int8(**kw):
    try:
        return fruitnet.Model(threads=2, precision="int8", **kw)
    except fruitnet.FruitnetError as e:
        if "AVX512_VNNI" in str(e):
            pytest.skip(f"int8: {e}")
        raise


def test_unknown_precision():
    with pytest.raises(ValueError, match="'fp32', 'bf16' or 'int8', not 'int4'"):
        fruitnet.Model(precision="int4")


def test_int8_features_match_keras(golden, sample):
    with open_int8(batch=8) as m:
        assert m.precision == "int8"
        f = m.features([os.path.join(sample, p) for p in PATHS])
    for i, n in enumerate(NAMES):
        ref = np.fromfile(need(os.path.join(golden, "img8", f"{n}.avgpool.f32")), "<f4")
        cos = float(f[i] @ ref / np.linalg.norm(f[i]) / np.linalg.norm(ref))
        assert cos >= 0.995, f"{n}: cosine {cos:.6f} to Keras"
        assert np.abs(f[i] - ref).max() > 1e-3  # the int8 path is taken (fp32 agrees to 1e-3)


def test_extract_records_int8(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    open_int8().close()  # skips without VNNI
    tool = need(os.path.join(BUILD, "fruitnet-extract"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "features"  # a dataset folder (part-*.parquet)
    subprocess.run([tool, "-q", "--precision", "int8", "-o", str(out),
                    os.path.join(repo, "tests", "data", "fruits-360-mini", "images", "Banana")], check=True)
    parts = sorted(out.glob("part-*.parquet"))
    assert parts
    for part in parts:
        assert pq.read_metadata(part).metadata[b"fruitnet.precision"] == b"int8"
