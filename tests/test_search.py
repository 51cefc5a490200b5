"""The adaptive search of banded ridge (encoding.ridge.search): screen and successive halving
against the exhaustive search on problems with planted band weights and planted null vertices."""

import numpy as np
import pytest
from test_ridge import make_problem

from encoding.design import zscore
from encoding.ridge import (
    RidgeProblem,
    SerialRunner,
    band_weight_candidates,
    fit_banded_ridge,
    halving_rounds,
    screen_folds,
    search_hyperparameters,
)
from encoding.scoring import r2_score


def planted(n_runs=8, run_length=60, n_signal=60, n_null=140, seed=0):
    """Three bands; signal vertices lean on one band each (varying SNR), null vertices are noise."""
    rng = np.random.default_rng(seed)
    sizes = (10, 20, 30)
    n = n_runs * run_length + 200  # the last 200 samples are a test set
    X = rng.standard_normal((n, sum(sizes))).astype(np.float32)
    edges = np.cumsum((0,) + sizes)
    bands = {name: slice(a, b) for name, a, b in zip("abc", edges[:-1], edges[1:])}
    W = np.zeros((sum(sizes), n_signal + n_null))
    for v in range(n_signal):
        cols = list(bands.values())[v % 3]
        W[cols, v] = rng.standard_normal(cols.stop - cols.start) * rng.uniform(0.05, 0.4)
        W[:, v] += 0.02 * rng.standard_normal(sum(sizes))  # a little of every band
    Y = X @ W + rng.standard_normal((n, W.shape[1]))
    groups = np.repeat(np.arange(n_runs), run_length)
    train = np.arange(n_runs * run_length)
    Y_train = np.concatenate([zscore(Y[train][groups == g]) for g in range(n_runs)]).astype(np.float32)
    return X[train], Y_train, groups, bands, X[len(train):], Y[len(train):].astype(np.float32), n_signal


def test_halving_rounds_double_the_folds_and_cover_each_once():
    rounds = halving_rounds(12, 20, "halving", "folds")
    assert [folds for folds, _ in rounds] == [(0, 1), (2, 3), (4, 5, 6, 7), (8, 9, 10, 11)]
    assert [keep for _, keep in rounds] == [7, 3, 2, None]  # a third (rounded up), at least 2, the last picks
    assert halving_rounds(12, 20, "random", "folds") == [(tuple(range(12)), None)]
    assert halving_rounds(12, 20, "halving", "hat") == [(tuple(range(12)), None)]  # one factorization: no saving
    assert [f for f, _ in halving_rounds(5, 20, "halving", "folds")] == [(0, 1), (2, 3), (4,)]


def test_complete_candidates_score_as_in_the_exhaustive_search():
    """Scores summed over the rounds' fold subsets are the exhaustive search's, entry for entry, and
    every vertex takes the best of the candidates it kept."""
    X, Y, groups, bands, *_ = planted()
    alphas, candidates = np.logspace(-1, 4, 11), band_weight_candidates(3, 12, random_state=1)
    problem = RidgeProblem(X, groups, bands)
    exhaustive = fit_banded_ridge(problem, Y, alphas, candidates, strategy="folds", progress=False)
    halving = fit_banded_ridge(problem, Y, alphas, candidates, strategy="folds", progress=False, search="halving")
    kept = ~np.isnan(halving.cv_scores)
    assert kept[0].all() and 0.1 < kept[1:].mean() < 0.5  # equal weights everywhere; most others dropped
    np.testing.assert_allclose(halving.cv_scores[kept], exhaustive.cv_scores[kept], atol=2e-5)
    best = np.where(kept, exhaustive.cv_scores, -np.inf).max(axis=0)
    np.testing.assert_allclose(halving.cv_scores[halving.best_candidate, np.arange(Y.shape[1])], best, atol=2e-5)
    assert halving.profile["evaluations"] < 0.5 * exhaustive.profile["evaluations"]


@pytest.mark.parametrize("strategy", ["folds", "hat"])
def test_screen_and_halving_lose_nothing_on_planted_signal(strategy):
    """Null vertices are screened out (they keep plain ridge), signal vertices are searched, and
    the test R^2 of the signal vertices is the exhaustive search's to within 1 %."""
    X, Y, groups, bands, X_test, Y_test, n_signal = planted(seed=2)
    alphas, candidates = np.logspace(-1, 5, 13), band_weight_candidates(3, 20, random_state=0)
    problem = RidgeProblem(X, groups, bands)
    exhaustive = fit_banded_ridge(problem, Y, alphas, candidates, strategy=strategy, progress=False)
    fast = fit_banded_ridge(problem, Y, alphas, candidates, strategy=strategy, progress=False, search="halving",
                            screen=0.01)
    strong = exhaustive.cv_scores.max(axis=0)[:n_signal] > 0.05
    assert fast.searched[:n_signal][strong].all() and fast.searched[n_signal:].mean() < 0.12  # 60-TR folds: noisy
    assert (fast.best_candidate[~fast.searched] == 0).all()
    r2_full, r2_fast = r2_score(Y_test, X_test @ exhaustive.coef), r2_score(Y_test, X_test @ fast.coef)
    assert abs(r2_fast[:n_signal].mean() - r2_full[:n_signal].mean()) < 0.01 * r2_full[:n_signal].mean()
    assert fast.profile["evaluations"] < 0.4 * exhaustive.profile["evaluations"]


