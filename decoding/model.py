"""Ridge decoders: from responses to a feature space, one regularisation per target dimension.

The decoder is the encoding solver (:mod:`encoding.ridge`) with the roles swapped: the design is
the responses (vertices x lags, usually many more columns than samples, so the solver's kernel
form), the targets are the embedding's dimensions, and leave-one-run-out cross-validation picks
each dimension's alpha. Targets are standardised with the training samples' mean and standard
deviation and the responses centred on theirs; predictions are returned in the target's units.

Vertex selection (``selection``):

- ``"all"``: every vertex;
- an array (a boolean mask or vertex indices, e.g. an ROI of :mod:`atlases`): those vertices;
- ``"encoding"``: the ``n_vertices`` vertices whose responses the target predicts best, scored by
  leave-one-run-out R^2 of an encoding model (ridge from the target to each vertex's response,
  averaged over the lags) on the training runs only. Because the selection looks at the
  training targets, it is **nested** in the decoder's cross-validation: each validation run's
  alphas are scored with vertices selected on the other runs, so the CV score that picks alpha
  (and the test score) never sees data the selection used. Nesting needs three training runs.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from encoding.errors import ConfigError, DataError
from encoding.model import resolve_backend
from encoding.ridge import RidgeProblem, fit_banded_ridge
from encoding.ridge.backend import backend_module
from encoding.scoring import r2_score

DEFAULT_DECODER_ALPHAS = tuple(np.logspace(0, 10, 21).tolist())
SELECTIONS = ("all", "encoding")
DEFAULT_SELECTED = 2000
ENCODING_ALPHAS = np.logspace(1, 5, 3)  # the selection ranks vertices: three wide steps suffice


class RidgeDecoder(RegressorMixin, BaseEstimator):
    """Ridge regression from responses to an embedding, cross-validated by run.

    Parameters
    ----------
    n_delays : int
        Lags stacked in X (delay-major: column ``k * n_vertices + v`` is vertex ``v`` at lag ``k``);
        sets how columns map to vertices.
    selection : {"all", "encoding"} or array-like
        Vertices decoded from (see the module docstring); an array is a boolean mask of length
        ``n_vertices`` or vertex indices.
    n_vertices : int
        Vertices kept by ``selection="encoding"``.
    alphas : array-like of float
        Regularisation grid, searched per target dimension.
    form, strategy, backend, memory_gb
        As :class:`encoding.model.BandedRidgeEncoder` (the same solver).
    progress_bar : bool

    Attributes
    ----------
    coef_ : ndarray, shape (n_selected * n_delays, n_dims)
        Weights from the selected, centred columns to the standardised targets.
    alpha_ : ndarray, shape (n_dims,)
        Chosen alpha of each target dimension.
    cv_scores_ : ndarray, shape (n_dims,)
        Leave-one-run-out R^2 of each dimension (standardised) at its alpha.
    vertices_ : ndarray of int
        Vertices decoded from.
    columns_ : ndarray of int
        Columns of X used.
    selection_scores_ : ndarray, shape (n_vertices,) or None
        Training-run encoding R^2 of every vertex (``selection="encoding"``).
    target_mean_, target_scale_ : ndarray, shape (n_dims,)
    response_mean_ : ndarray, shape (n_columns,)
    n_features_in_ : int
    """

    def __init__(self, n_delays: int = 1, selection="encoding", n_vertices: int = DEFAULT_SELECTED,
                 alphas=DEFAULT_DECODER_ALPHAS, form: str = "auto", strategy: str = "auto", backend: str = "auto",
                 memory_gb: float = 2.0, progress_bar: bool = True):
        self.n_delays = n_delays
        self.selection = selection
        self.n_vertices = n_vertices
        self.alphas = alphas
        self.form = form
        self.strategy = strategy
        self.backend = backend
        self.memory_gb = memory_gb
        self.progress_bar = progress_bar

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> RidgeDecoder:
        """Fit on training samples, cross-validating over the runs in ``groups``.

        Parameters
        ----------
        X : ndarray, shape (n_samples, n_delays * n_vertices)
            Responses (e.g. :attr:`decoding.design.DecodingDesign.X_train`).
        Y : ndarray, shape (n_samples, n_dims)
            Target embedding.
        groups : ndarray, shape (n_samples,)
            Run of each sample; at least two runs (three with ``selection="encoding"``).
        """
        X, Y, groups = self._check_fit_input(X, Y, groups)
        backend = resolve_backend(self.backend)
        self.target_mean_ = Y.mean(axis=0)
        scale = Y.std(axis=0)
        self.target_scale_ = np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
        Z = self._standardise(Y)
        alphas = np.sort(np.asarray(self.alphas, dtype=np.float64))
        n_total = X.shape[1] // self.n_delays
        self.selection_scores_ = None
        if isinstance(self.selection, str) and self.selection == "encoding":
            self.selection_scores_ = encoding_scores(X, Z, groups, self.n_delays, backend)
            self.vertices_ = top_vertices(self.selection_scores_, self.n_vertices)
            self.columns_ = vertex_columns(self.vertices_, n_total, self.n_delays)
            curves = self._nested_curves(X, Z, groups, alphas, backend)
            best = curves.argmax(axis=0)
            self.alpha_ = alphas[best].astype(np.float32)
            self.cv_scores_ = curves[best, np.arange(Z.shape[1])].astype(np.float32)
            Xs = X[:, self.columns_]
            self.response_mean_ = Xs.mean(axis=0)
            problem = RidgeProblem(Xs - self.response_mean_, groups, {"responses": slice(0, Xs.shape[1])},
                                   form=self.form, backend=backend)
            b = backend_module(backend)
            full = problem.factorize_full(np.ones(1))
            self.coef_ = b.to_numpy(problem.weights(full, Z, self.alpha_)).astype(np.float32)
        else:
            self.vertices_ = self._fixed_vertices(n_total)
            self.columns_ = vertex_columns(self.vertices_, n_total, self.n_delays)
            Xs = X[:, self.columns_]
            self.response_mean_ = Xs.mean(axis=0)
            problem = RidgeProblem(Xs - self.response_mean_, groups, {"responses": slice(0, Xs.shape[1])},
                                   form=self.form, backend=backend)
            result = fit_banded_ridge(problem, Z, alphas, np.ones((1, 1)), memory_gb=self.memory_gb,
                                      strategy=self.strategy, progress=self.progress_bar)
            self.coef_ = result.coef
            self.alpha_ = result.best_alpha.astype(np.float32)
            self.cv_scores_ = result.cv_scores[0]
        self.form_ = problem.form
        self.n_features_in_ = X.shape[1]
        return self

    def _nested_curves(self, X, Z, groups, alphas, backend) -> np.ndarray:
        """Held-out R^2 (n_alphas, n_dims), mean over runs, with the selection redone without each run."""
        runs = np.unique(groups)
        b = backend_module(backend)
        n_total = X.shape[1] // self.n_delays
        curves = np.zeros((len(alphas), Z.shape[1]))
        for run in tqdm(runs, desc="decoder: nested CV", disable=not self.progress_bar, leave=False):
            train, val = groups != run, groups == run
            scores = encoding_scores(X[train], Z[train], groups[train], self.n_delays, backend)
            columns = vertex_columns(top_vertices(scores, self.n_vertices), n_total, self.n_delays)
            Xt = X[np.ix_(train, columns)]
            mean = Xt.mean(axis=0)
            problem = RidgeProblem(Xt - mean, groups[train], {"responses": slice(0, len(columns))}, form=self.form,
                                   backend=backend)
            full = problem.factorize_full(np.ones(1))
            components = b.matmul(full.components.T, b.asarray(Z[train]))  # (q, n_dims)
            val_map = b.to_numpy(b.matmul(b.asarray(X[np.ix_(val, columns)] - mean), full.weight_map))
            eigenvalues = b.to_numpy(full.eigenvalues)
            components = b.to_numpy(components)
            for index, alpha in enumerate(alphas):
                prediction = val_map @ (components / (eigenvalues[:, None] + alpha))
                curves[index] += r2_score(Z[val], prediction)
        return curves / len(runs)

    def _fixed_vertices(self, n_total: int) -> np.ndarray:
        if isinstance(self.selection, str):
            if self.selection != "all":
                raise ConfigError(f"selection must be one of {SELECTIONS} or vertex indices / a boolean mask, got "
                                  f"{self.selection!r}.")
            return np.arange(n_total)
        chosen = np.asarray(self.selection)
        if chosen.dtype == bool:
            if chosen.shape != (n_total,):
                raise DataError(f"The vertex mask has {chosen.size} entries but the responses have {n_total} "
                                "vertices; make the mask on the same surface.")
            chosen = np.flatnonzero(chosen)
        chosen = np.unique(chosen.astype(int))
        if chosen.size == 0:
            raise DataError("The vertex selection is empty; choose an ROI that has vertices.")
        if chosen.min() < 0 or chosen.max() >= n_total:
            raise DataError(f"Vertex indices must lie in [0, {n_total}); got {chosen.min()}..{chosen.max()}.")
        return chosen

    # -- prediction ----------------------------------------------------------------------

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Decoded embedding, in the target's units, shape (n_samples, n_dims)."""
        check_is_fitted(self, "coef_")
        X = self._check_X(X)
        return self._unstandardise((X[:, self.columns_] - self.response_mean_) @ self.coef_)

    def score(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """R^2 of each target dimension, shape (n_dims,)."""
        return r2_score(np.asarray(Y, dtype=np.float32), self.predict(X))

    def _standardise(self, Y: np.ndarray) -> np.ndarray:
        return ((Y - self.target_mean_) / self.target_scale_).astype(np.float32)

    def _unstandardise(self, Z: np.ndarray) -> np.ndarray:
        return (Z * self.target_scale_ + self.target_mean_).astype(np.float32)

    # -- validation ----------------------------------------------------------------------

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise DataError(f"X must be 2-D (n_samples, n_delays * n_vertices), got shape {X.shape}.")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} columns but the decoder was fitted on {self.n_features_in_}.")
        if not np.isfinite(X).all():
            raise DataError("X contains NaN or inf values.")
        return X

    def _check_fit_input(self, X, Y, groups):
        if not isinstance(self.n_delays, (int, np.integer)) or self.n_delays < 1:
            raise ConfigError(f"n_delays must be a positive integer, got {self.n_delays!r}.")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] % self.n_delays:
            raise DataError(f"X must be 2-D with n_delays ({self.n_delays}) x n_vertices columns; got {X.shape}.")
        X = self._check_X(X)
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise DataError(f"Y must have shape (n_samples={X.shape[0]}, n_dims); got {Y.shape}.")
        if not np.isfinite(Y).all():
            raise DataError("The target embedding contains NaN or inf values.")
        groups = np.asarray(groups)
        if groups.shape != (X.shape[0],):
            raise DataError(f"groups must have shape ({X.shape[0]},), got {groups.shape}.")
        n_runs = np.unique(groups).size
        nested = isinstance(self.selection, str) and self.selection == "encoding"
        if n_runs < (3 if nested else 2):
            raise DataError(f"The decoder cross-validates by run and has {n_runs} training run(s); it needs at least "
                            f"{3 if nested else 2}" + (" for the nested vertex selection (or choose selection "
                                                       "'all' or an ROI)." if nested else "."))
        if nested and not (isinstance(self.n_vertices, (int, np.integer)) and self.n_vertices >= 1):
            raise ConfigError(f"n_vertices must be a positive integer, got {self.n_vertices!r}.")
        return X, Y, groups


