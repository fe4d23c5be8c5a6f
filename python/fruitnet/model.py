"""The ResNet50 feature extractor: :class:`Model`."""
from __future__ import annotations

import ctypes
import os
import threading
from typing import (Any, List, Literal, NamedTuple, Optional, Sequence, Tuple, Union,
                    overload)

import numpy as np

from . import _lib
from ._lib import FEATURE_DIM, INPUT_SIZE, NUM_CLASSES, FruitnetError
from .weights import find_weights

__all__ = ["Model", "FeatureResult", "ImageInput"]

#: One image: a path (str or os.PathLike), encoded JPEG/PNG bytes, or a decoded
#: uint8 array of shape (H, W, 3) in RGB order.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray]


class FeatureResult(NamedTuple):
    """What ``Model.features(..., errors="skip")`` returns (unpacks as a 3-tuple).

    features: float32 (n_ok, 2048), one row per input that decoded;
    index: the input positions of those rows;
    failures: (input position, reason) of the inputs that failed.
    """

    features: np.ndarray
    index: List[int]
    failures: List[Tuple[int, str]]


_FN_EIMAGE = -7  # fn_status: the row callback gets the reason only


class _Failed(Exception):
    """An input that failed in errors="raise" mode (inside the row callback)."""

    def __init__(self, i: int, msg: str) -> None:
        super().__init__(msg)
        self.i, self.msg = i, msg


class _CPath(bytes):
    """A file name checked and encoded for C (distinct from encoded image bytes)."""


def _as_items(inputs: Any) -> List[Any]:
    """Normalise ``inputs`` to a list of single images (a lone path is one image, not its characters)."""
    if isinstance(inputs, (str, bytes, bytearray, memoryview)) or isinstance(inputs, os.PathLike):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        if inputs.dtype == np.uint8 and inputs.ndim == 3:
            return [inputs]
        if inputs.dtype == np.uint8 and inputs.ndim == 4:
            return list(inputs)
        raise ValueError(f"an image array must be uint8 of shape (H, W, 3) or (n, H, W, 3), "
                         f"not {inputs.dtype} {inputs.shape}")
    try:
        return list(inputs)
    except TypeError:
        raise TypeError(f"inputs must be a path, bytes, a uint8 (H, W, 3) array or a sequence of them, "
                        f"not {type(inputs).__name__}") from None


