"""fruitnet — Python binding (ctypes) over libfruitnet.so.

ResNet50 (Keras, ImageNet) 2048-d features of images, top-k classification,
the Parquet writer/reader and the mergeable PCA statistics of the C library.
numpy is the only dependency. Errors of the library become FruitnetError.

    import fruitnet
    with fruitnet.Model() as m:
        feats = m.features(["Banana/108_100.jpg", open("x.jpg", "rb").read()])
        print(m.classify(["Banana/108_100.jpg"])[0][0])   # ('banana', 0.99...)

The library is found through $FRUITNET_LIB, then the build tree
(build/libfruitnet.so next to this package's repository), then the system.
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["FruitnetError", "Model", "ParquetWriter", "read_parquet", "dataset_files", "PcaStats", "PcaModel",
           "version", "DEFAULT_WEIGHTS"]

FEATURE_DIM = 2048
INPUT_FLOATS = 224 * 224 * 3
_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
DEFAULT_WEIGHTS = os.environ.get("FRUITNET_WEIGHTS") or next(
    (p for p in (os.path.join(_REPO, "weights", "resnet50.fnw"), "/usr/local/share/fruitnet/resnet50.fnw",
                 "/usr/share/fruitnet/resnet50.fnw") if os.path.exists(p)),
    os.path.join(_REPO, "weights", "resnet50.fnw"))


def _load():
    cands = [os.environ.get("FRUITNET_LIB"), os.path.join(_REPO, "build", "libfruitnet.so"),
             ctypes.util.find_library("fruitnet")]
    errors = []
    for c in cands:
        if not c:
            continue
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            errors.append(f"{c}: {e}")
    raise OSError("libfruitnet.so not found (set FRUITNET_LIB or run `make`): " + "; ".join(errors))


_lib = _load()
_c_int, _c_int64, _c_double, _c_float = ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_float
_P = ctypes.POINTER


class _Error(ctypes.Structure):
    _fields_ = [("code", _c_int), ("msg", ctypes.c_char * 512)]


class _ModelOptions(ctypes.Structure):
    _fields_ = [("threads", _c_int), ("max_batch", _c_int), ("isa", _c_int), ("classifier", _c_int), ("precision", _c_int)]


class _KV(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class _ParquetOptions(ctypes.Structure):
    _fields_ = [("list_column", ctypes.c_char_p), ("codec", _c_int), ("rows_per_group", _c_int),
                ("meta", _P(_KV)), ("nmeta", _c_int)]


class _Row(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("label", ctypes.c_char_p), ("vec", _P(_c_float)), ("n", _c_int)]


class _PcaStats(ctypes.Structure):
    _fields_ = [("n", _c_int64), ("dim", _c_int), ("mean", _P(_c_double)), ("m2", _P(_c_double))]


class _PcaModel(ctypes.Structure):
    _fields_ = [("dim", _c_int), ("k", _c_int), ("n", _c_int64), ("total_var", _c_double),
                ("mean", _P(_c_double)), ("eigvals", _P(_c_double)), ("components", _P(_c_double))]


def _sig(name, res, *args):
    f = getattr(_lib, name)
    f.restype, f.argtypes = res, list(args)
    return f


_E = _P(_Error)
_vp = ctypes.c_void_p
_fp = _P(_c_float)
_sig("fn_model_options_default", None, _P(_ModelOptions))
_sig("fn_model_open", _c_int, ctypes.c_char_p, _P(_ModelOptions), _P(_vp), _E)
_sig("fn_model_features", _c_int, _vp, _fp, _c_int, _fp, _E)
_sig("fn_model_classify", _c_int, _vp, _fp, _c_int, _fp, _E)
_sig("fn_model_label", ctypes.c_char_p, _vp, _c_int)
_sig("fn_model_close", None, _vp)
_sig("fn_model_isa", _c_int, _vp)
_sig("fn_isa_name", ctypes.c_char_p, _c_int)
_sig("fn_isa_parse", _c_int, ctypes.c_char_p, _P(_c_int))
_sig("fn_topk", None, _fp, _c_int, _c_int, _P(_c_int), _fp)
_sig("fn_input_from_file", _c_int, ctypes.c_char_p, _c_int, _fp, _E)
_sig("fn_input_from_memory", _c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, _c_int, _fp, _E)
_sig("fn_parquet_writer_open", _c_int, ctypes.c_char_p, _P(_ParquetOptions), _P(_vp), _E)
_sig("fn_parquet_writer_add", _c_int, _vp, ctypes.c_char_p, ctypes.c_char_p, _fp, _c_int, _E)
_sig("fn_parquet_writer_set_meta", _c_int, _vp, ctypes.c_char_p, ctypes.c_char_p, _E)
_sig("fn_parquet_writer_close", _c_int, _vp, _E)
_sig("fn_parquet_writer_abort", None, _vp)
_sig("fn_parquet_reader_open", _c_int, ctypes.c_char_p, _P(_vp), _E)
_sig("fn_parquet_reader_rows", _c_int64, _vp)
_sig("fn_parquet_reader_meta", ctypes.c_char_p, _vp, ctypes.c_char_p)
_sig("fn_parquet_reader_next", _c_int, _vp, _P(_Row), _E)
_sig("fn_parquet_reader_close", None, _vp)
_sig("fn_parquet_dataset_files", _c_int, ctypes.c_char_p, _P(_P(ctypes.c_char_p)), _P(_c_int), _E)
_sig("fn_free_list", None, _P(ctypes.c_char_p), _c_int)
_sig("fn_pca_stats_init", _c_int, _P(_PcaStats), _c_int, _E)
_sig("fn_pca_stats_add", _c_int, _P(_PcaStats), _fp, _c_int, _c_int, _E)
_sig("fn_pca_stats_merge", _c_int, _P(_PcaStats), _P(_PcaStats), _E)
_sig("fn_pca_stats_save", _c_int, _P(_PcaStats), ctypes.c_char_p, _E)
_sig("fn_pca_stats_load", _c_int, _P(_PcaStats), ctypes.c_char_p, _E)
_sig("fn_pca_stats_free", None, _P(_PcaStats))
_sig("fn_pca_fit", _c_int, _P(_PcaStats), _c_int, _c_double, _P(_PcaModel), _E)
_sig("fn_pca_transform", None, _P(_PcaModel), _fp, _fp)
_sig("fn_pca_model_save", _c_int, _P(_PcaModel), ctypes.c_char_p, _E)
_sig("fn_pca_model_load", _c_int, _P(_PcaModel), ctypes.c_char_p, _E)
_sig("fn_pca_model_free", None, _P(_PcaModel))


class FruitnetError(Exception):
    """An error reported by libfruitnet: .code is the FN_E* status, str() the reason (names the file)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _check(rc, err):
    if rc < 0:
        raise FruitnetError(rc, err.msg.decode("utf-8", "replace") or f"error {rc}")
    return rc


