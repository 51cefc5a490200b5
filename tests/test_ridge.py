"""The banded ridge solver (encoding.ridge) against closed-form ridge, brute-force CV and himalaya."""

import tracemalloc

import numpy as np
import pytest
from _numerics import assert_coef_matches_closed_form, assert_same_fit, score_tolerance

from encoding.design import zscore
from encoding.ridge import RidgeProblem, band_weight_candidates, batch_size_for, fit_banded_ridge

CASES = [("primal", "folds"), ("primal", "hat"), ("dual", "folds"), ("dual", "hat")]


def make_problem(n_runs=5, run_length=40, n_features=(8, 12), n_vertices=6, seed=0):
    rng = np.random.default_rng(seed)
    n = n_runs * run_length
    X = rng.standard_normal((n, sum(n_features))).astype(np.float32)
    weights = rng.standard_normal((sum(n_features), n_vertices)) / np.sqrt(sum(n_features))
    weights[: n_features[0], ::2] *= 4  # even vertices lean on band a, odd on band b
    weights[n_features[0]:, 1::2] *= 4
    groups = np.repeat(np.arange(n_runs), run_length)
    Y = X @ weights + rng.standard_normal((n, n_vertices))
    Y = np.concatenate([zscore(Y[groups == g]) for g in range(n_runs)]).astype(np.float32)
    bands = {"a": slice(0, n_features[0]), "b": slice(n_features[0], sum(n_features))}
    return X, Y, groups, bands


def brute_force_cv(X, Y, groups, bands, gamma, alpha):
    """Mean leave-one-run-out R^2 from explicit solves in float64."""
    scale = np.concatenate([np.full(cols.stop - cols.start, np.sqrt(g)) for cols, g in zip(bands.values(), gamma)])
    Xs = X.astype(np.float64) * scale
    scores = []
    for run in np.unique(groups):
        train, val = groups != run, groups == run
        K = Xs[train] @ Xs[train].T
        W = Xs[train].T @ np.linalg.solve(K + alpha * np.eye(train.sum()), Y[train])
        residual = Y[val] - Xs[val] @ W
        scores.append(1 - (residual**2).sum(0) / ((Y[val] - Y[val].mean(0)) ** 2).sum(0))
    return np.mean(scores, axis=0)


@pytest.mark.parametrize("form, strategy", CASES)
def test_single_candidate_matches_closed_form_ridge(form, strategy):
    X, Y, groups, bands = make_problem()
    gamma, alpha = np.array([0.3, 0.7]), 4.0
    problem = RidgeProblem(X, groups, bands, form=form, backend="numpy")
    result = fit_banded_ridge(problem, Y, [alpha], gamma[None], strategy=strategy, progress=False)
    assert_coef_matches_closed_form(result, X, Y, bands)  # float64 solve, bound from float32 eps and conditioning
    # alpha = 4 keeps the folds well conditioned (kappa < 100): float32 R^2 within rounding of float64's
    reference = brute_force_cv(X, Y, groups, bands, gamma, alpha)
    np.testing.assert_array_less(np.abs(result.cv_scores[0] - reference), score_tolerance(reference))


