"""Hyperparameter search of banded ridge: band weights on the simplex and a global alpha per vertex.

The work is split into tasks that a dask cluster can run as they are:

1. ``factorize`` one band-weight candidate (its eigendecompositions, ``encoding.ridge.problem``);
2. ``score`` one (candidate, vertex batch): leave-one-run-out R^2 of every alpha, GEMMs only;
3. pick each vertex's best (candidate, alpha), then ``refit`` the weights on all training runs,
   one task per (candidate, vertex batch).

The serial path runs the same tasks in a loop, so both give identical numbers. With a
:class:`FitCache`, every finished task's output is kept on disk, keyed by everything it depends
on, so a fit that was interrupted and started again only runs the tasks that are missing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from himalaya.backend import get_backend
from himalaya.kernel_ridge import generate_dirichlet_samples
from tqdm.auto import tqdm

from encoding.config import STRATEGIES
from encoding.errors import ConfigError
from encoding.ridge.backend import backend_module
from encoding.ridge.problem import RidgeProblem


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
    rest = generate_dirichlet_samples(n_iter - 1, n_bands, list(np.atleast_1d(concentration)), random_state)
    rest = np.asarray(get_backend().to_numpy(rest))  # cast back from whichever backend the caller set
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
    ConfigError (a MemoryError too)
        If even one vertex does not fit; the message gives the memory needed.
    """
    budget = memory_gb * 2**30
    factorization = problem.factorization_nbytes(strategy, n_alphas)
    fixed = problem.design_nbytes() + factorization
    per_vertex = problem.vertex_nbytes(strategy, n_alphas)
    size = int((budget - fixed) // per_vertex)
    if size < 1:
        need = (fixed + per_vertex * min(n_vertices, 256)) / 2**30
        raise MemoryBudgetError(
            f"model.memory_gb = {memory_gb:g} GiB cannot hold the design ({_gib(problem.design_nbytes())}) and one "
            f"candidate's factorization ({_gib(factorization)}, {problem.form} form, {strategy} strategy). "
            f"Raise model.memory_gb to at least {_positional(need)}, or reduce the features (PCA) or the samples."
        )
    return max(1, min(size, n_vertices))


class MemoryBudgetError(ConfigError, MemoryError):
    """The memory budget cannot hold one candidate's factorization."""


def _positional(value: float) -> str:
    """Three significant digits, never in exponent notation (a budget reads as 0.0000123, not 1.23e-05)."""
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def _gib(nbytes: float) -> str:
    return f"{_positional(nbytes / 2**30)} GiB"


class FitCache:
    """Outputs of finished fit tasks on disk: ``folder/<key>/<task>.npy``, each written atomically.

    The key hashes everything a task's output depends on: the design, the runs, the responses,
    the alphas, the candidates, the strategy, the form, the backend and the vertex batch size.

    Parameters
    ----------
    folder : path
    problem : RidgeProblem
    Y : ndarray, shape (n_samples, n_vertices)
    alphas, candidates : ndarray
    strategy : str
    batch_size : int
    """

    REVISION = "1"  # bump when a change of the solver changes what a task returns

    def __init__(self, folder: str | Path, problem: RidgeProblem, Y: np.ndarray, alphas: np.ndarray,
                 candidates: np.ndarray, strategy: str, batch_size: int):
        b = backend_module(problem.backend)
        digest = hashlib.sha1(f"{self.REVISION}|{problem.form}|{problem.backend}|{strategy}|{batch_size}|"
                              f"{[(k, s.start, s.stop) for k, s in problem.bands.items()]}".encode())
        runs = np.unique(np.asarray(problem.groups), return_inverse=True)[1]  # labels of any dtype, as indices
        for array in (b.to_numpy(problem.X), runs, Y, alphas, candidates):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.shape}|{array.dtype.str}|".encode())
            digest.update(array.tobytes())
        self.folder = Path(folder) / digest.hexdigest()[:24]
        self.hits = 0

    def load(self, task: str) -> np.ndarray | None:
        path = self.folder / f"{task}.npy"
        if not path.is_file():
            return None
        self.hits += 1
        return np.load(path)

    def save(self, task: str, value: np.ndarray) -> None:
        from encoding.io import atomic_path

        with atomic_path(self.folder / f"{task}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, value)


def fit_banded_ridge(problem: RidgeProblem, Y: np.ndarray, alphas, candidates: np.ndarray,
                     memory_gb: float = 2.0, strategy: str = "auto", client=None,
                     cache: str | Path | None = None, progress: bool = True) -> SearchResult:
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
    cache : path or None
        Folder where finished tasks are kept (:class:`FitCache`): a fit started again with the
        same inputs after an interruption only runs the missing tasks.
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
    store = FitCache(cache, problem, Y, alphas, candidates, strategy, size) if cache else None
    runner = _DaskRunner(client, problem, store) if client is not None else _SerialRunner(problem, store)
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
    if store is not None:
        profile["cached_tasks"] = store.hits
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
    b = backend_module(problem.backend)
    return b.to_numpy(scores), profile


def _refit_task(problem: RidgeProblem, refit, Y_batch: np.ndarray, alphas: np.ndarray):
    b = backend_module(problem.backend)
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


def _score_name(candidate: int, batch: slice) -> str:
    return f"score-{candidate}-{batch.start}"


def _refit_name(candidate: int, vertices: np.ndarray, alphas: np.ndarray) -> str:
    """A refit task is named by what it fits: the candidate, the vertices and their alphas."""
    key = hashlib.sha1(np.ascontiguousarray(vertices, dtype=np.int64).tobytes()
                       + np.ascontiguousarray(alphas, dtype=np.float64).tobytes()).hexdigest()[:16]
    return f"refit-{candidate}-{key}"


class _SerialRunner:
    def __init__(self, problem: RidgeProblem, cache: FitCache | None = None):
        self.problem = problem
        self.cache = cache

    def _cached(self, task: str):
        return None if self.cache is None else self.cache.load(task)

    def _keep(self, task: str, value: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.save(task, value)

    def score(self, candidates, Y, batches, alphas, strategy, progress, profile):
        curves = np.empty((len(candidates), len(alphas), Y.shape[1]), dtype=np.float32)
        bar = tqdm(total=len(candidates) * len(batches), desc="banded ridge: search", disable=not progress)
        for index, gamma in enumerate(candidates):
            factorization = None
            for batch in batches:
                found = self._cached(_score_name(index, batch))
                if found is None:
                    if factorization is None:
                        start = time.perf_counter()
                        factorization = _factorize_task(self.problem, gamma, alphas, strategy)
                        profile["factorize_seconds"] = (profile.get("factorize_seconds", 0.0)
                                                        + time.perf_counter() - start)
                    found, part = _score_task(self.problem, factorization, Y[:, batch])
                    _merge_profile(profile, part)
                    self._keep(_score_name(index, batch), found)
                curves[index, :, batch] = found
                bar.update()
            del factorization
        bar.close()
        return curves

    def refit(self, candidates, Y, best_candidate, best_alpha, size, progress):
        coef = np.empty((self.problem.n_features, Y.shape[1]), dtype=np.float32)
        groups = list(_refit_groups(best_candidate, size))
        current, refit = None, None
        for candidate, vertices in tqdm(groups, desc="banded ridge: refit", disable=not progress):
            found = self._cached(_refit_name(candidate, vertices, best_alpha[vertices]))
            if found is None:
                if candidate != current:
                    current, refit = candidate, _refit_factorize_task(self.problem, candidates[candidate])
                found = _refit_task(self.problem, refit, Y[:, vertices], best_alpha[vertices])
                self._keep(_refit_name(candidate, vertices, best_alpha[vertices]), found)
            coef[:, vertices] = found
        return coef


class _DaskRunner:
    """The same tasks on a dask.distributed cluster: the design is broadcast once to every worker,
    each candidate is factorized once, and its factorizations are shared by all vertex batches.

    ``memory_gb`` bounds each task; a worker holds the factorizations of the candidates whose
    batches it is running or has queued (dask releases them when their batches are done).
    """

    def __init__(self, client, problem: RidgeProblem, cache: FitCache | None = None):
        self.client = client
        self.problem = client.scatter(problem, broadcast=True)
        self.n_features = problem.n_features
        self.local = _SerialRunner(problem, cache)  # the cache is read and written here, not on the workers

    def score(self, candidates, Y, batches, alphas, strategy, progress, profile):
        from distributed import as_completed

        client = self.client
        curves = np.empty((len(candidates), len(alphas), Y.shape[1]), dtype=np.float32)
        missing = {}
        for index in range(len(candidates)):
            for batch in batches:
                found = self.local._cached(_score_name(index, batch))
                if found is None:
                    missing.setdefault(index, []).append(batch)
                else:
                    curves[index, :, batch] = found
        needed = sorted({(b.start, b.stop) for parts in missing.values() for b in parts})
        Y_batches = dict(zip(needed, client.scatter([np.ascontiguousarray(Y[:, a:b]) for a, b in needed])))
        futures = {}
        for index, parts in missing.items():
            factorization = client.submit(_factorize_task, self.problem, candidates[index], alphas, strategy,
                                          pure=False)
            for batch in parts:
                future = client.submit(_score_task, self.problem, factorization, Y_batches[batch.start, batch.stop],
                                       pure=False)
                futures[future] = (index, batch)
        with tqdm(total=len(futures), desc="banded ridge: search (dask)", disable=not progress) as bar:
            for future, (scores, part) in as_completed(futures, with_results=True):
                index, batch = futures[future]
                curves[index, :, batch] = scores
                self.local._keep(_score_name(index, batch), scores)
                _merge_profile(profile, part)
                bar.update()
        return curves

    def refit(self, candidates, Y, best_candidate, best_alpha, size, progress):
        from distributed import as_completed

        client = self.client
        coef = np.empty((self.n_features, Y.shape[1]), dtype=np.float32)
        refits, futures = {}, {}
        for candidate, vertices in _refit_groups(best_candidate, size):
            found = self.local._cached(_refit_name(candidate, vertices, best_alpha[vertices]))
            if found is not None:
                coef[:, vertices] = found
                continue
            if candidate not in refits:
                refits[candidate] = client.submit(_refit_factorize_task, self.problem, candidates[candidate],
                                                  pure=False)
            Y_part = client.scatter(np.ascontiguousarray(Y[:, vertices]))
            future = client.submit(_refit_task, self.problem, refits[candidate], Y_part, best_alpha[vertices],
                                   pure=False)
            futures[future] = (candidate, vertices)
        with tqdm(total=len(futures), desc="banded ridge: refit (dask)", disable=not progress) as bar:
            for future, weights in as_completed(futures, with_results=True):
                candidate, vertices = futures[future]
                coef[:, vertices] = weights
                self.local._keep(_refit_name(candidate, vertices, best_alpha[vertices]), weights)
                bar.update()
        return coef
