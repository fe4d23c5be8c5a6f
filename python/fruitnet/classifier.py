"""fruitnet.Classifier — the C library's fruit classifier as a scikit-learn estimator.

Multinomial logistic regression on standardised features, L2 penalty C chosen by stratified k-fold
cross-validation (or given), trained by libfruitnet (deterministic) and stored in the same .fncls file
that fruitnet-train writes and fruitnet-classify reads.

    from fruitnet.classifier import Classifier
    clf = Classifier().fit(X, y)           # X: [n, 2048] float32 features, y: labels
    clf.predict_proba(X_test); clf.save("fruits.fncls")
    clf = Classifier.load("fruits.fncls")
"""
import ctypes
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _lib as _L
from ._lib import FruitnetError

_lib, _Error, _check, _fp, _vp = _L.lib, _L.Error, _L.check, _L.fp, _L.vp
_P, _c_int, _c_double = ctypes.POINTER, ctypes.c_int, ctypes.c_double


def _b(s):
    """str -> NUL-free UTF-8 bytes for C (a NUL raises ValueError instead of truncating)."""
    return _L.cstr(s, "name") if isinstance(s, str) else s

__all__ = ["Classifier", "frame_order"]

MAX_PATH = 32


class _Options(ctypes.Structure):
    _fields_ = [("folds", _c_int), ("c", _c_double), ("c_min", _c_double), ("c_max", _c_double),
                ("path_len", _c_int), ("pca_dim", _c_int), ("threads", _c_int), ("max_iter", _c_int),
                ("tol", _c_double), ("seed", ctypes.c_uint64), ("info", ctypes.c_char_p), ("transform", _c_int),
                ("order", _P(ctypes.c_int64)), ("augment_x", _fp), ("augment_y", _P(_c_int)),
                ("augment_n", _c_int)]


class _Report(ctypes.Structure):
    _fields_ = [("path_len", _c_int), ("best", _c_int), ("folds", _c_int), ("pca_dim", _c_int),
                ("iterations", _c_int), ("c", _c_double * MAX_PATH), ("cv_accuracy", _c_double * MAX_PATH),
                ("cv_log_loss", _c_double * MAX_PATH), ("cv_pred", _P(_c_int))]


def _sig(name, res, *args):
    f = getattr(_lib, name)
    f.restype, f.argtypes = res, list(args)
    return f


_E = _P(_Error)
_sig("fn_classifier_options_default", None, _P(_Options))
_sig("fn_classifier_train", _c_int, _fp, _c_int, _c_int, _P(_c_int), _c_int, _P(ctypes.c_char_p), _P(_Options),
     _P(_vp), _P(_Report), _E)
_sig("fn_classifier_predict_proba", _c_int, _vp, _fp, _c_int, _fp, _E)
_sig("fn_classifier_classes", _c_int, _vp)
_sig("fn_classifier_dim", _c_int, _vp)
_sig("fn_classifier_class_name", ctypes.c_char_p, _vp, _c_int)
_sig("fn_classifier_info", ctypes.c_char_p, _vp)
_sig("fn_classifier_save", _c_int, _vp, ctypes.c_char_p, _E)
_sig("fn_classifier_load", _c_int, ctypes.c_char_p, _P(_vp), _E)
_sig("fn_classifier_load_from_memory", _c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, _P(_vp), _E)
_sig("fn_classifier_free", None, _vp)
_sig("fn_classifier_distance", _c_int, _vp, _fp, _c_int, _fp, _E)
_sig("fn_classifier_distance_threshold", _c_double, _vp)
_sig("fn_frame_order", _c_int, _P(ctypes.c_char_p), _c_int, _P(ctypes.c_int64), _E)


def frame_order(paths: Any) -> np.ndarray:
    """Each path's rank in frame order (libfruitnet's fn_frame_order): by folder, the name's text before its
    frame number, the frame number ("r2_151_100.jpg": sequence "r2_", frame 151), then the path. Pass it as
    ``Classifier.fit(X, y, order=...)`` for blocked cross-validation (neighbouring frames held out together)."""
    paths = [_b(os.fspath(p)) for p in paths]
    arr = (ctypes.c_char_p * max(len(paths), 1))(*paths)
    out = np.zeros(len(paths), np.int64)
    err = _Error()
    _check(_lib.fn_frame_order(arr, len(paths), out.ctypes.data_as(_P(ctypes.c_int64)), ctypes.byref(err)), err)
    return out