@pytest.mark.parametrize("form, strategy", CASES)
def test_search_matches_brute_force_cross_validation(form, strategy):
    """Every (candidate, alpha) CV score, the chosen hyperparameters and the refitted weights."""
    X, Y, groups, bands = make_problem(n_features=(30, 50) if form == "dual" else (8, 12), seed=1)
    alphas, candidates = np.logspace(-1, 4, 6), band_weight_candidates(2, 5, random_state=3)
    problem = RidgeProblem(X, groups, bands, form=form, backend="numpy")
    assert problem.form == form
    result = fit_banded_ridge(problem, Y, alphas, candidates, strategy=strategy, progress=False)
    assert result.strategy == strategy
    reference = np.array([[brute_force_cv(X, Y, groups, bands, g, a) for a in alphas] for g in candidates])
    # float32 against float64: the error grows with the conditioning of the fold systems (alpha = 0.1 with
    # a band weight ~1e-5 gives kappa ~ 1e4); measured at most 5e-5 (400 ulps, dual form), so 2e-4
    tolerance = 2e-4
    np.testing.assert_allclose(result.cv_scores, reference.max(axis=1), atol=tolerance)
    flat = reference.reshape(-1, Y.shape[1])
    best = flat.argmax(axis=0)
    # two scores each within `tolerance` of float64 can swap only if float64 separates them by less than twice it
    clear = np.sort(flat, axis=0)[-1] - np.sort(flat, axis=0)[-2] > 2 * tolerance
    np.testing.assert_array_equal(result.best_candidate[clear], (best // len(alphas))[clear])
    np.testing.assert_allclose(result.best_alpha[clear], alphas[best % len(alphas)][clear])
    assert_coef_matches_closed_form(result, X, Y, bands)  # refit at each vertex's own choice


def test_hat_strategy_with_more_features_than_samples_and_tiny_alphas():
    """Dual form, alphas down to 1e-3: the hat strategy skips ill-conditioned alphas and agrees with
    brute-force cross-validation wherever it selects."""
    X, Y, groups, bands = make_problem(n_runs=4, run_length=50, n_features=(150, 150), n_vertices=8, seed=13)
    alphas, candidates = np.logspace(-3, 4, 15), band_weight_candidates(2, 3, random_state=1)
    result = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, alphas, candidates, strategy="hat", progress=False)
    folds = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, alphas, candidates, strategy="folds",
                             progress=False)
    for c, gamma in enumerate(candidates):
        reference = np.array([brute_force_cv(X, Y, groups, bands, gamma, a) for a in alphas]).max(axis=0)
        np.testing.assert_allclose(result.cv_scores[c], reference, atol=1e-3)
        np.testing.assert_allclose(folds.cv_scores[c], reference, atol=1e-3)


def test_torch_backend_agrees_with_numpy():
    pytest.importorskip("torch")
    X, Y, groups, bands = make_problem(seed=2)
    alphas, candidates = np.logspace(-1, 4, 6), band_weight_candidates(2, 4)
    results = [fit_banded_ridge(RidgeProblem(X, groups, bands, backend=backend), Y, alphas, candidates,
                                progress=False) for backend in ("numpy", "torch")]
    assert_same_fit(results[0], results[1], X, Y, bands)  # other BLAS: agreement to float32 rounding


def test_agrees_with_himalaya_multiple_kernel_ridge():
    """Same candidates, alphas and folds as himalaya's random search: same choices, same predictions."""
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline

    X, Y, groups, bands = make_problem(n_runs=4, run_length=60, n_vertices=40, seed=4)
    X_test = np.random.default_rng(5).standard_normal((30, X.shape[1])).astype(np.float32)
    alphas, candidates = np.logspace(-2, 5, 15), band_weight_candidates(2, 8, random_state=0)
    ours = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, alphas, candidates, progress=False)
    set_backend("numpy")
    reference = make_pipeline(
        ColumnKernelizer([(k, Kernelizer(kernel="linear"), c) for k, c in bands.items()]),
        MultipleKernelRidgeCV(kernels="precomputed", cv=list(LeaveOneGroupOut().split(X, Y, groups)),
                              solver_params=dict(n_iter=candidates, alphas=alphas, progress_bar=False)),
    ).fit(X, Y)
    their_alphas = np.exp(-np.asarray(reference[-1].deltas_))  # alpha / gamma per band
    same = np.all(np.isclose(np.log(their_alphas), np.log(ours.band_alphas), atol=1e-3), axis=0)
    assert same.mean() >= 0.95  # z-scored runs: himalaya's -MSE and our R^2 rank alike; ties may differ
    np.testing.assert_allclose(X_test @ ours.coef[:, same], np.asarray(reference.predict(X_test))[:, same],
                               rtol=1e-2, atol=1e-3)  # both float32


def test_recovers_planted_band_weights():
    """Vertices driven by band a only get a far larger penalty on band b, and vice versa."""
    X, Y, groups, bands = make_problem(n_runs=6, run_length=60, n_features=(10, 10), n_vertices=20, seed=6)
    rng = np.random.default_rng(7)
    Y = np.column_stack([X[:, :10] @ rng.standard_normal(10) if v % 2 == 0 else X[:, 10:] @ rng.standard_normal(10)
                         for v in range(20)]) + 2 * rng.standard_normal((len(groups), 20))
    result = fit_banded_ridge(RidgeProblem(X, groups, bands), Y.astype(np.float32), np.logspace(-2, 6, 17),
                              band_weight_candidates(2, 20), progress=False)
    ratio = result.band_alphas[1] / result.band_alphas[0]  # penalty of b over penalty of a
    assert np.all(ratio[0::2] > 10) and np.all(ratio[1::2] < 0.1)


