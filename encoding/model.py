"""Banded ridge encoding models: one regularisation strength per feature space and per vertex."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from encoding.config import SCREEN_R2
from encoding.errors import DataError
from encoding.ridge import RidgeProblem, band_weight_candidates, fit_banded_ridge
from encoding.scoring import r2_score, split_r2_score

DEFAULT_ALPHAS = tuple(np.logspace(-2, 8, 21).tolist())


def resolve_backend(backend: str) -> str:
    """``"auto"`` becomes ``"torch_cuda"`` when a CUDA GPU is visible, else ``"numpy"``.

    On CPU numpy's OpenBLAS float32 GEMM is the faster engine (``benchmarks/ridge.py`` prints both).
    """
    if backend != "auto":
        return backend
    try:
        import torch
    except ImportError:
        return "numpy"
    return "torch_cuda" if torch.cuda.is_available() else "numpy"


class BandedRidgeEncoder(RegressorMixin, BaseEstimator):
    """Banded ridge regression from feature spaces to vertices, cross-validated by run.

    Each feature space (band) gets its own regularisation strength, chosen per vertex by
    leave-one-run-out cross-validation over a random search on the simplex of band weights
    (Dupre la Tour et al. 2022) times a grid of global alphas. By default the search does less
    where it can: vertices without a cross-validated signal under plain ridge keep plain ridge
    (``screen``), and the others compare the candidates by successive halving over the folds
    (``search``). The solver
    (:mod:`encoding.ridge`) eigendecomposes the design once per (fold, band-weight candidate),
    in primal or kernel form, and shares it across all vertices and alphas through large matrix
    products; vertex batches are sized to a memory budget and can run on a dask cluster.

    Parameters
    ----------
    bands : mapping of str to slice
        Columns of each feature space in X (e.g. ``Design.bands``).
    alphas : array-like of float
        Global regularisation strengths searched for each band-weight candidate.
    n_iter : int or ndarray of shape (n_candidates, n_bands)
        Band-weight candidates of the random search (the first is equal weights, i.e. plain
        ridge), or the candidates themselves.
    concentration : float or list of float
        Dirichlet concentration(s) of the random search.
    form : {"auto", "primal", "dual"}
        Primal (features <= samples) or kernel form; ``auto`` picks the smaller problem.
    strategy : {"auto", "folds", "hat"}
        Cross-validation by one eigendecomposition per fold, or by one per candidate and the
        leave-one-run-out hat-matrix identity (both exact; ``auto`` takes the cheaper).
    backend : {"auto", "numpy", "torch", "torch_cuda"}
        himalaya backend of the linear algebra (``auto``: CUDA when visible, else numpy).
    memory_gb : float
        Working-memory budget of the solver (GiB): the design-side arrays, one candidate's
        factorization and a vertex batch (Y and the fitted weights are not counted).
    scheduler : str, distributed.Client or None
        Run vertex batches on a dask cluster (a scheduler address such as
        ``"tcp://host:8786"``, or a client); None runs here. Results are identical.
    cache : str, path or None
        Folder where finished vertex batches are kept (:class:`encoding.ridge.FitCache`): fitting
        again on the same data after an interruption only fits the missing batches.
    search : {"halving", "random"}
        ``halving`` (default): successive halving over the candidates, each vertex dropping its
        weaker two thirds after a few folds (fold budget doubling each round: 2, 4, 8, ... folds;
        needs the ``folds`` strategy, with ``hat`` every candidate sees every fold); ``random``:
        every candidate on every fold (exhaustive over the candidates).
    screen : float or None
        Vertices whose leave-one-run-out R^2 with equal band weights (the first candidate, plain
        ridge) is at most ``screen`` keep that model and are not searched further; the others get
        the full band-weight search. With the ``folds`` strategy and at least 6 runs, every vertex
        is scored on a third of the folds first and only those whose R^2 there is above
        ``min(screen, 0)`` on the others (``encoding.ridge.search.screen_folds``); the rest keep
        plain ridge at the alpha best on those folds. None searches every vertex. Training data
        only: the screen is part of the model (``benchmarks/subject.py`` measures its effect on
        test scores and on the null).
    random_state : int or None
        Seed of the random search.
    progress_bar : bool
        Show progress bars.

    Attributes
    ----------
    band_names_ : list of str
    coef_ : ndarray, shape (n_features, n_vertices)
        Primal weights (for the z-scored design).
    candidates_ : ndarray, shape (n_candidates, n_bands)
        Band weights searched.
    best_candidate_ : ndarray of int, shape (n_vertices,)
        Row of ``candidates_`` each vertex chose.
    band_weights_ : ndarray, shape (n_bands, n_vertices)
        Chosen band weights (on the simplex).
    alpha_ : ndarray, shape (n_vertices,)
        Chosen global alpha.
    best_alphas_ : ndarray, shape (n_bands, n_vertices)
        Effective penalty of each band, ``alpha_ / band_weights_`` (himalaya's ``exp(-deltas_)``);
        inf where a band's weight is (numerically) 0, i.e. the band is left out.
    cv_scores_ : ndarray, shape (n_candidates, n_vertices)
        Leave-one-run-out R^2 (mean over folds) of each candidate at its best alpha; NaN where the
        candidate was not scored on every fold (screened out, or dropped by successive halving).
    searched_ : ndarray of bool, shape (n_vertices,)
        Vertices that passed the screen and got the band-weight search.
    form_ : str
        ``"primal"`` or ``"dual"``.
    strategy_ : str
        ``"folds"`` or ``"hat"``.
    fit_profile_ : dict
        Seconds per phase, vertex batch size and GEMM throughput of the search.
    n_features_in_ : int
    """

    def __init__(
        self,
        bands: Mapping[str, slice],
        alphas=DEFAULT_ALPHAS,
        n_iter=20,
        concentration=(0.1, 1.0),
        form: str = "auto",
        strategy: str = "auto",
        backend: str = "auto",
        memory_gb: float = 2.0,
        scheduler=None,
        cache=None,
        search: str = "halving",
        screen: float | None = SCREEN_R2,
        random_state: int | None = 0,
        progress_bar: bool = True,
    ):
        self.bands = bands
        self.alphas = alphas
        self.n_iter = n_iter
        self.concentration = concentration
        self.form = form
        self.strategy = strategy
        self.backend = backend
        self.memory_gb = memory_gb
        self.scheduler = scheduler
        self.cache = cache
        self.search = search
        self.screen = screen
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
            raise DataError(f"Y must have shape (n_samples={X.shape[0]}, n_vertices); got {Y.shape}.")
        if not np.isfinite(Y).all():
            raise DataError("Y contains NaN or inf values.")
        groups = np.asarray(groups)
        if groups.shape != (X.shape[0],):
            raise DataError(f"groups must have shape ({X.shape[0]},), got {groups.shape}.")
        problem = RidgeProblem(X, groups, self.bands, form=self.form, backend=resolve_backend(self.backend))
        if isinstance(self.n_iter, (int, np.integer)):
            candidates = band_weight_candidates(len(self.bands), int(self.n_iter), self.concentration,
                                                self.random_state)
        else:
            candidates = np.asarray(self.n_iter, dtype=np.float64)
        client, own_client = _client(self.scheduler)
        try:
            result = fit_banded_ridge(problem, Y, np.asarray(self.alphas, dtype=np.float64), candidates,
                                      memory_gb=self.memory_gb, strategy=self.strategy, client=client,
                                      cache=self.cache, progress=self.progress_bar, search=self.search,
                                      screen=self.screen)
        finally:
            if own_client:
                client.close()
        self.coef_ = result.coef
        self.candidates_ = result.candidates
        self.best_candidate_ = result.best_candidate
        self.band_weights_ = result.band_weights.astype(np.float32)
        self.alpha_ = result.best_alpha.astype(np.float32)
        with np.errstate(over="ignore"):  # a band weight of ~0 excludes the band: its penalty is inf
            self.best_alphas_ = result.band_alphas.astype(np.float32)
        self.cv_scores_ = result.cv_scores
        self.searched_ = result.searched
        self.form_ = problem.form
        self.strategy_ = result.strategy
        self.fit_profile_ = {**result.profile, "batch_size": result.batch_size, "backend": problem.backend}
        self.band_names_ = list(self.bands)
        self.n_features_in_ = X.shape[1]
        return self

    def select_targets(self, columns: np.ndarray) -> BandedRidgeEncoder:
        """The fitted model of some of its targets: a copy whose per-vertex attributes are those of ``columns``.

        Every vertex's fit depends on its own responses only, so the model of the columns of
        ``Y`` fitted side by side with others (subjects with the same design, fitted once) is the
        model those columns alone would get.

        Parameters
        ----------
        columns : array of int or bool, indexing the vertices (columns of ``Y``) of the fit
        """
        check_is_fitted(self, "coef_")
        part = copy.copy(self)
        part.coef_ = self.coef_[:, columns]
        part.best_candidate_ = self.best_candidate_[columns]
        part.band_weights_ = self.band_weights_[:, columns]
        part.alpha_ = self.alpha_[columns]
        part.best_alphas_ = self.best_alphas_[:, columns]
        part.cv_scores_ = self.cv_scores_[:, columns]
        part.searched_ = self.searched_[columns]
        part.fit_profile_ = {**self.fit_profile_, "n_searched": int(part.searched_.sum()),
                             "n_targets_fitted_together": self.coef_.shape[1]}
        return part

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
        check_is_fitted(self, "coef_")
        X = self._check_X(X)
        if not split:
            return X @ self.coef_
        return np.stack([X[:, cols] @ self.coef_[cols] for cols in self.bands.values()])

    def score(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Coefficient of determination R^2 of each vertex, shape (n_vertices,)."""
        return r2_score(Y, self.predict(X))

    def score_split(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Each band's share of R^2 (himalaya's ``r2_score_split``), shape (n_bands, n_vertices).

        The shares sum to the R^2 of the full prediction against the centred responses
        (:func:`encoding.scoring.split_r2_score`).
        """
        return split_r2_score(Y, self.predict(X, split=True))

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise DataError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        n_features = max(s.stop for s in self.bands.values())
        if X.shape[1] != n_features:
            raise DataError(f"X has {X.shape[1]} features but the bands cover {n_features}.")
        if not np.isfinite(X).all():
            raise DataError("X contains NaN or inf values.")
        return X


def _client(scheduler):
    """A dask client for ``scheduler`` (address or client), and whether this call created it."""
    if scheduler is None or scheduler == "":
        return None, False
    if isinstance(scheduler, str):
        from distributed import Client

        from encoding.errors import ConfigError

        try:
            return Client(scheduler, timeout="20s"), True
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(f"model.scheduler = {scheduler!r}: no dask scheduler answers there ({err}); start one "
                              "(dask scheduler) or leave model.scheduler empty to run here.") from None
    return scheduler, False
