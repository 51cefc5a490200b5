"""The simulated experiment: its design, its planted ground truth, its noise and its seeds."""

import dataclasses

import numpy as np
import pytest

from atlases.surface import edge_graph
from encoding.config import DEFAULT_TERRITORIES
from encoding.simulation import GENRES, SimulationConfig, simulate_experiment, synthesize_clips
from encoding.simulation.brain import NoiseGenerator, load_resting_state, territory_shares


def small(seed=0, **kw):
    return SimulationConfig(n_train_runs=2, clips_per_run=3, n_test_clips=3, n_test_repeats=2,
                            sample_rate=8000, seed=seed, **kw)


@pytest.fixture(scope="module")
def sim():
    return simulate_experiment(small(), feature_params={"caption": {"model": "lsa"}}, progress=False)


def test_design_follows_the_ds003720_shape(sim):
    exp, _ = sim
    assert exp.n_vertices == 20484 and exp.tr == 1.5 and exp.space == "fsaverage5"
    assert [r.role for r in exp.runs] == ["train", "train", "test", "test"]
    assert all(r.n_trs == 3 * 10 + 8 for r in exp.runs)  # 3 clips of 15 s = 30 TRs, plus the tail
    train_clips = [c for r in exp.train_runs for c in r.events["clip_id"]]
    test_clips = list(exp.test_runs[0].events["clip_id"])
    assert len(set(train_clips)) == 6 and not set(train_clips) & set(test_clips)
    assert list(exp.repeat_groups()) == ["test-sequence"]
    assert exp.clips.table["genre"].isin(GENRES).all()


def test_ground_truth_has_territories_shared_vertices_and_silent_cortex(sim):
    _, truth = sim
    share = truth.signal_share
    assert share.shape == (3, 20484) and truth.band_names == list(DEFAULT_TERRITORIES)
    total = share.sum(axis=0)
    assert total.max() <= 0.5 + 1e-6
    signal = total > 0
    assert 0.01 < signal.mean() < 0.1  # most vertices are driven by no space
    assert ((share > 0).sum(axis=0) >= 2).sum() > 20  # some vertices carry two spaces
    np.testing.assert_array_equal(np.flatnonzero(signal), truth.signal_vertices)
    assert truth.weights["logmel"].shape == (32, signal.sum())


def test_planted_signal_is_in_the_responses(sim):
    exp, truth = sim
    Y = np.vstack([r.responses for r in exp.train_runs])
    # vertices near an acoustic territory's centre share stimulus-driven variance across the two
    # test repeats (3 captions give too few test clips for the caption territory to show)
    a, b = exp.test_runs[0].responses, exp.test_runs[1].responses
    rep = np.array([np.corrcoef(a[:, v], b[:, v])[0, 1] for v in range(a.shape[1])])
    total = truth.signal_share.sum(axis=0)
    acoustic = np.isin(truth.dominant_band, [0, 1]) & (total > 0.35)
    assert acoustic.sum() > 30
    # (noise is spatially correlated, so compare with the silent vertices of the same runs)
    assert rep[acoustic].mean() - rep[total == 0].mean() > 0.25
    np.testing.assert_allclose(Y.std(axis=0).mean(), 1.0, atol=0.1)


def test_same_seed_same_experiment_other_seed_differs():
    a = synthesize_clips(3, duration=2.0, sample_rate=8000, seed=4)
    b = synthesize_clips(3, duration=2.0, sample_rate=8000, seed=4)
    c = synthesize_clips(3, duration=2.0, sample_rate=8000, seed=5)
    assert a.captions == b.captions
    assert all(np.array_equal(a.audio[k], b.audio[k]) for k in a.ids)
    assert not all(np.array_equal(a.audio[k], c.audio[k]) for k in a.ids)


def test_full_simulation_is_reproducible(sim):
    again, truth = simulate_experiment(small(), feature_params={"caption": {"model": "lsa"}}, progress=False)
    exp, _ = sim
    for r1, r2 in zip(exp.runs, again.runs):
        np.testing.assert_array_equal(r1.responses, r2.responses)


