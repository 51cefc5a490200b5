"""Permutation tests of encoding scores, with nulls that respect autocorrelation.

Two nulls, both of the test-set score of every vertex:

- ``refit`` (default): the training responses are permuted and the model is refitted with each
  vertex's band weights and alpha held at the values chosen on the real data, then scored on the
  untouched test runs (repeating the hyperparameter search per permutation is the naive refit
  that ``benchmarks/inference.py`` times). The refit is cheap because the design's eigendecompositions do not depend on the responses
  (:mod:`encoding.ridge`): vertices that chose the same hyperparameters share a test hat matrix
  ``H`` (n_test x n_train), and the refit on permuted responses ``P Y`` predicts ``H P Y``, so a
  permutation costs one GEMM.
- ``test``: the test responses are permuted against the fixed model's predictions (no refit).

Schemes (within each run): ``blocks`` permutes consecutive blocks of ``block_length`` samples
(default 10 TRs: one 15-s clip at TR 1.5 s, longer than the HRF), ``circular`` shifts the run by a
random offset of at least ``block_length``, ``trs`` permutes single samples (ignores
autocorrelation; kept to show that it is miscalibrated, ``tests/test_stats.py``).

p-values count the observed permutation among the null (``(1 + #{null >= observed}) / (1 + K)``);
family-wise error is controlled with the max statistic over vertices (Westfall & Young 1993,
Nichols & Holmes 2002), on the raw score: valid, though vertices with wider nulls weigh more in
the maximum; false discovery rate with Benjamini-Hochberg or -Yekutieli
(``statsmodels.stats.multitest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from statsmodels.stats.multitest import multipletests
from tqdm.auto import tqdm

from encoding.config import CORRECTIONS, METRICS, NULLS, SCHEMES
from encoding.ridge import RidgeProblem
from encoding.scoring import Scorer


def shortest_permutable_run(scheme: str, block_length: int) -> int:
    """Fewest samples a run needs to be permuted under ``scheme``: two blocks, or a shift of at least
    ``block_length`` either way (one more sample); shorter runs would only ever be left as they are."""
    return {"trs": 2, "blocks": 2 * block_length, "circular": 2 * block_length + 1}[scheme]


def longest_block(scheme: str, n_samples: int) -> int:
    """The largest ``block_length`` with which a run of ``n_samples`` can be permuted (the inverse of
    :func:`shortest_permutable_run`; 0 when none can)."""
    return {"trs": n_samples, "blocks": n_samples // 2, "circular": (n_samples - 1) // 2}[scheme]


def permutation_indices(groups: np.ndarray, scheme: str, block_length: int, rng: np.random.Generator) -> np.ndarray:
    """One permutation of the samples that keeps each run's samples within the run.

    Parameters
    ----------
    groups : ndarray, shape (n_samples,)
        Run of each sample.
    scheme : {"blocks", "circular", "trs"}
    block_length : int
        Samples per block (``blocks``) or the smallest shift (``circular``).
    rng : numpy Generator

    Returns
    -------
    ndarray of int, shape (n_samples,)
        Row ``i`` of the permuted responses is row ``indices[i]`` of the original.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}.")
    if block_length < 1:
        raise ValueError(f"block_length must be at least 1 sample, got {block_length}.")
    groups = np.asarray(groups)
    indices = np.arange(len(groups))
    for run in np.unique(groups):
        members = np.flatnonzero(groups == run)
        n = len(members)
        if n < shortest_permutable_run(scheme, block_length):
            raise ValueError(f"Run {run} has {n} samples: {scheme} permutations with block_length {block_length} need "
                             f"at least {shortest_permutable_run(scheme, block_length)}; use a shorter block_length.")
        if scheme == "trs":
            order = rng.permutation(n)
        elif scheme == "blocks":
            blocks = [np.arange(start, min(start + block_length, n)) for start in range(0, n, block_length)]
            order = np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])
        else:
            order = np.roll(np.arange(n), int(rng.integers(block_length, n - block_length + 1)))
        indices[members] = members[order]
    return indices


