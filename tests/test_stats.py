"""Statistics: permutation nulls (calibration on real noise, power), FWER/FDR, partitioning, group level."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats
from statsmodels.stats.multitest import multipletests

from encoding.design import zscore
from encoding.model import BandedRidgeEncoder
from encoding.stats import (
    PermutationResult,
    methods_paragraph,
    partition_variance,
    permutation_indices,
    permutation_test,
    roi_mixed_model,
    sign_flip_test,
    subsets,
    write_table,
)
from encoding.stats.permutation import _RefitNull

ALICE = Path(__file__).parents[1] / ".." / "shared" / "data" / "alice-brennan2016"


def test_permutation_schemes_stay_within_runs_and_keep_blocks():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], [35, 40, 25])
    for scheme in ("blocks", "circular", "trs"):
        order = permutation_indices(groups, scheme, 10, rng)
        assert sorted(order) == list(range(100))
        np.testing.assert_array_equal(groups[order], groups)  # nothing leaves its run
    order = permutation_indices(groups, "blocks", 10, rng)
    pieces = np.split(order[:35], np.flatnonzero(np.diff(order[:35]) != 1) + 1)
    # blocks of 10 (the last one shorter) move as contiguous pieces (neighbours may stay adjacent)
    assert all(p[0] % 10 == 0 and ((p[-1] + 1) % 10 == 0 or p[-1] == 34) for p in pieces)
    assert len(pieces) > 1
    shifted = permutation_indices(groups, "circular", 10, rng)[35:75] - 35
    shift = shifted[0]
    assert 10 <= shift <= 30
    np.testing.assert_array_equal(shifted, (np.arange(40) + shift) % 40)


def test_p_values_use_the_plus_one_rule_and_max_statistic():
    observed = np.array([3.0, 1.0, 0.2])
    null = np.array([[0.1, 1.5, 0.3], [0.2, 0.5, 0.1], [2.5, 0.0, 0.0], [0.3, 0.9, 0.4]])
    result = PermutationResult(observed, null, "r2", fwer="max")
    np.testing.assert_allclose(result.p_values, [1 / 5, 2 / 5, 3 / 5])
    np.testing.assert_allclose(result.p_fwer, [1 / 5, 3 / 5, 5 / 5])  # maxima: 1.5, 0.5, 2.5, 0.9
    np.testing.assert_allclose(result.p_fdr("fdr_by"), multipletests(result.p_values, method="fdr_by")[1])
    np.testing.assert_array_equal(result.significant(0.2, "fwer"), [True, False, False])
    assert np.isnan(result.thresholded(0.2, "fwer")[1])


def _planted(n_runs=4, run_length=60, n_test=60, n_vertices=30, signal=(1.0,) * 10, seed=0):
    """Smooth features; the first len(signal) vertices carry signal of the given amplitude."""
    rng = np.random.default_rng(seed)
    n = n_runs * run_length + n_test
    kernel = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    X = np.apply_along_axis(lambda c: np.convolve(c, kernel, "same"), 0, rng.standard_normal((n, 12)))
    X = zscore(X).astype(np.float32)
    weights = rng.standard_normal((12, n_vertices)) / np.sqrt(12)
    amplitude = np.zeros(n_vertices)
    amplitude[: len(signal)] = signal
    noise = np.apply_along_axis(lambda c: np.convolve(c, kernel[2:-2], "same"), 0, rng.standard_normal((n, n_vertices)))
    Y = amplitude * zscore(X @ weights) + zscore(noise)
    groups = np.repeat(np.arange(n_runs), run_length)
    train = slice(0, n_runs * run_length)
    test = slice(n_runs * run_length, n)
    # z-scored per run, as the design does (within-run permutations keep run means)
    runs = np.r_[groups, np.full(n_test, n_runs)]
    X = np.concatenate([zscore(X[runs == r]) for r in range(n_runs + 1)]).astype(np.float32)
    Y = np.concatenate([zscore(Y[runs == r]) for r in range(n_runs + 1)]).astype(np.float32)
    bands = {"a": slice(0, 6), "b": slice(6, 12)}
    return X[train], Y[train], groups, X[test], Y[test], bands


def test_fast_refit_equals_refitting_with_the_chosen_hyperparameters():
    X, Y, groups, X_test, Y_test, bands = _planted(n_vertices=8, signal=(1.0,) * 4)
    model = BandedRidgeEncoder(bands, n_iter=5, progress_bar=False).fit(X, Y, groups)
    order = permutation_indices(groups, "blocks", 10, np.random.default_rng(1))
    refit = _RefitNull(model, X, groups, X_test, np.arange(Y.shape[1]))
    fast = np.zeros((len(X_test), Y.shape[1]))
    for vertices, hat in refit.hats():
        fast[:, vertices] = refit.predictions(hat, order[None], Y[:, vertices])[0].sum(axis=0)
    for v in range(Y.shape[1]):
        penalty = np.concatenate([np.full(cols.stop - cols.start, model.best_alphas_[k, v])
                                  for k, cols in enumerate(bands.values())])
        W = np.linalg.solve(X.T.astype(np.float64) @ X + np.diag(penalty), X.T.astype(np.float64) @ Y[order, v])
        np.testing.assert_allclose(fast[:, v], X_test @ W, atol=2e-4)
    # the flops the profile counts: one hat per vertex group (b t x q by q x n), one prediction per vertex
    n_bands, (n_test, n_features), n_train = len(bands), X_test.shape, len(X)
    assert model.form_ == "primal"
    assert refit.timer.flops == 2 * n_bands * n_test * n_train * (len(refit.groups) * n_features + Y.shape[1])


def test_permutation_test_detects_planted_signal_and_spares_the_rest():
    """Power and specificity on a simulation with planted signal (refit null, blocks, max-T)."""
    X, Y, groups, X_test, Y_test, bands = _planted(run_length=100, n_test=200, n_vertices=40, seed=2)
    model = BandedRidgeEncoder(bands, n_iter=5, progress_bar=False).fit(X, Y, groups)
    results = permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=199, split=True,
                               progress=False)
    assert set(results) == {"r2", "split_r2:a", "split_r2:b"}
    significant = results["r2"].significant(0.05, "fwer")
    assert significant[:10].mean() >= 0.9  # sensitivity
    assert significant[10:].sum() <= 1
    assert results["r2"].p_values.min() == pytest.approx(1 / 200)


def calibration_problem():
    """Stimulus features of a simulated experiment and the real resting-state run (no planted signal).

    Returns (design, rest, live vertices), or None without brainspace. ``benchmarks/inference.py``
    runs the same check at full size.
    """
    from encoding.config import demo_config
    from encoding.pipeline import build_design, extract_features, load_data
    from encoding.simulation.brain import load_resting_state

    rest = load_resting_state()
    if rest is None:
        return None
    config = demo_config(quick=True)
    sim = config.data.simulation
    sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats, sim.sample_rate = 4, 12, 12, 2, 8000
    config.features.spaces = ["logmel", "modulation"]
    experiment, truth = load_data(config.data, config.features.params, progress=False)
    features = extract_features(experiment, config.features, False, truth.features)
    design = build_design(experiment, features, config.features.spaces, config.design)
    return design, rest, np.flatnonzero(rest.std(axis=0) > 1e-6)


@pytest.fixture(scope="module")
def rest_null_problem():
    problem = calibration_problem()
    if problem is None:
        pytest.skip("brainspace is not installed: its real resting-state run is the calibration data")
    return problem


FWER_PROCEDURES = ("max", "step-down", "tfce", "cluster-mass", "cluster-extent")


def cortex_patch(rng, graph, live, n_vertices):
    """``n_vertices`` contiguous live vertices around a random seed (breadth-first on the mesh)."""
    from scipy.sparse.csgraph import breadth_first_order

    keep = np.zeros(graph.n_vertices, bool)
    keep[live] = True
    edges = graph.edges[keep[graph.edges].all(axis=1)]
    adjacency = sparse.coo_matrix((np.ones(len(edges)), edges.T), shape=(graph.n_vertices,) * 2)
    while True:
        order = breadth_first_order(adjacency, int(rng.choice(live)), directed=False, return_predecessors=False)
        if order.size >= n_vertices:
            return np.sort(order[:n_vertices])


def null_rates(design, rest, live, null, scheme, n_repetitions, n_vertices=300, n_permutations=19,
               methods=FWER_PROCEDURES, seed=0, screen=None):
    """Per repetition, on a contiguous patch of the real resting-state run: the share of vertices
    significant at 0.05 uncorrected, and for each FWER procedure whether any vertex survives at 0.05.

    With 19 permutations a p-value of 0.05 means the observed map beat every permutation: each
    procedure's rate of any rejection is then exactly 0.05 under exchangeability. With ``screen``,
    the fit screens vertices at that CV R^2 and only those it searched are tested (the uncorrected
    share is then among them).
    """
    from encoding.stats.spatial import fsaverage5_graph

    graph = fsaverage5_graph()
    n_train, n_test = len(design.X_train), len(design.X_test)
    rng = np.random.default_rng(seed)
    patches, trains, tests = [], [], []
    for _ in range(n_repetitions):
        start = rng.integers(0, len(rest))
        rows = (start + np.arange(n_train + n_test)) % len(rest)
        patches.append(cortex_patch(rng, graph, live, n_vertices))
        Y = rest[rows][:, patches[-1]]
        trains.append(np.concatenate([zscore(Y[:n_train][design.groups == g]) for g in np.unique(design.groups)]))
        tests.append(zscore(Y[n_train:]))
    # every vertex's fit depends on its own responses only: one fit of all the patches side by side
    # is each patch's own fit (select_targets), with the design's factorizations made once
    fitted = BandedRidgeEncoder(design.bands, n_iter=3, progress_bar=False, random_state=seed, screen=screen)
    fitted.fit(design.X_train, np.hstack(trains), design.groups)
    uncorrected, familywise = [], {m: [] for m in methods}
    for repetition, (vertices, Y_train, Y_test) in enumerate(zip(patches, trains, tests)):
        model = fitted.select_targets(np.arange(n_vertices) + repetition * n_vertices)
        tested = model.searched_ if screen is not None else None
        result = permutation_test(model, design.X_train, Y_train, design.groups, design.X_test, Y_test,
                                  n_permutations=n_permutations, null=null, scheme=scheme, metric="r",
                                  random_state=repetition, graph=graph.subgraph(vertices), cluster_threshold=2.0,
                                  tested=tested, progress=False)["r"]
        family = slice(None) if tested is None else tested
        if result.observed[family].size:
            uncorrected.append(result.significant(0.05, "none")[family].mean())
        for method in methods:
            familywise[method].append(bool((result.fwer_p_values(method) <= 0.05).any()))
    return np.array(uncorrected), {m: np.array(v) for m, v in familywise.items()}


@pytest.mark.slow
@pytest.mark.parametrize("null, scheme, n_repetitions", [("refit", "blocks", 100), ("refit", "circular", 40),
                                                          ("selection", "blocks", 30)])
def test_permutation_nulls_are_calibrated_on_real_resting_state(rest_null_problem, null, scheme, n_repetitions):
    """No planted signal, real noise: 5 % of vertices significant uncorrected, and every FWER
    procedure (vertex-wise and spatial) rejecting on at most its nominal 5 % of repetitions."""
    design, rest, live = rest_null_problem
    uncorrected, familywise = null_rates(design, rest, live, null, scheme, n_repetitions)
    # vertices are spatially correlated, so the interval comes from the repetitions, not from vertices
    mean, sem = uncorrected.mean(), uncorrected.std(ddof=1) / np.sqrt(len(uncorrected))
    assert abs(mean - 0.05) <= 3 * sem + 0.01, (mean, sem)
    for method, rejected in familywise.items():  # 100 repetitions: at most 11 (40: 6; 30: 5)
        assert rejected.sum() <= stats.binom.ppf(0.99, n_repetitions, 0.05), (method, rejected.sum())


@pytest.mark.slow
def test_the_screened_family_keeps_the_null_calibrated(rest_null_problem):
    """Testing only the vertices the fit's screen searched (chosen on training data) keeps every
    procedure at its nominal rate. A lenient screen (CV R^2 > 0) lets many noise vertices in, the
    case where selecting on the training responses could bias the test."""
    design, rest, live = rest_null_problem
    uncorrected, familywise = null_rates(design, rest, live, "refit", "blocks", 40, screen=0.0, seed=1)
    assert len(uncorrected) >= 30  # most patches have noise vertices above 0 in CV
    mean, sem = uncorrected.mean(), uncorrected.std(ddof=1) / np.sqrt(len(uncorrected))
    assert abs(mean - 0.05) <= 3 * sem + 0.01, (mean, sem)
    for method, rejected in familywise.items():  # 40 repetitions: at most 6
        assert rejected.sum() <= stats.binom.ppf(0.99, 40, 0.05), (method, rejected.sum())


@pytest.mark.slow
def test_naive_volume_permutation_fails_the_same_check(rest_null_problem):
    """Shuffling single volumes ignores autocorrelation: far too many false positives."""
    design, rest, live = rest_null_problem
    uncorrected, familywise = null_rates(design, rest, live, "test", "trs", n_repetitions=10, methods=("max",))
    assert uncorrected.mean() > 0.10
    assert familywise["max"].mean() > 0.3


def test_partition_atoms_follow_set_theory():
    a, b = np.array([0.2]), np.array([0.3])
    # two spaces: unique a = R2(ab) - R2(b); shared = R2(a) + R2(b) - R2(ab)
    atoms = partition_variance({("a",): a, ("b",): b, ("a", "b"): np.array([0.4])}, ["a", "b"])
    np.testing.assert_allclose(atoms[("a",)], 0.1)
    np.testing.assert_allclose(atoms[("b",)], 0.2)
    np.testing.assert_allclose(atoms[("a", "b")], 0.1)
    # three spaces from a known Venn diagram: atom values -> union scores -> atoms again
    truth = {("a",): 0.05, ("b",): 0.1, ("c",): 0.02, ("a", "b"): 0.04, ("a", "c"): 0.03, ("b", "c"): 0.01,
             ("a", "b", "c"): 0.06}
    scores = {s: np.array([sum(v for atom, v in truth.items() if set(atom) & set(s))]) for s in subsets("abc")}
    atoms = partition_variance(scores, ["a", "b", "c"])
    for atom, value in truth.items():
        np.testing.assert_allclose(atoms[atom], value, atol=1e-12)
    with pytest.raises(ValueError, match="missing"):
        partition_variance({("a",): a}, ["a", "b"])


def test_partition_recovers_planted_unique_and_shared_variance():
    """Spaces a = [u, s] and b = [w, s] share s: the subset fits recover each component's variance."""
    from types import SimpleNamespace

    from encoding.config import ModelConfig
    from encoding.pipeline import fit_subset_models

    rng = np.random.default_rng(3)
    n_runs, run_length, n_test = 5, 200, 400
    n = n_runs * run_length + n_test
    u, w, s = (rng.standard_normal((n, 5)) for _ in range(3))
    X = np.hstack([u, s, w, s + 0.05 * rng.standard_normal((n, 5))]).astype(np.float32)
    share = {"u": 0.2, "w": 0.1, "s": 0.15}
    parts = {k: zscore(m @ rng.standard_normal(5)) * np.sqrt(share[k]) for k, m in (("u", u), ("w", w), ("s", s))}
    Y = (sum(parts.values()) + rng.standard_normal(n) * np.sqrt(1 - sum(share.values())))[:, None]
    Y = np.repeat(Y, 3, axis=1)
    design = SimpleNamespace(X_train=X[:-n_test], Y_train=Y[:-n_test].astype(np.float32),
                             groups=np.repeat(np.arange(n_runs), run_length), X_test=X[-n_test:],
                             Y_test=Y[-n_test:].astype(np.float32), bands={"a": slice(0, 10), "b": slice(10, 20)})
    scores, _ = fit_subset_models(design, ModelConfig(n_iter=5), progress=False)
    atoms = partition_variance(scores, ["a", "b"])
    np.testing.assert_allclose(atoms[("a",)], share["u"], atol=0.04)
    np.testing.assert_allclose(atoms[("b",)], share["w"], atol=0.04)
    np.testing.assert_allclose(atoms[("a", "b")], share["s"], atol=0.04)


