"""Identification metrics of decoded embeddings: against brute force, on planted signal, and calibrated on noise."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from sklearn.metrics import balanced_accuracy_score

from decoding.metrics import (
    TIE_TOLERANCE,
    bootstrap_identification,
    chance_levels,
    genre_classification,
    identification,
    identification_by_label,
    identification_rank,
    null_from_predictions,
    pairwise_identification,
    percentile_interval,
    permutation_p_value,
    shuffle_null,
    similarity_matrix,
    top_k_accuracy,
)
from encoding.errors import DataError


def _noise(rng, n=20, d=16):
    return rng.standard_normal((n, d)), rng.standard_normal((n, d))


def _brute_similarity(predicted, true):
    n = len(predicted)
    return np.array([[np.corrcoef(predicted[i], true[j])[0, 1] for j in range(n)] for i in range(n)])


def _brute_pairwise(S):
    n = len(S)
    out = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if j != i:
                out[i] += 1.0 if S[i, i] > S[i, j] else 0.5 if S[i, i] == S[i, j] else 0.0
    return out / (n - 1)


def test_similarity_and_pairwise_match_a_brute_force_double_loop():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((25, 12)) + 2.0
    predicted = 0.4 * true + rng.standard_normal((25, 12))
    S = similarity_matrix(predicted, true)
    assert S.dtype == np.float64 and S.shape == (25, 25)
    np.testing.assert_allclose(S, _brute_similarity(predicted, true), atol=1e-12)
    np.testing.assert_allclose(pairwise_identification(S), _brute_pairwise(S), atol=1e-12)
    result = identification(predicted, true, n_bootstrap=0, n_permutations=0)
    assert result.values["pairwise"] == pytest.approx(_brute_pairwise(S).mean())


def test_hand_made_three_clip_examples():
    # similarity given directly: clip 0 beats both foils, clip 1 one of two, clip 2 none
    S = np.array([[0.9, 0.1, 0.2],
                  [0.5, 0.3, 0.1],
                  [0.4, 0.6, 0.0]])
    np.testing.assert_allclose(pairwise_identification(S), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(identification_rank(S), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(top_k_accuracy(S, 1), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(top_k_accuracy(S, 2), [1.0, 1.0, 0.0])
    # from embeddings, with ties: the one-hot vectors correlate -1/2 with each other
    true = np.eye(3)
    predicted = true[[0, 2, 0]]  # clip 0 right, clips 1 and 2 decoded as other clips
    S = similarity_matrix(predicted, true)
    np.testing.assert_allclose(S[1], [-0.5, -0.5, 1.0], atol=1e-15)
    # clip 1: ties clip 0 (1/2), loses to clip 2 (0) -> 1/4; clip 2: loses to 0, ties 1 -> 1/4
    np.testing.assert_allclose(pairwise_identification(S), [1.0, 0.25, 0.25])
    np.testing.assert_allclose(identification_rank(S), [1.0, 2.5, 2.5])
    np.testing.assert_allclose(top_k_accuracy(S, 2), [1.0, 0.5, 0.5])  # tied for 2nd place: a coin flip
    assert identification(predicted, true, ks=(1,), n_bootstrap=0, n_permutations=0).values["pairwise"] == 0.5


def test_ranks_and_top_k_match_brute_force_with_and_without_ties():
    rng = np.random.default_rng(1)
    predicted, true = _noise(rng, 30, 8)
    S = similarity_matrix(predicted, true)
    order = np.argsort(-S, axis=1)  # no ties in continuous data
    brute_rank = np.array([1 + int(np.flatnonzero(order[i] == i)[0]) for i in range(30)])
    np.testing.assert_allclose(identification_rank(S), brute_rank)
    for k in (1, 3, 10, 29):
        np.testing.assert_allclose(top_k_accuracy(S, k), (brute_rank <= k).astype(float))
    # ties (correlations on a coarse grid): the expectation over random tie-breaks, checked by jittering
    S = np.round(rng.uniform(-1, 1, (12, 12)), 1)
    np.fill_diagonal(S, np.round(rng.uniform(-1, 1, 12), 1))
    jitters = 1e-6 * rng.standard_normal((4000, 12, 12))
    jittered = S + jitters
    beaten = (jittered > np.diagonal(jittered, axis1=1, axis2=2)[..., None]).sum(axis=2)  # (draw, clip)
    for k in (1, 2, 4):
        np.testing.assert_allclose(top_k_accuracy(S, k), (beaten < k).mean(axis=0), atol=0.04)
    np.testing.assert_allclose(identification_rank(S), (1 + beaten).mean(axis=0), atol=0.08)
    np.testing.assert_allclose(pairwise_identification(S), _brute_pairwise(S), atol=1e-12)
    # values closer than the tolerance tie
    S = np.array([[0.5, 0.5 + TIE_TOLERANCE / 2], [0.0, 1.0]])
    np.testing.assert_allclose(pairwise_identification(S), [0.5, 1.0])


def test_perfect_predictions_and_chance_levels():
    rng = np.random.default_rng(2)
    true = rng.standard_normal((60, 32))
    result = identification(3.0 * true + 1.0, true, ks=(1, 3), n_bootstrap=200, n_permutations=99)
    assert result.values == {"pairwise": 1.0, "mean_rank": 1.0, "top_1": 1.0, "top_3": 1.0}
    assert all(p == pytest.approx(1 / 100) for p in result.p_value.values())
    assert result.chance == {"pairwise": 0.5, "mean_rank": 30.5, "top_1": 1 / 60, "top_3": 3 / 60}
    assert chance_levels(10, (2,)) == {"pairwise": 0.5, "mean_rank": 5.5, "top_2": 0.2}
    # copies of a clip in a resample are not its foils: every resample of perfect predictions stays perfect
    for name, values in result.bootstrap.items():
        np.testing.assert_allclose(values, 1.0, err_msg=name)
        assert result.ci[name] == (1.0, 1.0)


def test_planted_signal_is_monotone_in_snr():
    rng = np.random.default_rng(3)
    true = rng.standard_normal((60, 64))
    noise = rng.standard_normal((60, 64))
    values = [identification(true + scale * noise, true, n_bootstrap=0, n_permutations=0).values
              for scale in (0.5, 2.0, 4.0, 8.0, 16.0)]
    pairwise = [v["pairwise"] for v in values]
    ranks = [v["mean_rank"] for v in values]
    top1 = [v["top_1"] for v in values]
    assert all(np.diff(pairwise) < 0) and all(np.diff(ranks) > 0) and all(np.diff(top1) <= 0)
    assert pairwise[0] == 1.0 and 0.4 < pairwise[-1] < 0.75  # strong signal perfect, weak near chance


def test_bootstrap_matches_a_brute_force_resample():
    rng = np.random.default_rng(4)
    predicted, true = _noise(rng, 9, 6)
    predicted = predicted + true
    S = similarity_matrix(predicted, true)
    n, ks = 9, (1, 3)
    boot = bootstrap_identification(S, ks, 5, random_state=7)
    draws = np.random.default_rng(7).integers(0, n, size=(5, n))  # the draws the function makes
    for b, drawn in enumerate(draws):
        scores = {"pairwise": [], "mean_rank": [], "top_1": [], "top_3": []}
        for c in drawn:  # each draw, against the draws of other clips
            foils = [d for d in drawn if d != c]
            beat = sum(S[c, d] > S[c, c] for d in foils) * (n - 1) / len(foils)  # scaled to n - 1 foils
            scores["pairwise"].append(1 - beat / (n - 1))
            scores["mean_rank"].append(1 + beat)
            scores["top_1"].append(float(beat < 1))
            scores["top_3"].append(float(beat < 3))
        for name, values in scores.items():
            assert boot[name][b] == pytest.approx(np.mean(values)), name
    # the mean rank is an affine function of pairwise identification, in every resample
    np.testing.assert_allclose(boot["mean_rank"], 1 + (n - 1) * (1 - boot["pairwise"]))
    assert bootstrap_identification(S, ks, 5, random_state=7)["pairwise"].tolist() == boot["pairwise"].tolist()


def test_shuffle_null_is_centred_on_chance_and_external_nulls_score_given_predictions():
    rng = np.random.default_rng(5)
    predicted, true = _noise(rng, 15, 10)
    predicted = predicted + true
    S = similarity_matrix(predicted, true)
    null = shuffle_null(S, (1, 4), 20000, random_state=0)
    # whatever S is, a uniformly random target ranks uniformly: the null means are the chance levels
    for name, chance in chance_levels(15, (1, 4)).items():
        assert null[name].mean() == pytest.approx(chance, rel=0.03), name
    other = rng.standard_normal((15, 10))
    external = null_from_predictions(np.stack([predicted, other]), true, (1, 4))
    observed = identification(predicted, true, ks=(1, 4), n_bootstrap=0, n_permutations=0).values
    for name in observed:  # the real predictions as a "null" reproduce the observed metrics
        assert external[name][0] == pytest.approx(observed[name])
    assert external["pairwise"][1] == pytest.approx(_brute_pairwise(_brute_similarity(other, true)).mean())
    result = identification(predicted, true, ks=(1,), n_bootstrap=0, n_permutations=0,
                            null_predictions=np.repeat(predicted[None], 9, axis=0))
    assert result.p_value_external["pairwise"] == 1.0  # every null reaches the observed value
    assert np.isnan(result.p_value["pairwise"])  # no shuffles asked for
    assert permutation_p_value([0.1, 0.5, 0.9], 0.5) == pytest.approx(3 / 4)
    assert permutation_p_value([0.1, 0.5, 0.9], 0.5, greater=False) == pytest.approx(3 / 4)
    assert permutation_p_value([1.0, 2.0, 3.0], 0.5, greater=False) == pytest.approx(1 / 4)


def test_calibration_on_pure_noise():
    """p-values uniform enough (rejection rate at 0.05 within a binomial band) and the bootstrap
    interval of pairwise identification covers its null value 0.5 at about the nominal rate."""
    rng = np.random.default_rng(6)
    repetitions, n = 300, 20
    shuffle_p, external_p, external_top1, covered = [], [], [], 0
    start = time.perf_counter()
    for _ in range(repetitions):
        predicted, true = _noise(rng, n, 16)
        result = identification(predicted, true, ks=(1,), n_bootstrap=200, n_permutations=199,
                                null_predictions=rng.standard_normal((99, n, 16)), random_state=rng.integers(2**31))
        shuffle_p.append(result.p_value["pairwise"])
        external_p.append(result.p_value_external["pairwise"])
        external_top1.append(result.p_value_external["top_1"])
        low, high = result.ci["pairwise"]
        covered += low <= 0.5 <= high
    assert time.perf_counter() - start < 10.0
    low, high = binom.interval(0.999, repetitions, 0.05)
    for p_values in (np.array(shuffle_p), np.array(external_p)):
        assert low <= (p_values <= 0.05).sum() <= high
        half_low, half_high = binom.interval(0.999, repetitions, 0.5)
        assert half_low <= (p_values <= 0.5).sum() <= half_high
    # top-1 of 20 clips takes few values: ties with the null make its p-value conservative, never liberal
    assert (np.array(external_top1) <= 0.05).sum() <= high
    # the percentile bootstrap is approximate: allow a wider band below the nominal 95%
    assert 0.88 * repetitions <= covered <= binom.interval(0.999, repetitions, 0.95)[1]


def test_errors_name_the_value_and_what_to_do():
    rng = np.random.default_rng(7)
    predicted, true = _noise(rng, 5, 4)
    with pytest.raises(DataError, match=r"same shape.*\(5, 4\) and \(5, 3\)"):
        identification(predicted, true[:, :3])
    with pytest.raises(DataError, match="2-D"):
        similarity_matrix(predicted[0], true[0])
    with pytest.raises(DataError, match=r"at least 2 clips.*n = 1"):
        identification(predicted[:1], true[:1])
    with pytest.raises(DataError, match=r"1 <= k < n: got k = 5 with n = 5"):
        identification(predicted, true, ks=(1, 5))
    with pytest.raises(DataError, match=r"k = 0 with n = 5"):
        top_k_accuracy(similarity_matrix(predicted, true), 0)
    constant = predicted.copy()
    constant[3] = 0.7
    with pytest.raises(DataError, match=r"predicted has zero variance .* clip index 3"):
        similarity_matrix(constant, true)
    with pytest.raises(DataError, match="NaN"):
        similarity_matrix(np.where(predicted > 1, np.nan, predicted), true)
    with pytest.raises(DataError, match=r"null_predictions must have shape \(n_permutations, \*\(5, 4\)\)"):
        identification(predicted, true, null_predictions=rng.standard_normal((3, 4, 4)))
    with pytest.raises(DataError, match=r"labels must have one label per clip, shape \(5,\)"):
        identification(predicted, true, labels=["a", "b"])
    with pytest.raises(DataError, match="confidence"):
        identification(predicted, true, confidence=95)
    with pytest.raises(DataError, match="n_bootstrap"):
        identification(predicted, true, n_bootstrap=-1)
    with pytest.raises(DataError, match="both train_embeddings and train_labels"):
        identification(predicted, true, labels=list("aabbc"), train_embeddings=true)
    with pytest.raises(DataError, match=r"Test genres \['c'\] have no training clips"):
        genre_classification(predicted, list("aabbc"), true, list("aabba"))
    assert issubclass(DataError, ValueError)


def _genre_data(rng, n_genres=5, per_genre_train=12, per_genre_test=6, d=24, spread=0.8, noise=1.0):
    centres = rng.standard_normal((n_genres, d))
    train_labels = np.repeat(np.arange(n_genres), per_genre_train)
    labels = np.repeat(np.arange(n_genres), per_genre_test)
    train = centres[train_labels] + spread * rng.standard_normal((len(train_labels), d))
    true = centres[labels] + spread * rng.standard_normal((len(labels), d))
    predicted = true + noise * rng.standard_normal(true.shape)
    names = np.array(["rock", "jazz", "pop", "folk", "ambient", "metal"][:n_genres])
    return predicted, true, names[labels], train, names[train_labels]


def test_genre_classification_recovers_planted_genres_and_is_at_chance_on_shuffled_labels():
    rng = np.random.default_rng(8)
    predicted, _, labels, train, train_labels = _genre_data(rng)
    result = genre_classification(predicted, labels, train, train_labels, n_permutations=999, n_bootstrap=200)
    # brute force: nearest centroid by correlation
    genres = sorted(set(train_labels))
    centroids = np.array([train[train_labels == g].mean(axis=0) for g in genres])
    brute = np.array([genres[int(np.argmax([np.corrcoef(p, c)[0, 1] for c in centroids]))] for p in predicted])
    assert result.predicted_labels.tolist() == brute.tolist()
    assert result.accuracy == pytest.approx(np.mean(brute == labels))
    assert result.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, brute))
    assert result.accuracy > 0.8 and result.p_value["accuracy"] == pytest.approx(1 / 1000)
    assert result.chance == 0.2 and result.genres == genres
    assert result.ci["accuracy"][0] <= result.accuracy <= result.ci["accuracy"][1]
    confusion = result.confusion
    assert isinstance(confusion, pd.DataFrame) and confusion.to_numpy().sum() == len(labels)
    assert np.trace(confusion.loc[genres, genres].to_numpy()) == (brute == labels).sum()
    assert confusion.loc["rock"].sum() == 6
    # shuffled test labels: the predictions know nothing of them
    accuracies, rejections = [], 0
    for _ in range(60):
        shuffled = rng.permutation(labels)
        null_result = genre_classification(predicted, shuffled, train, train_labels, n_permutations=199, n_bootstrap=0)
        accuracies.append(null_result.accuracy)
        rejections += null_result.p_value["accuracy"] <= 0.05
    assert np.mean(accuracies) == pytest.approx(0.2, abs=0.04)
    assert rejections <= binom.interval(0.999, 60, 0.05)[1]
    json.dumps(result.to_dict(), allow_nan=False)


def test_per_genre_table_averages_back_to_the_overall_scores():
    rng = np.random.default_rng(9)
    predicted, true, labels, train, train_labels = _genre_data(rng, noise=3.0)
    labels = labels.copy()
    labels[:4] = "metal"  # unequal group sizes
    result = identification(predicted, true, ks=(1, 3), n_bootstrap=100, n_permutations=99, labels=labels)
    table = result.by_label
    assert list(table.columns) == ["genre", "n_clips", "pairwise", "ci_low", "ci_high", "mean_rank", "top_1", "top_3"]
    assert table["n_clips"].sum() == len(labels) and table.loc[table.genre == "metal", "n_clips"].item() == 4
    for name in ("pairwise", "mean_rank", "top_1", "top_3"):
        assert (table["n_clips"] * table[name]).sum() / len(labels) == pytest.approx(result.values[name])
    assert (table["ci_low"] <= table["pairwise"]).all() and (table["pairwise"] <= table["ci_high"]).all()
    direct = identification_by_label(result.similarity, labels, (1, 3), n_bootstrap=0)
    pd.testing.assert_frame_equal(direct.drop(columns=["ci_low", "ci_high"]),
                                  table.drop(columns=["ci_low", "ci_high"]))
    assert result.genre is None
    # the test labels include "metal", which has no training clips here: no centroid to classify it by
    with pytest.raises(DataError, match="metal"):
        identification(predicted, true, labels=labels, train_embeddings=train, train_labels=train_labels)


def test_result_table_dict_reproducibility_and_speed():
    rng = np.random.default_rng(10)
    true = rng.standard_normal((60, 128))
    predicted = true + 4.0 * rng.standard_normal((60, 128))
    start = time.perf_counter()
    result = identification(predicted, true, n_bootstrap=1000, n_permutations=1000)
    assert time.perf_counter() - start < 1.0  # 60 clips x 1000 resamples and permutations
    table = result.table()
    assert list(table.columns) == ["metric", "value", "ci_low", "ci_high", "chance", "p_value", "p_value_external"]
    assert table["metric"].tolist() == ["pairwise", "mean_rank", "top_1", "top_3"]
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert table["p_value"].notna().all() and table["p_value_external"].isna().all()
    assert result.rank.shape == result.pairwise.shape == result.top_k[3].shape == (60,)
    encoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert encoded["values"]["top_1"] == result.values["top_1"] and encoded["p_value_external"]["top_1"] is None
    again = identification(predicted, true, n_bootstrap=1000, n_permutations=1000)
    assert again.ci == result.ci and again.p_value == result.p_value
    other = identification(predicted, true, n_bootstrap=1000, n_permutations=1000, random_state=1)
    assert other.ci != result.ci
    assert all(np.isnan(percentile_interval(np.array([np.nan, np.nan]))))
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