def _b(s):
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def version():
    """The library's version string."""
    return "0.1.0"


def _fptr(a):
    return a.ctypes.data_as(_fp)


class Model:
    """ResNet50 feature extractor; one Model per thread at a time (it owns its arena and thread pool)."""

    def __init__(self, weights=None, threads=0, batch=8, isa="auto", classifier=False, resize="pil"):
        o = _ModelOptions()
        _lib.fn_model_options_default(ctypes.byref(o))
        o.threads, o.max_batch, o.classifier = threads, batch, 1 if classifier else 0
        isa_v = _c_int()
        if _lib.fn_isa_parse(_b(isa), ctypes.byref(isa_v)) != 0:
            raise ValueError(f"isa must be auto, portable, avx2 or avx512, not {isa!r}")
        o.isa = isa_v.value
        if resize not in ("pil", "stb"):
            raise ValueError("resize must be 'pil' or 'stb'")
        self._resize = 0 if resize == "pil" else 1
        self._classifier = bool(classifier)
        self.batch = batch
        self._m = _vp()
        err = _Error()
        _check(_lib.fn_model_open(_b(weights or DEFAULT_WEIGHTS), ctypes.byref(o), ctypes.byref(self._m),
                                  ctypes.byref(err)), err)

    @property
    def isa(self):
        return _lib.fn_isa_name(_lib.fn_model_isa(self._m)).decode()

    def close(self):
        if self._m:
            _lib.fn_model_close(self._m)
            self._m = _vp()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def preprocess(self, item, out):
        """Decode + resize + preprocess one path (str) or encoded image (bytes) into out [224,224,3]."""
        err = _Error()
        if isinstance(item, (bytes, bytearray, memoryview)):
            data = bytes(item)
            rc = _lib.fn_input_from_memory(data, len(data), b"<bytes>", self._resize, _fptr(out), ctypes.byref(err))
        else:
            rc = _lib.fn_input_from_file(_b(os.fspath(item)), self._resize, _fptr(out), ctypes.byref(err))
        _check(rc, err)

    def features_from_tensors(self, x):
        """x: float32 [n,224,224,3] preprocessed (BGR, means subtracted) -> [n,2048] features."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (224, 224, 3):
            raise ValueError("x must have shape [n, 224, 224, 3]")
        out = np.empty((x.shape[0], FEATURE_DIM), np.float32)
        err = _Error()
        _check(_lib.fn_model_features(self._m, _fptr(x), x.shape[0], _fptr(out), ctypes.byref(err)), err)
        return out

    def features(self, items, errors="raise"):
        """Features [n,2048] of image paths and/or encoded bytes.

        errors='raise' raises FruitnetError on the first bad image; errors='skip' returns
        (features of the good ones, indices of the good ones, [(index, message), ...])."""
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        items = list(items)
        good, failures, chunks = [], [], []
        buf = np.empty((self.batch, 224, 224, 3), np.float32)
        nb = 0
        for i, it in enumerate(items):
            try:
                self.preprocess(it, buf[nb])
            except FruitnetError as e:
                if errors == "raise":
                    raise
                failures.append((i, str(e)))
                continue
            good.append(i)
            nb += 1
            if nb == self.batch:
                chunks.append(self.features_from_tensors(buf[:nb]))
                nb = 0
        if nb:
            chunks.append(self.features_from_tensors(buf[:nb]))
        feats = np.concatenate(chunks) if chunks else np.empty((0, FEATURE_DIM), np.float32)
        return feats if errors == "raise" else (feats, good, failures)

    def classify(self, items, k=5):
        """Top-k ImageNet (label, probability) lists for each image (needs classifier=True)."""
        if not self._classifier:
            raise FruitnetError(-1, "model opened without classifier=True")
        feats = self.features(items)
        probs = np.empty((feats.shape[0], 1000), np.float32)
        err = _Error()
        _check(_lib.fn_model_classify(self._m, _fptr(feats), feats.shape[0], _fptr(probs), ctypes.byref(err)), err)
        res = []
        idx = (_c_int * k)()
        val = (_c_float * k)()
        for r in range(probs.shape[0]):
            _lib.fn_topk(_fptr(probs[r]), 1000, k, idx, val)
            res.append([(_lib.fn_model_label(self._m, idx[j]).decode(), float(val[j])) for j in range(k)])
        return res


class ParquetWriter:
    """Writes (path, label, <list_column> LIST<FLOAT>) rows; atomic (temporary name renamed at close)."""

    def __init__(self, path, list_column="features", codec="gzip", rows_per_group=1024, meta=None):
        meta = dict(meta or {})
        self._kv = (_KV * max(1, len(meta)))()
        self._keep = []
        for i, (k, v) in enumerate(meta.items()):
            kb, vb = _b(str(k)), _b(str(v))
            self._keep += [kb, vb]
            self._kv[i].key, self._kv[i].value = kb, vb
        self._col = _b(list_column)
        o = _ParquetOptions(self._col, 2 if codec == "gzip" else 0, rows_per_group, self._kv, len(meta))
        self._w = _vp()
        err = _Error()
        _check(_lib.fn_parquet_writer_open(_b(os.fspath(path)), ctypes.byref(o), ctypes.byref(self._w),
                                           ctypes.byref(err)), err)

    def add(self, path, label, vec):
        v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
        err = _Error()
        _check(_lib.fn_parquet_writer_add(self._w, _b(path), _b(label), _fptr(v), v.size, ctypes.byref(err)), err)

    def set_meta(self, key, value):
        err = _Error()
        _check(_lib.fn_parquet_writer_set_meta(self._w, _b(key), _b(value), ctypes.byref(err)), err)

    def close(self):
        err = _Error()
        w, self._w = self._w, _vp()
        if w:
            _check(_lib.fn_parquet_writer_close(w, ctypes.byref(err)), err)

    def abort(self):
        w, self._w = self._w, _vp()
        if w:
            _lib.fn_parquet_writer_abort(w)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        else:
            self.abort()


def dataset_files(path):
    """The .parquet files of a file or dataset folder, sorted."""
    lst = _P(ctypes.c_char_p)()
    n = _c_int()
    err = _Error()
    _check(_lib.fn_parquet_dataset_files(_b(os.fspath(path)), ctypes.byref(lst), ctypes.byref(n),
                                         ctypes.byref(err)), err)
    out = [lst[i].decode("utf-8", "surrogateescape") for i in range(n.value)]
    _lib.fn_free_list(lst, n)
    return out


def read_parquet(path):
    """Yields (path, label, np.float32 vector) for every row of a file or dataset folder."""
    for f in dataset_files(path):
        r = _vp()
        err = _Error()
        _check(_lib.fn_parquet_reader_open(_b(f), ctypes.byref(r), ctypes.byref(err)), err)
        try:
            row = _Row()
            while _check(_lib.fn_parquet_reader_next(r, ctypes.byref(row), ctypes.byref(err)), err) == 1:
                vec = np.ctypeslib.as_array(row.vec, shape=(row.n,)).copy() if row.n else np.empty(0, np.float32)
                yield row.path.decode("utf-8", "surrogateescape"), row.label.decode("utf-8", "surrogateescape"), vec
        finally:
            _lib.fn_parquet_reader_close(r)


class PcaModel:
    """A fitted PCA: mean, eigenvalues (descending), components (rows), total variance."""

    def __init__(self, m):
        self.dim, self.k, self.n, self.total_var = m.dim, m.k, m.n, m.total_var
        self.mean = np.ctypeslib.as_array(m.mean, shape=(m.dim,)).copy()
        self.eigenvalues = np.ctypeslib.as_array(m.eigvals, shape=(max(m.k, 1),))[:m.k].copy()
        self.components = np.ctypeslib.as_array(m.components, shape=(max(m.k, 1), m.dim))[:m.k].copy()
        self._m = m

    @property
    def explained_variance_ratio(self):
        return self.eigenvalues / self.total_var

    def transform(self, x):
        x = np.asarray(x, dtype=np.float64)
        return ((x - self.mean) @ self.components.T).astype(np.float32)

    def save(self, path):
        err = _Error()
        _check(_lib.fn_pca_model_save(ctypes.byref(self._m), _b(os.fspath(path)), ctypes.byref(err)), err)

    def __del__(self):
        try:
            _lib.fn_pca_model_free(ctypes.byref(self._m))
        except Exception:
            pass


class PcaStats:
    """Streaming, mergeable mean/covariance statistics (double precision)."""

    def __init__(self, dim=FEATURE_DIM, _empty=False):
        self._s = _PcaStats()
        if not _empty:
            err = _Error()
            _check(_lib.fn_pca_stats_init(ctypes.byref(self._s), dim, ctypes.byref(err)), err)

    @property
    def n(self):
        return self._s.n

    @property
    def dim(self):
        return self._s.dim

    def add(self, rows, threads=0):
        x = np.ascontiguousarray(rows, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != self.dim:
            raise ValueError(f"rows have {x.shape[1]} values, expected {self.dim}")
        err = _Error()
        _check(_lib.fn_pca_stats_add(ctypes.byref(self._s), _fptr(x), x.shape[0], threads, ctypes.byref(err)), err)
        return self

    def merge(self, other):
        err = _Error()
        _check(_lib.fn_pca_stats_merge(ctypes.byref(self._s), ctypes.byref(other._s), ctypes.byref(err)), err)
        return self

    def save(self, path):
        err = _Error()
        _check(_lib.fn_pca_stats_save(ctypes.byref(self._s), _b(os.fspath(path)), ctypes.byref(err)), err)

    @classmethod
    def load(cls, path):
        s = cls(_empty=True)
        err = _Error()
        _check(_lib.fn_pca_stats_load(ctypes.byref(s._s), _b(os.fspath(path)), ctypes.byref(err)), err)
        return s

    def fit(self, k=0, variance=0.80):
        """Top-k components (k > 0), or the fewest reaching `variance` of the total."""
        m = _PcaModel()
        err = _Error()
        _check(_lib.fn_pca_fit(ctypes.byref(self._s), k, variance, ctypes.byref(m), ctypes.byref(err)), err)
        return PcaModel(m)

    def __del__(self):
        try:
            _lib.fn_pca_stats_free(ctypes.byref(self._s))
        except Exception:
            pass
