"""Hyperparameter search of banded ridge: band weights on the simplex and a global alpha per vertex.

The work is split into tasks that a dask cluster can run as they are:

1. ``factorize`` one band-weight candidate (its eigendecompositions, ``encoding.ridge.problem``);
2. ``score`` one (candidate, vertex batch): leave-one-run-out R^2 of every alpha, GEMMs only;
3. pick each vertex's best (candidate, alpha), then ``refit`` the weights on all training runs,
   one task per (candidate, vertex batch).

The serial path runs the same tasks in a loop, so both give identical numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from himalaya.backend import set_backend
from himalaya.kernel_ridge import generate_dirichlet_samples
from tqdm.auto import tqdm

from encoding.ridge.problem import STRATEGIES, RidgeProblem


def band_weight_candidates(n_bands: int, n_iter: int, concentration=(0.1, 1.0),
                           random_state: int | None = 0) -> np.ndarray:
    """Band-weight candidates: equal weights first (plain ridge), then Dirichlet samples.

    Parameters
    ----------
    n_bands : int
    n_iter : int
        Number of candidates.
    concentration : float or sequence of float
        Dirichlet concentration(s), cycled (himalaya's ``generate_dirichlet_samples``).
    random_state : int or None

    Returns
    -------
    ndarray, shape (n_iter, n_bands)
        Rows on the simplex (a single row for one band).
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter}.")
    first = np.full((1, n_bands), 1.0 / n_bands)
    if n_bands == 1 or n_iter == 1:
        return first  # one band: the only candidate
    set_backend("numpy")
    rest = np.asarray(generate_dirichlet_samples(n_iter - 1, n_bands, list(np.atleast_1d(concentration)),
                                                 random_state))
    return np.vstack([first, rest])


@dataclass
class SearchResult:
    """Outcome of :func:`fit_banded_ridge`.

    Attributes
    ----------
    coef : ndarray, shape (n_features, n_vertices)
        Primal weights refitted on all training runs.
    candidates : ndarray, shape (n_candidates, n_bands)
        Band weights searched.
    best_candidate : ndarray of int, shape (n_vertices,)
    best_alpha : ndarray, shape (n_vertices,)
        Global alpha of the chosen candidate.
    cv_scores : ndarray, shape (n_candidates, n_vertices)
        Mean fold R^2 of each candidate at its best alpha.
    batch_size : int
        Vertices per task (from the memory budget).
    strategy : str
        Cross-validation strategy used (``folds`` or ``hat``).
    profile : dict
        Seconds per phase, GEMM seconds and flops of the scoring products.
    """

    coef: np.ndarray
    candidates: np.ndarray
    best_candidate: np.ndarray
    best_alpha: np.ndarray
    cv_scores: np.ndarray
    batch_size: int
    strategy: str
    profile: dict = field(default_factory=dict)

    @property
    def band_weights(self) -> np.ndarray:
        """Chosen band weights, shape (n_bands, n_vertices)."""
        return self.candidates[self.best_candidate].T

    @property
    def band_alphas(self) -> np.ndarray:
        """Effective penalty of each band, ``alpha / gamma_b``, shape (n_bands, n_vertices)."""
        with np.errstate(divide="ignore"):
            return self.best_alpha[None, :] / self.band_weights


