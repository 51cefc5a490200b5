"""Noise ceilings from repeated test presentations.

``repeats`` arrays have shape (n_repeats, n_samples, n_vertices): the responses to the same
stimulus sequence, presented ``n_repeats`` times (see ``Design.Y_test_repeats``).

- :func:`explainable_variance`: the share of a single presentation's variance that repeats
  share, ``1 - mean_r var(y_r - mean) / mean_r var(y_r)``, with the repeat-number bias correction
  ``EV - (1 - EV) / (n_repeats - 1)`` (as in the voxelwise-modelling tutorials);
- :func:`cc_max`: the highest correlation any model can reach with the mean response (Schoppe et
  al. 2016), from the signal power ``SP = (var(sum_r y_r) - sum_r var(y_r)) / (N (N - 1))``:
  ``CC_max = sqrt(SP / var(mean_r y_r))``; :func:`cc_norm` = ``CC_abs / CC_max``;
- :func:`split_half_reliability`: correlation of the means of two halves of the repeats, stepped
  up to all repeats with the Spearman-Brown formula;
- :func:`bootstrap_ci`: percentile intervals of any of these (moving-block bootstrap of the samples).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from encoding.scoring import correlation_score


def _check(repeats: np.ndarray) -> np.ndarray:
    repeats = np.asarray(repeats, dtype=np.float64)
    if repeats.ndim != 3 or repeats.shape[0] < 2:
        raise ValueError(f"repeats must have shape (n_repeats >= 2, n_samples, n_vertices); got {repeats.shape}.")
    return repeats


def explainable_variance(repeats: np.ndarray, bias_correction: bool = True) -> np.ndarray:
    """Explainable variance of a single presentation, per vertex, shape (n_vertices,)."""
    repeats = _check(repeats)
    residual = repeats - repeats.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = 1 - residual.var(axis=1).mean(axis=0) / repeats.var(axis=1).mean(axis=0)
    if bias_correction:
        ev = ev - (1 - ev) / (repeats.shape[0] - 1)
    return ev


def reliable_vertices(explainable: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Vertex mask of repeatable responses: explainable variance (one presentation) above ``threshold``.

    Parameters
    ----------
    explainable : ndarray, shape (n_vertices,)
        From :func:`explainable_variance`.
    threshold : float
        Share of a single presentation's variance (default 0.1, a common choice in voxelwise
        modelling; NaN counts as unreliable).

    Returns
    -------
    ndarray of bool, shape (n_vertices,)
    """
    return np.nan_to_num(np.asarray(explainable, dtype=np.float64), nan=-np.inf) > threshold


def cc_max(repeats: np.ndarray) -> np.ndarray:
    """Schoppe et al. (2016) maximal correlation with the mean response, per vertex (NaN where no signal power)."""
    repeats = _check(repeats)
    n = repeats.shape[0]
    signal_power = (repeats.sum(axis=0).var(axis=0) - repeats.var(axis=1).sum(axis=0)) / (n * (n - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(signal_power > 0, np.sqrt(signal_power / repeats.mean(axis=0).var(axis=0)), np.nan)


def cc_norm(cc_abs: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    """Normalised correlation ``CC_abs / CC_max`` (NaN where ``CC_max`` is undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(cc_abs) / cc_max(repeats)


def split_half_reliability(repeats: np.ndarray, n_splits: int = 20, seed: int = 0) -> np.ndarray:
    """Spearman-Brown-corrected split-half reliability of the mean response, averaged over random splits."""
    repeats = _check(repeats)
    rng = np.random.default_rng(seed)
    n = repeats.shape[0]
    values = []
    for _ in range(n_splits):
        order = rng.permutation(n)
        a = repeats[order[: n // 2]].mean(axis=0)
        b = repeats[order[n // 2 : 2 * (n // 2)]].mean(axis=0)
        values.append(correlation_score(a, b))
    r = np.mean(values, axis=0)
    factor = n / (n // 2)  # Spearman-Brown: from the mean of n // 2 repeats to the mean of all n
    return factor * r / (1 + (factor - 1) * r)


def bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], repeats: np.ndarray, n_boot: int = 200,
                 level: float = 0.95, block: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``statistic(repeats)`` over a moving-block bootstrap of the samples.

    Blocks of ``block`` consecutive samples (10 TRs = 15 s at TR 1.5 s, longer than the HRF) are
    drawn with replacement, the same blocks for every repeat, so autocorrelation survives within
    blocks and repeats stay distinct (resampling the repeats themselves would duplicate them and
    inflate the explainable variance).

    Returns
    -------
    low, high : ndarray, shape (n_vertices,)
    """
    repeats = _check(repeats)
    rng = np.random.default_rng(seed)
    n_samples = repeats.shape[1]
    block = max(1, min(block, n_samples))
    n_blocks = int(np.ceil(n_samples / block))
    draws = []
    for _ in range(n_boot):
        starts = rng.integers(0, n_samples - block + 1, size=n_blocks)
        index = (starts[:, None] + np.arange(block)).ravel()[:n_samples]
        draws.append(statistic(repeats[:, index]))
    tail = (1 - level) / 2 * 100
    return np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)