def test_subset_models_on_some_vertices_match_the_fit_on_all_and_leave_the_rest_out():
    """Fitting the subset models on a vertex mask (the tested family and the ROIs) gives those
    vertices the atoms, bootstrap tests and ROI means a fit on every vertex gives; the other
    vertices are NaN and the ROI means leave them out."""
    from types import SimpleNamespace

    from encoding.config import ModelConfig
    from encoding.pipeline import fit_subset_models, make_encoder
    from encoding.stats import unique_bootstrap
    from encoding.stats.bootstrap import roi_intervals

    rng = np.random.default_rng(5)
    n_runs, run_length, n_test, n_vertices = 4, 150, 300, 8
    n = n_runs * run_length + n_test
    a, b = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    X = np.hstack([a, b]).astype(np.float32)
    signal = a @ rng.standard_normal((6, n_vertices)) * np.linspace(0.2, 1, n_vertices) + b @ rng.standard_normal(
        (6, n_vertices)) * np.linspace(1, 0.2, n_vertices)
    Y = (zscore(signal) + rng.standard_normal((n, n_vertices))).astype(np.float32)
    design = SimpleNamespace(X_train=X[:-n_test], Y_train=Y[:-n_test], groups=np.repeat(np.arange(n_runs), run_length),
                             X_test=X[-n_test:], Y_test=Y[-n_test:], bands={"a": slice(0, 6), "b": slice(6, 12)})
    targets = np.arange(n_vertices) % 3 != 1
    cfg = ModelConfig(n_iter=5)
    full = make_encoder(design.bands, cfg, progress=False).fit(design.X_train, design.Y_train, design.groups)
    every_scores, every = fit_subset_models(design, cfg, progress=False, full_model=full)
    some_scores, some = fit_subset_models(design, cfg, progress=False, full_model=full, targets=targets)
    np.testing.assert_array_equal(some_scores[("a", "b")], every_scores[("a", "b")])  # the full model: whole
    for subset in (("a",), ("b",)):
        assert np.isnan(some_scores[subset][~targets]).all() and np.isnan(some[subset][:, ~targets]).all()
        np.testing.assert_allclose(some_scores[subset][targets], every_scores[subset][targets], atol=2e-3)
    atoms = partition_variance(some_scores, ["a", "b"])
    assert np.isnan(atoms[("a",)][~targets]).all()
    tests = unique_bootstrap(design.Y_test, some, ["a", "b"], n_bootstrap=200, random_state=0)
    reference = unique_bootstrap(design.Y_test, every, ["a", "b"], n_bootstrap=200, random_state=0)
    for space in ("a", "b"):
        assert np.isnan(tests[space]["p"][~targets]).all()
        np.testing.assert_allclose(tests[space]["estimate"][targets], reference[space]["estimate"][targets], atol=3e-3)
        np.testing.assert_allclose(tests[space]["se"][targets], reference[space]["se"][targets], rtol=0.05, atol=1e-3)
    # an ROI over fitted and unfitted vertices: its unique variance is the mean over the fitted ones
    rois = roi_intervals(design.Y_test, some, ["a", "b"], {"roi": np.ones(n_vertices, bool)}, 200, random_state=0)
    fitted_only = roi_intervals(design.Y_test, every, ["a", "b"], {"roi": targets}, 200, random_state=0)
    whole = roi_intervals(design.Y_test, every, ["a", "b"], {"roi": np.ones(n_vertices, bool)}, 200, random_state=0)
    np.testing.assert_allclose(rois.loc["roi", "unique_a"], fitted_only.loc["roi", "unique_a"], atol=3e-3)
    np.testing.assert_allclose(rois.loc["roi", "test_r2"], whole.loc["roi", "test_r2"], rtol=1e-6)
    none = roi_intervals(design.Y_test, some, ["a", "b"], {"roi": ~targets}, 200, random_state=0)
    assert np.isnan(none.loc["roi", "unique_a"]) and np.isfinite(none.loc["roi", "test_r2"])