@dataclass
class PermutationResult:
    """Observed scores and what the permutations say about them.

    Attributes
    ----------
    observed : ndarray, shape (n_vertices,)
    exceedances : ndarray of int, shape (n_vertices,)
        Permutations whose score reached the observed one.
    null_max : ndarray, shape (n_permutations,)
        Maximum over vertices of each permutation's scores (for FWER).
    null_mean, null_std : ndarray, shape (n_vertices,)
        Moments of each vertex's null.
    n_permutations : int
    statistic : str
        What was tested (``"r2"``, ``"r"``, ``"split_r2:<band>"``).
    settings : dict
        Null, scheme, block length, seed.
    step_down : ndarray, shape (n_vertices,), optional
        Step-down max-statistic FWER p-values (Westfall & Young 1993) when the test computed them
        (:func:`step_down_fwer`); :attr:`p_fwer` then returns them.
    """

    observed: np.ndarray
    exceedances: np.ndarray
    null_max: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    n_permutations: int
    statistic: str
    settings: dict = field(default_factory=dict)
    step_down: np.ndarray | None = None

    @property
    def p_values(self) -> np.ndarray:
        """Uncorrected one-sided p-values, ``(1 + exceedances) / (1 + n_permutations)``."""
        return (1.0 + self.exceedances) / (1.0 + self.n_permutations)

    @property
    def p_fwer(self) -> np.ndarray:
        """Family-wise-error-corrected p-values: step-down when computed, else single-step max statistic."""
        if self.step_down is not None:
            return self.step_down
        exceed = (self.null_max[:, None] >= self.observed[None, :]).sum(axis=0)
        return (1.0 + exceed) / (1.0 + self.n_permutations)

    def p_fdr(self, method: str = "fdr_bh") -> np.ndarray:
        """FDR-adjusted p-values (``fdr_bh``: Benjamini-Hochberg; ``fdr_by``: Benjamini-Yekutieli)."""
        if method not in ("fdr_bh", "fdr_by"):
            raise ValueError(f"method must be 'fdr_bh' or 'fdr_by', got {method!r}.")
        return multipletests(self.p_values, method=method)[1]

    def corrected(self, correction: str = "fwer") -> np.ndarray:
        """p-values under ``correction`` (``fwer``, ``fdr_bh``, ``fdr_by`` or ``none``)."""
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}.")
        if correction == "fwer":
            return self.p_fwer
        if correction == "none":
            return self.p_values
        return self.p_fdr(correction)

    def significant(self, alpha: float = 0.05, correction: str = "fwer") -> np.ndarray:
        """Boolean map of vertices significant at ``alpha`` after ``correction``."""
        return self.corrected(correction) <= alpha

    def thresholded(self, alpha: float = 0.05, correction: str = "fwer") -> np.ndarray:
        """The observed map with non-significant vertices set to NaN."""
        return np.where(self.significant(alpha, correction), self.observed, np.nan)


