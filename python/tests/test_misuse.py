"""Misuse from Python raises an exception; nothing crashes (issue 14's list, one test per case).

Each case crashed or misbehaved with the binding before the package: a 10-float
buffer or a float64 buffer given to preprocess, m.isa after close, one model
from two threads, a string iterated as characters, classify(k=2000) padding,
batch=0 IndexError, a NUL truncating a path.
"""
import os
import threading

import numpy as np
import pytest

import fruitnet
from conftest import PATHS


@pytest.fixture(scope="module")
def banana(sample):
    return os.path.join(sample, PATHS[0])


def test_preprocess_small_buffer(model, banana):
    with pytest.raises(ValueError, match=r"shape \(224, 224, 3\)"):
        model.preprocess(banana, np.empty(10, np.float32))


def test_preprocess_float64_buffer(model, banana):
    with pytest.raises(ValueError, match="float32"):
        model.preprocess(banana, np.empty((224, 224, 3), np.float64))


def test_preprocess_noncontiguous_and_readonly(model, banana):
    big = np.empty((224, 448, 3), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        model.preprocess(banana, big[:, ::2])
    ro = np.empty((224, 224, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        model.preprocess(banana, ro)
    with pytest.raises(TypeError):
        model.preprocess(banana, [0.0] * 10)


def test_preprocess_good_buffer(model, banana, golden):
    out = np.zeros((224, 224, 3), np.float32)
    assert model.preprocess(banana, out) is out
    ref = np.fromfile(f"{golden}/img8/g0_banana.input.f32", "<f4").reshape(224, 224, 3)
    np.testing.assert_array_equal(out, ref)  # libjpeg-turbo + PIL-exact resize: bit-exact


def test_closed_model_raises():
    m = fruitnet.Model(threads=1, batch=1)
    assert m.isa in ("portable", "avx2", "avx512")
    m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m.isa
    with pytest.raises(ValueError, match="closed"):
        m.features_from_tensors(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="closed"):
        m.features([b"x"])
    with pytest.raises(ValueError, match="closed"):
        with m:
            pass


def test_one_model_two_threads(golden):
    m = fruitnet.Model(threads=1, batch=2)
    x = np.stack([np.fromfile(f"{golden}/img8/{n}.input.f32", "<f4").reshape(224, 224, 3)
                  for n in ("g0_banana", "g2_lemon")])
    ref = m.features_from_tensors(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(m.features_from_tensors(x))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert len(results) == 6
    for r in results:  # serialised by the model's lock: every call gives the single-thread result
        np.testing.assert_allclose(r, ref, rtol=0, atol=2e-5)
    # close() from another thread waits for a running call instead of freeing under it:
    # the call either completes or (if close came first) raises "closed"
    outcome = []

    def late():
        try:
            outcome.append(m.features_from_tensors(np.repeat(x, 4, axis=0)).shape)
        except ValueError as e:
            outcome.append(str(e))

    t = threading.Thread(target=late)
    t.start()
    m.close()
    t.join()
    assert m.closed
    assert outcome in ([(8, 2048)], ["fruitnet.Model is closed"])


def test_single_path_is_one_image(model, banana):
    f = model.features(banana)
    assert f.shape == (1, 2048)
    import pathlib
    np.testing.assert_array_equal(model.features(pathlib.Path(banana)), f)


def test_classify_k_checked(model, banana):
    for k in (0, -1, 1001, 2000):
        with pytest.raises(ValueError, match="between 1 and 1000"):
            model.classify(banana, k=k)
    with pytest.raises(TypeError):
        model.classify(banana, k=2.5)
    assert len(model.classify(banana, k=1000)[0]) == 1000


def test_classify_needs_classifier(banana):
    with fruitnet.Model(threads=1) as m:
        with pytest.raises(ValueError, match="classifier=True"):
            m.classify(banana)


def test_batch_zero(model, banana):
    with pytest.raises(ValueError, match="batch must be between 1"):
        model.features([banana], batch=0)
    with pytest.raises(ValueError, match="batch must be between 1"):
        fruitnet.Model(batch=0)
    with pytest.raises(TypeError):
        model.features([banana], batch="8")


def test_path_with_nul(model, banana):
    with pytest.raises(ValueError, match="NUL"):
        model.features(banana + "\0.png")
    with pytest.raises(ValueError, match="NUL"):
        model.features([banana, "a\0b.jpg"])
    with pytest.raises(ValueError, match="NUL"):
        fruitnet.Model("weights\0.fnw")
    with pytest.raises(ValueError, match="NUL"):
        fruitnet.ParquetWriter("/tmp/x\0.parquet")


def test_bad_arrays(model):
    with pytest.raises(ValueError, match="uint8"):
        model.features(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        model.features([np.zeros((10, 10, 4), np.uint8)])
    with pytest.raises(ValueError, match="empty image"):
        model.features([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"\(n, 224, 224, 3\)"):
        model.features_from_tensors(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.features_from_tensors(np.full((1, 224, 224, 3), np.nan, np.float32))
    with pytest.raises(TypeError):
        model.features(12)
    with pytest.raises(TypeError):
        model.features([None])


def test_bad_options():
    with pytest.raises(ValueError, match="errors"):
        fruitnet.Model.features(None, [], errors="ignore")
    with pytest.raises(ValueError, match="isa"):
        fruitnet.Model(isa="sse9")
    with pytest.raises(ValueError, match="resize"):
        fruitnet.Model(resize="bilinear")
    with pytest.raises(ValueError, match="threads"):
        fruitnet.Model(threads=-1)


def test_missing_weights_says_what_to_run(monkeypatch):
    monkeypatch.setenv("FRUITNET_WEIGHTS", "/nonexistent/resnet50.fnw")
    with pytest.raises(fruitnet.WeightsNotFoundError, match="fruitnet weights"):
        fruitnet.Model()
    with pytest.raises(FileNotFoundError):
        fruitnet.find_weights()
    assert fruitnet.find_weights(required=False) == "/nonexistent/resnet50.fnw"


def test_pca_misuse():
    with pytest.raises(ValueError):
        fruitnet.PCA(n_components=1.5).fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="min\\(n_samples, n_features\\)=3"):
        fruitnet.PCA(n_components=5).fit(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(ValueError):
        fruitnet.PCA(2).fit(np.full((4, 3), np.nan))
    p = fruitnet.PCA(2).fit(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(ValueError, match="3 features"):
        p.transform(np.ones((2, 4)))
    with pytest.raises(ValueError):
        p.inverse_transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        fruitnet.PcaStats(8).add(np.ones((2, 3), np.float32))
    with pytest.raises(fruitnet.FruitnetError, match="dimension"):
        fruitnet.PcaStats(0)
