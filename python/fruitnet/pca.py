"""PCA: streaming, mergeable statistics (:class:`PcaStats`) and a scikit-learn estimator (:class:`PCA`).

The statistics (row count, mean, centred co-moment matrix, in double
precision) are accumulated by libfruitnet in one pass, merged across
machines, and eigen-decomposed by its own solver; :class:`PCA` wraps them in
scikit-learn's estimator API (``fit``, ``partial_fit``, ``transform``...).
scikit-learn itself is optional: without it :class:`PCA` works the same but
is not a ``sklearn.base.BaseEstimator``.
"""
from __future__ import annotations

import ctypes
import numbers
import os
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _lib
from ._lib import FEATURE_DIM

__all__ = ["PcaStats", "PcaModel", "PCA"]

PathArg = Union[str, "os.PathLike[str]"]


def _project(mean: np.ndarray, components: np.ndarray, x: Any) -> np.ndarray:
    """float32 (n, k) = components (x - mean), one row at a time by libfruitnet's fn_pca_transform
    (float32 inputs, double accumulation): the projection fruitnet-pca and the Spark job use."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    comps = np.ascontiguousarray(components, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    k, dim = comps.shape
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim or mean.size != dim:
        raise ValueError(f"rows must have shape (n, {dim}), not {x.shape}")
    out = np.empty((x.shape[0], k), np.float32)
    if x.shape[0] == 0 or k == 0:
        return out
    h = _new_model(dim, k, 0, 0.0, mean, np.zeros(k, np.float64), comps)
    try:
        f = _lib.lib.fn_pca_transform
        xp = x.ctypes.data
        op = out.ctypes.data
        for i in range(x.shape[0]):
            f(h, ctypes.cast(xp + i * dim * 4, _lib.fp), ctypes.cast(op + i * k * 4, _lib.fp))
    finally:
        _lib.lib.fn_pca_model_free(h)
    return out


def _new_model(dim: int, k: int, n: int, total_var: float, mean: np.ndarray, eigvals: np.ndarray,
               components: np.ndarray) -> ctypes.c_void_p:
    """A C fn_pca_model (opaque handle) holding copies of the arrays; free it with fn_pca_model_free."""
    h = ctypes.c_void_p()
    err = _lib.Error()
    _lib.check(_lib.lib.fn_pca_model_new(int(dim), int(k), int(n), float(total_var), _lib.dptr(mean),
                                         _lib.dptr(eigvals), _lib.dptr(components), ctypes.byref(h),
                                         ctypes.byref(err)), err)
    return h


class PcaModel:
    """A fitted PCA as libfruitnet returns it: ``mean``, ``eigenvalues`` (descending),
    ``components`` (k unit rows), ``total_var`` (trace of the covariance), ``n`` rows."""

    dim: int
    k: int
    n: int
    total_var: float
    mean: np.ndarray
    eigenvalues: np.ndarray
    components: np.ndarray

    def __init__(self, mean: np.ndarray, eigenvalues: np.ndarray, components: np.ndarray, n: int,
                 total_var: float) -> None:
        self.mean = np.ascontiguousarray(mean, dtype=np.float64)
        self.eigenvalues = np.ascontiguousarray(eigenvalues, dtype=np.float64)
        self.components = np.ascontiguousarray(components, dtype=np.float64).reshape(len(self.eigenvalues), -1)
        self.dim, self.k, self.n, self.total_var = self.mean.size, self.eigenvalues.size, int(n), float(total_var)

    @classmethod
    def _from_c(cls, m: ctypes.c_void_p) -> "PcaModel":
        """Copy the arrays of a C fn_pca_model handle (through its accessors), then free it."""
        try:
            L = _lib.lib
            k, dim = L.fn_pca_model_k(m), L.fn_pca_model_dim(m)
            return cls(np.ctypeslib.as_array(L.fn_pca_model_mean(m), shape=(dim,)).copy(),
                       np.ctypeslib.as_array(L.fn_pca_model_eigvals(m), shape=(max(k, 1),))[:k].copy(),
                       np.ctypeslib.as_array(L.fn_pca_model_components(m), shape=(max(k, 1), dim))[:k].copy(),
                       L.fn_pca_model_rows(m), L.fn_pca_model_total_var(m))
        finally:
            _lib.lib.fn_pca_model_free(m)

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """eigenvalues / total variance."""
        return self.eigenvalues / self.total_var

    def transform(self, x: Any) -> np.ndarray:
        """Project rows: float32 (n, k) = (x - mean) @ components.T."""
        x = np.asarray(x)
        z = _project(self.mean, self.components, x)
        return z[0] if x.ndim == 1 else z

    def save(self, path: PathArg) -> None:
        """Write a ``model.fnpca`` file (atomic, CRC32-checked)."""
        h = _new_model(self.dim, self.k, self.n, self.total_var, self.mean, self.eigenvalues, self.components)
        try:
            err = _lib.Error()
            _lib.check(_lib.lib.fn_pca_model_save(h, _lib.cpath(path), ctypes.byref(err)), err)
        finally:
            _lib.lib.fn_pca_model_free(h)

    @classmethod
    def load(cls, path: PathArg) -> "PcaModel":
        """Read a ``model.fnpca`` file (checks the CRC; FruitnetError names the file otherwise)."""
        m = ctypes.c_void_p()
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_model_load(_lib.cpath(path), ctypes.byref(m), ctypes.byref(err)), err)
        return cls._from_c(m)


class PcaStats:
    """Streaming, mergeable mean and covariance statistics (double precision) of ``dim``-d rows.

    ``add`` rows in any number of calls, ``merge`` statistics computed elsewhere
    (Chan et al.), ``save``/``load`` them, ``fit`` a :class:`PcaModel`.
    Picklable (for Dask/Spark).
    """

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        self._s = ctypes.c_void_p()  # the C fn_pca_stats (opaque)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an int, not {type(dim).__name__}")
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_stats_new(int(dim), ctypes.byref(self._s), ctypes.byref(err)), err)

    @property
    def n(self) -> int:
        """Rows seen."""
        return int(_lib.lib.fn_pca_stats_rows(self._s))

    @property
    def dim(self) -> int:
        """Row dimension."""
        return int(_lib.lib.fn_pca_stats_dim(self._s))

    @property
    def mean(self) -> np.ndarray:
        """The mean row (a copy)."""
        return np.ctypeslib.as_array(_lib.lib.fn_pca_stats_mean(self._s), shape=(self.dim,)).copy()

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """The (dim, dim) covariance matrix (a copy)."""
        m2 = np.triu(self._m2())
        m2 = m2 + np.triu(m2, 1).T
        return m2 / max(self.n - ddof, 1)

    def add(self, rows: Any, threads: int = 0) -> "PcaStats":
        """Add rows (n, dim) (or one row). float32 rows are added by libfruitnet's threaded kernel;
        float64 rows keep their precision (their statistics are merged). NaN/Inf raise FruitnetError."""
        x = np.asarray(rows)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"rows must have shape (n, {self.dim}), not {x.shape}")
        if x.dtype.kind not in "fiub":
            raise ValueError(f"rows must be numeric, not {x.dtype}")
        if x.shape[0] == 0:
            return self
        err = _lib.Error()
        if x.dtype == np.float32 or x.dtype.kind in "iub" and x.dtype.itemsize <= 2:
            xf = np.ascontiguousarray(x, dtype=np.float32)
            _lib.check(_lib.lib.fn_pca_stats_add(self._s, _lib.fptr(xf), xf.shape[0], int(threads),
                                                 ctypes.byref(err)), err)
            return self
        xd = np.asarray(x, dtype=np.float64)
        if not np.isfinite(xd).all():
            raise _lib.FruitnetError(-9, "pca: rows contain NaN or Inf")
        self.merge(PcaStats._from_moments(xd.shape[0], xd.mean(axis=0), None, xd))
        return self

    @classmethod
    def _from_moments(cls, n: int, mean: np.ndarray, m2: Optional[np.ndarray], x: Optional[np.ndarray] = None
                      ) -> "PcaStats":
        if not n:
            return cls(mean.size)
        d = mean.size
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        if m2 is None:
            xc = x - mean
            m2 = xc.T @ xc
        m2 = np.ascontiguousarray(m2, dtype=np.float64).reshape(d, d)
        s = cls.__new__(cls)
        s._s = ctypes.c_void_p()
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_stats_from_moments(d, int(n), _lib.dptr(mean), _lib.dptr(m2), ctypes.byref(s._s),
                                                      ctypes.byref(err)), err)
        return s

    def _m2(self) -> np.ndarray:
        """A copy of the (dim, dim) centred co-moment sum (upper triangle valid)."""
        d = self.dim
        return np.ctypeslib.as_array(_lib.lib.fn_pca_stats_m2(self._s), shape=(d, d)).copy()

    def merge(self, other: "PcaStats") -> "PcaStats":
        """Add the statistics of ``other`` (same dim) to these."""
        if not isinstance(other, PcaStats):
            raise TypeError(f"can only merge PcaStats, not {type(other).__name__}")
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_stats_merge(self._s, other._s, ctypes.byref(err)),
                   err)
        return self

    def save(self, path: PathArg) -> None:
        """Write the statistics to a file (atomic, CRC32-checked)."""
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_stats_save(self._s, _lib.cpath(path), ctypes.byref(err)), err)

    @classmethod
    def load(cls, path: PathArg) -> "PcaStats":
        """Read statistics written by :meth:`save` or ``fruitnet-pca stats``."""
        s = cls.__new__(cls)
        s._s = ctypes.c_void_p()
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_stats_load(_lib.cpath(path), ctypes.byref(s._s), ctypes.byref(err)), err)
        return s

    def fit(self, k: int = 0, variance: float = 0.80, threads: int = 0) -> PcaModel:
        """Top-``k`` components (k > 0), or the fewest whose cumulative ratio reaches ``variance``."""
        return self._fit(k, variance, threads)[0]

    def fit_with_spectrum(self, k: int = 0, variance: float = 0.80, threads: int = 0) -> Tuple[PcaModel, np.ndarray]:
        """As :meth:`fit`, and also every eigenvalue of the covariance (``dim`` of them, descending), from the
        same eigen-decomposition (a second fit of all components would cost ten times more at 2048-d)."""
        return self._fit(k, variance, threads)

    def _fit(self, k: int, variance: float, threads: int) -> Tuple[PcaModel, np.ndarray]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be an int >= 0, not {k!r}")
        m = ctypes.c_void_p()
        spectrum = np.empty(self.dim, np.float64)
        err = _lib.Error()
        _lib.check(_lib.lib.fn_pca_fit_ex(self._s, int(k), float(variance), int(threads),
                                          ctypes.byref(m), _lib.dptr(spectrum), ctypes.byref(err)), err)
        return PcaModel._from_c(m), spectrum

    def __reduce__(self) -> Any:
        return (PcaStats._from_moments, (self.n, self.mean, self._m2()))

    def __del__(self) -> None:
        try:
            s, self._s = self._s, ctypes.c_void_p()
            _lib.lib.fn_pca_stats_free(s)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"fruitnet.PcaStats(dim={self.dim}, n={self.n})"


try:  # scikit-learn's estimator API, when installed
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
    _HAVE_SKLEARN = True
    _Bases: Tuple[type, ...] = (ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator)
except ImportError:  # pragma: no cover - exercised when scikit-learn is absent
    _HAVE_SKLEARN = False
    _Bases = (object,)


def _validate(est: Any, X: Any, reset: bool) -> np.ndarray:
    if _HAVE_SKLEARN:
        return validate_data(est, X, dtype=[np.float64, np.float32], reset=reset, ensure_min_samples=1)
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-d array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("Input contains NaN or infinity.")
    if reset:
        est.n_features_in_ = X.shape[1]
    elif X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but PCA is expecting {est.n_features_in_} features as input.")
    return X


def _fitted(est: Any) -> None:
    if _HAVE_SKLEARN:
        check_is_fitted(est, "components_")
    elif not hasattr(est, "components_"):
        raise AttributeError("This PCA instance is not fitted yet. Call 'fit' first.")


class PCA(*_Bases):  # type: ignore[misc]
    """Principal component analysis with libfruitnet's streaming, mergeable statistics.

    A scikit-learn transformer: results equal ``sklearn.decomposition.PCA(svd_solver="full")``
    (same components up to float rounding, same sign convention: each
    component's largest-magnitude entry is positive). Unlike sklearn's, the
    fit is one pass over the rows (memory independent of their number), so
    ``partial_fit`` streams data that does not fit in memory, and statistics
    fitted on other machines ``merge``.

    Parameters
    ----------
    n_components : int, float or None
        int k: keep k components (1 <= k <= min(n_samples, n_features));
        float in (0, 1): the fewest components whose cumulative explained
        variance ratio exceeds it (as scikit-learn); None: min(n_samples, n_features).
    whiten : bool
        Scale the projections to unit variance.
    threads : int
        Threads of the statistics and the eigen-solver (0 = all CPUs).

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
    explained_variance_ : ndarray (n_components_,)   eigenvalues of the covariance (ddof=1)
    explained_variance_ratio_ : ndarray (n_components_,)
    singular_values_ : ndarray (n_components_,)
    mean_ : ndarray (n_features,)
    n_components_ : int
    n_samples_ : int
    noise_variance_ : float
    n_features_in_ : int
    stats_ : PcaStats   the accumulated statistics (for merge/save_stats)

    Examples
    --------
    >>> pca = fruitnet.PCA(0.8).fit(X)          # doctest: +SKIP
    >>> Z = pca.transform(X); pca.save("model.fnpca")   # doctest: +SKIP
    """

    def __init__(self, n_components: Optional[Union[int, float]] = None, *, whiten: bool = False,
                 threads: int = 0) -> None:
        self.n_components = n_components
        self.whiten = whiten
        self.threads = threads

    # scikit-learn >= 1.6 tags: float32 stays float32
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _check_params(self) -> None:
        nc = self.n_components
        if nc is not None:
            if isinstance(nc, bool) or not isinstance(nc, numbers.Real):
                raise ValueError(f"n_components must be an int, a float in (0, 1) or None, not {nc!r}")
            if isinstance(nc, numbers.Integral):
                if nc < 1:
                    raise ValueError(f"n_components must be >= 1, not {nc}")
            elif not 0 < nc < 1:
                raise ValueError(f"a float n_components must be in (0, 1), not {nc}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral) or self.threads < 0:
            raise ValueError(f"threads must be an int >= 0, not {self.threads!r}")

    def fit(self, X: Any, y: Any = None) -> "PCA":
        """Fit on X (n_samples, n_features); returns self."""
        self._check_params()
        X = _validate(self, X, reset=True)
        stats = PcaStats(X.shape[1])
        stats.add(X, threads=self.threads)
        self._set_stats(stats)
        return self

    def partial_fit(self, X: Any, y: Any = None) -> "PCA":
        """Add the rows of X to the statistics and refit (streaming). Returns self."""
        self._check_params()
        first = not hasattr(self, "stats_")
        X = _validate(self, X, reset=first)
        stats = PcaStats(X.shape[1]) if first else self.stats_
        stats.add(X, threads=self.threads)
        self._set_stats(stats)
        return self

    def merge(self, other: Union["PCA", PcaStats]) -> "PCA":
        """Merge the statistics of another fitted PCA (or a PcaStats) into these and refit. Returns self."""
        self._check_params()
        src = other.stats_ if isinstance(other, PCA) else other
        if not isinstance(src, PcaStats):
            raise TypeError(f"can merge a PCA or a PcaStats, not {type(other).__name__}")
        if not hasattr(self, "stats_"):
            stats = PcaStats(src.dim)
            self.n_features_in_ = src.dim
        else:
            stats = self.stats_
            if src.dim != stats.dim:
                raise ValueError(f"cannot merge statistics of {src.dim} features into {stats.dim}")
        stats.merge(src)
        self._set_stats(stats)
        return self

    def _set_stats(self, stats: PcaStats) -> None:
        self.stats_ = stats
        self.n_samples_ = stats.n
        if stats.n < 2:
            return  # not enough rows to fit yet (partial_fit of one row)
        d = stats.dim
        kmax = min(stats.n, d)
        nc = self.n_components
        if nc is None:
            k = kmax
        elif isinstance(nc, numbers.Integral):
            if nc > kmax:
                raise ValueError(f"n_components={nc} must be between 1 and min(n_samples, n_features)={kmax}")
            k = int(nc)
        else:
            k = 0
        model, spectrum = stats._fit(k, float(nc) if k == 0 else 0.8, self.threads)
        spectrum = np.maximum(spectrum[:kmax], 0.0)
        total = float(model.total_var)
        if k == 0:  # sklearn's rule: the fewest components whose cumulative ratio exceeds nc
            ratio_cumsum = np.cumsum(spectrum / total)
            k = int(np.searchsorted(ratio_cumsum, float(nc), side="right")) + 1
            k = min(k, kmax)
            if k != model.k:
                model, _ = stats._fit(k, 0.8, self.threads)
        self._set_model(model, spectrum, kmax)

    def _set_model(self, model: PcaModel, spectrum: Optional[np.ndarray], kmax: int) -> None:
        k = model.k
        self.n_components_ = k
        self.components_ = model.components
        self.explained_variance_ = model.eigenvalues
        self.explained_variance_ratio_ = model.eigenvalues / model.total_var
        self.singular_values_ = np.sqrt(np.maximum(model.eigenvalues, 0.0) * max(model.n - 1, 1))
        self.mean_ = model.mean
        self.n_samples_ = model.n
        self.n_features_in_ = model.dim
        self._total_var = model.total_var
        if k < kmax:
            if spectrum is not None:
                self.noise_variance_ = float(np.mean(spectrum[k:kmax]))
            else:
                self.noise_variance_ = float(max(model.total_var - model.eigenvalues.sum(), 0.0) / (kmax - k))
        else:
            self.noise_variance_ = 0.0

    @property
    def _n_features_out(self) -> int:
        """Number of output features (for get_feature_names_out)."""
        return int(self.components_.shape[0])

    def transform(self, X: Any) -> np.ndarray:
        """Project X onto the components: (n_samples, n_components_), X's float dtype."""
        _fitted(self)
        X = _validate(self, X, reset=False)
        Z = _project(self.mean_, self.components_, X).astype(np.float64)
        if self.whiten:
            Z /= np.sqrt(np.maximum(self.explained_variance_, np.finfo(np.float64).tiny))
        return Z.astype(X.dtype, copy=False)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """fit(X) then transform(X)."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Back to the input space: X @ components_ + mean_ (X's float dtype)."""
        _fitted(self)
        if _HAVE_SKLEARN:
            from sklearn.utils import check_array
            X = check_array(X, dtype=[np.float64, np.float32])
        else:
            X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_components_:
            raise ValueError(f"X must have shape (n, {self.n_components_}), not {X.shape}")
        comps = self.components_
        if self.whiten:
            comps = np.sqrt(np.maximum(self.explained_variance_, 0.0))[:, None] * comps
        return (np.asarray(X, dtype=np.float64) @ comps + self.mean_).astype(X.dtype, copy=False)

    # -- files ------------------------------------------------------------------
    def save(self, path: PathArg) -> None:
        """Write the fitted model to a ``model.fnpca`` file (as ``fruitnet-pca`` does; whiten is not stored)."""
        _fitted(self)
        PcaModel(self.mean_, self.explained_variance_, self.components_, self.n_samples_, self._total_var).save(path)

    @classmethod
    def load(cls, path: PathArg) -> "PCA":
        """A fitted PCA from a ``model.fnpca`` file (written by :meth:`save` or ``fruitnet-pca``).

        It transforms and inverse-transforms; without statistics it cannot
        ``partial_fit`` or ``merge`` (load them with :meth:`load_stats`).
        """
        m = PcaModel.load(path)
        est = cls(n_components=m.k)
        est._set_model(m, None, min(m.n, m.dim))
        return est

    def save_stats(self, path: PathArg) -> None:
        """Write the accumulated statistics (to merge on another machine)."""
        if not hasattr(self, "stats_"):
            raise AttributeError("This PCA has no statistics yet: call fit or partial_fit first")
        self.stats_.save(path)

    @classmethod
    def load_stats(cls, path: PathArg, n_components: Optional[Union[int, float]] = None, **kw: Any) -> "PCA":
        """A PCA fitted from statistics saved by :meth:`save_stats` or ``fruitnet-pca stats``."""
        est = cls(n_components=n_components, **kw)
        est._check_params()
        stats = PcaStats.load(path)
        est.n_features_in_ = stats.dim
        est._set_stats(stats)
        return est
