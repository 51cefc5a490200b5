"""Identification metrics of decoded embeddings, with bootstrap intervals and permutation nulls.

Inputs are clip-level: ``predicted`` and ``true`` of shape (n_clips, n_dims), one decoded and one
true embedding per test clip (ds003720: 60 test clips). Everything starts from the similarity
matrix ``S[i, j] = corr(predicted_i, true_j)``, Pearson's r across the embedding's dimensions.
For clip ``i`` (its *target* is ``true_i``, its *foils* the other clips' ``true_j``) let

- ``g_i = #{j != i : S[i, j] > S[i, i]}`` (foils that beat the target) and
- ``t_i = #{j != i : S[i, j] = S[i, i]}`` (ties: within :data:`TIE_TOLERANCE`).

Then, with ties broken at random (every number below is its expectation over the tie-breaks):

- **pairwise identification** (Brain2Music): ``p_i = 1 - (g_i + t_i / 2) / (n - 1)``, the fraction
  of foils the target beats, a tie counting 1/2; the score is ``mean_i p_i``, chance 0.5;
- **rank** of the target among all ``n`` candidates: ``r_i = 1 + g_i + t_i / 2`` (1 = best, ties
  averaged), so ``r_i = 1 + (n - 1)(1 - p_i)``; mean rank, chance ``(n + 1) / 2``;
- **top-k accuracy** (n-way identification): ``a_i = clip((k - g_i) / (t_i + 1), 0, 1)``, the
  probability that the target lands among the first ``k`` when its ``t_i + 1`` tied candidates are
  ordered at random (``[r_i <= k]`` without ties); chance ``k / n`` (60-way top-1: 1/60).

**Bootstrap over clips.** A resample draws ``n`` clips with replacement; clip ``c`` drawn ``w_c``
times. Each drawn clip is scored against the *other distinct clips* of the resample, each counted
``w_d`` times: a copy of clip ``c`` is never a foil of ``c`` (it has the same true embedding, so it
would tie by construction). With ``G_c = sum_{d != c} w_d [S[c, d] > S[c, c]]`` and ``T_c`` the
same sum over ties, clip ``c`` has ``m_c = n - w_c`` foil draws and

- ``p_c = 1 - (G_c + T_c / 2) / m_c``;
- ``r_c`` and ``a_c`` as above with the counts scaled to ``n - 1`` foils (``G_c (n - 1) / m_c``):
  the ``w_c - 1`` copies of ``c`` are replaced by the average foil, so that every resample scores
  an n-way problem with the original chance levels.

The resample's metric is ``sum_c w_c x_c / n``; with all ``w_c = 1`` this is the metric of the
data. This is the bootstrap of a two-sample U-statistic with the same-clip pairs left out, so the
interval reflects the sampling of both the targets and the foils. Intervals are percentile
intervals; a resample with a single distinct clip (no foils) is left out (NaN).

**Nulls.** The *shuffle* null permutes the assignment of true embeddings to predictions
(prediction ``i`` is scored as if its target were ``true_{pi(i)}``, against the other ``n - 1``
clips): exact under exchangeable clips when the predictions carry no clip-specific information.
*External* nulls score null predictions given by the caller (shape (n_permutations, n_clips,
n_dims), e.g. decoders refitted on block-permuted training responses) against the real ``true``.
p-values count the observed value among the null, ``(1 + #{null >= observed}) / (1 + K)``
(``<=`` for the mean rank, where lower is better: it gives the pairwise p-value).

**Genres.** Per-clip values grouped by a label (genre) give a table whose rows average back to
the overall score (weighted by ``n_clips``); their intervals resample the genre's clips with the
candidate set of all ``n`` clips held fixed. Genre classification assigns each decoded embedding to
the genre whose centroid (the mean *true* embedding of that genre's training clips) it correlates
with most (ties: the first genre in sorted order); accuracy (chance ``1 / n_genres``), balanced
accuracy (mean recall over the genres in the test labels), a confusion matrix, bootstrap intervals
over test clips and a permutation p-value with the test labels shuffled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from encoding.errors import DataError

TIE_TOLERANCE = 1e-12  # correlations closer than this count as equal (float noise of equal values)

_CHUNK_ELEMENTS = 2**24  # bound on the (chunk, n, n) arrays of external nulls and bootstraps


# --------------------------------------------------------------------------- checks


def _as_embeddings(array, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (n_clips, n_dims) of clip embeddings, got shape {array.shape}.")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise DataError(f"{name} contains NaN or inf values (clip indices {rows[:5].tolist()}); "
                        "remove or impute them before scoring.")
    return array


def _check_pair(predicted, true) -> tuple[np.ndarray, np.ndarray]:
    predicted = _as_embeddings(predicted, "predicted")
    true = _as_embeddings(true, "true")
    if predicted.shape != true.shape:
        raise DataError(f"predicted and true must have the same shape (n_clips, n_dims): got {predicted.shape} and "
                        f"{true.shape}; give one decoded and one true embedding per test clip, in the same order.")
    return predicted, true


def _check_clips(n_clips: int, ks: Sequence[int] = ()) -> tuple[int, ...]:
    if n_clips < 2:
        raise DataError(f"Identification needs at least 2 clips (a target and a foil), got n = {n_clips}.")
    checked = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise DataError(f"top-k accuracy needs integer k, got k = {k!r}.")
        if not 1 <= k < n_clips:
            raise DataError(f"top-k accuracy needs 1 <= k < n: got k = {k} with n = {n_clips} clips "
                            f"(k >= n is always 1); use k below {n_clips} or more clips.")
        checked.append(int(k))
    return tuple(sorted(set(checked)))


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise DataError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    return float(confidence)


def _check_similarity(similarity) -> np.ndarray:
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise DataError(f"similarity must be a square (n_clips, n_clips) matrix, got shape {similarity.shape}.")
    if not np.isfinite(similarity).all():
        raise DataError("similarity contains NaN or inf values.")
    _check_clips(similarity.shape[0])
    return similarity


def _check_labels(labels, n_clips: int, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_clips,):
        raise DataError(f"{name} must have one label per clip, shape ({n_clips},), got shape {labels.shape}.")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise DataError(f"{name} contains NaN; give every clip a label.")
    if labels.dtype == object and any(label is None for label in labels):
        raise DataError(f"{name} contains None; give every clip a label.")
    return labels


# --------------------------------------------------------------------------- similarity and per-clip metrics


def _standardise(array: np.ndarray, name: str, what: str = "clip") -> np.ndarray:
    """Rows centred and scaled to unit norm (so that a dot product is Pearson's r), along the last axis."""
    flat = array.reshape(-1, array.shape[-1])
    constant = np.ptp(flat, axis=1) == 0
    if constant.any():
        index = np.unravel_index(int(np.flatnonzero(constant)[0]), array.shape[:-1])
        where = f"{what} index {index[-1]}" + (f" of null {index[0]}" if len(index) > 1 else "")
        raise DataError(f"{name} has zero variance across its {array.shape[-1]} dimensions at {where} "
                        f"({int(constant.sum())} constant row(s) in all); Pearson correlation is undefined for a "
                        "constant embedding: check the decoder's output or drop that clip.")
    centred = array - array.mean(axis=-1, keepdims=True)
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True)