def step_down_fwer(observed: np.ndarray, null_maps) -> np.ndarray:
    """Step-down max-statistic FWER p-values (Westfall & Young 1993, algorithm 4.1).

    Vertices are taken from the largest observed score down; each is compared with the maximum,
    in every permutation, over itself and the vertices scoring below it only, so vertices already
    declared do not raise the threshold of the others (the single-step max statistic compares
    every vertex with the maximum over all of them: valid, but conservative where much of the map
    carries signal). Adjusted p-values are made monotone. Strong FWER control holds under subset
    pivotality, as for the single-step version.

    Parameters
    ----------
    observed : ndarray, shape (n_vertices,)
    null_maps : iterable of ndarray, shape (n_vertices,)
        Each permutation's scores (a generator keeps memory to one map at a time).

    Returns
    -------
    ndarray, shape (n_vertices,)
    """
    observed = np.asarray(observed, dtype=np.float64)
    order = np.argsort(-observed, kind="stable")
    ranked = observed[order]
    exceed = np.zeros(observed.size)
    k = 0
    for null in null_maps:
        successive = np.maximum.accumulate(np.asarray(null, dtype=np.float64)[order][::-1])[::-1]
        exceed += successive >= ranked
        k += 1
    adjusted = np.maximum.accumulate((1.0 + exceed) / (1.0 + k))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def permutation_test(model, X_train: np.ndarray, Y_train: np.ndarray, groups: np.ndarray, X_test: np.ndarray,
                     Y_test: np.ndarray, n_permutations: int = 1000, null: str = "refit", scheme: str = "blocks",
                     block_length: int = 10, metric: str = "r2", split: bool = False,
                     random_state: int | None = 0, memory_gb: float = 1.0,
                     progress: bool = True) -> dict[str, PermutationResult]:
    """Permutation test of a fitted :class:`~encoding.model.BandedRidgeEncoder`'s test scores.

    Parameters
    ----------
    model : BandedRidgeEncoder
        Fitted on ``X_train, Y_train, groups``.
    X_train, Y_train, groups : ndarray
        Its training data, shapes (n_train, n_features), (n_train, n_vertices), (n_train,).
    X_test, Y_test : ndarray
        Held-out data, shapes (n_test, n_features), (n_test, n_vertices).
    n_permutations : int
    null : {"refit", "test"}
        Permute the training responses and refit (default), or permute the test responses.
    scheme : {"blocks", "circular", "trs"}
    block_length : int
        In samples (TRs).
    metric : {"r2", "r"}
    split : bool
        Also test each band's split R^2 (``refit`` null).
    random_state : int or None
    memory_gb : float
        Bound on the permutations' working memory.
    progress : bool

    Returns
    -------
    dict of str to PermutationResult
        ``"r2"`` (or ``"r"``), plus ``"split_r2:<band>"`` per band when ``split``.
    """
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, got {null!r}.")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}.")
    if split and null != "refit":
        raise ValueError("split R^2 is tested under the refit null; use null='refit'.")
    Y_train = np.asarray(Y_train, dtype=np.float32)
    Y_test = np.asarray(Y_test, dtype=np.float32)
    if null == "refit":
        _check_centred_runs(Y_train, groups)
    rng = np.random.default_rng(random_state)
    settings = dict(null=null, scheme=scheme, block_length=block_length, metric=metric, seed=random_state)
    names = [metric] + ([f"split_r2:{band}" for band in model.band_names_] if split else [])
    observed = [Scorer(Y_test).score(model.predict(X_test), metric)]
    if split:
        observed += list(model.score_split(X_test, Y_test))
    accumulators = [_NullAccumulator(o, n_permutations) for o in observed]

    if null == "test":
        prediction = model.predict(X_test)
        test_groups = np.zeros(len(Y_test), dtype=int)
        everything = np.arange(Y_test.shape[1])
        for k in tqdm(range(n_permutations), desc="permutations (test null)", disable=not progress):
            order = permutation_indices(test_groups, scheme, block_length, rng)
            accumulators[0].add(everything, [k], Scorer(Y_test[order]).score(prediction, metric)[None])
    else:
        orders = np.stack([permutation_indices(groups, scheme, block_length, rng) for _ in range(n_permutations)])
        refit = _RefitNull(model, X_train, groups, X_test)
        chunk = refit.permutations_per_pass(memory_gb, split)
        bar = tqdm(total=len(refit.groups), desc="permutations (refit null, vertex groups)", disable=not progress)
        for vertices, hat in refit.hats(split):
            Y_group = Y_train[:, vertices]
            group_scorer = Scorer(Y_test[:, vertices])
            for first in range(0, n_permutations, chunk):
                ks = range(first, min(first + chunk, n_permutations))
                predictions = refit.predictions(hat, orders[list(ks)], Y_group)  # (k, n_bands, n_test, v)
                accumulators[0].add(vertices, ks, group_scorer.score(predictions.sum(axis=1), metric))
                if split:
                    shares = group_scorer.split_r2(predictions)  # (k, bands, v)
                    for band, accumulator in enumerate(accumulators[1:]):
                        accumulator.add(vertices, ks, shares[:, band])
            bar.update()
        bar.close()
    return {name: accumulator.result(name, settings) for name, accumulator in zip(names, accumulators)}


def _check_centred_runs(Y: np.ndarray, groups: np.ndarray) -> None:
    """Within-run permutations keep each run's mean, so ``X^T P Y`` keeps the between-run covariance
    ``sum_r n_r mean(X_r) mean(Y_r)``: signal would leak into the null unless Y is centred per run."""
    for run in np.unique(groups):
        block = np.asarray(Y[groups == run], dtype=np.float64)
        offset = np.abs(block.mean(axis=0)) / (block.std(axis=0) + 1e-12)
        if offset.max() > 1e-3:
            raise ValueError(
                f"Y_train is not centred within run {run} (largest |mean| / std = {offset.max():.3g}). "
                "Permutations within runs keep run means, which would carry signal into the null: "
                "z-score the responses per run (encoding.design does) before testing."
            )


