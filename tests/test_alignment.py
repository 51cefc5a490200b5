"""Cross-subject decoding: the functional alignment against closed-form ridge, the pairing of samples,
and a population whose subjects carry the same information at scrambled vertices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from decoding.alignment import (
    FunctionalAlignment,
    cross_subject_decoding,
    held_out_decoding,
    paired_responses,
    pooled_groups,
    shared_samples,
    subject_designs,
)
from decoding.design import DecodingDesign, make_decoding_design
from encoding.config import DecodingConfig
from encoding.data import ClipSet, Experiment, Run
from encoding.errors import DataError
from encoding.features.base import FeatureFrames
from encoding.simulation.experiment import schedule

TR, CLIP, LAG = 1.5, 15.0, 3


# -- a population with planted truth -------------------------------------------------------------


def population(n_subjects=3, permute=True, n_train_runs=4, clips_per_run=10, n_test=16, n_vertices=120,
               n_signal=40, n_dims=12, signal=1.0, seed=0):
    """Subjects hearing the same clips: subject 1's stimulus-driven signal, scrambled across vertices.

    Responses of subject ``k`` are ``signal[:, perm_k] + noise_k``: vertex ``v`` carries the signal
    that subject 1 has at vertex ``perm_k[v]`` (``perm_1`` the identity; all identities when
    ``permute`` is False) and fresh noise, so the information is intact but the anatomical
    correspondence is gone. The signal is a linear map of each clip's random embedding, lagged
    ``LAG`` TRs, at ``n_signal`` of the vertices.

    Returns
    -------
    experiments : dict of str to Experiment
    frames : dict of clip id to FeatureFrames (the clip-level target)
    permutations : dict of str to ndarray
    """
    rng = np.random.default_rng(seed)
    n_clips = n_train_runs * clips_per_run + n_test
    ids = [f"c{i:03d}" for i in range(n_clips)]
    embedding = rng.standard_normal((n_clips, n_dims)).astype(np.float32)
    frames = {c: FeatureFrames(embedding[i:i + 1], np.zeros(1), np.full(1, CLIP)) for i, c in enumerate(ids)}
    clips = ClipSet(pd.DataFrame({"caption": ids}, index=ids), {}, 16000)
    weights = rng.standard_normal((n_dims, n_signal)) / np.sqrt(n_dims)
    orders = [ids[r * clips_per_run:(r + 1) * clips_per_run] for r in range(n_train_runs)] + [ids[-n_test:]] * 2
    schedules, signals = [], []
    for order in orders:
        events = schedule(order, CLIP)
        n_trs = int(len(order) * CLIP / TR) + 6
        stimulus = np.zeros((n_trs, n_dims))
        for clip, onset in zip(events["clip_id"], events["onset"]):
            first = int(onset / TR) + LAG
            stimulus[first:first + int(CLIP / TR)] = embedding[ids.index(clip)]
        run_signal = np.zeros((n_trs, n_vertices))
        run_signal[:, :n_signal] = signal * stimulus @ weights
        schedules.append(events)
        signals.append(run_signal)
    experiments, permutations = {}, {}
    for k in range(n_subjects):
        label = f"s{k + 1}"
        permutations[label] = rng.permutation(n_vertices) if permute and k else np.arange(n_vertices)
        runs = []
        for r, (events, run_signal) in enumerate(zip(schedules, signals)):
            noise = rng.standard_normal(run_signal.shape)
            noise = noise + 0.5 * np.roll(noise, 1, axis=0)  # some autocorrelation
            train = r < n_train_runs
            runs.append(Run(f"{'train' if train else 'test'}-{r}", run_signal[:, permutations[label]] + noise, TR,
                            events, role="train" if train else "test", repeat_id=None if train else "seq"))
        experiments[label] = Experiment(label, runs, clips, space="roi")
    return experiments, frames, permutations


def decoding_config(**changes) -> DecodingConfig:
    cfg = DecodingConfig()
    cfg.selection, cfg.n_bootstrap, cfg.n_permutations = "all", 200, 100
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def scrambled():
    return population(permute=True)


@pytest.fixture(scope="module")
def aligned_anatomy():
    return population(permute=False, seed=1)


# -- the alignment estimator -----------------------------------------------------------------------


def test_the_alignment_is_closed_form_ridge_at_its_cv_alphas_and_they_are_optimal():
    """Primal and dual forms: predictions of sklearn's Ridge at the chosen alphas; each alpha the best of the
    leave-one-run-out curve computed with sklearn, up to float32."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 40)
    for n_source in (30, 300):  # fewer columns than samples (primal), more (dual)
        latent = rng.standard_normal((160, 5))
        X = latent @ rng.standard_normal((5, n_source)) + 0.5 * rng.standard_normal((160, n_source)) + 0.3
        Y = X[:, :20] @ rng.standard_normal((20, 25)) / 5 + rng.standard_normal((160, 25)) * np.linspace(0.1, 3, 25)
        Y[:, -3:] = rng.standard_normal((160, 3))  # unpredictable columns
        X, Y = X.astype(np.float32), Y.astype(np.float32)
        alphas = np.logspace(-2, 6, 17)
        aligner = FunctionalAlignment(alphas=alphas, backend="numpy").fit(X, Y, groups)
        assert aligner.form_ == ("primal" if n_source < 160 else "dual")
        reference = Ridge(alpha=aligner.alpha_.astype(np.float64), solver="svd").fit(X, Y)
        X_new = X[:50] + rng.standard_normal((50, n_source)).astype(np.float32)
        np.testing.assert_allclose(aligner.transform(X_new), reference.predict(X_new), rtol=0, atol=2e-3 * Y.std())
        np.testing.assert_allclose(aligner.coef_, reference.coef_.T, rtol=0, atol=2e-3 * np.abs(reference.coef_).max())
        # the CV curve, by sklearn on the same centred data (the solver centres once, on all training samples)
        Xc, Yc = X - X.mean(0), Y - Y.mean(0)
        curve = np.zeros((len(alphas), Y.shape[1]))
        for run in range(4):
            train, val = groups != run, groups == run
            for index, alpha in enumerate(alphas):
                fit = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(Xc[train], Yc[train])
                residual = ((Yc[val] - fit.predict(Xc[val])) ** 2).sum(0)
                curve[index] += 1 - residual / ((Yc[val] - Yc[val].mean(0)) ** 2).sum(0)
        curve /= 4
        chosen = np.searchsorted(alphas, aligner.alpha_ * (1 - 1e-6))
        np.testing.assert_allclose(aligner.cv_scores_, curve[chosen, np.arange(25)], atol=1e-4)
        assert (curve[chosen, np.arange(25)] >= curve.max(axis=0) - 1e-4).all()
        assert aligner.cv_scores_[-3:].max() < 0.05 < aligner.cv_scores_[:5].min()
        assert aligner.alpha_[-3:].min() > 10 * np.median(aligner.alpha_[:5])  # noise: shrunk away
        assert aligner.transform(X_new)[:, -3:].std(0).max() < 0.5 * aligner.transform(X_new)[:, :5].std(0).min()
        shared = FunctionalAlignment(alphas=alphas, shared_alpha=True, backend="numpy").fit(X, Y, groups)
        assert np.unique(shared.alpha_).size == 1
        assert np.isclose(curve[np.searchsorted(alphas, shared.alpha_[0] * (1 - 1e-6))].mean(), curve.mean(1).max(),
                          atol=1e-4)


