"""Hyperparameter search of banded ridge: band weights on the simplex and a global alpha per vertex.

The search is a list of score jobs, each one band-weight candidate on some validation folds for
some vertices (:class:`ScoreJob`), and the work of a job splits into tasks that a dask cluster can
run as they are:

1. ``factorize`` the job's candidate on its folds (eigendecompositions, ``encoding.ridge.problem``);
2. ``score`` one vertex batch: leave-one-run-out R^2 of every alpha, GEMMs only;
3. pick each vertex's best (candidate, alpha), then ``refit`` the weights on all training runs,
   one task per (candidate, vertex batch).

An exhaustive (``random``) search is one job per candidate, every fold, every vertex. The default
search does less where it can (:func:`search_hyperparameters`): a screen by the equal-weight
candidate, which every search scores anyway, leaves plain ridge to vertices without a
cross-validated signal, and successive halving drops each vertex's weaker candidates after a few
folds (:func:`halving_rounds`).

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

from encoding.config import SEARCHES, STRATEGIES
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
        Mean fold R^2 of each candidate at its best alpha (:class:`SelectionResult`).
    batch_size : int
        Vertices per task (from the memory budget).
    strategy : str
        Cross-validation strategy used (``folds`` or ``hat``).
    searched : ndarray of bool, shape (n_vertices,)
        Vertices that passed the screen and were searched (the others kept the first candidate).
    profile : dict
        Seconds per phase, GEMM seconds and flops of the scoring products, ``evaluations``
        (:class:`SelectionResult`) and ``n_searched``.
    """

    coef: np.ndarray
    candidates: np.ndarray
    best_candidate: np.ndarray
    best_alpha: np.ndarray
    cv_scores: np.ndarray
    batch_size: int
    strategy: str
    searched: np.ndarray
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

    REVISION = "2"  # bump when a change of the solver changes what a task returns

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


HALVING_ETA = 3  # successive halving keeps a third of the candidates of each vertex after each round
SCREEN_SHARE = 3  # the screen's first stage scores every column on a third of the folds


@dataclass(frozen=True)
class ScoreJob:
    """One candidate scored on some validation folds for some vertices (columns of Y)."""

    candidate: int
    folds: tuple[int, ...]
    vertices: np.ndarray

    @property
    def name(self) -> str:
        """Cache name: what the job computes (candidate, folds, vertices)."""
        key = hashlib.sha1(np.ascontiguousarray(self.vertices, dtype=np.int64).tobytes()).hexdigest()[:16]
        return f"score-{self.candidate}-f{'.'.join(map(str, self.folds))}-{key}"