def test_a_study_subject_simulated_from_another_ones_clips_is_the_subject_simulated_alone():
    """The clips and planted features of subject 1 serve subject 2 (the study reuses them): subject 2
    is then exactly what it is simulated alone, and differs from subject 1."""
    params = {"caption": {"model": "lsa"}}
    first = simulate_experiment(small(n_subjects=2, subject=1), params, progress=False)
    alone, _ = simulate_experiment(small(n_subjects=2, subject=2), params, progress=False)
    reused, _ = simulate_experiment(small(n_subjects=2, subject=2), params, progress=False, heard=first)
    for a, b, other in zip(alone.runs, reused.runs, first[0].runs):
        np.testing.assert_array_equal(a.responses, b.responses)
        assert not np.allclose(a.responses, other.responses)
    more = dataclasses.replace(small(n_subjects=2, subject=2), n_test_clips=4)
    with pytest.raises(ValueError, match="9 clips at 8000 Hz are not the 10 clips"):
        simulate_experiment(more, params, progress=False, heard=first)


def test_captions_describe_the_attributes():
    clips = synthesize_clips(12, duration=1.0, sample_rate=8000, seed=0)
    for row in clips.table.itertuples():
        text = row.caption.lower()
        assert row.genre in text and row.lead in text
        assert ("and drums" in text or "drum beat" in text) == row.drums


def test_territory_shares_validate_and_overlap():
    with pytest.raises(ValueError, match="peak_share"):
        territory_shares({"x": ["HG"]}, 1.5, 8.0)
    shares = territory_shares({"a": ["HG"], "b": ["PT"]}, 0.4, 8.0)
    assert shares.max() <= 0.4 + 1e-6
    assert ((shares > 0).all(axis=0)).sum() > 0


@pytest.mark.parametrize("kind", ["synthetic", "resting_state"])
def test_noise_is_unit_variance_and_autocorrelated(kind):
    if kind == "resting_state" and load_resting_state() is None:
        pytest.skip("brainspace (real resting-state data) is not installed")
    noise = NoiseGenerator(kind, np.random.default_rng(0)).run(200)
    assert noise.shape == (200, 20484) and noise.dtype == np.float32
    np.testing.assert_allclose(noise.std(axis=0), 1.0, atol=1e-3)
    lag1 = (noise[1:] * noise[:-1]).mean()
    # realistic BOLD noise is neither white nor a random walk: 0.6 for the mix, 0.3 for AR(1) with phi 0.3
    assert (0.5 < lag1 < 0.7) if kind == "resting_state" else (0.2 < lag1 < 0.4)
    if kind == "resting_state":
        rest = load_resting_state()
        live = rest.std(axis=0) > 0
        assert (rest[1:, live] * rest[:-1, live]).mean() > 0.95  # the bundled run is band-pass filtered
    # spatial smoothness: mesh neighbours are correlated, distant vertices are not
    neighbours = edge_graph()[5000].indices
    near = np.mean([np.corrcoef(noise[:, 5000], noise[:, v])[0, 1] for v in neighbours])
    assert near > 0.2
    assert abs(np.corrcoef(noise[:, 5000], noise[:, 15000])[0, 1]) < 0.3


def test_planted_weights_span_the_leading_principal_axes():
    from encoding.simulation.brain import planted_weights

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 6)) * [10, 5, 1, 1, 1, 1]
    W = planted_weights(X, n_vertices=50, n_components=2, rng=rng)
    assert W.shape == (6, 50)
    # z-scoring equalises the columns' variance, so correlated structure decides: here none, so the
    # two axes are any two of the six; the weights still live in a 2-d subspace
    assert np.linalg.matrix_rank(W, tol=1e-4) == 2
    Xc = np.column_stack([X[:, 0], X[:, 0] + 0.01 * X[:, 1], rng.standard_normal(500)])  # one dominant axis
    W = planted_weights(Xc, n_vertices=20, n_components=1, rng=rng)
    direction = W[:, 0] / np.linalg.norm(W[:, 0])
    assert abs(direction @ np.array([1, 1, 0]) / np.sqrt(2)) > 0.99
