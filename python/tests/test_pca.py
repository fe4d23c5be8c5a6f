"""fruitnet.PCA: equal to sklearn PCA(svd_solver="full") on the 2,880 sample features, scikit-learn's
check_estimator, partial_fit / merge / save / load, the fruitnet-pca tool's model file."""
import os
import pickle
import subprocess
import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA
from sklearn.utils.estimator_checks import check_estimator

import fruitnet
from conftest import BUILD

# Checks of sklearn.utils.estimator_checks that do not apply (see README "Python"):
NOT_APPLICABLE = {
    # array-API inputs (CuPy, torch...): the statistics are computed by libfruitnet on host
    # float32/float64 buffers; sklearn itself skips this check unless SCIPY_ARRAY_API=1
    "check_array_api_input",
}


@pytest.fixture(scope="module")
def sk80(all2880):
    return SkPCA(0.8, svd_solver="full").fit(all2880.astype(np.float64))


def agree(p, s, k=None):
    k = k or s.n_components_
    assert p.n_components_ == s.n_components_
    rel = np.abs(p.explained_variance_[:k] - s.explained_variance_[:k]) / s.explained_variance_[:k]
    assert rel.max() <= 1e-9, rel.max()
    np.testing.assert_allclose(p.explained_variance_ratio_, s.explained_variance_ratio_, rtol=1e-9)
    sign = np.sign(np.sum(p.components_ * s.components_, axis=1))
    assert np.abs(p.components_ - sign[:, None] * s.components_).max() <= 1e-6
    np.testing.assert_allclose(p.mean_, s.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.singular_values_, s.singular_values_, rtol=1e-9)
    np.testing.assert_allclose(p.noise_variance_, s.noise_variance_, rtol=1e-9)
    return sign


def test_equals_sklearn_full(all2880, sk80):
    p = fruitnet.PCA(0.8).fit(all2880)           # float32 rows: libfruitnet's kernel, double statistics
    assert p.n_components_ == 47                   # golden n80
    sign = agree(p, sk80)
    assert (sign == 1).all()                        # same sign convention (largest entry positive)
    z = p.transform(all2880)
    assert z.dtype == np.float32 and z.shape == (2880, 47)
    np.testing.assert_allclose(z, sk80.transform(all2880.astype(np.float64)), rtol=0, atol=1e-5)
    x64 = fruitnet.PCA(0.8).fit(all2880.astype(np.float64))   # float64 rows: merged numpy statistics
    agree(x64, sk80)
    back = p.inverse_transform(z.astype(np.float64))
    np.testing.assert_allclose(back, sk80.inverse_transform(z.astype(np.float64)), rtol=0, atol=1e-9)


def test_int_components_and_fit_transform(all2880):
    x = all2880[:500].astype(np.float64)
    s = SkPCA(10, svd_solver="full").fit(x)
    p = fruitnet.PCA(10)
    z = p.fit_transform(x)
    agree(p, s)
    np.testing.assert_allclose(z, s.transform(x) * np.sign(np.sum(p.components_ * s.components_, 1)), atol=1e-8)
    assert p.get_feature_names_out()[0] == "pca0"


def test_partial_fit_and_merge(all2880, tmp_path):
    x = all2880[:900]
    full = fruitnet.PCA(20).fit(x)
    inc = fruitnet.PCA(20)
    for lo in range(0, 900, 250):
        inc.partial_fit(x[lo:lo + 250])
    assert inc.n_samples_ == 900
    np.testing.assert_allclose(inc.explained_variance_, full.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(inc.components_), np.abs(full.components_), atol=1e-9)
    # three "machines" fit a third each; their statistics travel as files and merge
    parts = [fruitnet.PCA(20).fit(x[i::3]) for i in range(3)]
    for i, part in enumerate(parts):
        part.save_stats(tmp_path / f"{i}.stats")
    merged = fruitnet.PCA.load_stats(tmp_path / "0.stats", n_components=20)
    for i in (1, 2):
        merged.merge(fruitnet.PcaStats.load(tmp_path / f"{i}.stats"))
    np.testing.assert_allclose(merged.explained_variance_, full.explained_variance_, rtol=1e-9)
    merged2 = fruitnet.PCA(20).merge(parts[0]).merge(parts[1]).merge(parts[2])
    np.testing.assert_allclose(merged2.explained_variance_, full.explained_variance_, rtol=1e-9)


def test_save_load_fnpca(all2880, tmp_path):
    p = fruitnet.PCA(0.8).fit(all2880[:600])
    f = tmp_path / "model.fnpca"
    p.save(f)
    q = fruitnet.PCA.load(f)
    assert q.n_components_ == p.n_components_
    np.testing.assert_array_equal(q.components_, p.components_)
    np.testing.assert_array_equal(q.explained_variance_ratio_, p.explained_variance_ratio_)
    np.testing.assert_allclose(q.noise_variance_, p.noise_variance_, rtol=1e-9)
    np.testing.assert_array_equal(q.transform(all2880[:5]), p.transform(all2880[:5]))
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(fruitnet.FruitnetError, match="model.fnpca"):
        fruitnet.PCA.load(f)


def test_loads_model_of_the_tool(all2880, tmp_path):
    tool = os.path.join(BUILD, "fruitnet-pca")
    if not os.path.exists(tool):
        pytest.fail(f"{tool} missing (make tools)")
    x = all2880[:400]
    fruitnet.write_dataset(([f"{i}.jpg" for i in range(400)], ["c"] * 400, x), tmp_path / "f.parquet")
    subprocess.run([tool, "fit", "-q", "--k", "12", "-i", str(tmp_path / "f.parquet"), "-o", str(tmp_path / "pca")],
                   check=True, stdout=subprocess.DEVNULL)
    q = fruitnet.PCA.load(tmp_path / "pca" / "model.fnpca")
    p = fruitnet.PCA(12).fit(x)
    np.testing.assert_allclose(q.explained_variance_, p.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(q.components_), np.abs(p.components_), atol=1e-9)


def test_pickle(all2880):
    p = fruitnet.PCA(5).fit(all2880[:100, :64])
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.transform(all2880[:3, :64]), p.transform(all2880[:3, :64]))
    q.partial_fit(all2880[100:200, :64])          # the statistics survived the round trip
    assert q.n_samples_ == 200


@pytest.mark.parametrize("est", [fruitnet.PCA(), fruitnet.PCA(0.8), fruitnet.PCA(2, whiten=True)], ids=repr)
def test_check_estimator(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None)
    bad = [(r["check_name"], r["status"], repr(r["exception"])) for r in results
           if r["status"] != "passed" and r["check_name"] not in NOT_APPLICABLE]
    assert bad == []
    assert len(results) > 40


def test_transform_is_the_library_projection(all2880):
    """PcaModel.transform and PCA.transform go through fn_pca_transform: float32 rows, double sums;
    equal to the float64 formula within float32 rounding."""
    x = np.ascontiguousarray(all2880[:300], dtype=np.float32)
    st = fruitnet.PcaStats(x.shape[1])
    st.add(x)
    m = st.fit(k=20)
    ref = (x.astype(np.float64) - m.mean) @ m.components.T
    z = m.transform(x)
    assert z.dtype == np.float32 and z.shape == (300, 20)
    np.testing.assert_allclose(z, ref, rtol=2e-6, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(m.transform(x[5]), z[5])
    p = fruitnet.PCA(n_components=20).fit(x)
    np.testing.assert_array_equal(p.transform(x), fruitnet.pca._project(p.mean_, p.components_, x))
