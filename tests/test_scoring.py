"""The one scoring kernel: against reference implementations, and its constant-vertex rule in every step."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score as sklearn_r2

from encoding.scoring import Scorer, correlation_score, r2_from_sums, r2_score, split_r2_score


def test_scores_match_reference_implementations():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((80, 6)) + 3.0  # not centred
    P = 0.5 * Y + rng.standard_normal((80, 6))
    np.testing.assert_allclose(r2_score(Y, P), sklearn_r2(Y, P, multioutput="raw_values"), rtol=1e-5)
    reference = [np.corrcoef(Y[:, j], P[:, j])[0, 1] for j in range(6)]
    np.testing.assert_allclose(correlation_score(Y, P), reference, rtol=1e-5)
    # r is scale-free: strongly penalised models predict tiny values, and keep their correlation
    np.testing.assert_allclose(correlation_score(Y, 1e-7 * P), reference, rtol=1e-5)


def test_split_r2_matches_himalaya_and_sums_to_the_joint_score():
    from himalaya.backend import get_backend, set_backend
    from himalaya.scoring import r2_score_split

    rng = np.random.default_rng(1)
    Y, bands = rng.standard_normal((50, 7)), 0.3 * rng.standard_normal((3, 50, 7))
    previous = get_backend().name
    set_backend("numpy")
    try:
        reference = r2_score_split(Y - Y.mean(0), bands)
    finally:
        set_backend(previous)
    ours = split_r2_score(Y, bands)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.sum(0), r2_score(Y - Y.mean(0), bands.sum(0)), atol=1e-5)
    # batched over permutations (leading axes), as the permutation nulls use it
    batch = rng.standard_normal((4, 3, 50, 7))
    np.testing.assert_allclose(Scorer(Y).split_r2(batch)[2], split_r2_score(Y, batch[2]), rtol=1e-5, atol=1e-7)


def test_constant_vertices_score_zero_in_every_step():
    """One rule: a constant column has nothing to explain; R^2, r and split R^2 are 0 (not NaN or -inf)."""
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((40, 3))
    Y[:, 1] = 0.0
    P = rng.standard_normal((40, 3))
    assert r2_score(Y, P)[1] == 0 and correlation_score(Y, P)[1] == 0
    assert correlation_score(P, np.ones_like(P)).tolist() == [0.0, 0.0, 0.0]  # constant prediction
    assert (split_r2_score(Y, P[None])[:, 1] == 0).all()
    assert np.isfinite(Scorer(Y).r2(np.stack([P, 2 * P]))).all()


def test_constant_vertex_in_the_permutation_test_and_the_bootstrap():
    from encoding.model import BandedRidgeEncoder
    from encoding.stats import permutation_test, unique_bootstrap

    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 4)).astype(np.float32)
    groups = np.repeat([0, 1, 2], 30)
    Y = (X @ rng.standard_normal((4, 3)) + rng.standard_normal((90, 3))).astype(np.float32)
    Y[:, 2] = 0.0
    Y = Y - np.concatenate([np.broadcast_to(Y[groups == g].mean(0), (30, 3)) for g in range(3)])
    X_test, Y_test = X[:30], Y[:30].copy()
    model = BandedRidgeEncoder({"a": slice(0, 2), "b": slice(2, 4)}, n_iter=2, progress_bar=False).fit(X, Y, groups)
    result = permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=19, block_length=5,
                              split=True, progress=False)
    assert result["r2"].observed[2] == 0 and result["r2"].p_values[2] == 1.0  # never significant
    assert result["r2"].p_values[0] == pytest.approx(1 / 20)  # a driven vertex is
    predictions = {("a", "b"): model.predict(X_test), ("a",): model.predict(X_test), ("b",): model.predict(X_test)}
    tests = unique_bootstrap(Y_test, predictions, ["a", "b"], n_bootstrap=50, block_length=5)
    assert tests["a"]["estimate"][2] == 0 and np.isfinite(tests["a"]["p"]).all()


def test_kernel_runs_on_torch_arrays_as_on_numpy():
    torch = pytest.importorskip("torch")
    rss, tss = np.array([1.0, 2.0, 0.0], np.float32), np.array([4.0, 0.0, 0.0], np.float32)
    expected = r2_from_sums(rss, tss, 10)
    np.testing.assert_allclose(expected, [0.75, 0.0, 0.0])
    np.testing.assert_allclose(r2_from_sums(torch.from_numpy(rss), torch.from_numpy(tss), 10).numpy(), expected)


@pytest.mark.parametrize("metric", ["r2", "r"])
def test_band_scores_from_sums_equal_the_scores_of_the_predictions(metric):
    """The permutation null's one-pass scores equal Scorer.score of the summed prediction and
    Scorer.split_r2, for responses with a non-zero mean and predictions of any size."""
    rng = np.random.default_rng(3)
    Y = 0.5 + rng.standard_normal((120, 7))
    Y[:, 0] = 2.0  # a constant column scores 0 either way
    predictions = (0.3 * Y[None, None] + rng.standard_normal((5, 3, 120, 7))).astype(np.float32)
    scorer = Scorer(Y)
    score, shares = scorer.band_scores(predictions, metric)
    np.testing.assert_allclose(score, scorer.score(predictions.sum(axis=1), metric), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shares, scorer.split_r2(predictions), rtol=1e-5, atol=1e-5)
    assert scorer.band_scores(predictions, metric, split=False)[1] is None