class _Handle:
    """Owns one fn_classifier."""

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        if self.ptr:
            _lib.fn_classifier_free(self.ptr)
            self.ptr = None


class Classifier:
    """scikit-learn estimator (fit, predict, predict_proba, score, classes_) backed by libfruitnet.

    C: None = chosen by `folds`-fold cross-validation among `n_cs` values from c_min to c_max; a number = that
    C. pca_dim: principal components trained on (0 = the library's default, -1 = all features); sqrt: the
    signed square root of the features before standardisation (default)."""

    _estimator_type = "classifier"

    def __init__(self, C: Optional[float] = None, folds: int = 5, c_min: float = 1.0,
                 c_max: float = 31.622776601683793, n_cs: int = 4, pca_dim: int = 0, threads: int = 0,
                 max_iter: int = 0, tol: float = 0.0, seed: int = 0, sqrt: bool = True) -> None:
        self.C, self.folds, self.c_min, self.c_max, self.n_cs = C, folds, c_min, c_max, n_cs
        self.pca_dim, self.threads, self.max_iter, self.tol, self.seed = pca_dim, threads, max_iter, tol, seed
        self.sqrt = sqrt

    # scikit-learn's parameter protocol
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters (scikit-learn's protocol; ``deep`` has nothing to recurse into)."""
        return {k: getattr(self, k) for k in ("C", "folds", "c_min", "c_max", "n_cs", "pca_dim", "threads",
                                              "max_iter", "tol", "seed", "sqrt")}

    def set_params(self, **params: Any) -> "Classifier":
        """Set constructor parameters by name (scikit-learn's protocol); an unknown name raises ValueError."""
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def fit(self, X: Any, y: Any, order: Any = None, X_augment: Any = None, y_augment: Any = None) -> "Classifier":
        """Train on features ``X`` [n, d] (float32-convertible) and labels ``y`` [n]; deterministic.

        ``order``: None for random stratified folds, or n sort keys (e.g. :func:`frame_order` of the rows'
        paths) for blocked folds: each class's rows sorted by key, cut into contiguous blocks.
        ``X_augment``, ``y_augment``: extra rows (e.g. features of mirrored images, labels among ``y``'s) added
        to the final fit only; C is chosen by the cross-validation on ``X``, which also fixes the
        standardisation and principal components.
        Sets ``classes_`` (sorted labels), ``C_`` (the C used), ``cv_results_`` and ``cv_predictions_``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError("X must be 2-d [n_samples, n_features]")
        classes, codes = np.unique(np.asarray(y), return_inverse=True)
        if len(codes) != X.shape[0]:
            raise ValueError("X and y have different numbers of rows")
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        names = (ctypes.c_char_p * len(classes))(*[_b(str(c)) for c in classes])
        o = _Options()
        _lib.fn_classifier_options_default(ctypes.byref(o))
        o.folds, o.c_min, o.c_max, o.path_len = self.folds, self.c_min, self.c_max, self.n_cs
        o.c = float(self.C) if self.C else 0.0
        o.pca_dim, o.threads, o.max_iter, o.tol, o.seed = self.pca_dim, self.threads, self.max_iter, self.tol, self.seed
        o.info = b"trained by fruitnet.Classifier"
        o.transform = 1 if self.sqrt else 0
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.int64)
            if order.shape != (X.shape[0],):
                raise ValueError("order must hold one key per row")
            o.order = order.ctypes.data_as(_P(ctypes.c_int64))
        if (X_augment is None) != (y_augment is None):
            raise ValueError("X_augment and y_augment go together")
        if X_augment is not None:
            Xa = np.ascontiguousarray(X_augment, dtype=np.float32)
            ya = np.asarray(y_augment)
            if Xa.ndim != 2 or Xa.shape[1] != X.shape[1] or ya.shape != (Xa.shape[0],):
                raise ValueError("X_augment must be [m, n_features] with one y_augment label per row")
            pos = np.searchsorted(classes, ya)
            pos = np.minimum(pos, len(classes) - 1)
            if len(ya) and not np.all(classes[pos] == ya):
                raise ValueError("y_augment has labels that are not in y")
            ca = np.ascontiguousarray(pos, dtype=np.int32)
            o.augment_x, o.augment_y, o.augment_n = Xa.ctypes.data_as(_fp), ca.ctypes.data_as(_P(_c_int)), len(ca)
        rep = _Report()
        cvp = np.zeros(X.shape[0], np.int32)
        rep.cv_pred = cvp.ctypes.data_as(_P(_c_int))
        out, err = _vp(), _Error()
        _check(_lib.fn_classifier_train(X.ctypes.data_as(_fp), X.shape[0], X.shape[1], codes.ctypes.data_as(_P(_c_int)),
                                        len(classes), names, ctypes.byref(o), ctypes.byref(out), ctypes.byref(rep),
                                        ctypes.byref(err)), err)
        self._set(_Handle(out), classes)
        self.cv_results_ = {"C": list(rep.c[:rep.path_len]), "accuracy": list(rep.cv_accuracy[:rep.path_len]),
                            "log_loss": list(rep.cv_log_loss[:rep.path_len])}
        self.C_ = rep.c[rep.best]
        self.cv_predictions_ = classes[cvp] if rep.folds else None
        return self

    def _set(self, handle, classes=None):
        self._h = handle
        p = handle.ptr
        names = [_lib.fn_classifier_class_name(p, i).decode("utf-8") for i in range(_lib.fn_classifier_classes(p))]
        self.classes_ = classes if classes is not None else np.array(names)
        self.n_features_in_ = _lib.fn_classifier_dim(p)
        self.distance_threshold_ = _lib.fn_classifier_distance_threshold(p)
        self.info_ = dict(line.split("=", 1) for line in _lib.fn_classifier_info(p).decode("utf-8").splitlines()
                          if "=" in line)

    def _check_fitted(self):
        if not hasattr(self, "_h"):
            raise ValueError("this Classifier is not fitted yet: call fit() or Classifier.load()")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float32 [n, len(classes_)], columns in ``classes_`` order; rows sum to 1."""
        self._check_fitted()
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be [n, {self.n_features_in_}]")
        out = np.empty((X.shape[0], len(self.classes_)), np.float32)
        err = _Error()
        _check(_lib.fn_classifier_predict_proba(self._h.ptr, X.ctypes.data_as(_fp), X.shape[0], out.ctypes.data_as(_fp),
                                                ctypes.byref(err)), err)
        return out

    def distance(self, X: Any) -> np.ndarray:
        """Out-of-set score of each row: mean squared difference per feature between the standardised row and
        the nearest class mean (float32 [n]); above ``distance_threshold_`` (the 99th percentile over the
        training rows) a row is unlike the training photos. Raises FruitnetError for a version-1 model."""
        self._check_fitted()
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be [n, {self.n_features_in_}]")
        out = np.empty(X.shape[0], np.float32)
        err = _Error()
        _check(_lib.fn_classifier_distance(self._h.ptr, X.ctypes.data_as(_fp), X.shape[0], out.ctypes.data_as(_fp),
                                           ctypes.byref(err)), err)
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row of ``X``."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the .fncls file that fruitnet-classify reads (atomic write, CRC32-protected)."""
        self._check_fitted()
        err = _Error()
        _check(_lib.fn_classifier_save(self._h.ptr, _b(os.fspath(path)), ctypes.byref(err)), err)

    @classmethod
    def load(cls, path_or_bytes: Union[str, "os.PathLike[str]", bytes, bytearray]) -> "Classifier":
        """A Classifier from a .fncls file (path) or its bytes; classes_ are the file's class names."""
        out, err = _vp(), _Error()
        if isinstance(path_or_bytes, (bytes, bytearray)):
            data = bytes(path_or_bytes)
            _check(_lib.fn_classifier_load_from_memory(data, len(data), b"<bytes>", ctypes.byref(out),
                                                       ctypes.byref(err)), err)
        else:
            _check(_lib.fn_classifier_load(_b(os.fspath(path_or_bytes)), ctypes.byref(out), ctypes.byref(err)), err)
        self = cls()
        self._set(_Handle(out))
        c = self.info_.get("C")
        self.C_ = float(c) if c else None
        return self
