"""ctypes declarations of libfruitnet (include/fruitnet.h) and the library loader.

Private: the public names are re-exported by the ``fruitnet`` package.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, List, Optional, Union

import numpy as np

from . import _paths

FEATURE_DIM = 2048
NUM_CLASSES = 1000
INPUT_SIZE = 224
INPUT_FLOATS = INPUT_SIZE * INPUT_SIZE * 3


class FruitnetError(Exception):
    """An error reported by libfruitnet.

    ``code`` is the library's FN_E* status (negative int), ``str(e)`` the reason,
    which names the file or argument at fault.
    """

    code: int

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _load() -> ctypes.CDLL:
    errors: List[str] = []
    for c in _paths.library_candidates():
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            errors.append(f"{c}: {e}")
    found = ctypes.util.find_library("fruitnet")
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError as e:
            errors.append(f"{found}: {e}")
    raise OSError("fruitnet: libfruitnet.so not found (reinstall the package, run `make lib` in a clone, "
                  "or set FRUITNET_LIB); tried: " + ("; ".join(errors) or "nothing"))


lib = _load()
c_int, c_int64, c_double, c_float, c_size_t = ctypes.c_int, ctypes.c_int64, ctypes.c_double, ctypes.c_float, \
    ctypes.c_size_t
P = ctypes.POINTER
vp = ctypes.c_void_p
fp = P(c_float)
cp = ctypes.c_char_p


class Error(ctypes.Structure):
    _fields_ = [("code", c_int), ("msg", ctypes.c_char * 512)]


class ModelOptions(ctypes.Structure):
    # fn_model_options: fields only grow at the end; a shorter copy here would let the C side read past it
    _fields_ = [("threads", c_int), ("max_batch", c_int), ("isa", c_int), ("classifier", c_int),
                ("precision", c_int)]


class Image(ctypes.Structure):
    _fields_ = [("w", c_int), ("h", c_int), ("rgb", P(ctypes.c_uint8))]


class KV(ctypes.Structure):
    _fields_ = [("key", cp), ("value", cp)]


class ParquetOptions(ctypes.Structure):
    _fields_ = [("list_column", cp), ("codec", c_int), ("rows_per_group", c_int), ("meta", P(KV)),
                ("nmeta", c_int), ("extra", ctypes.c_void_p), ("nextra", c_int)]  # extra: zeroed, none


class Row(ctypes.Structure):
    _fields_ = [("path", cp), ("label", cp), ("vec", fp), ("n", c_int)]


def _sig(name: str, res: Any, *args: Any) -> None:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, list(args)


E = P(Error)
_sig("fn_status_name", cp, c_int)
_sig("fn_model_options_default", None, P(ModelOptions))
_sig("fn_model_open", c_int, cp, P(ModelOptions), P(vp), E)
_sig("fn_precision_parse", c_int, cp, P(c_int))
_sig("fn_precision_name", cp, c_int)
_sig("fn_model_precision", c_int, vp)
_sig("fn_model_features", c_int, vp, fp, c_int, fp, E)
_sig("fn_model_classify", c_int, vp, fp, c_int, fp, E)
_sig("fn_model_label", cp, vp, c_int)
_sig("fn_model_close", None, vp)
_sig("fn_model_isa", c_int, vp)
_sig("fn_isa_name", cp, c_int)
_sig("fn_isa_parse", c_int, cp, P(c_int))
_sig("fn_topk", None, fp, c_int, c_int, P(c_int), fp)
_sig("fn_image_decoder_name", cp)
_sig("fn_image_to_input", c_int, P(Image), c_int, fp, E)
_sig("fn_input_from_file", c_int, cp, c_int, fp, E)
_sig("fn_input_from_memory", c_int, ctypes.c_void_p, c_size_t, cp, c_int, fp, E)
_sig("fn_convert_tfjs", c_int, cp, cp, cp, cp, E)
_sig("fn_weights_calibrate_int8", c_int, cp, cp, cp, c_int, E)
_sig("fn_weights_open", c_int, cp, P(vp), E)
_sig("fn_weights_crc32", ctypes.c_uint32, vp)
_sig("fn_weights_close", None, vp)
_sig("fn_parquet_writer_open", c_int, cp, P(ParquetOptions), P(vp), E)
_sig("fn_parquet_writer_add", c_int, vp, cp, cp, fp, c_int, E)
_sig("fn_parquet_writer_set_meta", c_int, vp, cp, cp, E)
_sig("fn_parquet_writer_close", c_int, vp, E)
_sig("fn_parquet_writer_abort", None, vp)
_sig("fn_parquet_reader_open", c_int, cp, P(vp), E)
_sig("fn_parquet_reader_rows", c_int64, vp)
_sig("fn_parquet_reader_meta", cp, vp, cp)
_sig("fn_parquet_reader_next", c_int, vp, P(Row), E)
_sig("fn_parquet_reader_close", None, vp)
_sig("fn_parquet_dataset_files", c_int, cp, P(P(cp)), P(c_int), E)
_sig("fn_free_list", None, P(cp), c_int)
# PCA objects are opaque (fn_pca_stats *, fn_pca_model *): handles, read through the accessors
dp = P(c_double)
_sig("fn_pca_stats_new", c_int, c_int, P(vp), E)
_sig("fn_pca_stats_from_moments", c_int, c_int, c_int64, dp, dp, P(vp), E)
_sig("fn_pca_stats_add", c_int, vp, fp, c_int, c_int, E)
_sig("fn_pca_stats_merge", c_int, vp, vp, E)
_sig("fn_pca_stats_save", c_int, vp, cp, E)
_sig("fn_pca_stats_load", c_int, cp, P(vp), E)
_sig("fn_pca_stats_dim", c_int, vp)
_sig("fn_pca_stats_rows", c_int64, vp)
_sig("fn_pca_stats_mean", dp, vp)
_sig("fn_pca_stats_m2", dp, vp)
_sig("fn_pca_stats_free", None, vp)
_sig("fn_pca_fit_ex", c_int, vp, c_int, c_double, c_int, P(vp), dp, E)
_sig("fn_pca_model_new", c_int, c_int, c_int, c_int64, c_double, dp, dp, dp, P(vp), E)
_sig("fn_pca_model_save", c_int, vp, cp, E)
_sig("fn_pca_model_load", c_int, cp, P(vp), E)
_sig("fn_pca_model_dim", c_int, vp)
_sig("fn_pca_model_k", c_int, vp)
_sig("fn_pca_model_rows", c_int64, vp)
_sig("fn_pca_model_total_var", c_double, vp)
_sig("fn_pca_model_mean", dp, vp)
_sig("fn_pca_model_eigvals", dp, vp)
_sig("fn_pca_model_components", dp, vp)
_sig("fn_pca_model_free", None, vp)
HAVE_ADD_ROWS = hasattr(lib, "fn_parquet_writer_add_rows")
if HAVE_ADD_ROWS:
    _sig("fn_parquet_writer_add_rows", c_int, vp, c_int, P(cp), P(cp), fp, c_int, E)


def check(rc: int, err: Error) -> int:
    """Raise FruitnetError for a negative status; return rc otherwise."""
    if rc < 0:
        msg = err.msg.decode("utf-8", "replace")
        name = lib.fn_status_name(rc)
        raise FruitnetError(rc, msg or f"libfruitnet error {rc} ({name.decode() if name else '?'})")
    return rc


PathLike = Union[str, "os.PathLike[str]"]


def cpath(p: Any, what: str = "path") -> bytes:
    """A str/PathLike as a NUL-free byte string for C (TypeError/ValueError otherwise)."""
    if isinstance(p, (bytes, bytearray)):
        b = bytes(p)
    else:
        try:
            b = os.fsencode(os.fspath(p))
        except TypeError:
            raise TypeError(f"{what} must be a str or os.PathLike, not {type(p).__name__}") from None
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL character: {os.fsdecode(b)!r}")
    if not b:
        raise ValueError(f"{what} is empty")
    return b


def cstr(s: Optional[str], what: str) -> bytes:
    """A str as NUL-free UTF-8 for C."""
    if s is None:
        return b""
    if not isinstance(s, str):
        s = str(s)
    b = s.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL character: {s!r}")
    return b


def fptr(a: np.ndarray) -> Any:
    """float* of a C-contiguous float32 array (checked)."""
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise ValueError("internal: expected a C-contiguous float32 array")
    return a.ctypes.data_as(fp)


def dptr(a: np.ndarray) -> Any:
    if a.dtype != np.float64 or not a.flags.c_contiguous:
        raise ValueError("internal: expected a C-contiguous float64 array")
    return a.ctypes.data_as(P(c_double))


# -- datasets (fruitnet.h "Datasets", "Atomic files") ------------------------------------------------------
class ExtractOptions(ctypes.Structure):
    _fields_ = [("batch", c_int), ("decoders", c_int), ("resize", c_int), ("mirror", c_int)]


#: fn_row_fn: (ctx, input index, features or NULL, error or NULL, fn_error*) -> status
ROW_FN = ctypes.CFUNCTYPE(c_int, vp, c_size_t, fp, cp, E)
#: fn_skip_fn: (ctx, raw path, reason, is_error)
SKIP_FN = ctypes.CFUNCTYPE(None, vp, cp, cp, c_int)

_sig("fn_escape_path", c_size_t, cp, ctypes.c_char_p, c_size_t)
_sig("fn_unescape_path", c_size_t, cp, ctypes.c_char_p, c_size_t)
_sig("fn_inputs_new", c_int, P(vp), E)
_sig("fn_inputs_add", c_int, vp, cp, SKIP_FN, vp, E)
_sig("fn_inputs_add_list", c_int, vp, cp, SKIP_FN, vp, E)
_sig("fn_inputs_add_list_fd", c_int, vp, c_int, cp, SKIP_FN, vp, E)
_sig("fn_inputs_finish", c_int, vp, c_int, c_int, SKIP_FN, vp, E)
_sig("fn_inputs_count", c_size_t, vp)
_sig("fn_inputs_path", cp, vp, c_size_t)
_sig("fn_inputs_label", cp, vp, c_size_t)
_sig("fn_inputs_size", c_int64, vp, c_size_t)
_sig("fn_inputs_mtime_ns", c_int64, vp, c_size_t)
_sig("fn_inputs_free", None, vp)
_sig("fn_extract_run", c_int, vp, P(ExtractOptions), c_size_t, P(cp), P(vp), P(c_size_t), ROW_FN, vp,
     P(c_double), E)
_sig("fn_atomic_write_file", c_int, cp, ctypes.c_char_p, c_size_t, c_int, E)
_sig("fn_atomic_check", c_int, cp, c_int, E)
_sig("fn_pca_transform", None, vp, fp, fp)


def _escape_call(f: Any, raw: bytes) -> bytes:
    need = f(raw, None, 0)
    buf = ctypes.create_string_buffer(need + 1)
    f(raw, buf, need + 1)
    return buf.raw[:need]


def escape_path(raw: Union[str, bytes]) -> str:
    """The library's escaping of a path for columns, _errors.tsv and messages (fn_escape_path)."""
    b = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    return _escape_call(lib.fn_escape_path, b).decode("utf-8")