@pytest.mark.parametrize("strategy", ["folds", "hat"])
def test_memory_stays_under_the_budget(strategy):
    X, Y, groups, bands = make_problem(n_runs=4, run_length=100, n_features=(20, 40), n_vertices=4000, seed=8)
    alphas, candidates = np.logspace(-1, 4, 6), band_weight_candidates(2, 3)
    problem = RidgeProblem(X, groups, bands)
    memory_gb = 8 / 1024  # 8 MiB: forces several vertex batches
    outputs = (problem.n_features + 4 * len(candidates) * len(alphas)) * Y.shape[1] * 4
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    result = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, strategy=strategy,
                              progress=False)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    assert 1 < result.batch_size < Y.shape[1]
    assert peak <= memory_gb * 2**30 + outputs, f"peak {peak / 2**20:.1f} MiB"
    whole = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=1.0, strategy=strategy, progress=False)
    # other GEMM shapes round differently: same fit up to float32 (choices may swap only within ties)
    assert_same_fit(result, whole, X, Y, bands)
    with pytest.raises(MemoryError, match=r"Raise model.memory_gb to at least 0\.00\d*[1-9]"):
        batch_size_for(problem, Y.shape[1], len(alphas), strategy, memory_gb=1e-5)


def test_dask_cluster_gives_the_serial_result():
    distributed = pytest.importorskip("distributed")
    X, Y, groups, bands = make_problem(n_runs=4, run_length=50, n_vertices=600, seed=9)
    alphas, candidates = np.logspace(-1, 4, 6), band_weight_candidates(2, 4)
    problem = RidgeProblem(X, groups, bands)
    memory_gb = 2 / 1024  # several vertex batches
    serial = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, progress=False)
    assert serial.batch_size < Y.shape[1]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        parallel = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, client=client,
                                    progress=False)
    # dask workers run BLAS with 1 thread (the nanny sets OPENBLAS_NUM_THREADS=1), this process with
    # its own count: the same tasks, rounded in another order, so agreement is to float32 (ties aside)
    assert_same_fit(parallel, serial, X, Y, bands)


def test_constant_vertex_scores_zero_not_one():
    X, Y, groups, bands = make_problem(seed=14)
    Y[:, 0] = 0.0  # e.g. a masked vertex
    for strategy in ("folds", "hat"):
        result = fit_banded_ridge(RidgeProblem(X, groups, bands), Y, np.logspace(-1, 3, 5),
                                  band_weight_candidates(2, 2), strategy=strategy, progress=False)
        np.testing.assert_allclose(result.cv_scores[:, 0], 0.0, atol=1e-6)
        np.testing.assert_allclose(result.coef[:, 0], 0.0, atol=1e-6)


def test_strategy_choice_follows_the_cost():
    rng = np.random.default_rng(10)
    groups = np.repeat(np.arange(10), 100)
    wide = RidgeProblem(rng.standard_normal((1000, 900)).astype(np.float32), groups, {"a": slice(0, 900)})
    assert wide.choose_strategy(n_vertices=100, n_alphas=10) == "hat"  # eigendecompositions dominate
    narrow = RidgeProblem(rng.standard_normal((1000, 30)).astype(np.float32), groups, {"a": slice(0, 30)})
    assert narrow.choose_strategy(n_vertices=20000, n_alphas=10) == "folds"  # GEMMs dominate


def test_input_errors_name_the_problem():
    X, Y, groups, bands = make_problem()
    with pytest.raises(ValueError, match="alphas must be positive"):
        RidgeProblem(X, groups, bands).factorize([0.5, 0.5], [0.0, 1.0], "hat")
    with pytest.raises(ValueError, match="strategy must be one of"):
        fit_banded_ridge(RidgeProblem(X, groups, bands), Y, [1.0], np.ones((1, 2)) / 2, strategy="loo")
    with pytest.raises(ValueError, match="uncovered"):
        RidgeProblem(X, groups, {"a": slice(0, 5)})
    with pytest.raises(ValueError, match="at least two training runs"):
        RidgeProblem(X, np.zeros(len(X)), bands)
    with pytest.raises(ValueError, match="candidates must be non-negative"):
        fit_banded_ridge(RidgeProblem(X, groups, bands), Y, [1.0], np.ones((2, 3)), progress=False)