def test_the_alignment_recovers_a_planted_map_on_held_out_samples():
    """Two 'subjects' driven by the same 6 latent time courses through different random maps: the
    alignment predicts the reference's noiseless responses to new samples (R^2 vs the truth)."""
    rng = np.random.default_rng(1)
    n, n_source, n_reference = 200, 500, 300  # more columns than samples: the kernel form
    latent = rng.standard_normal((n + 100, 6))
    source = latent @ rng.standard_normal((6, n_source)) + rng.standard_normal((n + 100, n_source))
    truth = latent @ rng.standard_normal((6, n_reference))
    reference = truth + rng.standard_normal((n + 100, n_reference))
    groups = np.repeat(np.arange(5), n // 5)
    aligner = FunctionalAlignment(backend="numpy").fit(source[:n], reference[:n], groups)
    assert aligner.form_ == "dual" and aligner.weight_map_.shape == (n_source, n)
    assert aligner.components_.shape == (n, n_reference)
    predicted = aligner.transform(source[n:])
    r2 = 1 - ((truth[n:] - predicted) ** 2).sum(0) / ((truth[n:] - truth[n:].mean(0)) ** 2).sum(0)
    assert np.median(r2) > 0.9 and r2.min() > 0.75
    assert aligner.score(source[n:], reference[n:]).mean() > 0.75 * (1 - 1 / (1 + truth.var(0).mean()))
    with pytest.raises(DataError, match="columns"):
        aligner.transform(source[n:, :10])
    with pytest.raises(DataError, match="two"):
        FunctionalAlignment().fit(source[:n], reference[:n], np.zeros(n))


# -- pairing the subjects' samples ---------------------------------------------------------------


def hand_design(rows, n_columns=3, offset=0.0) -> DecodingDesign:
    """A design whose training rows are ``(run, clip, window)``; X's row i is ``i + offset`` in every column."""
    table = pd.DataFrame([{"run_id": f"r{run}", "event": 0, "clip_id": clip, "window": w, "start": 1.5 * w}
                          for run, clip, w in rows])
    X = (np.arange(len(rows), dtype=np.float32)[:, None] + offset) * np.ones((1, n_columns), dtype=np.float32)
    empty = np.zeros((0, n_columns), dtype=np.float32)
    return DecodingDesign(X, np.zeros((len(rows), 2), np.float32), np.array([run for run, _, _ in rows]),
                          np.arange(len(rows)), empty, np.zeros((0, 2), np.float32), table,
                          pd.DataFrame(columns=["clip_id", "window", "start", "n_presentations"]), n_columns, (3,),
                          10.0, 1.5, "t")


def test_shared_samples_pair_exactly_the_common_clip_windows():
    a = hand_design([(0, "x", 0), (0, "x", 1), (0, "y", 0), (1, "z", 0), (1, "x", 0)])  # x/0 heard twice
    b = hand_design([(0, "z", 0), (0, "x", 1), (1, "x", 0), (1, "w", 0), (1, "y", 0)], offset=100)
    pairs = shared_samples(a, b)
    assert list(zip(pairs["clip_id"], pairs["window"])) == [("x", 0), ("x", 1), ("y", 0), ("z", 0)]
    assert pairs["rows_a"].tolist() == [(0, 4), (1,), (2,), (3,)]
    assert pairs["rows_b"].tolist() == [(2,), (1,), (4,), (0,)]
    assert pairs["group"].tolist() == [0, 0, 0, 1]
    X_a, X_b, groups = paired_responses(a, b)
    assert X_a[:, 0].tolist() == [2.0, 1.0, 2.0, 3.0]  # x/0: rows 0 and 4 averaged
    assert X_b[:, 0].tolist() == [102.0, 101.0, 104.0, 100.0]
    assert groups.tolist() == [0, 0, 0, 1]
    assert pooled_groups([a, b]).tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 1, 0]  # b's clips in a's folds; w its own
    with pytest.raises(DataError, match="window"):
        shared_samples(a, dataclasses.replace(b, window=5.0))
    with pytest.raises(DataError, match="share no training sample"):
        paired_responses(a, hand_design([(0, "v", 0), (1, "u", 0)]))