def test_unique_bootstrap_standard_error_and_error_rates():
    """The block-bootstrap standard error matches the spread of the estimate over independent test
    sets; a space with no unique variance is rarely declared significant, a planted one is found."""
    from encoding.stats import unique_bootstrap

    rng = np.random.default_rng(12)
    n, n_vertices = 200, 400
    a, b = rng.standard_normal((n, n_vertices)), rng.standard_normal((n, n_vertices))
    estimates = []
    for _ in range(60):  # independent test sets of the same vertices
        Y = 0.5 * a + 0.4 * b + rng.standard_normal((n, n_vertices))
        preds = {("a", "b"): 0.5 * a + 0.4 * b, ("a",): 0.5 * a, ("b",): 0.4 * b}
        estimates.append(unique_bootstrap(Y, preds, ["a", "b"], n_bootstrap=200, block_length=1,
                                          random_state=0)["b"])
    spread = np.std([e["estimate"] for e in estimates], axis=0, ddof=1).mean()
    se = np.mean([e["se"] for e in estimates])
    assert 0.8 < se / spread < 1.25, (se, spread)
    assert np.mean([(e["p"] <= 0.05).mean() for e in estimates]) > 0.8  # b's unique variance is found
    null = unique_bootstrap(Y, {("a", "b"): 0.5 * a + 0.05 * rng.standard_normal((n, n_vertices)), ("a",): 0.5 * a,
                                ("b",): np.zeros((n, n_vertices))}, ["a", "b"], n_bootstrap=200, block_length=5)
    assert (null["b"]["p"] <= 0.05).mean() <= 0.05  # an irrelevant space adds nothing (conservative)


