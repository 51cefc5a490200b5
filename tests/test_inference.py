"""FWER procedures with power: standardised step-down, TFCE and clusters on the mesh, the
selection-aware null. Each against a reference computed another way, on noise (calibration) and
on planted effects (power)."""

from itertools import product

import numpy as np
import pytest
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from encoding.model import BandedRidgeEncoder
from encoding.stats import PermutationResult, permutation_indices, permutation_test, sign_flip_test
from encoding.stats.spatial import SurfaceGraph, cluster_labels, cluster_statistics, fsaverage5_graph, tfce
from test_stats import _planted

PROCEDURES = ("max", "step-down", "tfce", "cluster-mass", "cluster-extent")


def grid_graph(rows: int, cols: int, n_sheets: int = 2) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Adjacency of ``n_sheets`` separate rows x cols grids (like hemispheres) and their coordinates."""
    index = np.arange(n_sheets * rows * cols).reshape(n_sheets, rows, cols)
    i = np.concatenate([index[:, :, :-1].ravel(), index[:, :-1, :].ravel()])
    j = np.concatenate([index[:, :, 1:].ravel(), index[:, 1:, :].ravel()])
    adjacency = sparse.coo_matrix((np.ones(i.size), (i, j)), shape=(index.size,) * 2)
    return (adjacency + adjacency.T).tocsr(), np.stack(np.unravel_index(np.arange(index.size), index.shape), axis=1)


def smooth_noise(rng, n_maps: int, adjacency, n_iter: int = 4) -> np.ndarray:
    """Gaussian noise averaged with mesh neighbours (spatially correlated), unit variance per vertex
    (scaled by the root mean square over maps, which a sign flip of a map leaves as it is)."""
    step = adjacency + sparse.identity(adjacency.shape[0])
    step = sparse.diags(1 / np.asarray(step.sum(axis=1)).ravel()) @ step
    maps = rng.standard_normal((adjacency.shape[0], n_maps))
    for _ in range(n_iter):
        maps = step @ maps
    return (maps / np.sqrt((maps**2).mean(axis=1, keepdims=True))).T


def _tfce_reference(values, adjacency, mask, step, extent=1.0, height=2.0):
    """TFCE by its definition: at each threshold, components of the induced subgraph (scipy)."""
    out = np.zeros(values.size)
    for h in step * np.arange(1, int(np.floor(values.max() / step + 1e-9)) + 1):
        keep = np.flatnonzero((values >= h) & mask)
        _, component = connected_components(adjacency[keep][:, keep], directed=False)
        sizes = np.bincount(component)
        out[keep] += sizes[component] ** extent * h**height * step
    return out


def test_tfce_and_clusters_by_hand_on_a_path():
    # a path 0-1-2-3-4 with vertex 2 outside the mask: {0, 1} and {3, 4} can never join
    adjacency = sparse.diags([np.ones(4), np.ones(4)], [1, -1], shape=(5, 5))
    graph = SurfaceGraph.from_adjacency(adjacency, mask=np.array([1, 1, 0, 1, 1], bool))
    values = np.array([1.0, 2.0, 5.0, 2.0, 0.5])
    # h = 1: {0, 1} (2 vertices), {3} (1); h = 2: {1}, {3}. tfce = sum extent * h^2 * dh
    np.testing.assert_allclose(tfce(values, graph, step=1.0), [2, 2 + 4, 0, 1 + 4, 0])
    labels, extent, mass, owner = cluster_statistics(values[None], graph, threshold=1.0)
    assert sorted(extent.tolist()) == [1, 2] and sorted(mass.tolist()) == [1.0, 1.0]  # sum of t - 1
    assert labels[0, 2] == labels[0, 4] == -1 and labels[0, 0] == labels[0, 1] != labels[0, 3]
    np.testing.assert_array_equal(owner, [0, 0])


def test_tfce_matches_its_definition_on_a_mesh_with_two_hemispheres():
    adjacency, _ = grid_graph(9, 11)
    rng = np.random.default_rng(1)
    mask = rng.random(adjacency.shape[0]) > 0.1
    graph = SurfaceGraph.from_adjacency(adjacency, mask)
    maps = 2 * smooth_noise(rng, 6, adjacency) + 1
    expected = np.stack([_tfce_reference(m, adjacency, mask, 0.1) for m in maps])
    np.testing.assert_allclose(tfce(maps, graph, step=0.1), expected, rtol=1e-10)
    # labels never join the two sheets (hemispheres) and differ between maps
    labels = cluster_labels(maps > 0, graph)
    half = adjacency.shape[0] // 2
    assert not set(labels[0, :half][labels[0, :half] >= 0]) & set(labels[0, half:][labels[0, half:] >= 0])
    assert not set(labels[0][labels[0] >= 0]) & set(labels[1][labels[1] >= 0])


def test_fsaverage5_graph_keeps_hemispheres_apart_and_leaves_out_the_medial_wall():
    graph = fsaverage5_graph()
    assert graph.n_vertices == 20484
    assert 17000 < graph.mask.sum() < 19500  # the medial wall: about 1,000 vertices per hemisphere
    assert ((graph.edges < 10242).sum(axis=1) != 1).all()  # no edge joins left and right
    assert graph.mask[graph.edges].all()
    n, _ = connected_components(sparse.coo_matrix((np.ones(len(graph.edges)), graph.edges.T), shape=(20484,) * 2),
                                directed=False)
    assert n - (~graph.mask).sum() <= 4  # each hemisphere's cortex is (almost) one piece


def test_standardisation_includes_the_observed_map_and_step_down_matches_the_algorithm():
    rng = np.random.default_rng(0)
    null = rng.standard_normal((39, 30)) * np.linspace(0.5, 3.0, 30)
    observed = null[0] * 0 + rng.standard_normal(30) * 2
    result = PermutationResult(observed, null, "t", standardise=True)
    everything = np.vstack([observed, null])
    z = (everything - everything.mean(axis=0)) / everything.std(axis=0)
    pooled = PermutationResult(observed, null, "t").standardised()[0]  # zero stays zero, order kept
    np.testing.assert_allclose(pooled, observed / np.sqrt(everything.var(axis=0).mean()), rtol=1e-6)
    np.testing.assert_allclose(result.standardised()[0], z[0], rtol=1e-5)
    np.testing.assert_allclose(result.standardised()[1], z[1:], rtol=1e-4, atol=1e-5)
    # Westfall & Young's algorithm 4.1, written out: successive maxima from the smallest score up
    order = np.argsort(-z[0])
    exceed = np.zeros(30)
    for perm in z[1:]:
        successive = np.maximum.accumulate(perm[order][::-1])[::-1]
        exceed += successive >= z[0][order]
    expected = np.empty(30)
    expected[order] = np.maximum.accumulate((1 + exceed) / 40)
    np.testing.assert_allclose(result.fwer_p_values("step-down"), expected, rtol=1e-5)
    single = (1 + (z[1:].max(axis=1)[:, None] >= z[0]).sum(axis=0)) / 40
    assert (result.p_fwer <= single + 1e-9).all()


def test_a_spatial_procedure_without_a_mesh_is_one_clear_message():
    with pytest.raises(ValueError, match="needs the mesh"):
        PermutationResult(np.zeros(3), np.zeros((5, 3)), "r2", fwer="tfce")
    with pytest.raises(ValueError, match="fwer must be one of"):
        PermutationResult(np.zeros(3), np.zeros((5, 3)), "r2").fwer_p_values("cluster")
    graph = SurfaceGraph.from_adjacency(sparse.identity(4))
    with pytest.raises(ValueError, match="4 vertices but the maps 3"):
        PermutationResult(np.zeros(3), np.zeros((5, 3)), "r2", fwer="tfce", graph=graph)


def test_every_procedure_controls_the_family_wise_error_on_smooth_noise():
    """Sign flips of 8 symmetric noise maps are exactly exchangeable: each procedure's rate of any
    rejection at 0.05 is 12/256 (the exact test's level), whichever the spatial correlation."""
    adjacency, _ = grid_graph(10, 12)
    graph = SurfaceGraph.from_adjacency(adjacency)
    rng = np.random.default_rng(5)
    n_datasets = 160
    rejected = dict.fromkeys(PROCEDURES, 0)
    for _ in range(n_datasets):
        maps = smooth_noise(rng, 8, adjacency) * rng.uniform(0.5, 2.0, adjacency.shape[0])  # unequal spreads
        result = sign_flip_test(maps, statistic="mean", graph=graph, cluster_threshold=2.0)
        for method in PROCEDURES:
            rejected[method] += bool((result.fwer_p_values(method) <= 0.05).any())
    for method, count in rejected.items():
        low, high = stats.binomtest(count, n_datasets).proportion_ci(0.99)
        assert low <= 12 / 256 <= high, (method, count)


def test_step_down_on_the_standardised_statistic_finds_what_the_widest_nulls_hide_from_max_t():
    """Vertices whose null is wide and that carry no signal set the raw maximum; standardised per
    vertex, every vertex's null counts the same and moderate effects elsewhere are found."""
    rng = np.random.default_rng(4)
    n_vertices, k = 400, 999
    width = np.where(np.arange(n_vertices) < 20, 8.0, 1.0)  # 20 wide-null vertices, no effect
    effect = np.zeros(n_vertices)
    effect[100:140] = 4.5  # 40 planted vertices
    null = rng.standard_normal((k, n_vertices)) * width
    observed = rng.standard_normal(n_vertices) * width + effect
    result = PermutationResult(observed, null, "r2", standardise=True)
    planted = effect > 0
    max_t, step_down = result.fwer_p_values("max") <= 0.05, result.significant(0.05)
    assert max_t[planted].mean() <= 0.1 and step_down[planted].mean() >= 0.7
    assert not step_down[~planted].any() and not max_t[~planted].any()


def test_tfce_and_clusters_find_a_planted_blob_on_the_mesh_that_max_t_misses_and_nothing_else():
    """Group level: a moderate, extended effect in 10 subjects' smooth maps (sign-flip null)."""
    adjacency, coords = grid_graph(16, 16)
    graph = SurfaceGraph.from_adjacency(adjacency)
    rng = np.random.default_rng(2)
    maps = smooth_noise(rng, 10, adjacency, n_iter=2)
    blob = (coords[:, 0] == 0) & (np.hypot(coords[:, 1] - 8, coords[:, 2] - 8) <= 4)
    maps[:, blob] += 1.2
    result = sign_flip_test(maps, statistic="mean", graph=graph, fwer="tfce", cluster_threshold=2.0)
    found = {m: result.fwer_p_values(m) <= 0.05 for m in PROCEDURES}
    assert found["max"][blob].mean() <= 0.3
    assert found["tfce"][blob].mean() >= 0.8 and found["cluster-mass"][blob].mean() >= 0.8
    assert found["tfce"][blob].sum() >= 2 * found["max"][blob].sum()
    for method, significant in found.items():
        assert not significant[~blob].any(), method
    table = result.clusters()
    assert table.loc[0, "vertices"] >= blob.sum() * 0.8 and table.loc[0, "p_fwer_mass"] <= 0.05
    assert blob[table.loc[0, "peak_vertex"]]


def test_selection_null_equals_the_refit_null_with_one_candidate_and_the_naive_refit_with_several():
    X, Y, groups, X_test, Y_test, bands = _planted(run_length=80, n_test=120, n_vertices=24, seed=4)
    one = BandedRidgeEncoder(bands, n_iter=1, alphas=[10.0], progress_bar=False).fit(X, Y, groups)
    kwargs = dict(n_permutations=12, split=True, progress=False, random_state=3)
    fixed = permutation_test(one, X, Y, groups, X_test, Y_test, null="refit", **kwargs)
    selected = permutation_test(one, X, Y, groups, X_test, Y_test, null="selection", **kwargs)
    for name in fixed:  # a single (candidate, alpha): selecting again changes nothing
        np.testing.assert_allclose(selected[name].null, fixed[name].null, rtol=1e-3, atol=1e-5)

    model = BandedRidgeEncoder(bands, n_iter=4, alphas=np.logspace(-1, 4, 6), progress_bar=False).fit(X, Y, groups)
    selected = permutation_test(model, X, Y, groups, X_test, Y_test, null="selection", n_permutations=3,
                                random_state=7, progress=False)["r2"]
    rng = np.random.default_rng(7)
    for k in range(3):
        order = permutation_indices(groups, "blocks", 10, rng)
        naive = BandedRidgeEncoder(bands, n_iter=4, alphas=np.logspace(-1, 4, 6), progress_bar=False)
        naive.fit(X, Y[order], groups)
        agree = np.isclose(selected.null[k], naive.score(X_test, Y_test), rtol=1e-3, atol=1e-4)
        assert agree.mean() >= 0.9, k  # near-ties of hyperparameters may break either way in float32
    with pytest.raises(ValueError, match="split R\\^2 is tested under a refitted null"):
        permutation_test(model, X, Y, groups, X_test, Y_test, null="test", split=True, progress=False)


def test_exact_sign_flip_null_is_every_pattern():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((4, 7))
    result = sign_flip_test(maps, statistic="t")
    patterns = np.array(list(product((1.0, -1.0), repeat=4)))[1:]
    expected = [stats.ttest_1samp(maps * s[:, None], 0).statistic for s in patterns]
    np.testing.assert_allclose(result.null, expected, rtol=1e-5)
    np.testing.assert_allclose(result.observed, stats.ttest_1samp(maps, 0).statistic)


def test_a_tested_family_is_the_test_of_its_own_maps():
    """With ``tested``, every procedure equals the same procedure on the family's columns alone
    (the spatial ones on the mesh restricted to it), and the other vertices get p = 1; the
    permutation test fills the family's nulls only."""
    adjacency, _ = grid_graph(8, 10)
    graph = SurfaceGraph.from_adjacency(adjacency, np.ones(adjacency.shape[0], dtype=bool))
    rng = np.random.default_rng(5)
    maps = smooth_noise(rng, 41, adjacency)
    maps[0, :30] += 3.0  # signal on part of the first sheet
    tested = np.zeros(adjacency.shape[0], dtype=bool)
    tested[10:120] = True
    full = PermutationResult(maps[0], maps[1:], "t", graph=graph, cluster_threshold=2.0, tested=tested)
    alone = PermutationResult(maps[0, tested], maps[1:, tested], "t", graph=graph.subgraph(np.flatnonzero(tested)),
                              cluster_threshold=2.0)
    for method in PROCEDURES:
        p = full.fwer_p_values(method)
        np.testing.assert_allclose(p[tested], alone.fwer_p_values(method), err_msg=method)
        assert (p[~tested] == 1).all() and (p[tested] <= 0.05).any(), method
    np.testing.assert_array_equal(full.p_values[tested], alone.p_values)
    assert (full.p_values[~tested] == 1).all()

    X, Y, groups, X_test, Y_test, bands = _planted(n_vertices=6, signal=(1.0,) * 3)
    model = BandedRidgeEncoder(bands, n_iter=3, progress_bar=False).fit(X, Y, groups)
    family = np.array([True, False, True, True, False, False])
    some = permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=9, split=True, tested=family,
                            progress=False)
    every = permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=9, split=True, progress=False)
    for name, result in some.items():
        np.testing.assert_allclose(result.null[:, family], every[name].null[:, family], rtol=1e-5, atol=1e-6)
        assert np.isnan(result.null[:, ~family]).all() and (result.p_fwer[~family] == 1).all()
        assert result.settings["n_tested"] == 3