def batch_size_for(problem: RidgeProblem, n_vertices: int, n_alphas: int, strategy: str,
                   memory_gb: float) -> int:
    """Largest vertex batch whose working memory, with one candidate's factorization, fits the budget.

    Raises
    ------
    MemoryError
        If even one vertex does not fit; the message gives the memory needed.
    """
    budget = memory_gb * 2**30
    factorization = problem.factorization_nbytes(strategy, n_alphas)
    fixed = problem.design_nbytes() + factorization
    per_vertex = problem.vertex_nbytes(strategy, n_alphas)
    size = int((budget - fixed) // per_vertex)
    if size < 1:
        need = (fixed + per_vertex * min(n_vertices, 256)) / 2**30
        raise MemoryError(
            f"memory_gb={memory_gb:g} cannot hold the design ({problem.design_nbytes() / 2**30:.2f} GiB) and one "
            f"candidate's factorization ({factorization / 2**30:.2f} GiB, {problem.form} form, {strategy} "
            f"strategy). Raise memory_gb to at least {need:.2f}, or reduce the features (PCA) or the samples."
        )
    return max(1, min(size, n_vertices))


def fit_banded_ridge(problem: RidgeProblem, Y: np.ndarray, alphas, candidates: np.ndarray,
                     memory_gb: float = 2.0, strategy: str = "auto", client=None,
                     progress: bool = True) -> SearchResult:
    """Search band weights and alphas by cross-validation, then refit every vertex.

    Parameters
    ----------
    problem : RidgeProblem
    Y : ndarray, shape (n_samples, n_vertices)
    alphas : array-like, shape (n_alphas,)
        Global regularisation grid (ascending).
    candidates : ndarray, shape (n_candidates, n_bands)
        Band weights (``band_weight_candidates``).
    memory_gb : float
        Working-memory budget of one task (GiB); sets the vertex batch size.
    strategy : {"auto", "folds", "hat"}
        Cross-validation strategy (``encoding.ridge.problem``); ``auto`` takes the cheaper.
    client : distributed.Client or None
        Run the tasks on this dask cluster; None runs them here, in order.
    progress : bool
        Show progress bars.

    Returns
    -------
    SearchResult
    """
    Y = np.asarray(Y, dtype=np.float32)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))
    candidates = np.asarray(candidates, dtype=np.float64)
    if candidates.ndim != 2 or candidates.shape[1] != problem.n_bands or (candidates < 0).any():
        raise ValueError(f"candidates must be non-negative, shape (n_candidates, {problem.n_bands}); "
                         f"got {candidates.shape}.")
    n_vertices = Y.shape[1]
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if strategy == "auto":
        strategy = problem.choose_strategy(n_vertices, len(alphas))
    size = batch_size_for(problem, n_vertices, len(alphas), strategy, memory_gb)
    batches = [slice(start, min(start + size, n_vertices)) for start in range(0, n_vertices, size)]
    runner = _DaskRunner(client, problem) if client is not None else _SerialRunner(problem)
    profile: dict = {}

    start = time.perf_counter()
    # curves: (n_candidates, n_alphas, n_vertices)
    curves = runner.score(candidates, Y, batches, alphas, strategy, progress, profile)
    profile["search_seconds"] = time.perf_counter() - start
    best_alpha_index = curves.argmax(axis=1)
    cv_scores = np.take_along_axis(curves, best_alpha_index[:, None, :], axis=1)[:, 0]
    best_candidate = cv_scores.argmax(axis=0)
    columns = np.arange(n_vertices)
    best_alpha = alphas[best_alpha_index[best_candidate, columns]]

    start = time.perf_counter()
    coef = runner.refit(candidates, Y, best_candidate, best_alpha, size, progress)
    profile["refit_seconds"] = time.perf_counter() - start
    return SearchResult(coef, candidates, best_candidate, best_alpha, cv_scores.astype(np.float32), size, strategy,
                        profile)


# -- task functions (module level: dask pickles them by reference) -----------------------

def _factorize_task(problem: RidgeProblem, gamma: np.ndarray, alphas: np.ndarray, strategy: str):
    return problem.factorize(gamma, alphas, strategy)


def _refit_factorize_task(problem: RidgeProblem, gamma: np.ndarray):
    return problem.factorize_full(gamma)


def _score_task(problem: RidgeProblem, factorization, Y_batch: np.ndarray):
    profile: dict = {}
    scores = problem.cv_scores(factorization, Y_batch, profile)
    b = set_backend(problem.backend, on_error="raise")
    return b.to_numpy(scores), profile


def _refit_task(problem: RidgeProblem, refit, Y_batch: np.ndarray, alphas: np.ndarray):
    b = set_backend(problem.backend, on_error="raise")
    return b.to_numpy(problem.weights(refit, Y_batch, alphas)).astype(np.float32)


