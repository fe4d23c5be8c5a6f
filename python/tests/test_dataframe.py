"""extract -> DataFrame; datasets written by fruitnet read by pandas, pyarrow.dataset, read_dataset and libfruitnet."""
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import fruitnet

CLASSES = ["Banana", "Lemon", "Kiwi"]


@pytest.fixture(scope="module")
def small(sample, tmp_path_factory):
    """A folder of 3 classes x 4 images (symlinks into the sample) plus a broken image."""
    d = tmp_path_factory.mktemp("imgs")
    for c in CLASSES:
        os.makedirs(d / c)
        for n in sorted(os.listdir(os.path.join(sample, c)))[:4]:
            os.symlink(os.path.join(sample, c, n), d / c / n)
    (d / "Kiwi" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (d / "Kiwi" / ".hidden.jpg").write_bytes(b"hidden")
    (d / "Kiwi" / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def df(small, model):
    with pytest.warns(RuntimeWarning, match="1 of 13 images failed"):
        return fruitnet.extract(small, model=model, batch=8)


def test_extract(df, small, model):
    assert list(df.columns) == ["path", "label", "features"]
    assert len(df) == 12
    assert sorted(set(df.label)) == sorted(CLASSES)
    assert list(df.path) == sorted(df.path, key=lambda p: p.encode())
    assert all(p.startswith(str(small)) for p in df.path)
    X = fruitnet.feature_matrix(df)
    assert X.shape == (12, 2048) and X.dtype == np.float32
    np.testing.assert_array_equal(np.stack(df.features), X)
    np.testing.assert_allclose(X, model.features(list(df.path), batch=8), rtol=0, atol=2.5e-5)
    assert len(df.attrs["failures"]) == 1
    assert df.attrs["failures"][0][0].endswith("zz_broken.jpg")
    assert "zz_broken.jpg" in df.attrs["failures"][0][1]
    with pytest.raises(fruitnet.FruitnetError, match="zz_broken.jpg"):
        fruitnet.extract(small, model=model, errors="raise")


def test_to_arrow(df):
    t = fruitnet.to_arrow(df)
    assert t.schema.field("path").type == pa.string()
    assert t.schema.field("features").type == pa.list_(pa.float32())
    assert t.num_rows == 12
    np.testing.assert_array_equal(np.stack(t.column("features").to_numpy(zero_copy_only=False)),
                                  fruitnet.feature_matrix(df))
    assert t.column("label").to_pylist() == list(df.label)


def test_dataset_roundtrip(df, tmp_path):
    out = tmp_path / "features.parquet"
    parts = fruitnet.write_dataset(df, out, rows_per_file=5)
    assert [os.path.basename(p) for p in parts] == ["part-00000.parquet", "part-00001.parquet",
                                                     "part-00002.parquet"]
    assert (out / "_SUCCESS").exists()
    X = fruitnet.feature_matrix(df)
    # pandas (pyarrow engine) reads the folder
    back = pd.read_parquet(out)
    assert list(back.path) == list(df.path) and list(back.label) == list(df.label)
    np.testing.assert_array_equal(np.stack(back.features), X)
    # pyarrow.dataset
    t = pads.dataset(str(out), format="parquet").to_table()
    assert t.num_rows == 12
    assert t.schema.field("features").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(np.stack(t.column("features").to_numpy(zero_copy_only=False)), X)
    # fruitnet.read_dataset (pyarrow) and libfruitnet's own reader
    rd = fruitnet.read_dataset(out)
    assert list(rd.path) == list(df.path)
    np.testing.assert_array_equal(fruitnet.feature_matrix(rd), X)
    rows = list(fruitnet.read_parquet(out))
    np.testing.assert_array_equal(np.stack([r[2] for r in rows]), X)
    # footer metadata of a part
    meta = pq.read_metadata(parts[0]).metadata
    assert meta[b"fruitnet.version"].decode() == fruitnet.__version__
    # nothing is overwritten
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        fruitnet.write_dataset(df, out)


def test_write_batch_equals_rows(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 7)).astype(np.float32)
    paths = [f"p{i}" for i in range(5000)]
    labels = [f"l{i % 3}" for i in range(5000)]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    with fruitnet.ParquetWriter(a, rows_per_group=1000) as w:
        w.write_batch(paths, labels, x)
    with fruitnet.ParquetWriter(b, rows_per_group=1000) as w:
        for i in range(5000):
            w.add(paths[i], labels[i], x[i])
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="lengths differ"):
        with fruitnet.ParquetWriter(tmp_path / "c.parquet") as w:
            w.write_batch(paths[:2], labels[:3], x[:2])
    assert not (tmp_path / "c.parquet").exists()  # aborted: nothing left behind
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_pcs_dataset_and_tuple_input(tmp_path):
    z = np.arange(12, dtype=np.float32).reshape(4, 3)
    fruitnet.write_dataset((["a", "b", "c", "d"], ["x", "y", "x", None], z), tmp_path / "pcs", column="pcs")
    back = pd.read_parquet(tmp_path / "pcs")
    assert list(back.columns) == ["path", "label", "pcs"]
    np.testing.assert_array_equal(np.stack(back.pcs), z)
    assert back.label.tolist()[:3] == ["x", "y", "x"]


def test_list_images(small):
    items = fruitnet.list_images(small)
    assert len(items) == 13
    assert all(lab in CLASSES for _, lab in items)
    lst = small / "list.txt"
    lst.write_text("# comment\n" + "\n".join(p for p, _ in items[:3]) + "\n")
    assert fruitnet.list_images("@" + str(lst)) == items[:3]
