"""Permutation tests of encoding scores, with nulls that respect autocorrelation.

Three nulls, all of the test-set score of every vertex:

- ``refit`` (default): the training responses are permuted and the model is refitted with each
  vertex's band weights and alpha held at the values chosen on the real data, then scored on the
  untouched test runs. The refit is cheap because the design's eigendecompositions do not depend
  on the responses (:mod:`encoding.ridge`): vertices that chose the same hyperparameters share a
  test hat matrix ``H`` (n_test x n_train), and the refit on permuted responses ``P Y`` predicts
  ``H P Y = H[:, P^-1] Y``, so a permutation costs one GEMM.
- ``selection``: the same, with the hyperparameters selected again by the whole cross-validated
  search under every permutation (the selection is part of the null); every candidate's
  factorizations are computed once for all permutations, which are scored together as extra
  columns of the responses (:class:`_SelectionNull`).
- ``test``: the test responses are permuted against the fixed model's predictions (no refit).

Schemes (within each run): ``blocks`` permutes consecutive blocks of ``block_length`` samples
(default 10 TRs: one 15-s clip at TR 1.5 s, longer than the HRF), ``circular`` shifts the run by a
random offset of at least ``block_length``, ``trs`` permutes single samples (ignores
autocorrelation; kept to show that it is miscalibrated, ``tests/test_stats.py``).

Every permutation's null map is kept (:class:`PermutationResult`), so p-values
(``(1 + #{null >= observed}) / (1 + K)``), the family-wise error procedures (single-step and
step-down maximum statistic, Westfall & Young 1993, Nichols & Holmes 2002; TFCE and cluster
inference on the mesh, :mod:`encoding.stats.spatial`) and the false discovery rate
(Benjamini-Hochberg or -Yekutieli, ``statsmodels.stats.multitest``) all come from the same
permutations.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests
from tqdm.auto import tqdm

from encoding.config import CLUSTER_THRESHOLD, CORRECTIONS, FWER_METHODS, METRICS, NULLS, SCHEMES, SPATIAL_METHODS
from encoding.ridge import GemmTimer, RidgeProblem, SerialRunner, batch_size_for, search_hyperparameters
from encoding.scoring import Scorer
from encoding.stats.spatial import MAX_CHUNK_ELEMENTS, SurfaceGraph, cluster_statistics, map_maxima, tfce


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
    """Observed scores, the null maps of every permutation, and the corrections they give.

    Parameters
    ----------
    observed : ndarray, shape (n_vertices,)
    null : ndarray, shape (n_permutations, n_vertices)
        Each permutation's scores (float32).
    statistic : str
        What was tested (``"r2"``, ``"r"``, ``"split_r2:<band>"``, ``"mean"``, ``"t"``).
    settings : dict
        Null, scheme, block length, seed.
    fwer : {"max", "step-down", "tfce", "cluster-mass", "cluster-extent"}
        The procedure of :attr:`p_fwer` (:data:`encoding.config.FWER_METHODS`; see
        :meth:`fwer_p_values`).
    graph : SurfaceGraph or None
        The mesh, for the spatial procedures (:func:`encoding.stats.spatial.fsaverage5_graph`).
    cluster_threshold : float
        Cluster-forming threshold of the cluster procedures, on the standardised statistic
        (3.1: p = 0.001 one-sided were the null normal).
    standardise : bool
        Scale each vertex by its own null (centred on its mean, divided by its standard deviation),
        so that every vertex's null counts the same in the maximum; or (default) divide the
        statistic by one spread pooled over vertices. For test R^2 under the refit null the
        pooled scale is the more powerful: vertices with signal select small alphas, whose nulls
        are the widest, and a vertex's wide, very negative null (an overfitting model) rarely
        reaches the maximum of the raw R^2, but would once centred (``benchmarks/power.py``).
    tested : ndarray of bool, shape (n_vertices,), or None
        The family tested: vertices chosen before the test (on training data only, e.g. those the
        fit's screen searched, :attr:`encoding.model.BandedRidgeEncoder.searched_`). Every
        procedure runs on the family alone (maxima over it; the spatial ones on the mesh restricted
        to it); the other vertices have no null (NaN) and p = 1. None tests every vertex.
    """

    observed: np.ndarray
    null: np.ndarray
    statistic: str
    settings: dict = field(default_factory=dict)
    fwer: str = "step-down"
    graph: SurfaceGraph | None = None
    cluster_threshold: float = CLUSTER_THRESHOLD
    standardise: bool = False
    tested: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.observed = np.asarray(self.observed, dtype=np.float64)
        self.null = np.asarray(self.null, dtype=np.float32)
        if self.null.ndim != 2 or self.null.shape[1] != self.observed.size:
            raise ValueError(f"null must have shape (n_permutations, {self.observed.size}); got {self.null.shape}.")
        if self.tested is not None:
            self.tested = np.asarray(self.tested, dtype=bool)
            if self.tested.shape != self.observed.shape:
                raise ValueError(f"tested must have shape {self.observed.shape}; got {self.tested.shape}.")
        check_fwer_method(self.fwer, self.graph, self.observed.size)

    @property
    def n_permutations(self) -> int:
        return len(self.null)

    @property
    def _family(self) -> np.ndarray | slice:
        """Columns of the tested family."""
        return slice(None) if self.tested is None else np.flatnonzero(self.tested)

    def _scatter(self, values: np.ndarray, fill: float) -> np.ndarray:
        """Family values at their vertices, ``fill`` elsewhere (shape (..., n_vertices))."""
        if self.tested is None:
            return values
        out = np.full(values.shape[:-1] + self.observed.shape, fill, dtype=values.dtype)
        out[..., self.tested] = values
        return out

    @property
    def exceedances(self) -> np.ndarray:
        """Permutations whose score reached the observed one, shape (n_vertices,) (all of them outside
        the tested family)."""
        family = self._family
        found = (self.null[:, family] >= self.observed[family].astype(np.float32)).sum(axis=0)
        return self._scatter(found, self.n_permutations)

    @property
    def null_max(self) -> np.ndarray:
        """Maximum over the tested vertices of each permutation's raw scores, shape (n_permutations,)."""
        return self.null[:, self._family].max(axis=1, initial=-np.inf).astype(np.float64)

    @property
    def p_values(self) -> np.ndarray:
        """Uncorrected one-sided p-values, ``(1 + exceedances) / (1 + n_permutations)``."""
        return (1.0 + self.exceedances) / (1.0 + self.n_permutations)

    def standardised(self) -> tuple[np.ndarray, np.ndarray]:
        """The statistic in units of its permutation distribution's spread.

        With :attr:`standardise`, ``z = (t - m_v) / s_v`` with ``m_v, s_v`` each vertex's mean and
        standard deviation; without (the default), ``z = t / s`` with ``s`` the root mean square
        of the vertices' standard deviations, so that zero stays zero (``R^2 = 0``: no prediction)
        and vertices keep their order. Moments are taken over the observed map and the null maps
        together (a symmetric function of all of them, so the observed map and the null maps stay
        exchangeable and the tests exact); ``z`` is 0 where the spread is 0. The step-down, TFCE and
        cluster procedures work on ``z``: their thresholds are in null standard deviations.

        Returns
        -------
        observed : ndarray, shape (n_vertices,)
        null : ndarray, shape (n_permutations, n_vertices), float32
        """
        z_observed, z_null = self._standardised_family()
        return self._scatter(z_observed, 0.0), self._scatter(z_null, np.float32(0.0))

    def _standardised_family(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`standardised` on the tested family's columns only (moments over the family)."""
        if "standardised" not in self._cache:
            k = self.n_permutations + 1
            null, observed = self.null[:, self._family], self.observed[self._family]
            mean = (null.sum(axis=0, dtype=np.float64) + observed) / k
            squares = np.square(null, dtype=np.float64).sum(axis=0) + observed**2
            variance = np.maximum(squares / k - mean**2, 0.0)
            if self.standardise:
                scale = np.where(variance > 1e-24 * np.maximum(1.0, mean**2), np.sqrt(variance), np.inf)
            else:
                mean = np.zeros_like(mean)
                scale = np.full(mean.shape, np.sqrt(variance.mean()) if variance.mean() > 0 else np.inf)
            z_null = ((null - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
            self._cache["standardised"] = ((observed - mean) / scale, z_null)
        return self._cache["standardised"]

    def fwer_p_values(self, method: str | None = None, progress: bool = False) -> np.ndarray:
        """Family-wise-error-corrected p-values by ``method`` (default: :attr:`fwer`).

        - ``max``: single-step maximum of the raw statistic over vertices (Nichols & Holmes 2002);
          vertices whose null is widest (few effective samples, little regularisation) set the
          threshold for all;
        - ``step-down``: step-down maximum (Westfall & Young 1993) of the statistic of
          :meth:`standardised` (the raw statistic without :attr:`standardise`): vertices already
          declared no longer raise the threshold of the others, so it rejects at least what ``max``
          does on the same statistic. (Min-P would weigh every vertex's null the same too, but with
          a thousand permutations every permutation's smallest p is ``1 / (K + 1)``: it rejects
          nothing.)
        - ``tfce``: the maximum over vertices of each permutation's TFCE map
          (:func:`encoding.stats.spatial.tfce`) of the standardised statistic;
        - ``cluster-mass`` / ``cluster-extent``: clusters of the standardised statistic above
          :attr:`cluster_threshold`, each with the p-value of its mass or extent against the largest
          cluster of each permutation; every vertex of a cluster gets its cluster's p, the others 1.

        All are exact (``(1 + #{k : max_k >= s}) / (1 + K)``) and control the FWER strongly at the
        level of vertices (``max``, ``step-down``) or of clusters (the cluster procedures: a
        significant cluster holds signal somewhere, not at each of its vertices); TFCE's vertex-level
        claims rest on its enhancement of the vertex's own height.

        Returns
        -------
        ndarray, shape (n_vertices,)
        """
        method = self.fwer if method is None else method
        check_fwer_method(method, self.graph, self.observed.size)
        if method not in self._cache:
            self._cache[method] = self._fwer(method, progress)
        return self._cache[method]

    def _fwer(self, method: str, progress: bool) -> np.ndarray:
        k = self.n_permutations
        if self.tested is not None and not self.tested.any():
            return np.ones(self.observed.size)  # an empty family rejects nothing
        if method == "max":
            observed = self.observed[self._family].astype(np.float32).astype(np.float64)  # as stored, like the null
            exceed = (self.null_max[:, None] >= observed[None, :]).sum(axis=0)
            return self._scatter((1.0 + exceed) / (1.0 + k), 1.0)
        z_observed, z_null = self._standardised_family()
        if method == "step-down":
            return self._scatter(step_down_fwer(z_observed, z_null), 1.0)
        graph = self.graph if self.tested is None else self.graph.subgraph(np.flatnonzero(self.tested))
        chunks = range(0, k, max(1, MAX_CHUNK_ELEMENTS // max(1, z_observed.size)))
        bar = tqdm(chunks, desc=f"FWER ({method})", disable=not progress)
        if method == "tfce":
            observed = tfce(z_observed, graph)
            maxima = np.concatenate([tfce(z_null[s:s + chunks.step], graph).max(axis=1) for s in bar])
            p = (1.0 + (maxima[:, None] >= observed[None, :] - 1e-9 * observed[None, :]).sum(axis=0)) / (1.0 + k)
            return self._scatter(p, 1.0)
        which = 1 if method == "cluster-extent" else 2
        observed = cluster_statistics(z_observed, graph, self.cluster_threshold)
        maxima = np.concatenate([self._cluster_maxima(z_null[s:s + chunks.step], graph, which) for s in bar])
        labels, values = observed[0][0], observed[which]
        p_cluster = (1.0 + (maxima[:, None] >= values[None, :] - 1e-9 * np.abs(values[None, :])).sum(axis=0)) / (1.0 + k)
        return self._scatter(np.where(labels >= 0, p_cluster[np.maximum(labels, 0)] if values.size else 1.0, 1.0), 1.0)

    def _cluster_maxima(self, maps: np.ndarray, graph: SurfaceGraph, which: int) -> np.ndarray:
        statistics = cluster_statistics(maps, graph, self.cluster_threshold)
        return map_maxima(statistics[which], statistics[3], len(maps))

    def clusters(self) -> pd.DataFrame:
        """The observed clusters above :attr:`cluster_threshold`, largest first: extent (vertices),
        mass, peak vertex and peak standardised statistic, and the FWER p of the extent and of the mass."""
        check_fwer_method("cluster-mass", self.graph, self.observed.size)
        z_observed, _ = self.standardised()
        labels, extent, mass, _ = cluster_statistics(z_observed, self.graph, self.cluster_threshold)
        labels = labels[0]
        p_extent, p_mass = self.fwer_p_values("cluster-extent"), self.fwer_p_values("cluster-mass")
        rows = []
        for cluster in range(extent.size):
            members = np.flatnonzero(labels == cluster)
            peak = members[np.argmax(z_observed[members])]
            rows.append(dict(cluster=cluster + 1, vertices=int(extent[cluster]), mass=float(mass[cluster]),
                             peak_vertex=int(peak), peak_z=float(z_observed[peak]),
                             p_fwer_extent=float(p_extent[peak]), p_fwer_mass=float(p_mass[peak])))
        table = pd.DataFrame(rows, columns=["cluster", "vertices", "mass", "peak_vertex", "peak_z", "p_fwer_extent",
                                            "p_fwer_mass"])
        return table.sort_values("vertices", ascending=False, ignore_index=True)

    def with_fwer(self, method: str, graph: SurfaceGraph | None = None) -> PermutationResult:
        """The same test with another FWER procedure (the null maps are shared, nothing is recomputed)."""
        return dataclasses.replace(self, fwer=method, graph=self.graph if graph is None else graph)

    @property
    def p_fwer(self) -> np.ndarray:
        """Family-wise-error-corrected p-values by :attr:`fwer`."""
        return self.fwer_p_values()

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


def check_fwer_method(method: str, graph: SurfaceGraph | None, n_vertices: int) -> None:
    """One message for an unknown FWER procedure or a spatial one without a matching mesh."""
    if method not in FWER_METHODS:
        raise ValueError(f"fwer must be one of {FWER_METHODS}, got {method!r}.")
    if method in SPATIAL_METHODS:
        if graph is None:
            raise ValueError(f"fwer = {method!r} needs the mesh the maps live on (graph=SurfaceGraph, e.g. "
                             "encoding.stats.spatial.fsaverage5_graph()); use 'step-down' for maps without one.")
        if graph.n_vertices != n_vertices:
            raise ValueError(f"The graph has {graph.n_vertices:,} vertices but the maps {n_vertices:,}.")


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
    null_maps : ndarray, shape (n_permutations, n_vertices), or iterable of ndarray, shape (n_vertices,)
        Each permutation's scores.

    Returns
    -------
    ndarray, shape (n_vertices,)
    """
    observed = np.asarray(observed, dtype=np.float64)
    order = np.argsort(-observed, kind="stable")
    ranked = observed[order]
    exceed = np.zeros(observed.size)
    k = 0
    if isinstance(null_maps, np.ndarray):
        null_maps = np.atleast_2d(null_maps)
        chunks = (null_maps[s:s + 256] for s in range(0, len(null_maps), 256))
    else:
        chunks = (np.asarray(null)[None] for null in null_maps)
    for chunk in chunks:
        ordered = np.asarray(chunk, dtype=np.float64)[:, order][:, ::-1]
        successive = np.maximum.accumulate(ordered, axis=1)[:, ::-1]
        exceed += (successive >= ranked).sum(axis=0)
        k += len(chunk)
    adjusted = np.maximum.accumulate((1.0 + exceed) / (1.0 + k))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def permutation_test(model, X_train: np.ndarray, Y_train: np.ndarray, groups: np.ndarray, X_test: np.ndarray,
                     Y_test: np.ndarray, n_permutations: int = 1000, null: str = "refit", scheme: str = "blocks",
                     block_length: int = 10, metric: str = "r2", split: bool = False,
                     random_state: int | None = 0, memory_gb: float = 1.0, fwer: str = "step-down",
                     graph: SurfaceGraph | None = None, cluster_threshold: float = CLUSTER_THRESHOLD,
                     standardise: bool = False, tested: np.ndarray | None = None,
                     progress: bool = True, profile: dict | None = None) -> dict[str, PermutationResult]:
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
    null : {"refit", "selection", "test"}
        Permute the training responses and refit with the hyperparameters held (default) or
        selected again by the whole cross-validated search (``selection``), or permute the test
        responses against the fixed model (``test``).
    scheme : {"blocks", "circular", "trs"}
    block_length : int
        In samples (TRs).
    metric : {"r2", "r"}
    split : bool
        Also test each band's split R^2 (``refit`` and ``selection`` nulls).
    random_state : int or None
    memory_gb : float
        Bound on the permutations' working memory (the null maps kept, ``4 n_permutations
        n_vertices`` bytes per statistic, come on top); the selection null also keeps candidates'
        factorizations for all its chunks of permutations up to this much.
    fwer, graph, cluster_threshold, standardise
        FWER procedure of the results, the mesh the spatial procedures need, and how the
        statistic is scaled (:class:`PermutationResult`); every procedure can be had afterwards from the same null
        maps (:meth:`PermutationResult.with_fwer`).
    tested : ndarray of bool, shape (n_vertices,), or None
        The family to test, chosen on training data only (the vertices the fit's screen searched,
        ``model.searched_``); only its vertices are permuted, the others get p = 1
        (:attr:`PermutationResult.tested`). None tests every vertex.
    progress : bool
    profile : dict, optional
        Filled, for the refit null, with its ``seconds``, the ``gemm_seconds`` and ``gemm_flops``
        of its products (test hat matrices and predictions) and the ``score_seconds`` of scoring
        the predictions: ``gemm_flops / seconds`` against the machine's GEMM rate is the fraction
        of GEMM peak the null runs at (``benchmarks/subject.py``).

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
    if split and null == "test":
        raise ValueError("split R^2 is tested under a refitted null; use null='refit' or 'selection'.")
    Y_train = np.asarray(Y_train, dtype=np.float32)
    Y_test = np.asarray(Y_test, dtype=np.float32)
    check_fwer_method(fwer, graph, Y_test.shape[1])
    if null != "test":
        _check_centred_runs(Y_train, groups)
    if tested is not None:
        tested = np.asarray(tested, dtype=bool)
        if tested.shape != (Y_test.shape[1],):
            raise ValueError(f"tested must be a mask of shape ({Y_test.shape[1]},), got {tested.shape}.")
    family = np.arange(Y_test.shape[1]) if tested is None else np.flatnonzero(tested)
    rng = np.random.default_rng(random_state)
    settings = dict(null=null, scheme=scheme, block_length=block_length, metric=metric, seed=random_state,
                    n_tested=int(family.size))
    names = [metric] + ([f"split_r2:{band}" for band in model.band_names_] if split else [])
    observed = [Scorer(Y_test).score(model.predict(X_test), metric)]
    if split:
        observed += list(model.score_split(X_test, Y_test))
    collectors = [_NullCollector(o, n_permutations, family) for o in observed]
    Y_train, Y_test = Y_train[:, family], Y_test[:, family]  # the family only, from here on

    if null == "test":
        prediction = model.predict(X_test)[:, family]
        test_groups = np.zeros(len(Y_test), dtype=int)
        everything = np.arange(family.size)
        for k in tqdm(range(n_permutations), desc="permutations (test null)", disable=not progress):
            order = permutation_indices(test_groups, scheme, block_length, rng)
            collectors[0].add(everything, [k], Scorer(Y_test[order]).score(prediction, metric)[None])
    elif null == "selection":
        orders = np.stack([permutation_indices(groups, scheme, block_length, rng) for _ in range(n_permutations)])
        _SelectionNull(model, X_train, groups, X_test, memory_gb).run(Y_train, Y_test, orders, metric, split,
                                                                       collectors, progress)
    else:
        orders = np.stack([permutation_indices(groups, scheme, block_length, rng) for _ in range(n_permutations)])
        start, scoring = time.perf_counter(), 0.0
        refit = _RefitNull(model, X_train, groups, X_test, family)
        chunk = refit.permutations_per_pass(memory_gb, split)
        bar = tqdm(total=len(refit.groups), desc="permutations (refit null, vertex groups)", disable=not progress)
        for vertices, hat in refit.hats(split):
            Y_group = Y_train[:, vertices]
            group_scorer = Scorer(Y_test[:, vertices])
            for first in range(0, n_permutations, chunk):
                ks = range(first, min(first + chunk, n_permutations))
                predictions = refit.predictions(hat, orders[list(ks)], Y_group)  # (k, n_bands, n_test, v)
                scored = time.perf_counter()
                score, shares = group_scorer.band_scores(predictions, metric, split)  # (k, v), (k, bands, v)
                scoring += time.perf_counter() - scored
                collectors[0].add(vertices, ks, score)
                for band, collector in enumerate(collectors[1:]):
                    collector.add(vertices, ks, shares[:, band])
            bar.update()
        bar.close()
        if profile is not None:
            profile.update(seconds=time.perf_counter() - start, gemm_seconds=refit.timer.seconds,
                           gemm_flops=refit.timer.flops, score_seconds=scoring)
    return {name: dataclasses.replace(collector.result(name, settings), fwer=fwer, graph=graph,
                                      cluster_threshold=cluster_threshold, standardise=standardise, tested=tested)
            for name, collector in zip(names, collectors)}


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


class _NullCollector:
    """The null maps of a test, filled in pieces: some permutations for some vertices (vertex groups
    are processed one after the other). Vertices are numbered within the tested ``family``
    (indices of the maps' vertices); the others keep NaN."""

    def __init__(self, observed: np.ndarray, n_permutations: int, family: np.ndarray):
        self.observed = np.asarray(observed, dtype=np.float64)
        self.family = np.asarray(family)
        self.null = np.full((n_permutations, self.observed.size), np.nan, dtype=np.float32)

    def add(self, vertices: np.ndarray, permutations, null: np.ndarray) -> None:
        """``null``: shape (len(permutations), len(vertices))."""
        self.null[np.ix_(np.asarray(permutations), self.family[np.asarray(vertices)])] = null

    def put(self, permutations: np.ndarray, vertices: np.ndarray, values: np.ndarray) -> None:
        """One value per (permutation, vertex) pair; all three of shape (n_pairs,)."""
        self.null[permutations, self.family[vertices]] = values

    def result(self, name: str, settings: dict) -> PermutationResult:
        return PermutationResult(self.observed, self.null, name, dict(settings))


class _RefitNull:
    """Test predictions of the model refitted on permuted training responses, hyperparameters held.

    Vertices that chose the same band weights ``gamma`` and alpha share a *test hat matrix*
    ``H = X_test M diag(1 / (lam + alpha)) A^T`` (shape (n_test, n_train), one per band for split
    scores), from the full-data factorization of ``gamma``: the model refitted on ``P Y`` predicts
    ``H P Y = H[:, P^-1] Y``. A permutation therefore costs one GEMM of ``n_test x n_train`` by the
    group's responses, and several permutations share it by stacking their column-permuted ``H``.
    """

    def __init__(self, model, X_train: np.ndarray, groups: np.ndarray, X_test: np.ndarray, family: np.ndarray):
        self.problem = RidgeProblem(X_train, groups, model.bands, form=model.form_, backend="numpy")
        self.model = model
        self.X_test = np.asarray(X_test, dtype=np.float32)
        self.n_train = self.problem.n_samples
        keys = np.stack([model.best_candidate_[family], model.alpha_[family]]).T  # groups index the family
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        self.groups = [(int(c), float(a), np.flatnonzero(inverse.ravel() == i)) for i, (c, a) in enumerate(unique)]
        self.timer = GemmTimer()  # the products below: hat matrices and predictions

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
            with self.timer(2 * maps.shape[0] * maps.shape[1] * scaled.shape[0] * scaled.shape[1]):
                hat = maps @ scaled.T  # (n_bands, n_test, n_train)
            yield vertices, hat if split else hat.sum(axis=0, keepdims=True)

    def predictions(self, hat: np.ndarray, orders: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Test predictions of each band for each permutation, shape (n_orders, n_bands, n_test, n_vertices).

        One GEMM for all ``orders``: the permutations move the columns of ``H`` (large groups) or
        the rows of ``Y`` (groups with fewer vertices than ``H`` has rows), whichever is smaller.
        """
        n_bands, n_test, n_train = hat.shape
        k, n_vertices = len(orders), Y.shape[1]
        flops = 2 * k * n_bands * n_test * n_train * n_vertices
        if n_vertices < n_bands * n_test:
            permuted = Y[orders].transpose(1, 0, 2).reshape(n_train, k * n_vertices)  # (n, k v)
            with self.timer(flops):
                out = hat.reshape(n_bands * n_test, n_train) @ permuted  # (b t, k v)
            return out.reshape(n_bands, n_test, k, n_vertices).transpose(2, 0, 1, 3)
        inverse = np.argsort(orders, axis=1)
        stacked = np.concatenate([hat[:, :, inv].reshape(n_bands * n_test, n_train) for inv in inverse])
        with self.timer(flops):
            out = stacked @ Y
        return out.reshape(k, n_bands, n_test, n_vertices)


class _SelectionNull:
    """The refit null with the hyperparameters selected again under every permutation.

    The whole cross-validated search of the fit (its band-weight candidates, alphas, strategy,
    screen and successive halving) runs on each permuted ``P Y``; what depends on the design, every candidate's factorizations,
    is computed once for all permutations (the responses enter only through GEMMs,
    :mod:`encoding.ridge.problem`), and the permutations are stacked as extra columns of the
    responses, so a candidate's scoring of all permutations is a few large GEMMs. Each
    (permutation, vertex) keeps its best (candidate, alpha) by the fit's rule (the first maximum);
    the test predictions then come from each candidate's full-data factorization,
    ``X_test M diag(1 / (lam + alpha)) A^T P Y``.
    """

    def __init__(self, model, X_train: np.ndarray, groups: np.ndarray, X_test: np.ndarray, memory_gb: float):
        self.problem = RidgeProblem(X_train, groups, model.bands, form=model.form_, backend="numpy")
        self.bands = list(model.bands.values())
        self.alphas = np.sort(np.asarray(model.alphas, dtype=np.float64))
        self.candidates = model.candidates_
        self.strategy = model.strategy_
        self.search, self.screen = model.search, model.screen
        self.X_test = np.asarray(X_test, dtype=np.float32)
        self.memory_gb = memory_gb
        self.columns = batch_size_for(self.problem, 2**31, len(self.alphas), self.strategy, memory_gb)
        self.runner = SerialRunner(self.problem, self.columns, keep_gb=memory_gb)

    def select(self, Y: np.ndarray, orders: np.ndarray, progress: bool):
        """Best candidate and alpha of every (permutation, vertex), shapes (n_permutations, n_vertices).

        The fit's own search (:func:`encoding.ridge.search.search_hyperparameters`: its screen and
        successive halving) runs on chunks of stacked permuted columns; factorizations are made
        once and kept for all chunks up to ``memory_gb`` (those beyond are made again per chunk).
        """
        k, (n, n_vertices) = len(orders), Y.shape
        candidate = np.zeros((k, n_vertices), dtype=np.int32)
        alpha = np.zeros((k, n_vertices), dtype=np.int32)
        state = 4 * (len(self.candidates) * (len(self.alphas) + 1) + 2 * n)  # search state and stacked Y, per column
        depth = int(max(1, min(k, self.memory_gb * 2**30 // (state * n_vertices))))
        for first in tqdm(range(0, k, depth), desc="permutations (selection null: search)", disable=not progress):
            ks = np.arange(first, min(first + depth, k))
            stacked = Y[orders[ks]].transpose(1, 0, 2).reshape(n, -1)  # (n, permutations x vertices)
            chosen = search_hyperparameters(self.runner, len(self.problem.folds), stacked, self.alphas,
                                            self.candidates, self.strategy, self.search, self.screen, progress=False)
            candidate[ks] = chosen.best_candidate.reshape(len(ks), n_vertices)
            alpha[ks] = chosen.best_alpha_index.reshape(len(ks), n_vertices)
        return candidate, alpha

    def run(self, Y: np.ndarray, Y_test: np.ndarray, orders: np.ndarray, metric: str, split: bool,
            collectors: list, progress: bool) -> None:
        """Fill ``collectors`` (the test score, then each band's split R^2) for every permutation."""
        candidate, alpha = self.select(Y, orders, progress)
        for index in tqdm(np.unique(candidate), desc="permutations (selection null: test scores)",
                          disable=not progress):
            full = self.problem.factorize_full(self.candidates[index])
            maps = np.stack([self.X_test[:, cols] @ full.weight_map[cols] for cols in self.bands])  # (b, t, q)
            if not split:
                maps = maps.sum(axis=0, keepdims=True)
            ks, vertices = np.nonzero(candidate == index)
            for start in range(0, ks.size, self.columns):
                k, v = ks[start:start + self.columns], vertices[start:start + self.columns]
                responses = Y[orders[k], v[:, None]].T  # (n, pairs): column j is permutation k[j] of vertex v[j]
                Z = full.components.T @ responses / (full.eigenvalues[:, None]
                                                     + self.alphas[alpha[k, v]].astype(np.float32)[None, :])
                predictions = maps @ Z  # (b, t, pairs)
                score, shares = Scorer(Y_test[:, v]).band_scores(predictions, metric, split)  # (pairs,), (b, pairs)
                collectors[0].put(k, v, score)
                for band, collector in enumerate(collectors[1:]):
                    collector.put(k, v, shares[band])
