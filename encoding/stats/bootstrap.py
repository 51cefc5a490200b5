"""Moving-block bootstrap of test samples, and ROI summaries with bootstrap intervals.

The predictions stay fixed; the test samples are resampled in blocks (``n // block_length`` blocks
and one shorter block, ``n`` samples in all) so that intervals keep the responses' autocorrelation.
Every sum an R^2 needs is a sum of block sums, so all replicates come from matrix products of
block counts by block sums (no resampled copies of the data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from encoding.scoring import r2_from_sums, r2_score


class BlockBootstrap:
    """Block counts of ``n_bootstrap`` moving-block resamples of ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
    n_bootstrap : int
    block_length : int
        Samples per block (at most ``n_samples``).
    random_state : int or None
    """

    def __init__(self, n_samples: int, n_bootstrap: int = 1000, block_length: int = 10,
                 random_state: int | None = 0):
        self.n_samples = n = int(n_samples)
        self.block_length = length = min(int(block_length), n)
        n_full, self.tail = divmod(n, length)  # full blocks, then one shorter block: n samples exactly
        rng = np.random.default_rng(random_state)
        self.full_counts = np.zeros((n_bootstrap, n - length + 1))
        self.tail_counts = np.zeros((n_bootstrap, n - self.tail + 1)) if self.tail else None
        for b in range(n_bootstrap):
            np.add.at(self.full_counts[b], rng.integers(0, self.full_counts.shape[1], n_full), 1.0)
            if self.tail:
                self.tail_counts[b, rng.integers(0, self.tail_counts.shape[1])] += 1.0

    @property
    def n_bootstrap(self) -> int:
        return len(self.full_counts)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Column sums of every resample, shape (n_bootstrap, n_columns), of ``values`` (n_samples, n_columns)."""
        cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
        length = self.block_length
        out = self.full_counts @ (cumulative[length:] - cumulative[:-length])
        if self.tail:
            out += self.tail_counts @ (cumulative[self.tail:] - cumulative[:-self.tail])
        return out

    def total_squares(self, Y: np.ndarray) -> np.ndarray:
        """Sums of squares about the full sample's mean of each column in every resample, (n_bootstrap, n_columns).

        The mean stays the full sample's, as the predictions stay fixed: centring each resample on
        its own mean would shrink its variance by about one block's share and bias every
        replicate's R^2 down (by about ``(1 - R^2) block_length / n``).
        """
        Y = np.asarray(Y, dtype=np.float64)
        return self.sums((Y - Y.mean(axis=0)) ** 2)

    def r2(self, Y: np.ndarray, prediction: np.ndarray, total_squares: np.ndarray | None = None) -> np.ndarray:
        """R^2 of each column in every resample, shape (n_bootstrap, n_columns).

        ``total_squares`` (from :meth:`total_squares`) saves recomputing them for several predictions.
        """
        Y = np.asarray(Y, dtype=np.float64)
        total_squares = self.total_squares(Y) if total_squares is None else total_squares
        return r2_from_sums(self.sums((Y - prediction) ** 2), total_squares, self.n_samples)


def roi_intervals(Y_test: np.ndarray, predictions: Mapping[tuple[str, ...], np.ndarray], spaces: Sequence[str],
                  masks: Mapping[str, np.ndarray], n_bootstrap: int = 1000, block_length: int = 10,
                  random_state: int | None = 0, level: float = 0.95) -> pd.DataFrame:
    """ROI means of the test R^2 and of each space's unique variance, with block-bootstrap intervals.

    Each replicate resamples the test samples once for all vertices, so an ROI's interval is that
    of its mean (the vertices' dependence included), not of independent vertices.

    Parameters
    ----------
    Y_test : ndarray, shape (n_test, n_vertices)
    predictions : mapping of tuple of str to ndarray, shape (n_test, n_vertices)
        The full model's test prediction under ``tuple(spaces)``; with the leave-one-space-out
        models' predictions too, unique variance gets intervals (over the ROI's vertices where
        they are not NaN; NaN for an ROI without any).
    spaces : sequence of str
    masks : mapping of str to ndarray of bool, shape (n_vertices,)
        The ROIs (empty ones are left out).
    n_bootstrap, block_length, random_state
        As in :class:`BlockBootstrap`.
    level : float
        Coverage of the percentile intervals.

    Returns
    -------
    DataFrame
        Indexed by ROI: ``test_r2``, ``test_r2_ci_low``, ``test_r2_ci_high`` and, per space with
        its leave-one-out prediction, ``unique_<space>`` with ``_ci_low`` / ``_ci_high``.
    """
    spaces = tuple(spaces)
    masks = {name: np.asarray(mask, bool) for name, mask in masks.items() if np.any(mask)}
    if not masks:
        return pd.DataFrame()
    columns = np.flatnonzero(np.any(list(masks.values()), axis=0))
    members = np.stack([mask[columns] for mask in masks.values()], axis=1).astype(np.float64)  # (n_columns, n_rois)
    Y = np.asarray(Y_test, dtype=np.float64)[:, columns]
    pred = {model: np.asarray(p, dtype=np.float64)[:, columns] for model, p in predictions.items()}
    boot = BlockBootstrap(len(Y), n_bootstrap, block_length, random_state)
    others = {f"unique_{space}": tuple(s for s in spaces if s != space) for space in spaces}
    tested = {"test_r2": None} | {name: rest for name, rest in others.items() if len(spaces) > 1 and rest in pred}
    tails = 100 * (1 - level) / 2
    total_squares = boot.total_squares(Y)
    full_estimate, full_replicates = r2_score(Y, pred[spaces]), boot.r2(Y, pred[spaces], total_squares)
    out = {}
    for name, rest in tested.items():
        estimate, replicates = full_estimate, full_replicates
        if rest is not None:  # unique variance: the full model's R^2 minus the model without the space
            estimate = estimate - r2_score(Y, pred[rest])
            replicates = replicates - boot.r2(Y, pred[rest], total_squares)
        estimated = np.isfinite(estimate)  # vertices without a subset model's prediction are left out
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = members * estimated[:, None] / (members * estimated[:, None]).sum(axis=0)  # ROI means
        roi_replicates = np.where(estimated, replicates, 0.0) @ weights
        out[name] = np.where(estimated, estimate, 0.0) @ weights
        out[f"{name}_ci_low"] = np.percentile(roi_replicates, tails, axis=0)
        out[f"{name}_ci_high"] = np.percentile(roi_replicates, 100 - tails, axis=0)
    return pd.DataFrame(out, index=list(masks))