def unescape_path(escaped: Union[str, bytes]) -> bytes:
    """Raw bytes of an escaped path (fn_unescape_path)."""
    b = escaped if isinstance(escaped, bytes) else escaped.encode("utf-8")
    return _escape_call(lib.fn_unescape_path, b)


def atomic_write_file(path: Any, data: bytes, flags: int = 0) -> None:
    """Put `data` at `path` by the library's one atomic-write policy (refuses devices, FIFOs, symlinks...)."""
    err = Error()
    check(lib.fn_atomic_write_file(cpath(path), data, len(data), flags, ctypes.byref(err)), err)


class DatasetOptions(ctypes.Structure):
    _fields_ = [("part_size", c_int), ("shard_k", c_int), ("shard_n", c_int), ("codec", c_int),
                ("single_file", c_int), ("errors_path", cp), ("extract", ExtractOptions), ("classifier", vp)]


FAILURE_FN = ctypes.CFUNCTYPE(None, vp, cp, cp)
PROGRESS_FN = ctypes.CFUNCTYPE(None, vp, c_size_t, c_size_t, c_size_t)
DROW_FN = ctypes.CFUNCTYPE(c_int, vp, c_size_t, cp, fp)
NOTE_FN = ctypes.CFUNCTYPE(None, vp, cp)


class DatasetCallbacks(ctypes.Structure):
    _fields_ = [("ctx", vp), ("failure", FAILURE_FN), ("progress", PROGRESS_FN), ("row", DROW_FN),
                ("note", NOTE_FN)]


class DatasetReport(ctypes.Structure):
    _fields_ = [("inputs", c_size_t), ("ok", c_size_t), ("failed", c_size_t), ("parts", c_size_t),
                ("resumed_parts", c_size_t), ("resumed_inputs", c_size_t), ("committed", c_int),
                ("net_seconds", c_double), ("errors_path", ctypes.c_char * 4096)]


_sig("fn_dataset_write", c_int, cp, vp, vp, P(DatasetOptions), P(DatasetCallbacks), P(DatasetReport), E)
_sig("fn_dataset_files", c_int, cp, c_int, P(P(cp)), P(c_int), E)