def similarity_matrix(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson correlation of every decoded embedding with every true embedding.

    Parameters
    ----------
    predicted, true : ndarray, shape (n_clips, n_dims)
        Decoded and true embedding of each clip, rows in the same clip order.

    Returns
    -------
    ndarray, shape (n_clips, n_clips), float64
        ``S[i, j] = corr(predicted_i, true_j)`` across dimensions, in [-1, 1].

    Raises
    ------
    DataError
        Shapes differ, values are not finite, or a row is constant (its clip index is named).
    """
    predicted, true = _check_pair(predicted, true)
    return np.clip(_standardise(predicted, "predicted") @ _standardise(true, "true").T, -1.0, 1.0)


def _counts(similarity: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row ``i`` and each value ``v = values[i, m]``: the entries of row ``i`` above ``v`` and
    those within :data:`TIE_TOLERANCE` of it (counting the entry that is ``v`` itself), shapes (n, m)."""
    n = similarity.shape[1]
    rows = np.sort(similarity, axis=1)
    greater = np.empty(values.shape, dtype=np.int64)
    within = np.empty(values.shape, dtype=np.int64)
    for i, (row, queries) in enumerate(zip(rows, values, strict=True)):
        upper = np.searchsorted(row, queries + TIE_TOLERANCE, side="right")
        greater[i] = n - upper
        within[i] = upper - np.searchsorted(row, queries - TIE_TOLERANCE, side="left")
    return greater, within


def identification_counts(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foils that beat each clip's target and foils tied with it.

    Parameters
    ----------
    similarity : ndarray, shape (n_clips, n_clips)
        ``S[i, j] = corr(predicted_i, true_j)``.

    Returns
    -------
    greater, ties : ndarray of int, shape (n_clips,)
        ``#{j != i : S[i, j] > S[i, i]}`` and ``#{j != i : |S[i, j] - S[i, i]| <= TIE_TOLERANCE}``.
    """
    similarity = _check_similarity(similarity)
    greater, within = _counts(similarity, np.diag(similarity)[:, None])
    return greater[:, 0], within[:, 0] - 1


def _pairwise(greater, ties, n_foils):
    return 1.0 - (greater + 0.5 * ties) / n_foils


def _top_k(greater, ties, k: int):
    return np.clip((k - greater) / (ties + 1.0), 0.0, 1.0)


def pairwise_identification(similarity: np.ndarray) -> np.ndarray:
    """Brain2Music's pairwise identification of each clip.

    Returns
    -------
    ndarray, shape (n_clips,)
        Fraction of the other clips ``j`` with ``S[i, i] > S[i, j]`` (ties 1/2); chance 0.5. The
        score is the mean.
    """
    greater, ties = identification_counts(similarity)
    return _pairwise(greater, ties, similarity.shape[0] - 1)


def identification_rank(similarity: np.ndarray) -> np.ndarray:
    """Rank of each clip's target among all ``n`` candidates (1 = best; ties averaged).

    Returns
    -------
    ndarray, shape (n_clips,)
        ``1 + #{beating foils} + #{tied foils} / 2``; the mean rank's chance level is ``(n + 1) / 2``.
    """
    greater, ties = identification_counts(similarity)
    return 1.0 + greater + 0.5 * ties


def top_k_accuracy(similarity: np.ndarray, k: int) -> np.ndarray:
    """Whether each clip's target is among the ``k`` candidates most correlated with its prediction.

    Returns
    -------
    ndarray, shape (n_clips,)
        1 or 0 (a fraction under ties: the probability over random tie-breaks); chance ``k / n``.
    """
    (k,) = _check_clips(np.shape(similarity)[0], (k,))
    greater, ties = identification_counts(similarity)
    return _top_k(greater, ties, k)


def metric_names(ks: Sequence[int]) -> list[str]:
    """Names of the identification metrics: ``pairwise``, ``mean_rank``, ``top_<k>`` per k."""
    return ["pairwise", "mean_rank", *(f"top_{k}" for k in ks)]


def chance_levels(n_clips: int, ks: Sequence[int]) -> dict[str, float]:
    """Expected value of each metric for predictions that carry no information about the clips."""
    ks = _check_clips(n_clips, ks)
    return {"pairwise": 0.5, "mean_rank": (n_clips + 1) / 2, **{f"top_{k}": k / n_clips for k in ks}}


def _metrics_from_counts(greater, ties, n_clips: int, ks: Sequence[int], axis: int = -1) -> dict[str, np.ndarray]:
    """Clip-averaged metrics from per-clip counts (``axis`` indexes clips)."""
    out = {"pairwise": _pairwise(greater, ties, n_clips - 1).mean(axis=axis),
           "mean_rank": (1.0 + greater + 0.5 * ties).mean(axis=axis)}
    for k in ks:
        out[f"top_{k}"] = _top_k(greater, ties, k).mean(axis=axis)
    return out


# --------------------------------------------------------------------------- uncertainty


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaN samples ignored; NaNs when there are none)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    tail = (1.0 - _check_confidence(confidence)) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def permutation_p_value(null: np.ndarray, observed: float, greater: bool = True) -> float:
    """``(1 + #{null >= observed}) / (1 + K)`` (``<=`` when ``greater`` is False); NaN for an empty null."""
    null = np.asarray(null, dtype=np.float64)
    if null.size == 0:
        return math.nan
    # a null value equal to the observed one up to float noise counts as reaching it
    slack = 1e-12 * max(1.0, abs(observed))
    exceed = (null >= observed - slack) if greater else (null <= observed + slack)
    return float((1 + exceed.sum()) / (1 + null.size))


def _resample_weights(n_clips: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    draws = rng.integers(0, n_clips, size=(n_bootstrap, n_clips))
    offsets = (np.arange(n_bootstrap) * n_clips)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_bootstrap * n_clips).reshape(n_bootstrap, n_clips)


def bootstrap_identification(similarity: np.ndarray, ks: Sequence[int] = (1, 3), n_bootstrap: int = 1000,
                             random_state: int | np.random.Generator | None = 0) -> dict[str, np.ndarray]:
    """Identification metrics of clip resamples (with replacement), copies of a clip never its own foils.

    Parameters
    ----------
    similarity : ndarray, shape (n_clips, n_clips)
    ks : sequence of int
        Top-k accuracies to resample.
    n_bootstrap : int
    random_state : int, Generator or None

    Returns
    -------
    dict of str to ndarray, shape (n_bootstrap,)
        One value per resample for each of :func:`metric_names` (see the module docstring; NaN for
        a resample of a single distinct clip).
    """
    similarity = _check_similarity(similarity)
    n = similarity.shape[0]
    ks = _check_clips(n, ks)
    n_bootstrap = _check_count(n_bootstrap, "n_bootstrap")
    weights = _resample_weights(n, n_bootstrap, np.random.default_rng(random_state)).astype(np.float64)
    diagonal = np.diag(similarity)[:, None]
    off_diagonal = ~np.eye(n, dtype=bool)
    beats = ((similarity > diagonal + TIE_TOLERANCE) & off_diagonal).astype(np.float64)  # (target c, foil d)
    ties = ((np.abs(similarity - diagonal) <= TIE_TOLERANCE) & off_diagonal).astype(np.float64)
    greater, tied = weights @ beats.T, weights @ ties.T  # (n_bootstrap, n): weighted foil counts
    n_foils = n - weights
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_foils > 0, (n - 1) / n_foils, np.nan)  # NaN: a clip with no foils in its resample
        greater, tied = greater * scale, tied * scale  # scaled to n - 1 foils
        per_clip = {"pairwise": _pairwise(greater, tied, n - 1), "mean_rank": 1.0 + greater + 0.5 * tied}
        per_clip.update({f"top_{k}": _top_k(greater, tied, k) for k in ks})
    # clips not drawn (weight 0) contribute nothing, even where their value is NaN
    return {name: (weights * np.where(weights > 0, values, 0.0)).sum(axis=1) / n for name, values in per_clip.items()}


def shuffle_null(similarity: np.ndarray, ks: Sequence[int] = (1, 3), n_permutations: int = 1000,
                 random_state: int | np.random.Generator | None = 0) -> dict[str, np.ndarray]:
    """Identification metrics with the true embeddings' assignment to predictions shuffled.

    Under permutation ``pi`` prediction ``i`` is scored with ``true_{pi(i)}`` as its target and the
    other ``n - 1`` clips as foils.

    Returns
    -------
    dict of str to ndarray, shape (n_permutations,)
        The null distribution of each of :func:`metric_names`.
    """
    similarity = _check_similarity(similarity)
    n = similarity.shape[0]
    ks = _check_clips(n, ks)
    n_permutations = _check_count(n_permutations, "n_permutations")
    rng = np.random.default_rng(random_state)
    targets = rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1).T  # (n, n_permutations)
    greater, within = _counts(similarity, np.take_along_axis(similarity, targets, axis=1))
    return _metrics_from_counts(greater, within - 1, n, ks, axis=0)


def null_from_predictions(null_predictions: np.ndarray, true: np.ndarray,
                          ks: Sequence[int] = (1, 3)) -> dict[str, np.ndarray]:
    """Identification metrics of externally computed null predictions against the real embeddings.

    Parameters
    ----------
    null_predictions : ndarray, shape (n_permutations, n_clips, n_dims)
        E.g. the test predictions of decoders refitted on block-permuted training data.
    true : ndarray, shape (n_clips, n_dims)

    Returns
    -------
    dict of str to ndarray, shape (n_permutations,)
    """
    true = _as_embeddings(true, "true")
    null_predictions = np.asarray(null_predictions, dtype=np.float64)
    if null_predictions.ndim != 3 or null_predictions.shape[1:] != true.shape:
        raise DataError(f"null_predictions must have shape (n_permutations, *{true.shape}) (one set of null "
                        f"predictions per permutation, clips as in true), got shape {null_predictions.shape}.")
    if not np.isfinite(null_predictions).all():
        raise DataError("null_predictions contains NaN or inf values.")
    n = true.shape[0]
    ks = _check_clips(n, ks)
    true_std = _standardise(true, "true").T
    chunk = max(1, _CHUNK_ELEMENTS // (n * n))
    greater, ties = [], []
    for start in range(0, null_predictions.shape[0], chunk):
        block = _standardise(null_predictions[start:start + chunk], "null_predictions")
        similarity = np.clip(block @ true_std, -1.0, 1.0)  # (chunk, n, n)
        diagonal = np.diagonal(similarity, axis1=1, axis2=2)[..., None]
        greater.append((similarity > diagonal + TIE_TOLERANCE).sum(axis=2))
        ties.append((np.abs(similarity - diagonal) <= TIE_TOLERANCE).sum(axis=2) - 1)
    if not greater:
        return {name: np.empty(0) for name in metric_names(ks)}
    return _metrics_from_counts(np.concatenate(greater), np.concatenate(ties), n, ks, axis=1)


# --------------------------------------------------------------------------- genres


def identification_by_label(similarity: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 3),
                            n_bootstrap: int = 1000, confidence: float = 0.95,
                            random_state: int | np.random.Generator | None = 0) -> pd.DataFrame:
    """Per-clip identification (against all ``n`` clips) averaged within each label (genre).

    Parameters
    ----------
    similarity : ndarray, shape (n_clips, n_clips)
    labels : array, shape (n_clips,)
        Genre of each test clip.
    ks, n_bootstrap, confidence, random_state
        As in :func:`identification`; the interval resamples the genre's clips (percentile).

    Returns
    -------
    DataFrame
        One row per label (sorted): ``genre``, ``n_clips``, ``pairwise``, ``ci_low``, ``ci_high``
        (of ``pairwise``), ``mean_rank``, ``top_<k>``; ``sum(n_clips * pairwise) / n`` is the overall
        pairwise score.
    """
    similarity = _check_similarity(similarity)
    n = similarity.shape[0]
    ks = _check_clips(n, ks)
    labels = _check_labels(labels, n)
    n_bootstrap = _check_count(n_bootstrap, "n_bootstrap")
    confidence = _check_confidence(confidence)
    rng = np.random.default_rng(random_state)
    greater, ties = identification_counts(similarity)
    pairwise = _pairwise(greater, ties, n - 1)
    rows = []
    for genre in np.unique(labels):
        members = np.flatnonzero(labels == genre)
        values = pairwise[members]
        resampled = values[rng.integers(0, len(values), size=(n_bootstrap, len(values)))].mean(axis=1)
        low, high = percentile_interval(resampled, confidence)
        row = {"genre": genre.item() if isinstance(genre, np.generic) else genre, "n_clips": len(members),
               "pairwise": float(values.mean()), "ci_low": low, "ci_high": high,
               "mean_rank": float((1.0 + greater[members] + 0.5 * ties[members]).mean())}
        row.update({f"top_{k}": float(_top_k(greater[members], ties[members], k).mean()) for k in ks})
        rows.append(row)
    return pd.DataFrame(rows)


def genre_centroids(train_embeddings: np.ndarray, train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean true embedding of each genre's training clips.

    Returns
    -------
    genres : ndarray, shape (n_genres,)
        Sorted.
    centroids : ndarray, shape (n_genres, n_dims)
    """
    train_embeddings = _as_embeddings(train_embeddings, "train_embeddings")
    train_labels = _check_labels(train_labels, train_embeddings.shape[0], "train_labels")
    genres, codes = np.unique(train_labels, return_inverse=True)
    if len(genres) < 2:
        raise DataError(f"Genre classification needs training clips of at least 2 genres, got {genres.tolist()}.")
    sums = np.zeros((len(genres), train_embeddings.shape[1]))
    np.add.at(sums, codes, train_embeddings)
    centroids = sums / np.bincount(codes)[:, None]
    constant = np.ptp(centroids, axis=1) == 0
    if constant.any():
        raise DataError(f"The training centroid of genre {genres[constant][0]!r} is constant across dimensions; "
                        "correlation with it is undefined: check the training embeddings.")
    return genres, centroids


@dataclass
class GenreClassificationResult:
    """Nearest-centroid genre classification of decoded embeddings.

    Attributes
    ----------
    genres : list
        The classes (training genres, sorted); ``chance = 1 / len(genres)``.
    true_labels, predicted_labels : ndarray, shape (n_clips,)
    correlations : ndarray, shape (n_clips, n_genres)
        Correlation of each decoded embedding with each genre centroid.
    accuracy, balanced_accuracy : float
    chance : float
    ci : dict of str to (float, float)
        Percentile bootstrap intervals over test clips (``accuracy``, ``balanced_accuracy``).
    p_value : dict of str to float
        Test labels shuffled, ``(1 + #{null >= observed}) / (1 + K)``.
    null : dict of str to ndarray, shape (n_permutations,)
    confusion : DataFrame
        Counts: rows the true genres of the test clips, columns the predicted (training) genres.
    settings : dict
    """

    genres: list
    true_labels: np.ndarray
    predicted_labels: np.ndarray
    correlations: np.ndarray
    accuracy: float
    balanced_accuracy: float
    chance: float
    ci: dict
    p_value: dict
    null: dict
    confusion: pd.DataFrame
    settings: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Columns ``metric``, ``value``, ``ci_low``, ``ci_high``, ``chance``, ``p_value``."""
        return pd.DataFrame([{"metric": f"genre_{name}", "value": getattr(self, name), "ci_low": self.ci[name][0],
                              "ci_high": self.ci[name][1], "chance": self.chance, "p_value": self.p_value[name]}
                             for name in ("accuracy", "balanced_accuracy")])

    def to_dict(self) -> dict:
        """JSON-able summary (NaN as None)."""
        return _jsonable({"genres": self.genres, "accuracy": self.accuracy,
                          "balanced_accuracy": self.balanced_accuracy, "chance": self.chance, "ci": self.ci,
                          "p_value": self.p_value, "n_clips": len(self.true_labels),
                          "predicted_labels": self.predicted_labels.tolist(),
                          "confusion": {"true": self.confusion.index.tolist(),
                                        "predicted": self.confusion.columns.tolist(),
                                        "counts": self.confusion.to_numpy().tolist()},
                          "settings": self.settings})


def _accuracies(correct: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and balanced accuracy of rows of ``correct`` (shape (m, n)) with true class ``codes`` (m, n);
    classes absent from a row are left out of its balanced accuracy."""
    m = correct.shape[0]
    index = (codes + n_classes * np.arange(m)[:, None]).ravel()
    hits = np.bincount(index, weights=correct.ravel(), minlength=m * n_classes).reshape(m, n_classes)
    totals = np.bincount(index, minlength=m * n_classes).reshape(m, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        balanced = np.nanmean(np.where(totals > 0, hits / totals, np.nan), axis=1)
    return correct.mean(axis=1), balanced


def genre_classification(predicted: np.ndarray, labels: np.ndarray, train_embeddings: np.ndarray,
                         train_labels: np.ndarray, *, n_permutations: int = 1000, n_bootstrap: int = 1000,
                         confidence: float = 0.95,
                         random_state: int | np.random.Generator | None = 0) -> GenreClassificationResult:
    """Classify decoded embeddings by the genre centroid they correlate with most.

    Parameters
    ----------
    predicted : ndarray, shape (n_clips, n_dims)
        Decoded embedding of each test clip.
    labels : array, shape (n_clips,)
        True genre of each test clip; every one must occur among ``train_labels``.
    train_embeddings : ndarray, shape (n_train, n_dims)
        True embeddings of the training clips (the centroids are their genre means).
    train_labels : array, shape (n_train,)
    n_permutations, n_bootstrap : int
        Label shuffles for the p-values; clip resamples for the intervals (0: NaN).
    confidence : float
    random_state : int, Generator or None

    Returns
    -------
    GenreClassificationResult
    """
    predicted = _as_embeddings(predicted, "predicted")
    genres, centroids = genre_centroids(train_embeddings, train_labels)
    if centroids.shape[1] != predicted.shape[1]:
        raise DataError(f"predicted has {predicted.shape[1]} dimensions but train_embeddings {centroids.shape[1]}; "
                        "give embeddings of the same feature space.")
    n = predicted.shape[0]
    _check_clips(n)
    labels = _check_labels(labels, n)
    unknown = np.setdiff1d(labels, genres)
    if unknown.size:
        raise DataError(f"Test genres {unknown.tolist()} have no training clips (training genres: {genres.tolist()}); "
                        "a nearest-centroid classifier cannot predict them.")
    n_permutations = _check_count(n_permutations, "n_permutations")
    n_bootstrap = _check_count(n_bootstrap, "n_bootstrap")
    confidence = _check_confidence(confidence)
    boot_rng, perm_rng = np.random.default_rng(random_state).spawn(2)

    correlations = np.clip(_standardise(predicted, "predicted") @ _standardise(centroids, "centroids", "genre").T,
                           -1.0, 1.0)
    predicted_codes = correlations.argmax(axis=1)
    codes = np.searchsorted(genres, labels)
    n_classes = len(genres)
    correct = (predicted_codes == codes).astype(np.float64)
    accuracy, balanced = (float(v[0]) for v in _accuracies(correct[None], codes[None], n_classes))

    draws = boot_rng.integers(0, n, size=(n_bootstrap, n))
    boot_acc, boot_bal = _accuracies(correct[draws], codes[draws], n_classes)
    shuffled = perm_rng.permuted(np.tile(codes, (n_permutations, 1)), axis=1)
    null_acc, null_bal = _accuracies((shuffled == predicted_codes).astype(np.float64), shuffled, n_classes)

    present = genres[np.isin(genres, labels)]
    confusion = pd.DataFrame(0, index=pd.Index(present.tolist(), name="true"),
                             columns=pd.Index(genres.tolist(), name="predicted"))
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (codes, predicted_codes), 1)
    confusion.loc[:, :] = counts[np.isin(genres, labels)]
    return GenreClassificationResult(
        genres=genres.tolist(), true_labels=labels, predicted_labels=genres[predicted_codes],
        correlations=correlations, accuracy=accuracy, balanced_accuracy=balanced, chance=1.0 / n_classes,
        ci={"accuracy": percentile_interval(boot_acc, confidence),
            "balanced_accuracy": percentile_interval(boot_bal, confidence)},
        p_value={"accuracy": permutation_p_value(null_acc, accuracy),
                 "balanced_accuracy": permutation_p_value(null_bal, balanced)},
        null={"accuracy": null_acc, "balanced_accuracy": null_bal}, confusion=confusion,
        settings={"n_permutations": n_permutations, "n_bootstrap": n_bootstrap, "confidence": confidence,
                  "random_state": random_state if isinstance(random_state, int | None) else "generator"})


# --------------------------------------------------------------------------- entry point


@dataclass
class IdentificationResult:
    """Identification of decoded embeddings, with intervals, nulls and chance levels.

    Attributes
    ----------
    n_clips : int
    ks : tuple of int
    similarity : ndarray, shape (n_clips, n_clips)
        ``corr(predicted_i, true_j)``.
    pairwise, rank : ndarray, shape (n_clips,)
        Per-clip pairwise identification and rank of the target (1 = best).
    top_k : dict of int to ndarray, shape (n_clips,)
        Per-clip top-k hits.
    values, chance : dict of str to float
        Each metric (:func:`metric_names`) and its chance level.
    ci : dict of str to (float, float)
        Percentile bootstrap intervals over clips (NaN without resamples).
    p_value : dict of str to float
        Shuffle null (NaN without permutations).
    p_value_external : dict of str to float
        Null of the given ``null_predictions`` (NaN without).
    bootstrap, null, null_external : dict of str to ndarray
        The resampled values and the null distributions.
    by_label : DataFrame or None
        Per-genre table (:func:`identification_by_label`) when labels were given.
    genre : GenreClassificationResult or None
        When labels and the training embeddings were given.
    settings : dict
    """

    n_clips: int
    ks: tuple
    similarity: np.ndarray
    pairwise: np.ndarray
    rank: np.ndarray
    top_k: dict
    values: dict
    chance: dict
    ci: dict
    p_value: dict
    p_value_external: dict
    bootstrap: dict
    null: dict
    null_external: dict
    by_label: pd.DataFrame | None = None
    genre: GenreClassificationResult | None = None
    settings: dict = field(default_factory=dict)

    def _repr_html_(self) -> str:
        from encoding.io import html_summary

        return html_summary(f"IdentificationResult ({self.n_clips} test clips)", {}, self.table())

    def table(self) -> pd.DataFrame:
        """One row per metric: ``metric``, ``value``, ``ci_low``, ``ci_high``, ``chance``, ``p_value`` (shuffle
        null) and ``p_value_external`` (null predictions); genre classification rows follow when computed."""
        rows = [{"metric": name, "value": self.values[name], "ci_low": self.ci[name][0],
                 "ci_high": self.ci[name][1], "chance": self.chance[name], "p_value": self.p_value[name],
                 "p_value_external": self.p_value_external[name]} for name in self.values]
        table = pd.DataFrame(rows)
        if self.genre is not None:
            genre = self.genre.table()
            genre["p_value_external"] = math.nan
            table = pd.concat([table, genre], ignore_index=True)
        return table

    def to_dict(self) -> dict:
        """JSON-able: the summary numbers, intervals, p-values, per-clip values and tables (NaN as None)."""
        out = {"n_clips": self.n_clips, "ks": list(self.ks), "values": self.values, "chance": self.chance,
               "ci": self.ci, "p_value": self.p_value, "p_value_external": self.p_value_external,
               "per_clip": {"pairwise": self.pairwise.tolist(), "rank": self.rank.tolist(),
                            **{f"top_{k}": v.tolist() for k, v in self.top_k.items()}},
               "settings": self.settings}
        if self.by_label is not None:
            out["by_label"] = self.by_label.to_dict(orient="records")
        if self.genre is not None:
            out["genre"] = self.genre.to_dict()
        return _jsonable(out)


def identification(predicted: np.ndarray, true: np.ndarray, *, ks: Sequence[int] = (1, 3), n_bootstrap: int = 1000,
                   n_permutations: int = 1000, null_predictions: np.ndarray | None = None,
                   labels: np.ndarray | None = None, train_embeddings: np.ndarray | None = None,
                   train_labels: np.ndarray | None = None, confidence: float = 0.95,
                   random_state: int | None = 0) -> IdentificationResult:
    """Pairwise and n-way identification of decoded embeddings, with their uncertainty.

    Parameters
    ----------
    predicted, true : ndarray, shape (n_clips, n_dims)
        Decoded and true embedding of each test clip (same clip order).
    ks : sequence of int
        Top-k accuracies (each ``1 <= k < n_clips``); ``(1, 3)`` over 60 clips is 60-way top-1/top-3.
    n_bootstrap : int
        Clip resamples for the percentile intervals (0: none).
    n_permutations : int
        Shuffles of the true embeddings' assignment for the p-values (0: none).
    null_predictions : ndarray, shape (n_permutations_external, n_clips, n_dims), optional
        Null predictions computed elsewhere (e.g. refitted on block-permuted training data), scored
        against ``true`` for ``p_value_external``.
    labels : array, shape (n_clips,), optional
        Genre of each test clip: adds the per-genre table ``by_label``.
    train_embeddings, train_labels : optional
        True embeddings (n_train, n_dims) and genres (n_train,) of the training clips: with
        ``labels``, adds nearest-centroid genre classification (``genre``).
    confidence : float
        Of the intervals.
    random_state : int or None
        Seeds the resamples and the permutations (independent streams).

    Returns
    -------
    IdentificationResult

    Raises
    ------
    DataError
        Shapes disagree, values are not finite, a row is constant, there are fewer than 2 clips,
        a ``k`` is not below ``n_clips``, or the genre inputs are inconsistent.
    """
    similarity = similarity_matrix(predicted, true)
    n = similarity.shape[0]
    ks = _check_clips(n, ks)
    n_bootstrap = _check_count(n_bootstrap, "n_bootstrap")
    n_permutations = _check_count(n_permutations, "n_permutations")
    confidence = _check_confidence(confidence)
    if (train_embeddings is None) != (train_labels is None):
        raise DataError("Give both train_embeddings and train_labels (the training clips' true embeddings and "
                        "genres) for genre classification, or neither.")
    if train_embeddings is not None and labels is None:
        raise DataError("Genre classification needs the test clips' labels too; pass labels=.")
    if labels is not None:
        labels = _check_labels(labels, n)
    boot_rng, perm_rng, label_rng, genre_rng = np.random.default_rng(random_state).spawn(4)

    greater, ties = identification_counts(similarity)
    pairwise = _pairwise(greater, ties, n - 1)
    rank = 1.0 + greater + 0.5 * ties
    top_k = {k: _top_k(greater, ties, k) for k in ks}
    values = {name: float(v) for name, v in _metrics_from_counts(greater, ties, n, ks).items()}
    names = list(values)

    bootstrap = bootstrap_identification(similarity, ks, n_bootstrap, boot_rng)
    null = shuffle_null(similarity, ks, n_permutations, perm_rng)
    if null_predictions is not None:
        null_external = null_from_predictions(null_predictions, true, ks)
    else:
        null_external = {name: np.empty(0) for name in names}

    def p(distribution: dict) -> dict:
        return {name: permutation_p_value(distribution[name], values[name], greater=name != "mean_rank")
                for name in names}

    by_label = genre = None
    if labels is not None:
        by_label = identification_by_label(similarity, labels, ks, n_bootstrap, confidence, label_rng)
    if train_embeddings is not None:
        genre = genre_classification(predicted, labels, train_embeddings, train_labels,
                                     n_permutations=n_permutations, n_bootstrap=n_bootstrap, confidence=confidence,
                                     random_state=genre_rng)
    return IdentificationResult(
        n_clips=n, ks=ks, similarity=similarity, pairwise=pairwise, rank=rank, top_k=top_k, values=values,
        chance=chance_levels(n, ks), ci={name: percentile_interval(bootstrap[name], confidence) for name in names},
        p_value=p(null), p_value_external=p(null_external), bootstrap=bootstrap, null=null,
        null_external=null_external, by_label=by_label, genre=genre,
        settings={"n_bootstrap": n_bootstrap, "n_permutations": n_permutations,
                  "n_null_predictions": 0 if null_predictions is None else int(np.shape(null_predictions)[0]),
                  "confidence": confidence, "random_state": random_state, "tie_tolerance": TIE_TOLERANCE})


def _jsonable(obj):
    """Builtin types only, NaN and inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