def halving_rounds(n_folds: int, n_candidates: int, search: str, strategy: str) -> list[tuple[tuple[int, ...], int]]:
    """Successive halving's rounds: the folds each round adds and how many candidates survive it.

    The fold budget doubles each round (folds ``[0, 2)``, ``[2, 4)``, ``[4, 8)``, ... up to all of
    them); after each round but the last, every vertex keeps its best third of the candidates
    still searched (at least 2), ranked by their mean R^2 over the folds seen so far. ``random``
    search, or the ``hat`` strategy (one factorization scores every fold at once, so a fold subset
    saves nothing), is one round over every fold.

    Returns
    -------
    list of (folds, survivors)
        ``survivors`` is None for the last round.
    """
    everything = tuple(range(n_folds))
    if search == "random" or strategy == "hat" or n_candidates <= 2 or n_folds <= 2:
        return [(everything, None)]
    edges = [0]
    while edges[-1] < n_folds:
        edges.append(min(n_folds, max(2, 2 * edges[-1])))
    rounds, alive = [], n_candidates
    for first, last in zip(edges[:-1], edges[1:]):
        alive = max(2, -(-alive // HALVING_ETA)) if last < n_folds else None
        rounds.append((everything[first:last], alive))
    return rounds


def screen_folds(n_folds: int, strategy: str) -> tuple[int, ...]:
    """The screen's first stage: the folds on which every column is scored before the others.

    A third of the folds (``[0, n_folds // 3)``, 4 of ds003720's 12 runs); columns whose plain-ridge
    R^2 over them is at most ``min(screen, 0)`` at every alpha (no better than predicting zero)
    are not scored on the other folds. Empty (one stage over every fold) when that is fewer than
    2 folds, or with the ``hat`` strategy, where one factorization scores every fold at once.
    """
    first = n_folds // SCREEN_SHARE
    return tuple(range(first)) if first >= 2 and strategy == "folds" else ()


@dataclass
class SelectionResult:
    """Outcome of :func:`search_hyperparameters`.

    Attributes
    ----------
    best_candidate : ndarray of int, shape (n_columns,)
    best_alpha_index : ndarray of int, shape (n_columns,)
    cv_scores : ndarray, shape (n_candidates, n_columns)
        Mean fold R^2 of each candidate at its best alpha, NaN where the candidate was not scored
        on every fold (screened out, or dropped by successive halving); the first candidate's is
        over the screen's first folds where the screen stopped there.
    searched : ndarray of bool, shape (n_columns,)
        Columns that passed the screen (all of them without one).
    evaluations : float
        Candidate x column x fold scorings done, in units of one candidate scored on every fold
        for one column (an exhaustive search does ``n_candidates * n_columns``).
    """

    best_candidate: np.ndarray
    best_alpha_index: np.ndarray
    cv_scores: np.ndarray
    searched: np.ndarray
    evaluations: float


def search_hyperparameters(runner, n_folds: int, Y: np.ndarray, alphas: np.ndarray, candidates: np.ndarray,
                           strategy: str, search: str = "random", screen: float | None = None,
                           progress: bool = True, profile: dict | None = None) -> SelectionResult:
    """Choose each column's band weights and alpha by leave-one-run-out R^2.

    1. **Screen** (``screen`` not None): the first candidate (equal weights, plain ridge) is
       scored on the first third of the folds for every column (:func:`screen_folds`), then on
       the others for the columns whose best R^2 there is above ``min(screen, 0)``; columns whose
       best CV R^2 over every fold is at most ``screen`` (or that stopped at the first folds)
       keep it, and only the others are searched further.
    2. **Search** the other candidates on the columns that passed: all of them on every fold
       (``random``), or by successive halving (``halving``, :func:`halving_rounds`).
    3. Each column takes the candidate (among those scored on every fold) and alpha with the
       highest mean fold R^2, the first one on ties; a column the screen stopped at its first
       folds takes the alpha best over those.

    Parameters
    ----------
    runner : SerialRunner or DaskRunner
        Runs the score jobs.
    n_folds : int
    Y : ndarray, shape (n_samples, n_columns)
    alphas : ndarray, shape (n_alphas,)
    candidates : ndarray, shape (n_candidates, n_bands)
    strategy : {"folds", "hat"}
    search : {"random", "halving"}
    screen : float or None
        CV R^2 at or below which a column keeps plain ridge.
    progress : bool
    profile : dict, optional
        Receives GEMM seconds and flops.

    Returns
    -------
    SelectionResult
    """
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}.")
    n_candidates, n_columns = len(candidates), Y.shape[1]
    profile = {} if profile is None else profile
    rounds = halving_rounds(n_folds, n_candidates, search, strategy)
    sums = np.zeros((n_candidates, len(alphas), n_columns), dtype=np.float32)  # R^2 summed over folds seen
    seen = np.zeros((n_candidates, n_columns), dtype=np.int32)  # folds seen
    columns = np.arange(n_columns)
    evaluations = 0.0

    def run(jobs: list[ScoreJob]) -> None:
        nonlocal evaluations
        for job, scores in zip(jobs, runner.score(jobs, candidates, Y, alphas, strategy, progress, profile)):
            sums[job.candidate][:, job.vertices] += scores * np.float32(len(job.folds))
            seen[job.candidate, job.vertices] += len(job.folds)
            evaluations += len(job.folds) * len(job.vertices) / n_folds

    searched = np.ones(n_columns, dtype=bool)
    first = 0
    if screen is not None or search == "halving":  # candidate 0 for every column first
        early = screen_folds(n_folds, strategy) if screen is not None else ()
        if early:  # the screen's first folds for every column, the others only where it scored above zero there
            run([ScoreJob(0, early, columns)])
            stays = sums[0].max(axis=0) / np.float32(len(early)) > min(screen, 0.0)
            run([ScoreJob(0, tuple(f for f in range(n_folds) if f not in early), columns[stays])])
        else:
            run([ScoreJob(0, tuple(range(n_folds)), columns)])
        first = 1
        if screen is not None:
            searched = (seen[0] == n_folds) & (sums[0].max(axis=0) / np.float32(n_folds) > screen)
    alive = np.zeros((n_candidates, n_columns), dtype=bool)
    alive[first:, searched] = True
    for folds, survivors in rounds:
        jobs = [ScoreJob(c, folds, np.flatnonzero(alive[c])) for c in range(first, n_candidates) if alive[c].any()]
        run(jobs)
        if survivors is not None:  # each column keeps its best `survivors` candidates still searched
            with np.errstate(invalid="ignore", divide="ignore"):
                partial = np.where(alive[first:], sums[first:].max(axis=1) / seen[first:], -np.inf)
            rank = np.argsort(np.argsort(-partial, axis=0, kind="stable"), axis=0, kind="stable")
            alive[first:] &= rank < survivors
    complete = seen == n_folds
    complete[0] |= seen[0] > 0  # the screen's model is every column's, over the folds it was scored on
    curves = np.where(complete[:, None, :], sums / np.maximum(seen, 1).astype(np.float32)[:, None, :], -np.inf)
    alpha_index = curves.argmax(axis=1)
    cv_scores = np.take_along_axis(curves, alpha_index[:, None, :], axis=1)[:, 0]
    best_candidate = cv_scores.argmax(axis=0)
    cv_scores = np.where(complete, cv_scores, np.nan).astype(np.float32)
    return SelectionResult(best_candidate, alpha_index[best_candidate, columns], cv_scores, searched, evaluations)


def fit_banded_ridge(problem: RidgeProblem, Y: np.ndarray, alphas, candidates: np.ndarray,
                     memory_gb: float = 2.0, strategy: str = "auto", client=None,
                     cache: str | Path | None = None, progress: bool = True, search: str = "random",
                     screen: float | None = None) -> SearchResult:
    """Search band weights and alphas by cross-validation, then refit every vertex.

    Parameters
    ----------
    problem : RidgeProblem
    Y : ndarray, shape (n_samples, n_vertices)
    alphas : array-like, shape (n_alphas,)
        Global regularisation grid (ascending).
    candidates : ndarray, shape (n_candidates, n_bands)
        Band weights (``band_weight_candidates``); the first is the screen's (equal weights).
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
    search : {"random", "halving"}
        Every candidate on every fold, or successive halving (:func:`search_hyperparameters`).
    screen : float or None
        Vertices whose CV R^2 with the first candidate is at most this keep it; None searches all.

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
    store = FitCache(cache, problem, Y, alphas, candidates, strategy, size) if cache else None
    runner = DaskRunner(client, problem, size, store) if client is not None else SerialRunner(problem, size, store)
    profile: dict = {}

    start = time.perf_counter()
    chosen = search_hyperparameters(runner, len(problem.folds), Y, alphas, candidates, strategy, search, screen,
                                    progress, profile)
    profile["search_seconds"] = time.perf_counter() - start
    profile["evaluations"] = chosen.evaluations
    profile["n_searched"] = int(chosen.searched.sum())
    best_alpha = alphas[chosen.best_alpha_index]

    start = time.perf_counter()
    coef = runner.refit(candidates, Y, chosen.best_candidate, best_alpha, progress)
    profile["refit_seconds"] = time.perf_counter() - start
    if store is not None:
        profile["cached_tasks"] = store.hits
    return SearchResult(coef, candidates, chosen.best_candidate, best_alpha, chosen.cv_scores, size, strategy,
                        chosen.searched, profile)


# -- task functions (module level: dask pickles them by reference) -----------------------

def _factorize_task(problem: RidgeProblem, gamma: np.ndarray, alphas: np.ndarray, strategy: str, folds):
    return problem.factorize(gamma, alphas, strategy, folds)


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


def _batch_name(job: ScoreJob, start: int) -> str:
    return f"{job.name}-{start}"


def _refit_name(candidate: int, vertices: np.ndarray, alphas: np.ndarray) -> str:
    """A refit task is named by what it fits: the candidate, the vertices and their alphas."""
    key = hashlib.sha1(np.ascontiguousarray(vertices, dtype=np.int64).tobytes()
                       + np.ascontiguousarray(alphas, dtype=np.float64).tobytes()).hexdigest()[:16]
    return f"refit-{candidate}-{key}"


class SerialRunner:
    """Runs score and refit tasks here, in order, in vertex batches of ``size``.

    Parameters
    ----------
    problem : RidgeProblem
    size : int
        Vertices (columns) per task.
    cache : FitCache or None
    keep_gb : float
        Keep jobs' factorizations for later calls, up to this much memory (GiB; a permutation null
        scores many chunks of columns with the same candidates); the ones beyond it are made again
        when a later call needs them. 0 keeps none.
    """

    def __init__(self, problem: RidgeProblem, size: int, cache: FitCache | None = None, keep_gb: float = 0.0):
        self.problem = problem
        self.size = size
        self.cache = cache
        self.keep_bytes = keep_gb * 2**30
        self.kept = {}  # (candidate, folds) -> factorization, across calls

    def _factorize(self, candidates, job: ScoreJob, alphas, strategy, profile):
        key = (job.candidate, job.folds)
        if key in self.kept:
            return self.kept[key]
        began = time.perf_counter()
        factorization = _factorize_task(self.problem, candidates[job.candidate], alphas, strategy, job.folds)
        profile["factorize_seconds"] = profile.get("factorize_seconds", 0.0) + time.perf_counter() - began
        if sum(f.nbytes for f in self.kept.values()) + factorization.nbytes <= self.keep_bytes:
            self.kept[key] = factorization
        return factorization

    def _cached(self, task: str):
        return None if self.cache is None else self.cache.load(task)

    def _keep(self, task: str, value: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.save(task, value)

    def score(self, jobs, candidates, Y, alphas, strategy, progress, profile):
        """Mean fold R^2 of each job over its folds, shape (n_alphas, len(job.vertices)) per job."""
        out = []
        bar = tqdm(total=sum(len(j.vertices) for j in jobs), desc="banded ridge: search", unit="vertex",
                   disable=not progress)
        for job in jobs:
            found = np.empty((len(alphas), len(job.vertices)), dtype=np.float32)
            factorization = None
            for start in range(0, len(job.vertices), self.size):
                part = job.vertices[start:start + self.size]
                scores = self._cached(_batch_name(job, start))
                if scores is None:
                    if factorization is None:
                        factorization = self._factorize(candidates, job, alphas, strategy, profile)
                    scores, timing = _score_task(self.problem, factorization, Y[:, part])
                    _merge_profile(profile, timing)
                    self._keep(_batch_name(job, start), scores)
                found[:, start:start + len(part)] = scores
                bar.update(len(part))
            del factorization
            out.append(found)
        bar.close()
        return out

    def refit(self, candidates, Y, best_candidate, best_alpha, progress):
        coef = np.empty((self.problem.n_features, Y.shape[1]), dtype=np.float32)
        groups = list(_refit_groups(best_candidate, self.size))
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


class DaskRunner:
    """The same tasks on a dask.distributed cluster: the design is broadcast once to every worker,
    each job's factorization is made once and shared by all its vertex batches.

    ``memory_gb`` bounds each task; a worker holds the factorizations of the jobs whose batches
    it is running or has queued (dask releases them when their batches are done).
    """

    def __init__(self, client, problem: RidgeProblem, size: int, cache: FitCache | None = None):
        self.client = client
        self.problem = client.scatter(problem, broadcast=True)
        self.n_features = problem.n_features
        self.size = size
        self.local = SerialRunner(problem, size, cache)  # the cache is read and written here, not on the workers

    def score(self, jobs, candidates, Y, alphas, strategy, progress, profile):
        from distributed import as_completed

        client = self.client
        out = [np.empty((len(alphas), len(job.vertices)), dtype=np.float32) for job in jobs]
        futures, held = {}, []  # held: the inputs' futures, kept until their tasks are done
        for index, job in enumerate(jobs):
            factorization = None
            for start in range(0, len(job.vertices), self.size):
                part = job.vertices[start:start + self.size]
                found = self.local._cached(_batch_name(job, start))
                if found is not None:
                    out[index][:, start:start + len(part)] = found
                    continue
                if factorization is None:
                    factorization = client.submit(_factorize_task, self.problem, candidates[job.candidate], alphas,
                                                  strategy, job.folds, pure=False)
                Y_part = client.scatter(np.ascontiguousarray(Y[:, part]))
                held += [factorization, Y_part]
                future = client.submit(_score_task, self.problem, factorization, Y_part, pure=False)
                futures[future] = (index, start, len(part))
        with tqdm(total=len(futures), desc="banded ridge: search (dask)", disable=not progress) as bar:
            for future, (scores, part) in as_completed(futures, with_results=True):
                index, start, width = futures[future]
                out[index][:, start:start + width] = scores
                self.local._keep(_batch_name(jobs[index], start), scores)
                _merge_profile(profile, part)
                bar.update()
        return out

    def refit(self, candidates, Y, best_candidate, best_alpha, progress):
        from distributed import as_completed

        client = self.client
        coef = np.empty((self.n_features, Y.shape[1]), dtype=np.float32)
        refits, futures = {}, {}
        for candidate, vertices in _refit_groups(best_candidate, self.size):
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
