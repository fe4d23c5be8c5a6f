"""The binding against ../shared/golden: Keras features, paths and bytes, top-5, errors, Parquet + PCA stats."""
import os

import numpy as np
import pytest

import fruitnet
from conftest import NAMES, PATHS, read_bytes


def cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_tensors_match_keras(model, golden):
    x = np.stack([np.fromfile(f"{golden}/img8/{n}.input.f32", "<f4").reshape(224, 224, 3) for n in NAMES])
    ref = np.fromfile(f"{golden}/img8/all8.avgpool.f32", "<f4").reshape(8, 2048)
    f = model.features_from_tensors(x)
    rel = np.linalg.norm(f - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() <= 1e-4
    assert np.abs(f - ref).max() <= 1e-3


def test_paths_and_bytes(model, golden, sample):
    ref = np.fromfile(f"{golden}/img8/all8.avgpool.f32", "<f4").reshape(8, 2048)
    paths = [os.path.join(sample, p) for p in PATHS]
    f1 = model.features(paths)
    f2 = model.features([read_bytes(p) for p in paths])
    assert f1.dtype == np.float32 and f1.shape == (8, 2048)
    np.testing.assert_array_equal(f1, f2)
    assert min(cos(f1[i], ref[i]) for i in range(8)) >= 0.999


def test_classify_banana(model, sample):
    top = model.classify([os.path.join(sample, PATHS[0])], k=5)[0]
    assert top[0][0] == "banana"
    assert top[0][1] > 0.9
    assert len(top) == 5


def test_errors(model, sample):
    with pytest.raises(fruitnet.FruitnetError) as e:
        model.features(["/nonexistent/apple.jpg"])
    assert "/nonexistent/apple.jpg" in str(e.value)
    assert e.value.code == -2
    with pytest.raises(fruitnet.FruitnetError, match="/nonexistent.fnw"):
        fruitnet.Model("/nonexistent.fnw")
    good = os.path.join(sample, PATHS[2])
    feats, idx, fails = model.features([b"not an image", good, b""], errors="skip")
    assert feats.shape == (1, 2048)
    assert idx == [1]
    assert [i for i, _ in fails] == [0, 2]
    assert "empty" in fails[1][1]
    assert "<bytes #0>" in fails[0][1]


def test_parquet_and_pca_stats(tmp_path):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((300, 16)) * np.arange(16, 0, -1)).astype(np.float32)
    p = str(tmp_path / "t.parquet")
    with fruitnet.ParquetWriter(p, meta={"k": "v"}) as w:
        w.write_batch([f"img{i}.jpg" for i in range(200)], ["Äpfel"] * 200, x[:200])
        for i in range(200, 300):
            w.add(f"img{i}.jpg", "Äpfel", x[i])
    rows = list(fruitnet.read_parquet(p))
    assert len(rows) == 300
    assert [r[0] for r in rows] == [f"img{i}.jpg" for i in range(300)]
    np.testing.assert_array_equal(np.stack([r[2] for r in rows]), x)
    assert rows[5][1] == "Äpfel"
    a, b = fruitnet.PcaStats(16), fruitnet.PcaStats(16)
    a.add(x[:100]), b.add(x[100:])
    a.save(str(tmp_path / "a.stats"))
    m1 = fruitnet.PcaStats.load(str(tmp_path / "a.stats")).merge(b).fit(k=5)
    m2 = fruitnet.PcaStats(16).add(x).fit(k=5)
    np.testing.assert_allclose(m1.eigenvalues, m2.eigenvalues, rtol=1e-9)
    w = np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False))[::-1][:5]
    np.testing.assert_allclose(m2.eigenvalues, w, rtol=1e-9)
