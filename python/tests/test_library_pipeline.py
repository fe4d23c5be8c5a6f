"""Python goes through libfruitnet's listing (fn_inputs), pipeline (fn_extract_run), dataset writer
(fn_dataset_write) and escaping (fn_escape_path): same results as fruitnet-extract, no Python walker."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import fruitnet
from fruitnet import _lib
from conftest import BUILD


def _small(sample, root, per=2, classes=3):
    """root/<class>/<n>.jpg copies of the sample; returns the class names."""
    cls = sorted(os.listdir(sample))[:classes]
    for c in cls:
        os.makedirs(root / c)
        for n in sorted(os.listdir(os.path.join(sample, c)))[:per]:
            shutil.copy(os.path.join(sample, c, n), root / c / n)
    return cls


def test_listing_is_the_library_one(sample, tmp_path):
    root = tmp_path / "d"
    cls = _small(sample, root)
    c0 = root / cls[0]
    first = sorted(os.listdir(c0))[0]
    os.symlink(c0 / first, root / cls[1] / "zz_link.jpg")   # a second spelling of one file: one row
    (root / cls[2] / ".hidden.jpg").write_bytes(b"x")      # hidden: never listed
    items = fruitnet.list_images(str(root) + "//")
    assert len(items) == 6                                  # 3 x 2, the link de-duplicated
    assert all(p.startswith(str(root) + "/") and "//" not in p for p, _ in items)
    assert [lab for _, lab in items] == [c for c in cls for _ in range(2)]
    skipped = []
    assert fruitnet.list_images([str(root), str(c0 / first)], skipped=skipped) == items
    assert any(why and not bad for _, why, bad in skipped)  # the other spellings are reported, not errors
    # "." inside a class folder labels rows with the folder's real name (the old walker said ".")
    old = os.getcwd()
    try:
        os.chdir(c0)
        assert {lab for _, lab in fruitnet.list_images(".")} == {cls[0]}
    finally:
        os.chdir(old)
    with pytest.warns(RuntimeWarning, match="nonexistent"):
        assert fruitnet.list_images(str(tmp_path / "nonexistent.jpg")) == []


def test_features_go_through_the_pipeline(model, sample, tmp_path):
    root = tmp_path / "d"
    _small(sample, root)
    paths = [p for p, _ in fruitnet.list_images(str(root))]
    blobs = [open(p, "rb").read() for p in paths]
    a = model.features(paths, batch=4)
    b = model.features(blobs, batch=4)
    np.testing.assert_array_equal(a, b)                     # paths and bytes: one pipeline
    one = np.stack([model.features(p)[0] for p in paths[:2]])
    np.testing.assert_allclose(a[:2], one, rtol=1e-4, atol=1e-4)  # batch size: summation order only
    # mixed kinds keep input order; "skip" reports each failure at its position
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    r = model.features([paths[0], b"junk", blobs[1], str(bad), paths[2]], errors="skip", batch=4)
    assert r.index == [0, 2, 4] and [i for i, _ in r.failures] == [1, 3]
    assert "<bytes #1>" in r.failures[0][1] and str(bad) in r.failures[1][1]
    np.testing.assert_allclose(r.features, a[[0, 1, 2]], rtol=1e-4, atol=1e-4)
    # "raise": the first failure in input order, with the decoder's status
    with pytest.raises(fruitnet.FruitnetError, match="bad.jpg") as e:
        model.features([paths[0], str(bad), b"junk"])
    assert e.value.code == -7                              # FN_EIMAGE


def test_callback_exception_does_not_cross_into_c(model, sample, tmp_path, monkeypatch):
    root = tmp_path / "d"
    _small(sample, root, per=1, classes=2)
    paths = [p for p, _ in fruitnet.list_images(str(root))]

    def boom(*a, **k):
        raise KeyboardInterrupt("stop from the row callback")
    monkeypatch.setattr(fruitnet.model.ctypes, "memmove", boom)
    with pytest.raises(KeyboardInterrupt, match="row callback"):
        model.features(paths)
    monkeypatch.undo()
    assert model.features(paths).shape == (2, 2048)       # the model is still usable (lock released)


def test_extract_escapes_like_the_tool(model, sample, tmp_path):
    root = tmp_path / "d"
    cls = _small(sample, root, per=1, classes=2)
    src = root / cls[0] / sorted(os.listdir(root / cls[0]))[0]
    odd = root / cls[1] / "odd%\tname.jpg"
    shutil.copy(src, odd)
    (root / cls[1] / "broken\n.jpg").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(RuntimeWarning, match="1 of 4"):
        df = fruitnet.extract(str(root), model=model)
    assert _lib.escape_path(str(odd)) in list(df.path)
    assert str(root / cls[1] / "odd%25%09name.jpg") in list(df.path)
    assert df.attrs["failures"][0][0].endswith("broken%0A.jpg")
    assert _lib.unescape_path(_lib.escape_path(str(odd))) == os.fsencode(str(odd))
    # the tool writes the same path column
    out = tmp_path / "tool.parquet"
    subprocess.run([os.path.join(BUILD, "fruitnet-extract"), "-q", "--single-file", "-o", str(out), str(root)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tool = sorted(p for p, _, _ in fruitnet.read_parquet(str(out)))
    assert tool == sorted(df.path)


def test_dataset_writer_shards_resume_and_errors(model, sample, tmp_path):
    root = tmp_path / "d"
    _small(sample, root)
    (root / "bad\t%.jpg").write_bytes(b"not an image")
    out = tmp_path / "ds"
    got = []
    r1 = fruitnet.data.extract_dataset(str(root), str(out), model, shard=(1, 2),
                                       on_rows=lambda p, l, x: got.append((p, x)))
    assert not r1["committed"] and not (out / "_SUCCESS").exists()
    r2 = fruitnet.data.extract_dataset(str(root), str(out), model, shard=(2, 2))
    assert r2["committed"] and (out / "_SUCCESS").exists()
    assert r1["inputs"] + r2["inputs"] == 7 and r1["ok"] + r2["ok"] == 6
    fails = r1["failures"] + r2["failures"]
    assert [p for p, _ in fails] == [str(root / "bad%09%25.jpg")]
    errfile = r1["errors_path"] or r2["errors_path"]
    assert "bad%09%25.jpg" in open(errfile, encoding="utf-8").read()   # escaped: one line per failure
    rows = list(fruitnet.read_parquet(str(out)))
    assert len(rows) == 6 and len({p for p, _, _ in rows}) == 6
    assert sum(len(p) for p, _ in got) == r1["ok"]
    # a re-run of shard 1 resumes its parts (nothing computed) and the dataset stays committed, no row twice
    r3 = fruitnet.data.extract_dataset(str(root), str(out), model, shard=(1, 2))
    assert r3["resumed_inputs"] == r1["inputs"] and r3["committed"]
    assert len(list(fruitnet.read_parquet(str(out)))) == 6