def test_shared_samples_of_real_designs_drop_a_clip_one_subject_did_not_hear(scrambled):
    experiments, frames, _ = scrambled
    first, second = experiments["s1"], experiments["s2"]
    dropped = second.train_runs[1].events["clip_id"][3]
    runs = [dataclasses.replace(run, events=run.events[run.events["clip_id"] != dropped]) if run is second.train_runs[1]
            else run for run in second.runs]
    second = dataclasses.replace(second, runs=runs)
    a, b = (make_decoding_design(e, frames, delays=(LAG,)) for e in (first, second))
    pairs = shared_samples(a, b)
    assert len(pairs) == len(a.train_samples) - 4 == len(b.train_samples)  # 4 windows of the dropped clip
    assert dropped not in set(pairs["clip_id"])
    keys = a.train_samples.iloc[[r[0] for r in pairs["rows_a"]]][["clip_id", "window"]].to_numpy()
    np.testing.assert_array_equal(keys, b.train_samples.iloc[[r[0] for r in pairs["rows_b"]]][["clip_id", "window"]])


# -- cross-subject decoding ---------------------------------------------------------------------------


def test_functional_alignment_decodes_scrambled_subjects_and_anatomical_alignment_cannot(scrambled):
    experiments, frames, _ = scrambled
    table = cross_subject_decoding(experiments, frames, decoding_config(), "emb", backend="numpy", progress=False)
    assert len(table) == 6 and set(table["alignment"]) == {"anatomical", "functional"}
    assert {"subject", "pairwise", "ci_low", "ci_high", "top_1", "top_3", "mean_rank", "p_value",
            "n_test_clips"} <= set(table.columns)
    assert (table["n_test_clips"] == 16).all() and (table["target"] == "emb").all()
    functional = table[table["alignment"] == "functional"].set_index("subject")
    anatomical = table[table["alignment"] == "anatomical"].set_index("subject")
    assert (functional["pairwise"] > 0.75).all() and (functional["ci_low"] > 0.5).all()
    assert ((anatomical["ci_low"] <= 0.5) & (anatomical["ci_high"] >= 0.5) | (anatomical["pairwise"] < 0.65)).all()
    assert (functional["reference"] == ["s2", "s1", "s1"]).all() and (functional["alignment_cv_r2"] > 0).all()


