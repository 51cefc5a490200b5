"""Decoders: the design's windows, the solver against closed-form ridge, nested selection, the null."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from decoding.design import clip_means, make_decoding_design, window_mean, window_starts
from decoding.metrics import identification
from decoding.model import RidgeDecoder, encoding_scores, top_vertices, vertex_columns
from decoding.permutation import clip_permutation, permuted_predictions
from encoding.data import ClipSet, Experiment, Run
from encoding.errors import DataError
from encoding.features.base import FeatureFrames
from encoding.simulation.experiment import schedule


def clip_experiment(n_train_runs=4, clips_per_run=12, n_test=12, n_vertices=300, n_dims=16, signal=0.0,
                    n_signal=30, seed=0, tr=1.5, clip=15.0):
    """Clips with random clip-level embeddings; responses = noise (+ a lagged linear map of the embedding)."""
    rng = np.random.default_rng(seed)
    n_clips = n_train_runs * clips_per_run + n_test
    ids = [f"c{i:03d}" for i in range(n_clips)]
    emb = rng.standard_normal((n_clips, n_dims)).astype(np.float32)
    frames = {c: FeatureFrames(emb[i:i + 1], np.zeros(1), np.full(1, clip)) for i, c in enumerate(ids)}
    genres = np.array(["a", "b", "c"])[np.arange(n_clips) % 3]
    clips = ClipSet(pd.DataFrame({"caption": ids, "genre": genres}, index=ids), {}, 16000)
    n_signal = min(n_signal, n_vertices)
    weights = rng.standard_normal((n_dims, n_signal)) / np.sqrt(n_dims)
    runs = []
    orders = [ids[r * clips_per_run:(r + 1) * clips_per_run] for r in range(n_train_runs)] + [ids[-n_test:]] * 2
    for r, order in enumerate(orders):
        events = schedule(order, clip)
        n_trs = int(len(order) * clip / tr) + 6
        stim = np.zeros((n_trs, n_dims))
        for cid, onset in zip(events["clip_id"], events["onset"]):
            first = int(onset / tr)
            stim[first + 3:first + 3 + int(clip / tr)] = emb[ids.index(cid)]
        noise = rng.standard_normal((n_trs, n_vertices))
        noise = noise + 0.5 * np.roll(noise, 1, axis=0)  # some autocorrelation
        y = noise
        y[:, :n_signal] += signal * (stim[:n_trs] @ weights)
        is_train = r < n_train_runs
        runs.append(Run(f"{'train' if is_train else 'test'}-{r}", y, tr, events, role="train" if is_train else "test",
                        repeat_id=None if is_train else "seq"))
    return Experiment("s1", runs, clips, space="roi"), frames


def test_windows_average_the_lagged_volumes_and_the_frames():
    frames = FeatureFrames(np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 2)), np.arange(6) * 2.5,
                           np.arange(1, 7) * 2.5)
    assert window_mean(frames, 0.0, 5.0).tolist() == [0.5, 0.5]
    assert window_mean(frames, 2.5, 10.0).tolist() == pytest.approx([2.0, 2.0])
    assert window_starts(15.0, 10.0, 1.5).tolist() == [0.0, 1.5, 3.0, 4.5]
    assert window_starts(6.0, 10.0, 1.5).tolist() == [0.0]
    experiment, clip_frames = clip_experiment(n_vertices=5)
    design = make_decoding_design(experiment, clip_frames, delays=(2, 3))
    run = experiment.train_runs[1]
    Y = (run.responses - run.responses.mean(0)) / run.responses.std(0)
    row = design.train_samples.index[(design.train_samples["run_id"] == run.run_id)
                                     & (design.train_samples["window"] == 2)][1]
    sample = design.train_samples.loc[row]
    onset = run.events.loc[sample["event"], "onset"] + sample["start"]
    first = int(np.ceil(onset / 1.5 - 1e-9))
    expected = np.concatenate([Y[first + d:first + d + 7].mean(0) for d in (2, 3)])  # 10 s = 6.67 TRs -> 7 volumes
    np.testing.assert_allclose(design.X_train[row], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(design.Y_train[row], clip_frames[sample["clip_id"]].values[0])
    # test windows: the two repeats averaged, one row per (clip, window)
    assert (design.test_samples["n_presentations"] == 2).all()
    assert len(design.test_clips) == 12 and not set(design.test_clips) & set(design.train_clips)


def test_test_clips_that_training_runs_play_are_left_out():
    experiment, frames = clip_experiment(n_vertices=5)
    test = experiment.test_runs[0]
    test.events.loc[0, "clip_id"] = experiment.train_runs[0].events["clip_id"][0]
    design = make_decoding_design(experiment, frames)
    assert experiment.train_runs[0].events["clip_id"][0] not in design.test_clips
    with pytest.raises(DataError, match="has no features for 1 clips"):
        make_decoding_design(experiment, {k: v for k, v in list(frames.items())[1:]}, "clap_audio")


def test_decoder_on_all_vertices_is_ridge_with_each_dimension_at_its_cv_alpha():
    experiment, frames = clip_experiment(n_vertices=60, signal=1.0)
    design = make_decoding_design(experiment, frames)
    alphas = np.logspace(-1, 5, 13)
    decoder = RidgeDecoder(selection="all", alphas=alphas, progress_bar=False).fit(design.X_train, design.Y_train,
                                                                                   design.groups)
    X = design.X_train.astype(np.float64) - design.X_train.mean(0)
    Z = (design.Y_train - design.Y_train.mean(0)) / design.Y_train.std(0)
    for d in range(Z.shape[1]):  # brute force: leave-one-run-out R^2 of each alpha, then the refit
        cv = []
        for alpha in alphas:
            held = []
            for run in np.unique(design.groups):
                train, val = design.groups != run, design.groups == run
                fit = Ridge(alpha=alpha, fit_intercept=False).fit(X[train], Z[train, d])
                residual = Z[val, d] - fit.predict(X[val])
                held.append(1 - residual @ residual / ((Z[val, d] - Z[val, d].mean()) ** 2).sum())
            cv.append(np.mean(held))
        cv = np.array(cv)
        chosen = np.flatnonzero(cv >= cv.max() - 1e-4)  # float32 ties may break either way
        assert np.argmin(np.abs(alphas - decoder.alpha_[d])) in chosen
        assert decoder.cv_scores_[d] == pytest.approx(cv.max(), abs=1e-3)
        coef = Ridge(alpha=float(decoder.alpha_[d]), fit_intercept=False).fit(X, Z[:, d]).coef_
        np.testing.assert_allclose(decoder.coef_[:, d], coef, atol=2e-3 * np.abs(coef).max())


def test_nested_selection_scores_each_run_with_vertices_chosen_without_it():
    experiment, frames = clip_experiment(n_vertices=200, signal=0.8)
    design = make_decoding_design(experiment, frames)
    alphas = np.logspace(0, 4, 5)
    decoder = RidgeDecoder(selection="encoding", n_vertices=20, alphas=alphas, progress_bar=False)
    decoder.fit(design.X_train, design.Y_train, design.groups)
    assert np.isin(decoder.vertices_, np.arange(30)).mean() >= 0.9  # the planted vertices are found
    Z = ((design.Y_train - design.Y_train.mean(0)) / design.Y_train.std(0)).astype(np.float32)
    curves = np.zeros((len(alphas), Z.shape[1]))
    for run in np.unique(design.groups):
        train, val = design.groups != run, design.groups == run
        scores = encoding_scores(design.X_train[train], Z[train], design.groups[train], 1, "numpy")
        columns = vertex_columns(top_vertices(scores, 20), 200, 1)
        X = design.X_train[:, columns].astype(np.float64)
        X = X - X[train].mean(0)
        for a, alpha in enumerate(alphas):
            prediction = Ridge(alpha=alpha, fit_intercept=False).fit(X[train], Z[train]).predict(X[val])
            residual = ((Z[val] - prediction) ** 2).sum(0)
            curves[a] += 1 - residual / ((Z[val] - Z[val].mean(0)) ** 2).sum(0)
    curves /= len(np.unique(design.groups))
    np.testing.assert_allclose(decoder.cv_scores_, curves.max(axis=0), atol=2e-3)


def test_encoding_scores_are_leave_one_run_out_r2_of_each_vertex_response_averaged_over_lags():
    from decoding.model import ENCODING_ALPHAS

    experiment, frames = clip_experiment(n_vertices=12, signal=0.7, n_signal=4)
    design = make_decoding_design(experiment, frames, delays=(2, 3))
    Z = (design.Y_train - design.Y_train.mean(0)) / design.Y_train.std(0)
    scores = encoding_scores(design.X_train, Z.astype(np.float32), design.groups, 2, "numpy")
    response = design.X_train.reshape(len(Z), 2, 12).mean(axis=1).astype(np.float64)
    response -= response.mean(0)
    Zc = Z - Z.mean(0)
    for v in (0, 3, 9):
        best = -np.inf
        for alpha in ENCODING_ALPHAS:
            held = []
            for run in np.unique(design.groups):
                train, val = design.groups != run, design.groups == run
                prediction = Ridge(alpha=alpha, fit_intercept=False).fit(Zc[train], response[train, v]).predict(Zc[val])
                y = response[val, v]
                held.append(1 - ((y - prediction) ** 2).sum() / ((y - y.mean()) ** 2).sum())
            best = max(best, np.mean(held))
        assert scores[v] == pytest.approx(best, abs=2e-3)
    assert scores[:4].min() > scores[4:].max()  # the planted vertices score highest


def test_selecting_vertices_on_test_data_inflates_identification_on_pure_noise():
    """Double dipping: vertices chosen by how well an encoding model predicts the *test* responses make a
    decoder identify test clips from pure noise; the default (nested training-run selection) does not."""
    leaky, default = [], []
    for seed in range(4):
        experiment, frames = clip_experiment(n_vertices=3000, n_test=20, signal=0.0, seed=seed)
        design = make_decoding_design(experiment, frames)
        Z = (design.Y_train - design.Y_train.mean(0)) / design.Y_train.std(0)
        Zt = (design.Y_test - design.Y_train.mean(0)) / design.Y_train.std(0)
        encoder = Ridge(alpha=10.0).fit(Z, design.X_train)
        residual = ((design.X_test - encoder.predict(Zt)) ** 2).sum(0)
        test_r2 = 1 - residual / ((design.X_test - design.X_test.mean(0)) ** 2).sum(0)
        for selection, out in ((top_vertices(test_r2, 20), leaky), ("encoding", default)):
            decoder = RidgeDecoder(selection=selection, n_vertices=20, progress_bar=False)
            decoder.fit(design.X_train, design.Y_train, design.groups)
            _, predicted = clip_means(decoder.predict(design.X_test), design.test_samples)
            _, true = clip_means(design.Y_test, design.test_samples)
            out.append(identification(predicted, true, n_bootstrap=0, n_permutations=0).values["pairwise"])
    assert np.mean(leaky) > 0.6
    assert abs(np.mean(default) - 0.5) < 0.06


def test_clip_permutation_moves_whole_clips_within_runs():
    experiment, frames = clip_experiment(n_vertices=5)
    design = make_decoding_design(experiment, frames)
    windows = design.train_samples["window"].to_numpy()
    order = clip_permutation(design.blocks, design.groups, windows, np.random.default_rng(0))
    assert np.array_equal(np.sort(order), np.arange(len(order)))  # a permutation (equal windows per clip)
    assert np.array_equal(design.groups[order], design.groups)
    assert np.array_equal(windows[order], windows)
    moved = design.blocks[order]
    for block in np.unique(design.blocks):  # every window of a clip comes from one other clip
        assert np.unique(moved[design.blocks == block]).size == 1
    assert (moved != design.blocks).mean() > 0.5


def test_permuted_predictions_equal_refits_on_permuted_targets_with_the_alphas_held():
    experiment, frames = clip_experiment(n_vertices=40, signal=1.0)
    design = make_decoding_design(experiment, frames)
    decoder = RidgeDecoder(selection="all", progress_bar=False).fit(design.X_train, design.Y_train, design.groups)
    windows = design.train_samples["window"].to_numpy()
    null = permuted_predictions(decoder, design.X_train, design.Y_train, design.groups, design.blocks, windows,
                                design.X_test, 2, random_state=3, progress=False)
    rng = np.random.default_rng(3)
    X = design.X_train.astype(np.float64) - design.X_train.mean(0)
    for p in range(2):
        order = clip_permutation(design.blocks, design.groups, windows, rng)
        Z = (design.Y_train[order] - decoder.target_mean_) / decoder.target_scale_
        for d in (0, 5):
            coef = Ridge(alpha=float(decoder.alpha_[d]), fit_intercept=False).fit(X, Z[:, d]).coef_
            expected = (design.X_test - design.X_train.mean(0)) @ coef * decoder.target_scale_[d] + decoder.target_mean_[d]
            np.testing.assert_allclose(null[p, :, d], expected, atol=2e-3 * np.abs(expected).max())


def test_decoder_messages():
    experiment, frames = clip_experiment(n_vertices=5, n_train_runs=2)
    design = make_decoding_design(experiment, frames)
    with pytest.raises(DataError, match="needs at least 3 for the nested vertex selection"):
        RidgeDecoder().fit(design.X_train, design.Y_train, design.groups)
    with pytest.raises(DataError, match="mask has 4 entries but the responses have 5"):
        RidgeDecoder(selection=np.ones(4, bool)).fit(design.X_train, design.Y_train, design.groups)