def test_screen_keeps_vertices_whose_plain_ridge_scores_above_it():
    X, Y, groups, bands = make_problem(n_runs=5, n_vertices=30, seed=3)
    Y[:, ::2] = np.random.default_rng(4).standard_normal((len(Y), 15))  # even columns: noise only
    Y = np.concatenate([zscore(Y[groups == g]) for g in range(5)]).astype(np.float32)
    alphas, candidates = np.logspace(-1, 4, 6), band_weight_candidates(2, 5)
    result = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, alphas, candidates, progress=False, screen=0.05)
    plain = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, alphas, candidates[:1], progress=False)
    np.testing.assert_array_equal(result.searched, plain.cv_scores[0] > 0.05)
    assert result.searched[1::2].all() and not result.searched[::2].any()
    np.testing.assert_allclose(result.coef[:, ~result.searched], plain.coef[:, ~result.searched], atol=1e-6)
    assert np.isnan(result.cv_scores[1:, ~result.searched]).all()


def test_the_screen_stops_columns_no_better_than_zero_on_its_first_folds():
    """With 9 runs the screen scores every column on runs 0-2 first and goes on only where plain
    ridge beats zero there; a column is searched where its mean over all 9 folds beats the screen.
    Against plain ridge scored fold by fold: the same columns searched, the same alphas kept."""
    X, Y, groups, bands, *_ = planted(n_runs=9, seed=5)
    alphas, candidates = np.logspace(-1, 4, 8), band_weight_candidates(3, 6, random_state=0)
    problem = RidgeProblem(X, groups, bands)
    per_fold = np.stack([problem.cv_scores(problem.factorize(candidates[0], alphas, "folds", [f]), Y)
                         for f in range(9)])  # (fold, alpha, column)
    first, every = per_fold[:3].mean(axis=0), per_fold.mean(axis=0)
    stays, passes = first.max(axis=0) > 0, every.max(axis=0) > 0.01
    clear = (np.abs(first.max(axis=0)) > 1e-5) & (np.abs(every.max(axis=0) - 0.01) > 1e-5)  # float32 sums
    result = fit_banded_ridge(problem, Y, alphas, candidates, strategy="folds", search="halving", screen=0.01,
                              progress=False)
    assert screen_folds(9, "folds") == (0, 1, 2) and screen_folds(9, "hat") == () and screen_folds(5, "folds") == ()
    assert (~stays).sum() > 20 and (stays & ~passes).sum() > 10 and (stays & passes).sum() > 30
    np.testing.assert_array_equal(result.searched[clear], (stays & passes)[clear])
    stopped, kept = clear & ~stays, clear & stays & ~passes
    assert (result.best_candidate[stopped | kept] == 0).all()
    np.testing.assert_array_equal(result.best_alpha[stopped], alphas[first[:, stopped].argmax(axis=0)])
    np.testing.assert_allclose(result.cv_scores[0, stopped], first.max(axis=0)[stopped], atol=1e-6)
    np.testing.assert_array_equal(result.best_alpha[kept], alphas[every[:, kept].argmax(axis=0)])
    # screen = -inf stops nothing: every column is scored on every fold and searched
    everything = fit_banded_ridge(problem, Y, alphas, candidates, strategy="folds", search="halving",
                                  screen=-np.inf, progress=False)
    assert everything.searched.all()
    np.testing.assert_allclose(everything.cv_scores[0], every.max(axis=0), atol=1e-6)


def test_a_runner_keeps_factorizations_up_to_its_budget_and_scores_the_same(monkeypatch):
    """A permutation null calls the search again and again on new columns: kept factorizations are
    not made again, the memory they hold stays within ``keep_gb``, and the choices do not change."""
    import encoding.ridge.search as search_module

    X, Y, groups, bands, *_ = planted()
    alphas, candidates = np.logspace(-1, 4, 11), band_weight_candidates(3, 6, random_state=1)
    problem = RidgeProblem(X, groups, bands)
    made = []
    real = search_module._factorize_task
    monkeypatch.setattr(search_module, "_factorize_task", lambda *a: made.append(a[-1]) or real(*a))

    def twice(keep_gb):
        runner = SerialRunner(problem, 50, keep_gb=keep_gb)
        made.clear()
        results = [search_hyperparameters(runner, 8, Y, alphas, candidates, "folds", "halving", None,
                                          progress=False) for _ in range(2)]
        return runner, len(made), results

    none, made_none, results_none = twice(0.0)
    assert not none.kept and made_none > 2 * len(candidates)  # halving: several fold sets per candidate, twice
    everything, made_all, results_all = twice(1.0)
    assert 2 * made_all == made_none and len(everything.kept) == made_all  # the second search made none
    one = max(f.nbytes for f in everything.kept.values())
    some, made_some, _ = twice(2.5 * one / 2**30)
    assert sum(f.nbytes for f in some.kept.values()) <= 2.5 * one and len(some.kept) >= 2
    assert made_all < made_some < made_none
    for a, b in zip(results_none + results_all, results_all + results_none):
        np.testing.assert_array_equal(a.best_candidate, b.best_candidate)
        np.testing.assert_array_equal(a.best_alpha_index, b.best_alpha_index)
