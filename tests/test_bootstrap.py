"""Block bootstrap of the test samples and ROI intervals: against explicit resampling, and coverage."""

import numpy as np
import pytest

from encoding.scoring import r2_score
from encoding.stats.bootstrap import BlockBootstrap, roi_intervals


def _explicit_resamples(n: int, n_bootstrap: int, length: int, seed: int) -> list[np.ndarray]:
    """Sample indices of each resample, drawn the way the docstring says (the same generator calls)."""
    rng = np.random.default_rng(seed)
    n_full, tail = divmod(n, length)
    out = []
    for _ in range(n_bootstrap):
        starts = rng.integers(0, n - length + 1, n_full)
        index = [np.arange(s, s + length) for s in starts]
        if tail:
            start = rng.integers(0, n - tail + 1)
            index.append(np.arange(start, start + tail))
        out.append(np.concatenate(index))
    return out


@pytest.mark.parametrize("n, length", [(53, 10), (40, 10), (7, 10)])
def test_block_sums_and_r2_equal_explicit_resampling(n, length):
    rng = np.random.default_rng(1)
    Y, prediction = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    boot = BlockBootstrap(n, 25, length, random_state=3)
    resamples = _explicit_resamples(n, 25, min(length, n), 3)
    assert all(len(index) == n for index in resamples)
    np.testing.assert_allclose(boot.sums(Y), [Y[index].sum(axis=0) for index in resamples], atol=1e-10)
    # R^2 of each resample, about the full sample's mean (as the predictions, it stays fixed)
    expected = [1 - ((Y[i] - prediction[i]) ** 2).sum(0) / ((Y[i] - Y.mean(0)) ** 2).sum(0) for i in resamples]
    np.testing.assert_allclose(boot.r2(Y, prediction), expected, atol=1e-10)


def test_roi_estimates_are_means_of_the_vertex_scores():
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((80, 30))
    full, without_b = Y + rng.standard_normal((80, 30)), Y + 2 * rng.standard_normal((80, 30))
    masks = {"first": np.arange(30) < 10, "last": np.arange(30) >= 25, "empty": np.zeros(30, bool)}
    table = roi_intervals(Y, {("a", "b"): full, ("a",): without_b}, ["a", "b"], masks, n_bootstrap=200)
    assert list(table.index) == ["first", "last"]  # empty ROIs are left out
    assert "unique_a_ci_low" not in table  # no model without a: no interval for a's unique variance
    r2_full, r2_a = r2_score(Y, full), r2_score(Y, without_b)
    np.testing.assert_allclose(table.loc["first", "test_r2"], r2_full[:10].mean())
    np.testing.assert_allclose(table.loc["last", "unique_b"], (r2_full - r2_a)[25:].mean())
    assert (table["test_r2_ci_low"] < table["test_r2"]).all() and (table["test_r2"] < table["test_r2_ci_high"]).all()


def _coverage(block_length: int, n_datasets: int = 200) -> float:
    """How often the 95 % interval of an ROI's mean R^2 holds the population value (0.5).

    Each dataset: 40 vertices, 600 samples (long enough for the estimator's small-sample bias to
    be small next to its spread); the prediction is a fixed unit-variance signal and
    the noise (unit variance) is AR(1) with phi = 0.8 and mostly shared by the ROI's vertices,
    so both the autocorrelation and the vertices' dependence matter.
    """
    rng = np.random.default_rng(0)
    n, v, phi = 600, 40, 0.8
    hits = 0
    for seed in range(n_datasets):
        signal = rng.standard_normal((n, v))
        innovations = 0.8 * rng.standard_normal((n, 1)) + 0.6 * rng.standard_normal((n, v))
        noise = np.empty((n, v))
        noise[0] = innovations[0]
        for t in range(1, n):
            noise[t] = phi * noise[t - 1] + np.sqrt(1 - phi**2) * innovations[t]
        table = roi_intervals(signal + noise, {("x",): signal}, ["x"], {"roi": np.ones(v, bool)}, n_bootstrap=300,
                              block_length=block_length, random_state=seed)
        hits += table.loc["roi", "test_r2_ci_low"] <= 0.5 <= table.loc["roi", "test_r2_ci_high"]
    return hits / n_datasets


@pytest.mark.slow
def test_roi_intervals_cover_the_population_value_and_need_the_blocks():
    covered = _coverage(block_length=10)  # the default: 15 s at TR 1.5 s
    assert 0.88 <= covered <= 0.99  # nominal 0.95 (a moving-block bootstrap undercovers slightly)
    assert _coverage(block_length=1) < covered - 0.15  # resampling single TRs ignores the autocorrelation
