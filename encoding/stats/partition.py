"""Variance partitioning: unique and shared variance of feature spaces from subset models.

Each non-empty subset ``S`` of the feature spaces is fitted alone (its own banded ridge search) and
scored on the test runs: ``R2(S)``. Read as the measure of a union in a Venn diagram, the
variance explained by exactly the spaces in ``T`` and no other (an *atom*) follows by Moebius
inversion: with ``nu(S) = R2(all) - R2(all minus S)`` (what the spaces in ``S`` add together),
``atom(T) = sum_{U subset of T} (-1)^(|T| - |U|) nu(U)``. For two spaces ``a, b``:
``unique(a) = R2(ab) - R2(b)``, ``shared(a, b) = R2(a) + R2(b) - R2(ab)`` (de Heer et al. 2017,
Lescroart et al. 2015).

Negative estimates happen (finite samples, regularisation differing between subset models):
tables keep the raw values; :func:`clip_negative` sets them to zero for maps and shares, and
:func:`unique_bootstrap` tests unique variance against zero with the standard error from a block
bootstrap of the test samples (the predictions are fixed; blocks keep the autocorrelation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

from encoding.scoring import r2_score
from encoding.stats.bootstrap import BlockBootstrap


def subsets(spaces: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``spaces``, smallest first, in the given order within a subset."""
    return [combo for size in range(1, len(spaces) + 1) for combo in combinations(spaces, size)]


def atom_name(atom: tuple[str, ...]) -> str:
    """``unique:a`` for one space, ``shared:a&b`` for several."""
    return f"unique:{atom[0]}" if len(atom) == 1 else "shared:" + "&".join(atom)


def partition_variance(scores: Mapping[tuple[str, ...], np.ndarray], spaces: Sequence[str]
                       ) -> dict[tuple[str, ...], np.ndarray]:
    """Venn atoms of explained variance from the scores of all subset models.

    Parameters
    ----------
    scores : mapping of tuple of str to ndarray, shape (n_vertices,)
        ``R2`` of the model of every non-empty subset (keys as from :func:`subsets`).
    spaces : sequence of str
        All feature spaces (2 or more).

    Returns
    -------
    dict of tuple of str to ndarray, shape (n_vertices,)
        For each non-empty subset ``T``, the variance explained by exactly the spaces in ``T``
        (``(a,)``: unique to ``a``; ``(a, b)``: shared by ``a`` and ``b`` only). The atoms sum to
        ``R2(all)``. Raw estimates: they can be negative.
    """
    spaces = tuple(spaces)
    if len(spaces) < 2:
        raise ValueError("Variance partitioning needs at least two feature spaces.")
    missing = [s for s in subsets(spaces) if s not in scores]
    if missing:
        raise ValueError(f"Scores of subset models {missing} are missing; fit every subset of {spaces}.")
    full = np.asarray(scores[spaces], dtype=np.float64)

    def added(group: tuple[str, ...]) -> np.ndarray:  # nu(S)
        rest = tuple(s for s in spaces if s not in group)
        return full - (np.asarray(scores[rest], dtype=np.float64) if rest else 0.0)

    atoms = {}
    for atom in subsets(spaces):
        atoms[atom] = sum((-1) ** (len(atom) - len(sub)) * added(sub) for sub in subsets(atom))
    return atoms


def clip_negative(atoms: Mapping[tuple[str, ...], np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
    """The documented rule for maps: negative atoms (estimation noise) are shown as zero."""
    return {atom: np.maximum(values, 0.0) for atom, values in atoms.items()}


def fdr_within(p_values: np.ndarray, tested: np.ndarray, method: str = "fdr_bh") -> np.ndarray:
    """FDR-adjusted p-values over the ``tested`` vertices that have a p-value; NaN elsewhere.

    Parameters
    ----------
    p_values : ndarray, shape (n_vertices,)
    tested : ndarray of bool, shape (n_vertices,)
        The family (e.g. the vertices where the full model is significant).
    method : str
        A ``statsmodels.stats.multitest.multipletests`` method (``fdr_bh``: Benjamini-Hochberg).
    """
    from statsmodels.stats.multitest import multipletests

    adjusted = np.full(np.shape(p_values), np.nan)
    keep = np.asarray(tested, bool) & np.isfinite(p_values)
    if keep.any():
        adjusted[keep] = multipletests(np.asarray(p_values)[keep], method=method)[1]
    return adjusted


def unique_bootstrap(Y_test: np.ndarray, predictions: Mapping[tuple[str, ...], np.ndarray], spaces: Sequence[str],
                     n_bootstrap: int = 1000, block_length: int = 10, random_state: int | None = 0
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Block-bootstrap standard errors, intervals and p-values of each space's unique variance.

    A moving-block bootstrap of the test samples (:class:`encoding.stats.bootstrap.BlockBootstrap`;
    the predictions stay fixed), in chunks of vertices.

    Parameters
    ----------
    Y_test : ndarray, shape (n_test, n_vertices)
    predictions : mapping of tuple of str to ndarray, shape (n_test, n_vertices)
        Test predictions of the full model and of each leave-one-space-out model; vertices where
        one is NaN (not fitted, :func:`encoding.pipeline.fit_subset_models`) get NaN results.
    spaces : sequence of str
    n_bootstrap : int
    block_length : int
        Samples per block.
    random_state : int or None

    Returns
    -------
    dict of str to dict
        Per space: ``estimate`` (on all test samples), ``se`` (bootstrap standard error),
        ``ci_low``, ``ci_high`` (95 % percentile interval) and ``p``: one-sided p-value of
        ``unique > 0`` from the bootstrap standard error (``1 - Phi(estimate / se)``), continuous so
        that FDR procedures work at any number of vertices.
    """
    from scipy.stats import norm

    spaces = tuple(spaces)
    Y = np.asarray(Y_test, dtype=np.float64)
    boot = BlockBootstrap(len(Y), n_bootstrap, block_length, random_state)
    out = {space: {key: np.full(Y.shape[1], np.nan) for key in ("estimate", "se", "ci_low", "ci_high", "p")}
           for space in spaces}
    models = [spaces] + [tuple(s for s in spaces if s != space) for space in spaces]
    estimated = np.flatnonzero(np.all([np.isfinite(predictions[m]).all(axis=0) for m in models], axis=0))
    chunk = max(1, int(2**27 // (8 * n_bootstrap * 4)))  # about 128 MiB of replicates at a time
    for first in range(0, estimated.size, chunk):
        columns = estimated[first:first + chunk]
        y = Y[:, columns]
        total_squares = boot.total_squares(y)

        def replicates(model: tuple[str, ...]) -> np.ndarray:  # R^2 of each replicate
            return boot.r2(y, predictions[model][:, columns], total_squares)

        full = replicates(spaces)
        for space in spaces:
            rest = tuple(s for s in spaces if s != space)
            values = full - replicates(rest)
            estimate = r2_score(y, predictions[spaces][:, columns]) - r2_score(y, predictions[rest][:, columns])
            se = values.std(axis=0, ddof=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                p_value = norm.sf(np.where(se > 0, estimate / se, 0.0))
            result = out[space]
            result["estimate"][columns], result["se"][columns], result["p"][columns] = estimate, se, p_value
            result["ci_low"][columns] = np.percentile(values, 2.5, axis=0)
            result["ci_high"][columns] = np.percentile(values, 97.5, axis=0)
    return out
