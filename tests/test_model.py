"""BandedRidgeEncoder agrees with closed-form ridge and recovers which band drives a target."""

import numpy as np
import pytest

from encoding.model import BandedRidgeEncoder
from encoding.scoring import correlation_score, r2_score


def test_matches_closed_form_ridge_with_one_band_and_alpha():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    Y = (X @ rng.standard_normal((8, 3)) + rng.standard_normal((60, 3))).astype(np.float32)
    groups = np.repeat([0, 1, 2], 20)
    alpha = 5.0
    model = BandedRidgeEncoder({"only": slice(0, 8)}, alphas=[alpha], n_iter=1, backend="numpy",
                               progress_bar=False).fit(X, Y, groups)
    W = np.linalg.solve(X.T @ X + alpha * np.eye(8), X.T @ Y)
    X_new = rng.standard_normal((10, 8)).astype(np.float32)
    np.testing.assert_allclose(model.predict(X_new), X_new @ W, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.best_alphas_, alpha, rtol=1e-4)


def test_recovers_the_driving_band_per_target():
    rng = np.random.default_rng(1)
    n, groups = 300, np.repeat(np.arange(5), 60)
    A, B = rng.standard_normal((n, 10)), rng.standard_normal((n, 10))
    noise = rng.standard_normal((n, 4))
    Y = np.column_stack([A @ rng.standard_normal(10), B @ rng.standard_normal(10),
                         A @ rng.standard_normal(10), B @ rng.standard_normal(10)]) + 2 * noise
    X = np.hstack([A, B]).astype(np.float32)
    model = BandedRidgeEncoder({"A": slice(0, 10), "B": slice(10, 20)}, n_iter=15, backend="numpy",
                               progress_bar=False).fit(X[:240], Y[:240], groups[:240])
    split = model.score_split(X[240:], Y[240:] - Y[240:].mean(0))
    assert split.shape == (2, 4)
    np.testing.assert_array_equal(split.argmax(axis=0), [0, 1, 0, 1])
    # the irrelevant band is regularised far more strongly
    assert np.all(model.best_alphas_[1, [0, 2]] > 10 * model.best_alphas_[0, [0, 2]])
    assert np.all(model.best_alphas_[0, [1, 3]] > 10 * model.best_alphas_[1, [1, 3]])
    np.testing.assert_allclose(split.sum(axis=0), r2_score(Y[240:] - Y[240:].mean(0), model.predict(X[240:])), atol=1e-4)


def test_input_validation():
    X, Y = np.ones((20, 4), np.float32), np.ones((20, 2), np.float32)
    model = BandedRidgeEncoder({"a": slice(0, 4)}, backend="numpy", progress_bar=False)
    with pytest.raises(ValueError, match="at least two training runs"):
        model.fit(X, Y, np.zeros(20))
    with pytest.raises(ValueError, match="bands cover 4"):
        model.fit(np.ones((20, 5)), Y, np.repeat([0, 1], 10))
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, np.full((20, 2), np.nan), np.repeat([0, 1], 10))
    with pytest.raises(ValueError, match=r"Y must have shape \(n_samples=20"):
        model.fit(X, Y[:10], np.repeat([0, 1], 10))


def test_scores_match_numpy_references():
    rng = np.random.default_rng(2)
    y, p = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    r = correlation_score(y, p)
    np.testing.assert_allclose(r, [np.corrcoef(y[:, i], p[:, i])[0, 1] for i in range(3)], rtol=1e-5)
    from sklearn.metrics import r2_score as sk_r2

    np.testing.assert_allclose(r2_score(y, p), sk_r2(y, p, multioutput="raw_values"), rtol=1e-5)


def test_targets_fitted_side_by_side_get_the_model_each_would_get_alone():
    """Two 'subjects' with the same design fitted together (a study's shared fit), then split."""
    rng = np.random.default_rng(3)
    n, groups = 240, np.repeat(np.arange(4), 60)
    X = rng.standard_normal((n, 12)).astype(np.float32)
    weights = rng.standard_normal((12, 30)) * (rng.random(30) < 0.5)  # about half the targets carry signal
    Y1 = (X @ weights[:, :15] + 2 * rng.standard_normal((n, 15))).astype(np.float32)
    Y2 = (X @ weights[:, 15:] + 2 * rng.standard_normal((n, 15))).astype(np.float32)
    bands = {"a": slice(0, 4), "b": slice(4, 12)}

    def fit(Y):
        return BandedRidgeEncoder(bands, n_iter=6, backend="numpy", progress_bar=False).fit(X, Y, groups)

    joint = fit(np.hstack([Y1, Y2]))
    assert 0 < joint.searched_.sum() < 30  # the screen keeps some targets out: both paths are compared
    for columns, Y in ((np.arange(15), Y1), (np.arange(15, 30), Y2)):
        alone, part = fit(Y), joint.select_targets(columns)
        # ties between candidates may break either way under float32 rounding: compare where they do not
        same = part.best_candidate_ == alone.best_candidate_
        assert same.mean() >= 0.9
        np.testing.assert_array_equal(part.searched_, alone.searched_)
        np.testing.assert_allclose(part.coef_[:, same], alone.coef_[:, same], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(part.predict(X), alone.predict(X), rtol=1e-2, atol=1e-2)
        assert part.fit_profile_["n_searched"] == alone.searched_.sum()
        assert joint.coef_.shape[1] == 30 and part.coef_.shape[1] == 15  # the joint model is not changed