def test_sign_flip_matches_t_and_controls_fwer():
    rng = np.random.default_rng(4)
    maps = rng.standard_normal((10, 50))
    result = sign_flip_test(maps)
    np.testing.assert_allclose(result.observed, stats.ttest_1samp(maps, 0).statistic, rtol=1e-10)
    assert result.settings["exact"] and result.n_permutations == 2**10 - 1
    # calibration: null maps rarely give any FWER-significant vertex
    hits = [sign_flip_test(rng.standard_normal((8, 40))).significant(0.05, "fwer").any() for _ in range(60)]
    assert np.sum(hits) <= stats.binom.ppf(0.99, 60, 0.05)
    # power: a planted effect of d = 1.5 in 10 vertices
    maps = rng.standard_normal((12, 40))
    maps[:, :10] += 1.5
    significant = sign_flip_test(maps).significant(0.05, "fwer")
    assert significant[:10].mean() >= 0.8 and significant[10:].sum() <= 1


def test_mixed_model_recovers_roi_effects():
    rng = np.random.default_rng(5)
    effects = {"A1": 0.3, "STG": 0.15, "V1": 0.0}
    rows = []
    for subject in range(15):
        offset = rng.normal(0, 0.1)  # random subject intercept
        for roi, effect in effects.items():
            for block in range(4):
                rows.append(dict(subject=subject, roi=roi, value=effect + offset + rng.normal(0, 0.1)))
    table = roi_mixed_model(pd.DataFrame(rows), n_bootstrap=200)
    for roi, effect in effects.items():
        assert table.loc[roi, "ci_low"] <= effect <= table.loc[roi, "ci_high"]
    assert table.loc["A1", "p"] < 0.001 and table.loc["V1", "p"] > 0.01
    assert table.loc["A1", "d_ci_low"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice-brennan2016 is absent (real data for validation)")
def test_alice_group_statistics_reproduce_the_temporal_lobe_effect():
    """Brennan et al. 2016: sound power and word rate predict the left posterior temporal lobe across subjects."""
    from encoding.studies import alice

    r = alice.held_out_correlations(ALICE)
    flips = sign_flip_test(r.to_numpy())
    lptl = list(r.columns).index("LPTL")
    assert flips.p_fwer[lptl] < 0.01  # exact sign-flip test, max-T over the 6 ROIs
    long = r.reset_index(names="subject").melt(id_vars="subject", var_name="roi", value_name="value")
    table = roi_mixed_model(long, n_bootstrap=500)
    assert table.loc["LPTL", "ci_low"] > 0 and table.loc["LPTL", "d_ci_low"] > 0.5


def test_tables_and_methods_paragraph(tiny_run, tmp_path):
    table = pd.DataFrame({"test_r2": [0.1234567, 0.02], "name_with_underscore": ["a_b", "c"]}, index=["HG", "PT"])
    files = write_table(table, tmp_path, "rois")
    assert (tmp_path / files["csv"]).read_text().startswith(",test_r2")
    assert "| HG " in (tmp_path / files["md"]).read_text()
    assert r"a\_b" in (tmp_path / files["tex"]).read_text()
    text = methods_paragraph(tiny_run.config, tiny_run.design, tiny_run.model, tiny_run.statistics)
    s = tiny_run.config.statistics
    for fragment in ("1, 2, 3, 4 TRs (1.5-6 s)", "leave-one-run-out", f"{s.n_permutations} permutations",
                     f"blocks of {s.block_length} volumes", "step-down maximum statistic over vertices (Westfall & Young 1993)",
                     "21 global regularisation", "all 7 subset models"):
        assert fragment in text, fragment
    # the paragraph names the procedure that made the maps, and the null
    import dataclasses

    names = {"max": "single-step maximum statistic", "tfce": "threshold-free cluster enhancement (Smith & Nichols",
             "cluster-mass": "cluster-mass inference on the fsaverage5 mesh (clusters of the statistic in units of "
                             "the null standard deviation pooled over vertices above 3.1",
             "cluster-extent": "largest cluster extent of every permutation"}
    for method, fragment in names.items():
        settings = {**tiny_run.statistics.settings, "fwer": method, "null": "selection"}
        text = methods_paragraph(tiny_run.config, tiny_run.design, tiny_run.model,
                                 dataclasses.replace(tiny_run.statistics, settings=settings))
        assert fragment in text and "hyperparameter search included" in text, method


def test_methods_paragraph_mentions_noise_ceilings_only_with_repeats(tiny_run):
    import dataclasses

    assert "Noise ceilings were estimated" in methods_paragraph(tiny_run.config, tiny_run.design, tiny_run.model)
    for repeats in (None, tiny_run.design.Y_test_repeats[:1]):  # no repeats, or a single presentation
        design = dataclasses.replace(tiny_run.design, Y_test_repeats=repeats)
        text = methods_paragraph(tiny_run.config, design, tiny_run.model)
        assert "Noise ceilings" not in text and "repeated presentations" not in text


def _step_down_reference(observed, nulls):
    """Westfall & Young's algorithm 4.1 written out vertex by vertex."""
    order = np.argsort(-observed, kind="stable")
    raw = []
    for rank, vertex in enumerate(order):
        rest = order[rank:]  # this vertex and those scoring below it
        raw.append((1 + sum(null[rest].max() >= observed[vertex] for null in nulls)) / (1 + len(nulls)))
    adjusted = np.maximum.accumulate(raw)
    out = np.empty(observed.size)
    out[order] = adjusted
    return out


def test_step_down_fwer_matches_the_algorithm_and_rejects_at_least_what_single_step_does():
    from encoding.stats.permutation import step_down_fwer

    rng = np.random.default_rng(3)
    maps = rng.standard_normal((6, 40))
    maps[:, :8] += np.linspace(0.5, 3.0, 8)  # a graded effect in 8 vertices
    result = sign_flip_test(maps, statistic="mean")
    patterns = np.array(list(__import__("itertools").product((1.0, -1.0), repeat=6)))[1:]
    nulls = [(maps * s[:, None]).mean(axis=0) for s in patterns]
    np.testing.assert_allclose(result.p_fwer, _step_down_reference(maps.mean(axis=0), nulls))
    np.testing.assert_allclose(step_down_fwer(maps.mean(axis=0), nulls), result.p_fwer)
    single = (1 + (np.max(nulls, axis=1)[:, None] >= maps.mean(axis=0)).sum(axis=0)) / (1 + len(nulls))
    assert (result.p_fwer <= single + 1e-12).all() and (result.p_fwer < single).any()


def test_sign_flip_step_down_controls_the_family_wise_error_on_pure_noise():
    rng = np.random.default_rng(0)
    n_datasets = 400
    rejected = sum(sign_flip_test(rng.standard_normal((5, 100)), statistic="mean").significant(0.05).any()
                   for _ in range(n_datasets))
    # 5 subjects: the only attainable level below 0.05 is 1/32; its rate is 1/32 under the null
    low, high = stats.binomtest(rejected, n_datasets).proportion_ci()
    assert low <= 1 / 32 <= high