def _check_item(i: int, item: Any) -> Any:
    """Validate one image input before any decoding (raises TypeError/ValueError: misuse, not bad data)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return item
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(f"input {i}: an image array must be uint8 of shape (H, W, 3) (RGB), "
                             f"not {item.dtype} {item.shape}")
        if item.shape[0] < 1 or item.shape[1] < 1:
            raise ValueError(f"input {i}: empty image array {item.shape}")
        return item
    if isinstance(item, (str, os.PathLike)):
        return _CPath(_lib.cpath(item, f"input {i}"))
    raise TypeError(f"input {i}: expected a path, bytes or a uint8 (H, W, 3) array, not {type(item).__name__}")


def _batch_size(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise TypeError(f"batch must be an int, not {type(batch).__name__}")
    if batch < 1 or batch > 4096:
        raise ValueError(f"batch must be between 1 and 4096, not {batch}")
    return int(batch)


class Model:
    """ResNet50 (Keras, ImageNet) feature extractor over libfruitnet.

    Parameters
    ----------
    weights : path, optional
        The ``resnet50.fnw`` weight file; default :func:`fruitnet.find_weights`.
    threads : int
        Worker threads of the network (0 = all CPUs).
    batch : int
        Images per call to the network (the default batch of :meth:`features`).
    isa : {"auto", "portable", "avx2", "avx512"}
        Instruction set (auto = the best this CPU has; ``FRUITNET_ISA`` overrides).
    classifier : bool
        Also load the ImageNet fc1000 layer, needed by :meth:`classify`.
    resize : {"pil", "stb"}
        "pil" is bit-exact PIL ``Image.resize(BICUBIC)`` (Keras parity).
    decoders : int
        Threads that decode and resize images while the network runs (0 = min(4, CPUs)).
    precision : {"fp32", "bf16", "int8"}
        Arithmetic of the convolutions: "fp32" (default, Keras parity), "bf16"
        (needs AVX512_BF16; features within cosine 0.9995 of Keras) or "int8" (needs
        AVX512-VNNI and a weight file with activation scales, ``fruitnet-convert
        --calibrate``; features within cosine 0.995 of Keras), README "Precision".

    A Model may be shared between threads: calls into the network are
    serialised by a lock. Use it as a context manager or call :meth:`close`;
    a closed model raises ValueError.

    Examples
    --------
    >>> with fruitnet.Model() as m:                        # doctest: +SKIP
    ...     X = m.features(["Banana/1.jpg", "Lemon/2.jpg"])  # float32 (2, 2048)
    """

    def __init__(self, weights: Optional[Union[str, "os.PathLike[str]"]] = None, *, threads: int = 0,
                 batch: int = 8, isa: str = "auto", classifier: bool = False, resize: str = "pil",
                 decoders: int = 0, precision: str = "fp32") -> None:
        self._m = _lib.vp()
        self._lock = threading.RLock()
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, not {threads!r}")
        if isinstance(decoders, bool) or not isinstance(decoders, (int, np.integer)) or decoders < 0:
            raise ValueError(f"decoders must be an int >= 0, not {decoders!r}")
        self.batch: int = _batch_size(batch)
        if resize not in ("pil", "stb"):
            raise ValueError(f"resize must be 'pil' or 'stb', not {resize!r}")
        isa_v = ctypes.c_int()
        if not isinstance(isa, str) or _lib.lib.fn_isa_parse(_lib.cstr(isa, "isa"), ctypes.byref(isa_v)) != 0:
            raise ValueError(f"isa must be 'auto', 'portable', 'avx2' or 'avx512', not {isa!r}")
        prec_v = ctypes.c_int()
        if not isinstance(precision, str) or _lib.lib.fn_precision_parse(_lib.cstr(precision, "precision"),
                                                                         ctypes.byref(prec_v)) != 0:
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'int8', not {precision!r}")
        self._resize = 0 if resize == "pil" else 1
        self._classifier = bool(classifier)
        self._decoders = int(decoders) or min(4, os.cpu_count() or 1)
        self.weights: str = os.fspath(weights) if weights is not None else find_weights()
        o = _lib.ModelOptions()
        _lib.lib.fn_model_options_default(ctypes.byref(o))
        o.threads, o.max_batch, o.isa, o.classifier = int(threads), self.batch, isa_v.value, int(self._classifier)
        o.precision = prec_v.value
        err = _lib.Error()
        m = _lib.vp()
        _lib.check(_lib.lib.fn_model_open(_lib.cpath(self.weights, "weights"), ctypes.byref(o), ctypes.byref(m),
                                          ctypes.byref(err)), err)
        self._m = m

    # -- life cycle ---------------------------------------------------------------
    def _handle(self) -> Any:
        if not self._m:
            raise ValueError("fruitnet.Model is closed")
        return self._m

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return not self._m

    @property
    def isa(self) -> str:
        """The instruction set the network runs with: "portable", "avx2" or "avx512"."""
        with self._lock:
            return _lib.lib.fn_isa_name(_lib.lib.fn_model_isa(self._handle())).decode()

    @property
    def precision(self) -> str:
        """The arithmetic the network runs with: "fp32", "bf16" or "int8"."""
        with self._lock:
            return _lib.lib.fn_precision_name(_lib.lib.fn_model_precision(self._handle())).decode()

    @property
    def classifier(self) -> bool:
        """Whether the ImageNet classifier (fc1000) is loaded."""
        return self._classifier

    def close(self) -> None:
        """Free the network (waits for a call running in another thread). Idempotent."""
        with self._lock:
            m, self._m = self._m, _lib.vp()
            if m:
                _lib.lib.fn_model_close(m)

    def __enter__(self) -> "Model":
        self._handle()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._m:
                _lib.lib.fn_model_close(self._m)
                self._m = _lib.vp()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"isa={self.isa!r}"
        return f"fruitnet.Model({self.weights!r}, batch={self.batch}, {state})"

    # -- preprocessing ------------------------------------------------------------
    def preprocess(self, image: ImageInput, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Decode, resize and preprocess one image into the network's input.

        Returns ``out`` (or a new array): float32 (224, 224, 3), BGR, Caffe means
        subtracted. ``out`` must be a C-contiguous float32 array of exactly that
        shape (ValueError otherwise). Raises FruitnetError for an image that
        cannot be read or decoded (the message names it).
        """
        if out is None:
            out = np.empty((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        elif not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, not {type(out).__name__}")
        elif out.dtype != np.float32 or out.shape != (INPUT_SIZE, INPUT_SIZE, 3) or not out.flags.c_contiguous \
                or not out.flags.writeable:
            raise ValueError(f"out must be a writeable C-contiguous float32 array of shape (224, 224, 3), "
                             f"not {out.dtype} {out.shape}")
        self._decode(0, _check_item(0, image), out)
        return out

    def _decode(self, i: int, item: Any, out: np.ndarray) -> None:
        """Decode one validated item into out (float32 [224,224,3]); GIL released in the C call."""
        err = _lib.Error()
        ptr = out.ctypes.data_as(_lib.fp)
        if isinstance(item, _CPath):  # a path, already encoded by _check_item
            rc = _lib.lib.fn_input_from_file(item, self._resize, ptr, ctypes.byref(err))
        elif isinstance(item, np.ndarray):
            a = np.ascontiguousarray(item)
            img = _lib.Image(a.shape[1], a.shape[0], a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
            rc = _lib.lib.fn_image_to_input(ctypes.byref(img), self._resize, ptr, ctypes.byref(err))
        else:  # encoded bytes
            buf = item if type(item) is bytes else memoryview(item).tobytes()
            rc = _lib.lib.fn_input_from_memory(buf, len(buf), f"<bytes #{i}>".encode(), self._resize, ptr,
                                               ctypes.byref(err))
        _lib.check(rc, err)

    # -- network ------------------------------------------------------------------
    def features_from_tensors(self, x: np.ndarray) -> np.ndarray:
        """Features of preprocessed inputs: float32 (n, 224, 224, 3) -> float32 (n, 2048).

        ``x`` must already be BGR with the Caffe means subtracted (see :meth:`preprocess`).
        Other float dtypes are converted; NaN/Inf are refused.
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise ValueError(f"x must be a float array of shape (n, 224, 224, 3), not {x.dtype}")
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"x must have shape (n, 224, 224, 3), not {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or Inf")
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        out = np.empty((n, FEATURE_DIM), np.float32)
        if n == 0:
            return out
        err = _lib.Error()
        with self._lock:
            _lib.check(_lib.lib.fn_model_features(self._handle(), _lib.fptr(x), n, _lib.fptr(out),
                                                  ctypes.byref(err)), err)
        return out

    def _arrays(self, items: Sequence[Any], idx: List[int], batch: int, errors: str, out: np.ndarray,
                ok: List[int], failures: List[Tuple[int, str]]) -> None:
        """Decoded uint8 (H, W, 3) arrays: fn_image_to_input, then the network, batch by batch."""
        x = np.empty((min(batch, len(idx)), INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        for lo in range(0, len(idx), batch):
            done: List[int] = []
            for i in idx[lo:lo + batch]:
                try:
                    self._decode(i, items[i], x[len(done)])
                    done.append(i)
                except FruitnetError as e:
                    if errors == "raise":
                        raise
                    failures.append((i, str(e)))
            if done:
                out[done] = self._run(x[:len(done)])
                ok += done

    def _pipeline(self, items: Sequence[Any], idx: List[int], batch: int, errors: str, out: np.ndarray,
                  ok: List[int], failures: List[Tuple[int, str]]) -> None:
        """Paths or encoded bytes items[idx] (contiguous, one kind) through the library's pipeline
        (fn_extract_run: decoder threads feeding network batches); rows land in out[i]."""
        n = len(idx)
        first = idx[0]
        is_path = isinstance(items[first], _CPath)
        names = (_lib.cp * n)(*[bytes(items[i]) if is_path else f"<bytes #{i}>".encode() for i in idx])
        bufs = lens = None
        keep: List[bytes] = []
        if not is_path:
            keep = [items[i] if type(items[i]) is bytes else memoryview(items[i]).tobytes() for i in idx]
            bufs = (_lib.vp * n)(*[ctypes.cast(ctypes.c_char_p(k), _lib.vp) for k in keep])
            lens = (_lib.c_size_t * n)(*[len(k) for k in keep])
        raised: List[BaseException] = []
        row_bytes = FEATURE_DIM * 4

        def on_row(ctx: Any, j: int, feats: Any, error: Optional[bytes], err: Any) -> int:
            # never let an exception cross into C: keep it and stop the run, re-raised below
            try:
                i = first + j
                if feats:
                    ctypes.memmove(out[i].ctypes.data, feats, row_bytes)
                    ok.append(i)
                    return 0
                msg = (error or b"unknown error").decode("utf-8", "replace")
                if errors == "raise":
                    raised.append(_Failed(i, msg))
                    return -1
                failures.append((i, msg))
                return 0
            except BaseException as e:  # noqa: B036 - stored, re-raised after the C call returns
                raised.append(e)
                return -1

        cb = _lib.ROW_FN(on_row)  # referenced until fn_extract_run returns
        o = _lib.ExtractOptions(batch, self._decoders, self._resize)
        err = _lib.Error()
        with self._lock:
            rc = _lib.lib.fn_extract_run(self._handle(), ctypes.byref(o), n, names, bufs, lens, cb, None, None,
                                         ctypes.byref(err))
        del keep
        if raised:
            r = raised[0]
            if isinstance(r, _Failed):  # the callback has the reason, not the status: ask the decoder once more
                self._decode(r.i, items[r.i], np.empty((INPUT_SIZE, INPUT_SIZE, 3), np.float32))
                raise FruitnetError(_FN_EIMAGE, r.msg)
            raise r
        _lib.check(rc, err)

    @overload
    def features(self, inputs: Any, batch: Optional[int] = ..., errors: Literal["raise"] = ...) -> np.ndarray: ...

    @overload
    def features(self, inputs: Any, batch: Optional[int] = ..., *, errors: Literal["skip"]) -> FeatureResult: ...

    def features(self, inputs: Any, batch: Optional[int] = None,
                 errors: str = "raise") -> Union[np.ndarray, FeatureResult]:
        """2048-d avg_pool features of images.

        Parameters
        ----------
        inputs
            One image or a sequence of them. An image is a path (str or
            os.PathLike), encoded JPEG/PNG ``bytes``, or a decoded uint8 RGB array
            of shape (H, W, 3); a uint8 (n, H, W, 3) array is n images.
        batch : int, optional
            Images per network call (default: the model's ``batch``).
        errors : {"raise", "skip"}
            "raise": the first image that cannot be read or decoded raises
            FruitnetError (naming it). "skip": bad images are left out and a
            :class:`FeatureResult` (features, index, failures) is returned.

        Returns
        -------
        numpy.ndarray
            float32 (n, 2048) with errors="raise"; a FeatureResult with errors="skip".

        Raises TypeError/ValueError for misuse (wrong types, bad shapes, a path
        with a NUL character, ``batch < 1``) before any work is done.
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        bsz = self.batch if batch is None else _batch_size(batch)
        items = [_check_item(i, it) for i, it in enumerate(_as_items(inputs))]
        self._handle()
        n = len(items)
        out = np.empty((n, FEATURE_DIM), np.float32)
        good: List[int] = []
        failures: List[Tuple[int, str]] = []
        kind = [0 if isinstance(it, _CPath) else 2 if isinstance(it, np.ndarray) else 1 for it in items]
        lo = 0
        while lo < n:  # runs of one kind, in input order: "raise" raises the first failure
            hi = lo
            while hi < n and kind[hi] == kind[lo]:
                hi += 1
            idx = list(range(lo, hi))
            if kind[lo] == 2:
                self._arrays(items, idx, bsz, errors, out, good, failures)
            else:
                self._pipeline(items, idx, bsz, errors, out, good, failures)
            lo = hi
        feats = out if len(good) == n else out[good]
        if errors == "raise":
            return feats
        return FeatureResult(feats, good, failures)

    def classify(self, inputs: Any, k: int = 5, batch: Optional[int] = None) -> List[List[Tuple[str, float]]]:
        """Top-k ImageNet classes of each image: a list of [(label, probability), ...], descending.

        Needs ``Model(classifier=True)``; ``1 <= k <= 1000``. Inputs as in :meth:`features`
        (errors raise).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, not {type(k).__name__}")
        if not 1 <= k <= NUM_CLASSES:
            raise ValueError(f"k must be between 1 and {NUM_CLASSES}, not {k}")
        if not self._classifier:
            raise ValueError("this model was opened without classifier=True")
        feats = self.features(inputs, batch=batch)
        return self.classify_features(feats, k)

    def classify_features(self, feats: np.ndarray, k: int = 5) -> List[List[Tuple[str, float]]]:
        """Top-k ImageNet classes of float32 (n, 2048) features (see :meth:`classify`)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= NUM_CLASSES:
            raise ValueError(f"k must be an int between 1 and {NUM_CLASSES}, not {k!r}")
        if not self._classifier:
            raise ValueError("this model was opened without classifier=True")
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM or feats.dtype.kind != "f":
            raise ValueError(f"features must be a float array of shape (n, 2048), not {feats.dtype} {feats.shape}")
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        n = feats.shape[0]
        probs = np.empty((n, NUM_CLASSES), np.float32)
        res: List[List[Tuple[str, float]]] = []
        if n == 0:
            return res
        err = _lib.Error()
        idx = (ctypes.c_int * k)()
        val = (ctypes.c_float * k)()
        with self._lock:
            m = self._handle()
            _lib.check(_lib.lib.fn_model_classify(m, _lib.fptr(feats), n, _lib.fptr(probs), ctypes.byref(err)), err)
            for r in range(n):
                _lib.lib.fn_topk(_lib.fptr(probs[r]), NUM_CLASSES, k, idx, val)
                res.append([(_lib.lib.fn_model_label(m, idx[j]).decode(), float(val[j])) for j in range(k)])
        return res

    def labels(self) -> List[str]:
        """The 1000 ImageNet labels, by class index."""
        with self._lock:
            m = self._handle()
            return [(_lib.lib.fn_model_label(m, i) or b"").decode() for i in range(NUM_CLASSES)]
