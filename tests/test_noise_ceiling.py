"""Noise ceilings recover the planted noise level of simulated repeats."""

import numpy as np
import pytest

from encoding.noise_ceiling import bootstrap_ci, cc_max, cc_norm, explainable_variance, split_half_reliability


def simulate(noise_sd, n_repeats=4, n_samples=400, seed=0):
    """Unit-variance signal shared by the repeats plus independent noise of ``noise_sd`` per vertex."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n_samples, len(noise_sd)))
    noise = rng.standard_normal((n_repeats, n_samples, len(noise_sd))) * noise_sd
    return signal, signal + noise


NOISE = np.repeat([0.5, 1.0, 2.0], 100)


def test_explainable_variance_recovers_the_planted_share():
    _, repeats = simulate(NOISE)
    ev = explainable_variance(repeats)
    truth = 1 / (1 + NOISE**2)  # share of a single presentation's variance that is signal
    for level in np.unique(NOISE):
        np.testing.assert_allclose(ev[NOISE == level].mean(), truth[NOISE == level][0], atol=0.02)
    raw = explainable_variance(repeats, bias_correction=False)
    assert (raw > ev).all()  # the correction removes the positive bias of few repeats
    from encoding.noise_ceiling import reliable_vertices

    mask = reliable_vertices(ev, threshold=0.35)
    assert mask.dtype == bool and mask[truth >= 0.5].mean() > 0.95 and mask[truth <= 0.2].mean() < 0.05
    assert not reliable_vertices(np.array([np.nan]))[0]


def test_cc_max_and_cc_norm():
    signal, repeats = simulate(NOISE)
    truth = np.sqrt(1 / (1 + NOISE**2 / 4))  # the mean of 4 repeats keeps a quarter of the noise variance
    est = cc_max(repeats)
    for level in np.unique(NOISE):
        np.testing.assert_allclose(est[NOISE == level].mean(), truth[NOISE == level][0], atol=0.02)
    # a perfect model (the signal itself) reaches CC_norm = 1 on average
    mean = repeats.mean(axis=0)
    cc_abs = np.array([np.corrcoef(signal[:, v], mean[:, v])[0, 1] for v in range(mean.shape[1])])
    np.testing.assert_allclose(np.nanmean(cc_norm(cc_abs, repeats)), 1.0, atol=0.02)


def test_split_half_matches_the_reliability_of_the_mean():
    _, repeats = simulate(NOISE)
    truth = 1 / (1 + NOISE**2 / 4)  # reliability of the mean of 4 repeats
    est = split_half_reliability(repeats)
    for level in np.unique(NOISE):
        np.testing.assert_allclose(est[NOISE == level].mean(), truth[NOISE == level][0], atol=0.03)


def test_bootstrap_intervals_cover_the_truth_at_about_their_level():
    _, repeats = simulate(np.full(200, 1.0), n_samples=300, seed=1)
    low, high = bootstrap_ci(explainable_variance, repeats, n_boot=200, block=1)
    covered = (low <= 0.5) & (0.5 <= high)
    assert 0.85 < covered.mean() <= 1.0  # nominal 0.95; percentile intervals run a little narrow
    assert (high - low).mean() < 0.2


def test_repeats_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"n_repeats >= 2"):
        explainable_variance(np.zeros((1, 10, 3)))