def _refit_groups(best_candidate: np.ndarray, size: int):
    """(candidate, vertex indices) chunks of at most ``size`` vertices."""
    for candidate in np.unique(best_candidate):
        vertices = np.flatnonzero(best_candidate == candidate)
        for start in range(0, len(vertices), size):
            yield int(candidate), vertices[start:start + size]


def _merge_profile(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


class _SerialRunner:
    def __init__(self, problem: RidgeProblem):
        self.problem = problem

    def score(self, candidates, Y, batches, alphas, strategy, progress, profile):
        curves = np.empty((len(candidates), len(alphas), Y.shape[1]), dtype=np.float32)
        bar = tqdm(total=len(candidates) * len(batches), desc="banded ridge: search", disable=not progress)
        for index, gamma in enumerate(candidates):
            start = time.perf_counter()
            factorization = _factorize_task(self.problem, gamma, alphas, strategy)
            profile["factorize_seconds"] = profile.get("factorize_seconds", 0.0) + time.perf_counter() - start
            for batch in batches:
                curves[index, :, batch], part = _score_task(self.problem, factorization, Y[:, batch])
                _merge_profile(profile, part)
                bar.update()
            del factorization
        bar.close()
        return curves

    def refit(self, candidates, Y, best_candidate, best_alpha, size, progress):
        coef = np.empty((self.problem.n_features, Y.shape[1]), dtype=np.float32)
        groups = list(_refit_groups(best_candidate, size))
        current, refit = None, None
        for candidate, vertices in tqdm(groups, desc="banded ridge: refit", disable=not progress):
            if candidate != current:
                current, refit = candidate, _refit_factorize_task(self.problem, candidates[candidate])
            coef[:, vertices] = _refit_task(self.problem, refit, Y[:, vertices], best_alpha[vertices])
        return coef


class _DaskRunner:
    """The same tasks on a dask.distributed cluster: the design is broadcast once to every worker,
    each candidate is factorized once, and its factorizations are shared by all vertex batches.

    ``memory_gb`` bounds each task; a worker holds the factorizations of the candidates whose
    batches it is running or has queued (dask releases them when their batches are done).
    """

    def __init__(self, client, problem: RidgeProblem):
        self.client = client
        self.problem = client.scatter(problem, broadcast=True)
        self.n_features = problem.n_features

    def score(self, candidates, Y, batches, alphas, strategy, progress, profile):
        from distributed import as_completed

        client = self.client
        Y_batches = client.scatter([np.ascontiguousarray(Y[:, batch]) for batch in batches])
        futures = {}
        for index, gamma in enumerate(candidates):
            factorization = client.submit(_factorize_task, self.problem, gamma, alphas, strategy, pure=False)
            for batch, Y_batch in zip(batches, Y_batches):
                future = client.submit(_score_task, self.problem, factorization, Y_batch, pure=False)
                futures[future] = (index, batch)
        curves = np.empty((len(candidates), len(alphas), Y.shape[1]), dtype=np.float32)
        with tqdm(total=len(futures), desc="banded ridge: search (dask)", disable=not progress) as bar:
            for future, (scores, part) in as_completed(futures, with_results=True):
                index, batch = futures[future]
                curves[index, :, batch] = scores
                _merge_profile(profile, part)
                bar.update()
        return curves

    def refit(self, candidates, Y, best_candidate, best_alpha, size, progress):
        from distributed import as_completed

        client = self.client
        refits, futures = {}, {}
        for candidate, vertices in _refit_groups(best_candidate, size):
            if candidate not in refits:
                refits[candidate] = client.submit(_refit_factorize_task, self.problem, candidates[candidate],
                                                  pure=False)
            Y_part = client.scatter(np.ascontiguousarray(Y[:, vertices]))
            future = client.submit(_refit_task, self.problem, refits[candidate], Y_part, best_alpha[vertices],
                                   pure=False)
            futures[future] = vertices
        coef = np.empty((self.n_features, Y.shape[1]), dtype=np.float32)
        with tqdm(total=len(futures), desc="banded ridge: refit (dask)", disable=not progress) as bar:
            for future, weights in as_completed(futures, with_results=True):
                coef[:, futures[future]] = weights
                bar.update()
        return coef