def encoding_scores(X: np.ndarray, Z: np.ndarray, groups: np.ndarray, n_delays: int, backend: str) -> np.ndarray:
    """Leave-one-run-out R^2 of ridge from the target to each vertex's response, at its best alpha, shape (n_vertices,).

    A vertex's response is its columns averaged over the lags (one encoding model per vertex,
    not per lag: ``n_delays`` times less work, and the lags of one vertex are strongly correlated).

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_delays * n_vertices)
        Responses (the encoding model's targets), delay-major.
    Z : ndarray, shape (n_samples, n_dims)
        Standardised target embedding (the encoding model's features).
    """
    response = X.reshape(len(X), n_delays, -1).mean(axis=1) if n_delays > 1 else X
    problem = RidgeProblem(Z - Z.mean(axis=0), groups, {"target": slice(0, Z.shape[1])}, backend=backend)
    factorization = problem.factorize(np.ones(1), ENCODING_ALPHAS, "folds")
    b = backend_module(backend)
    return b.to_numpy(problem.cv_scores(factorization, response - response.mean(axis=0))).max(axis=0)


def top_vertices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, ascending (ties broken by index)."""
    n = min(int(n), scores.size)
    order = np.lexsort((np.arange(scores.size), -scores))
    return np.sort(order[:n])


def vertex_columns(vertices: np.ndarray, n_vertices: int, n_delays: int) -> np.ndarray:
    """Columns of a delay-major design that hold ``vertices`` at every lag."""
    return (np.arange(n_delays)[:, None] * n_vertices + np.asarray(vertices)[None, :]).ravel()


def make_decoder(cfg, n_vertices: int, progress: bool = True, backend: str = "auto",
                 memory_gb: float = 2.0) -> RidgeDecoder:
    """The (unfitted) decoder a :class:`encoding.config.DecodingConfig` describes, for ``n_vertices`` responses.

    Raises
    ------
    DataError
        ``selection = "roi"`` (fsaverage5 regions) on responses of another size.
    """
    selection = cfg.selection
    if selection == "roi":
        from atlases.parcellations import atlas_rois

        masks = atlas_rois(cfg.atlas)
        selection = np.any([masks[name] for name in cfg.rois], axis=0)
        if selection.size != n_vertices:
            raise DataError(f"decoding.selection = 'roi' uses fsaverage5 regions ({selection.size} vertices) but the "
                            f"responses have {n_vertices} vertices.")
    return RidgeDecoder(n_delays=len(cfg.delays), selection=selection, n_vertices=cfg.n_vertices, alphas=cfg.alphas,
                        backend=backend, memory_gb=memory_gb, progress_bar=progress)