class _NullAccumulator:
    """Exceedance counts, per-permutation maxima and moments of a null, without keeping every permutation.

    Nulls arrive in pieces: some permutations for some vertices (vertex groups are processed one
    after the other), so the maximum over vertices of each permutation is built up across pieces.
    """

    def __init__(self, observed: np.ndarray, n_permutations: int):
        self.observed = np.asarray(observed, dtype=np.float64)
        self.exceed = np.zeros(self.observed.shape, dtype=np.int64)
        self.total = np.zeros(self.observed.shape)
        self.squares = np.zeros(self.observed.shape)
        self.maxima = np.full(n_permutations, -np.inf)

    def add(self, vertices: np.ndarray, permutations, null: np.ndarray) -> None:
        """``null``: shape (len(permutations), len(vertices))."""
        null = np.asarray(null, dtype=np.float64)
        self.exceed[vertices] += (null >= self.observed[vertices]).sum(axis=0)
        self.total[vertices] += null.sum(axis=0)
        self.squares[vertices] += (null**2).sum(axis=0)
        permutations = np.asarray(permutations)
        self.maxima[permutations] = np.maximum(self.maxima[permutations], null.max(axis=1))

    def result(self, name: str, settings: dict) -> PermutationResult:
        k = len(self.maxima)
        mean = self.total / k
        std = np.sqrt(np.maximum(self.squares / k - mean**2, 0.0))
        return PermutationResult(self.observed, self.exceed, self.maxima, mean, std, k, name, dict(settings))


class _RefitNull:
    """Test predictions of the model refitted on permuted training responses, hyperparameters held.

    Vertices that chose the same band weights ``gamma`` and alpha share a *test hat matrix*
    ``H = X_test M diag(1 / (lam + alpha)) A^T`` (shape (n_test, n_train), one per band for split
    scores), from the full-data factorization of ``gamma``: the model refitted on ``P Y`` predicts
    ``H P Y = H[:, P^-1] Y``. A permutation therefore costs one GEMM of ``n_test x n_train`` by the
    group's responses, and several permutations share it by stacking their column-permuted ``H``.
    """

    def __init__(self, model, X_train: np.ndarray, groups: np.ndarray, X_test: np.ndarray):
        self.problem = RidgeProblem(X_train, groups, model.bands, form=model.form_, backend="numpy")
        self.model = model
        self.X_test = np.asarray(X_test, dtype=np.float32)
        self.n_train = self.problem.n_samples
        keys = np.stack([model.best_candidate_, model.alpha_]).T
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        self.groups = [(int(c), float(a), np.flatnonzero(inverse.ravel() == i)) for i, (c, a) in enumerate(unique)]

    def permutations_per_pass(self, memory_gb: float, split: bool) -> int:
        n_bands = len(self.model.bands) if split else 1
        largest = max(len(v) for _, _, v in self.groups)
        per_permutation = 4 * n_bands * len(self.X_test) * (2 * self.n_train + 2 * largest)  # H copies, outputs
        return int(max(1, min(256, memory_gb * 2**30 // per_permutation)))

    def hats(self, split: bool = True):
        """(vertices, test hat matrices of shape (n_bands, n_test, n_train)) per vertex group; without
        ``split``, one matrix for the whole prediction, shape (1, n_test, n_train)."""
        current, full = None, None
        for candidate, alpha, vertices in self.groups:
            if candidate != current:
                current, full = candidate, self.problem.factorize_full(self.model.candidates_[candidate])
                maps = np.stack([self.X_test[:, cols] @ full.weight_map[cols] for cols in self.model.bands.values()])
            scaled = full.components / (full.eigenvalues + np.float32(alpha))[None, :]  # A diag(1/(lam+alpha))
            hat = maps @ scaled.T  # (n_bands, n_test, n_train)
            yield vertices, hat if split else hat.sum(axis=0, keepdims=True)

    @staticmethod
    def predictions(hat: np.ndarray, orders: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Test predictions of each band for each permutation, shape (n_orders, n_bands, n_test, n_vertices).

        One GEMM for all ``orders``: the permutations move the columns of ``H`` (large groups) or
        the rows of ``Y`` (groups with fewer vertices than ``H`` has rows), whichever is smaller.
        """
        n_bands, n_test, n_train = hat.shape
        k, n_vertices = len(orders), Y.shape[1]
        if n_vertices < n_bands * n_test:
            permuted = Y[orders].transpose(1, 0, 2).reshape(n_train, k * n_vertices)  # (n, k v)
            out = hat.reshape(n_bands * n_test, n_train) @ permuted  # (b t, k v)
            return out.reshape(n_bands, n_test, k, n_vertices).transpose(2, 0, 1, 3)
        inverse = np.argsort(orders, axis=1)
        stacked = np.concatenate([hat[:, :, inv].reshape(n_bands * n_test, n_train) for inv in inverse])
        return (stacked @ Y).reshape(k, n_bands, n_test, n_vertices)
