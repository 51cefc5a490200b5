"""Banded ridge encoding models: one regularisation strength per feature space and per vertex."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

import numpy as np
from himalaya.backend import get_backend, set_backend
from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
from himalaya.scoring import r2_score_split
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted

DEFAULT_ALPHAS = tuple(np.logspace(-2, 8, 21).tolist())


def resolve_backend(backend: str) -> str:
    """``"auto"`` becomes ``"torch"`` when torch is installed (faster on CPU), else ``"numpy"``."""
    if backend == "auto":
        return "torch" if importlib.util.find_spec("torch") else "numpy"
    return backend


class BandedRidgeEncoder(RegressorMixin, BaseEstimator):
    """Banded ridge regression from feature spaces to vertices, cross-validated by run.

    Each feature space (band) gets its own regularisation strength, chosen per vertex by
    leave-one-run-out cross-validation over a random search on the simplex of band weights
    (Dupre la Tour et al. 2022). It is solved in kernel form with himalaya's
    ``MultipleKernelRidgeCV``, which suits fMRI's fewer samples than features.

    Parameters
    ----------
    bands : mapping of str to slice
        Columns of each feature space in X (e.g. ``Design.bands``).
    alphas : array-like of float
        Global regularisation strengths searched for each band-weight candidate.
    n_iter : int
        Band-weight candidates in the random search (the first is equal weights).
    concentration : float or list of float
        Dirichlet concentration(s) of the random search.
    backend : {"auto", "numpy", "torch", "torch_cuda"}
        himalaya backend.
    n_targets_batch : int
        Vertices solved at once; bounds memory.
    random_state : int or None
        Seed of the random search.
    progress_bar : bool
        Show himalaya's progress bar.

    Attributes
    ----------
    band_names_ : list of str
    best_alphas_ : ndarray, shape (n_bands, n_vertices)
        Chosen regularisation per band and vertex (the primal-equivalent alpha,
        ``exp(-deltas_)``).
    deltas_ : ndarray, shape (n_bands, n_vertices)
        himalaya's log band weights over alpha.
    cv_scores_ : ndarray, shape (n_iter, n_vertices)
        Cross-validated score of the best alpha for each candidate (negative mean squared error).
    n_features_in_ : int
    """

    def __init__(
        self,
        bands: Mapping[str, slice],
        alphas=DEFAULT_ALPHAS,
        n_iter: int = 20,
        concentration=(0.1, 1.0),
        backend: str = "auto",
        n_targets_batch: int = 4096,
        random_state: int | None = 0,
        progress_bar: bool = True,
    ):
        self.bands = bands
        self.alphas = alphas
        self.n_iter = n_iter
        self.concentration = concentration
        self.backend = backend
        self.n_targets_batch = n_targets_batch
        self.random_state = random_state
        self.progress_bar = progress_bar

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> BandedRidgeEncoder:
        """Fit on training samples, cross-validating over the runs in ``groups``.

        Parameters
        ----------
        X : ndarray, shape (n_samples, n_features)
        Y : ndarray, shape (n_samples, n_vertices)
            Responses, z-scored per run.
        groups : ndarray, shape (n_samples,)
            Run of each sample; at least two runs.
        """
        X, Y = self._check_X(X), np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y must have shape (n_samples={X.shape[0]}, n_vertices); got {Y.shape}.")
        if not np.isfinite(Y).all():
            raise ValueError("Y contains NaN or inf values.")
        groups = np.asarray(groups)
        if groups.shape != (X.shape[0],):
            raise ValueError(f"groups must have shape ({X.shape[0]},), got {groups.shape}.")
        if np.unique(groups).size < 2:
            raise ValueError("Leave-one-run-out cross-validation needs at least two training runs.")
        self._use_backend()
        splits = list(LeaveOneGroupOut().split(X, Y, groups))
        solver = MultipleKernelRidgeCV(
            kernels="precomputed",
            solver="random_search",
            solver_params=dict(
                n_iter=self.n_iter,
                alphas=np.asarray(self.alphas, dtype=np.float64),
                concentration=list(np.atleast_1d(self.concentration)),
                n_targets_batch=self.n_targets_batch,
                n_targets_batch_refit=self.n_targets_batch,
                progress_bar=self.progress_bar,
            ),
            cv=splits,
            random_state=self.random_state,
            Y_in_cpu=True,
        )
        kernelizer = ColumnKernelizer(
            [(name, Kernelizer(kernel="linear"), cols) for name, cols in self.bands.items()]
        )
        self.pipeline_ = make_pipeline(kernelizer, solver).fit(X, Y)
        backend = get_backend()
        self.deltas_ = backend.to_numpy(solver.deltas_).astype(np.float32)
        self.best_alphas_ = np.exp(-self.deltas_)
        self.cv_scores_ = backend.to_numpy(solver.cv_scores_).astype(np.float32)
        self.band_names_ = list(self.bands)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray, split: bool = False) -> np.ndarray:
        """Predicted responses.

        Parameters
        ----------
        X : ndarray, shape (n_samples, n_features)
        split : bool
            Return each band's contribution separately.

        Returns
        -------
        ndarray, shape (n_samples, n_vertices), or (n_bands, n_samples, n_vertices) if ``split``
        """
        check_is_fitted(self, "pipeline_")
        X = self._check_X(X)
        backend = self._use_backend()
        return backend.to_numpy(self.pipeline_.predict(X, split=split)).astype(np.float32)

    def score(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Coefficient of determination R^2 of each vertex, shape (n_vertices,)."""
        from encoding.scoring import r2_score

        return r2_score(Y, self.predict(X))

    def score_split(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Each band's share of R^2 (himalaya's ``r2_score_split``), shape (n_bands, n_vertices).

        The shares sum to the R^2 of the full prediction. ``Y`` is centred per vertex first (R^2
        is relative to the mean).
        """
        backend = self._use_backend()
        Y = np.asarray(Y, dtype=np.float32)
        Y = Y - Y.mean(axis=0)
        split = self.predict(X, split=True)
        return backend.to_numpy(r2_score_split(backend.asarray(Y), backend.asarray(split))).astype(np.float32)

    def _use_backend(self):
        return set_backend(resolve_backend(self.backend), on_error="raise")

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        n_features = max(s.stop for s in self.bands.values())
        if X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features but the bands cover {n_features}.")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf values.")
        return X