def test_with_the_same_vertices_both_alignments_decode(aligned_anatomy):
    experiments, frames, _ = aligned_anatomy
    table = cross_subject_decoding(experiments, frames, decoding_config(), "emb", subjects=["s3"], backend="numpy",
                                   progress=False)
    assert list(table["subject"]) == ["s3", "s3"]
    assert (table["pairwise"] > 0.75).all() and (table["ci_low"] > 0.5).all()


def test_no_test_response_enters_the_alignments_or_the_decoder(scrambled):
    experiments, frames, _ = scrambled
    rng = np.random.default_rng(7)
    noisy = {label: dataclasses.replace(e, runs=[dataclasses.replace(run, responses=rng.standard_normal(
        run.responses.shape)) if run.role == "test" else run for run in e.runs]) for label, e in experiments.items()}
    cfg = decoding_config()
    real_designs, noise_designs = (subject_designs(e, frames, cfg, "emb") for e in (experiments, noisy))
    real = held_out_decoding(real_designs, "s3", "functional", cfg)
    null = held_out_decoding(noise_designs, "s3", "functional", cfg)
    assert not np.allclose(real_designs["s3"].X_test, noise_designs["s3"].X_test)
    for fit, other in [(real.aligner, null.aligner), *((real.alignments[s], null.alignments[s]) for s in ["s2"])]:
        np.testing.assert_array_equal(fit.alpha_, other.alpha_)
        np.testing.assert_allclose(fit.components_, other.components_, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(real.decoder.alpha_, null.decoder.alpha_)
    np.testing.assert_allclose(real.decoder.coef_, null.decoder.coef_, rtol=1e-6, atol=0)
    # the models fitted beside noise decode the real test responses exactly as the ones fitted beside them
    rows = real.test_rows
    np.testing.assert_allclose(null.predict(real_designs["s3"].X_test[rows]),
                               real.predict(real_designs["s3"].X_test[rows]), rtol=1e-5, atol=1e-6)
    assert real.identification.values["pairwise"] > 0.75
    low, high = null.identification.ci["pairwise"]  # its own (noise) test responses carry nothing
    assert low <= 0.5 <= high


def test_a_test_clip_a_training_subject_trained_on_is_not_scored(scrambled):
    experiments, frames, _ = scrambled
    second = experiments["s2"]
    test_clip = second.test_runs[0].events["clip_id"][0]
    run = second.train_runs[0]
    events = run.events.copy()
    events.loc[0, "clip_id"] = test_clip  # s2 heard s1's first test clip in a training run
    changed = dict(experiments, s2=dataclasses.replace(second, runs=[dataclasses.replace(run, events=events),
                                                                     *second.runs[1:]]))
    cfg = decoding_config(n_bootstrap=0, n_permutations=0)
    designs = subject_designs(changed, frames, cfg, "emb")
    result = held_out_decoding(designs, "s1", "anatomical", cfg)
    assert test_clip not in result.clip_ids and len(result.clip_ids) == 15


# -- the quick simulation, as three subjects ---------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_population():
    """The quick demo's subject and two more with its planted signal at other vertices, and fresh noise.

    The simulation's signal is rebuilt from its ground truth (the planted features, weights and
    shares, through the simulation's own functions) and checked to leave exactly the simulated
    noise: its per-run standard deviation is the planted noise scale at every signal vertex. The
    new subjects' vertices are permuted at random within each hemisphere (``scrambled``) or kept
    (``same``); their noise is AR(1), spatially white, scaled like the simulation's.
    """
    from encoding.config import demo_config
    from encoding.design import align_to_trs
    from encoding.pipeline import load_data
    from encoding.simulation.brain import stimulus_signals

    config = demo_config(quick=True)
    experiment, truth = load_data(config.data, config.features.params, False)
    planted = truth.signal_vertices
    noise_scale = np.sqrt(1.0 - truth.signal_share.sum(axis=0)).astype(np.float32)
    signals = [np.zeros((run.n_trs, planted.size), dtype=np.float32) for run in experiment.runs]
    for k, space in enumerate(truth.band_names):
        on_trs = [align_to_trs(truth.features[space], run.events, run.n_trs, run.tr) for run in experiment.runs]
        for signal, part in zip(signals, stimulus_signals(on_trs, truth.weights[space], experiment.tr)):
            signal += part * np.sqrt(truth.signal_share[k, planted])
    for run, signal in zip(experiment.runs, signals):
        np.testing.assert_allclose((run.responses[:, planted] - signal).std(axis=0), noise_scale[planted], atol=1e-4)

    rng = np.random.default_rng(0)
    n_vertices = experiment.n_vertices

    def subject(label, permute):
        order = np.arange(n_vertices)  # vertex v of the new subject carries the signal of vertex order[v]
        if permute:
            order[:10242], order[10242:] = rng.permutation(10242), 10242 + rng.permutation(n_vertices - 10242)
        runs = []
        for run, signal in zip(experiment.runs, signals):
            full = np.zeros((run.n_trs, n_vertices), dtype=np.float32)
            full[:, planted] = signal
            noise = rng.standard_normal(full.shape, dtype=np.float32)
            noise += 0.6 * np.roll(noise, 1, axis=0)
            noise = (noise - noise.mean(0)) / noise.std(0)
            runs.append(dataclasses.replace(run, responses=full[:, order] + noise * noise_scale[order]))
        return dataclasses.replace(experiment, subject=label, runs=runs)

    scrambled = [experiment, subject("sim02", True), subject("sim03", True)]
    same = [experiment, subject("sim02", False), subject("sim03", False)]
    return scrambled, same, truth.features["caption"], config


@pytest.mark.slow
def test_the_quick_simulation_decoded_across_subjects(simulated_population):
    """The caption embedding decoded in sim01 by a decoder trained on sim02 and sim03 (the default decoder:
    2,000 vertices, nested selection): functional alignment recovers the scrambled anatomy, anatomical
    alignment is at chance there and works where the vertices correspond."""
    scrambled, same, frames, config = simulated_population
    cfg = config.decoding
    cfg.n_permutations = 100
    table = cross_subject_decoding(scrambled, frames, cfg, "caption", subjects=["sim01"], backend="numpy",
                                   progress=False).set_index("alignment")
    assert table.loc["functional", "pairwise"] > 0.75 and table.loc["functional", "ci_low"] > 0.5
    anatomical = table.loc["anatomical"]
    assert anatomical["ci_low"] <= 0.5 <= anatomical["ci_high"] or anatomical["pairwise"] < 0.65
    table = cross_subject_decoding(same, frames, cfg, "caption", subjects=["sim01"], backend="numpy",
                                   progress=False).set_index("alignment")
    assert (table["pairwise"] > 0.75).all() and (table["ci_low"] > 0.5).all()
