"""Scores of predicted responses, one kernel for every step, and recovery of a simulation's ground truth.

The cross-validation of the solver, the permutation nulls, the bootstrap of unique variance and
the reports all score through the functions here, so a score means the same thing everywhere:

- R^2 of a column: ``1 - RSS / TSS``, with ``RSS = sum (y - p)^2`` and ``TSS = sum (y - mean y)^2``;
- Pearson r: ``sum y_c p_c / sqrt(sum y_c^2 sum p_c^2)`` (``_c``: centred);
- split R^2 of band ``b`` (himalaya's ``r2_score_split`` product measure, with ``y`` centred and
  ``P = sum_b p_b``): ``(2 y_c . p_b - p_b . P) / TSS``; the shares sum to ``1 - ||y_c - P||^2 / TSS``.

**One rule for degenerate columns**: a vertex whose responses are constant (``TSS`` at most
:data:`CONSTANT_TOLERANCE` per sample; responses are z-scored per run, so a real vertex has about
1 per sample) has nothing to explain: all its scores are 0, never NaN or -inf, so that fold
averages, permutation counts and maps treat it alike; a constant prediction (centred sum of squares
0, up to :data:`PREDICTION_TOLERANCE`: r does not depend on the prediction's scale) has r = 0.

The ``*_from_sums`` functions take sums that the caller computed (in float64 or on any himalaya
backend: they use array operators only), so the solver can score batches of alphas from its
factorizations without forming predictions twice.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

CONSTANT_TOLERANCE = 1e-10  # sum of squares per sample below which a column counts as constant


PREDICTION_TOLERANCE = 1e-30  # predictions can be tiny (strong penalties) and r is scale-free: only 0 is constant


def _floor_and_live(total_squares, n_samples: int, tolerance: float = CONSTANT_TOLERANCE):
    floor = tolerance * n_samples
    live = total_squares > floor
    return total_squares * live + floor * (~live), live


def r2_from_sums(residual_squares, total_squares, n_samples: int):
    """R^2 from ``RSS`` and ``TSS`` (arrays of any backend, same shape), 0 where the responses are constant."""
    safe, live = _floor_and_live(total_squares, n_samples)
    return live * (1.0 - residual_squares / safe) + 0.0  # + 0.0: a masked -0.0 becomes 0.0


def correlation_from_sums(cross, true_squares, pred_squares, n_samples: int):
    """Pearson r from centred sums ``sum y_c p_c``, ``sum y_c^2``, ``sum p_c^2``; 0 where either side is constant."""
    true_safe, true_live = _floor_and_live(true_squares, n_samples)
    pred_safe, pred_live = _floor_and_live(pred_squares, n_samples, PREDICTION_TOLERANCE)
    return (true_live * pred_live) * cross / (true_safe * pred_safe) ** 0.5 + 0.0


def split_r2_from_sums(cross, overlap, total_squares, n_samples: int):
    """Split R^2 of each band from ``y_c . p_b`` and ``p_b . P`` (shape (..., n_bands, n_vertices)) and ``TSS``."""
    safe, live = _floor_and_live(total_squares, n_samples)
    return live * (2.0 * cross - overlap) / safe + 0.0


class Scorer:
    """Scores of many predictions against fixed responses (their centring and sums computed once).

    Parameters
    ----------
    Y : ndarray, shape (n_samples, n_vertices)
        Observed responses.

    All methods take predictions of shape ``(..., n_samples, n_vertices)`` (any leading axes:
    permutations, bands) and return float64 scores of shape ``(..., n_vertices)``.
    """

    def __init__(self, Y: np.ndarray):
        self.Y = np.asarray(Y, dtype=np.float64)
        if self.Y.ndim == 1:
            self.Y = self.Y[:, None]
        self.n_samples = self.Y.shape[0]
        self.centred = self.Y - self.Y.mean(axis=0)
        self.total = (self.centred**2).sum(axis=0)

    def r2(self, prediction: np.ndarray) -> np.ndarray:
        """Coefficient of determination."""
        residual = ((self.Y - np.asarray(prediction, dtype=np.float64)) ** 2).sum(axis=-2)
        return r2_from_sums(residual, self.total, self.n_samples)

    def r(self, prediction: np.ndarray) -> np.ndarray:
        """Pearson correlation."""
        prediction = np.asarray(prediction, dtype=np.float64)
        centred = prediction - prediction.mean(axis=-2, keepdims=True)
        cross = (self.centred * centred).sum(axis=-2)
        return correlation_from_sums(cross, self.total, (centred**2).sum(axis=-2), self.n_samples)

    def score(self, prediction: np.ndarray, metric: str) -> np.ndarray:
        """``metric`` ``"r2"`` or ``"r"``."""
        if metric not in ("r2", "r"):
            raise ValueError(f"metric must be 'r2' or 'r', got {metric!r}.")
        return self.r2(prediction) if metric == "r2" else self.r(prediction)

    def split_r2(self, predictions: np.ndarray) -> np.ndarray:
        """Split R^2 of band predictions, shape (..., n_bands, n_samples, n_vertices) -> (..., n_bands, n_vertices)."""
        predictions = np.asarray(predictions, dtype=np.float64)
        total = predictions.sum(axis=-3, keepdims=True)
        cross = (self.centred * predictions).sum(axis=-2)
        overlap = (predictions * total).sum(axis=-2)
        return split_r2_from_sums(cross, overlap, self.total, self.n_samples)

    def band_scores(self, predictions: np.ndarray, metric: str, split: bool = True):
        """The score of the bands' summed prediction and each band's split R^2, from sums only.

        Every score here is a function of a few sums over samples: ``y_c . p_b``, ``sum p_b`` and
        ``p_b . p_c``, taken in one pass each over the float32 predictions (no float64 copy, no
        summed prediction materialised); the formulas then run in float64 on arrays without the
        samples axis. Equal to :meth:`score` of the summed prediction and :meth:`split_r2`
        within float32 rounding of the sums (a permutation null's many predictions).

        Parameters
        ----------
        predictions : ndarray, shape (..., n_bands, n_samples, n_vertices)
        metric : {"r2", "r"}
        split : bool
            Also return each band's split R^2.

        Returns
        -------
        score : ndarray, shape (..., n_vertices)
        shares : ndarray, shape (..., n_bands, n_vertices), or None without ``split``
        """
        if metric not in ("r2", "r"):
            raise ValueError(f"metric must be 'r2' or 'r', got {metric!r}.")
        predictions = np.asarray(predictions, dtype=np.float32)
        centred = self.centred.astype(np.float32)
        cross = np.einsum("...btv,tv->...bv", predictions, centred).astype(np.float64)  # y_c . p_b
        sums = predictions.sum(axis=-2, dtype=np.float64)  # sum_t p_b
        grams = np.einsum("...btv,...ctv->...bcv", predictions, predictions).astype(np.float64)  # p_b . p_c
        overlap = grams.sum(axis=-2)  # p_b . P, shape (..., n_bands, n_vertices)
        cross_total, sum_total, squares_total = cross.sum(axis=-2), sums.sum(axis=-2), overlap.sum(axis=-2)
        n, mean = self.n_samples, self.Y.mean(axis=0)
        if metric == "r2":  # sum (y - P)^2 = sum (y_c - (P - mean))^2
            residual = self.total - 2.0 * cross_total + squares_total - 2.0 * mean * sum_total + n * mean**2
            score = r2_from_sums(residual, self.total, n)
        else:
            score = correlation_from_sums(cross_total, self.total, squares_total - sum_total**2 / n, n)
        shares = split_r2_from_sums(cross, overlap, self.total, n) if split else None
        return score, shares


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each column.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_samples, n_vertices)

    Returns
    -------
    ndarray, shape (n_vertices,), float32
        Can be negative; 0 where ``y_true`` is constant (see the module docstring).
    """
    _check_pair(y_true, y_pred)
    return Scorer(y_true).r2(np.asarray(y_pred).reshape(np.shape(y_true)[0], -1)).astype(np.float32)


def correlation_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``y_true`` with the same column of ``y_pred``.

    Returns
    -------
    ndarray, shape (n_vertices,), float32
        0 where either column is constant.
    """
    _check_pair(y_true, y_pred)
    return Scorer(y_true).r(np.asarray(y_pred).reshape(np.shape(y_true)[0], -1)).astype(np.float32)


def split_r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Each band's share of R^2 (himalaya's ``r2_score_split``, ``y_true`` centred first).

    Parameters
    ----------
    y_true : ndarray, shape (n_samples, n_vertices)
    y_pred : ndarray, shape (n_bands, n_samples, n_vertices)

    Returns
    -------
    ndarray, shape (n_bands, n_vertices), float32
    """
    y_pred = np.asarray(y_pred)
    if y_pred.ndim != 3 or y_pred.shape[1:] != np.shape(y_true):
        raise ValueError(f"y_pred must have shape (n_bands, *{np.shape(y_true)}), got {y_pred.shape}.")
    return Scorer(y_true).split_r2(y_pred).astype(np.float32)


def recovery_metrics(
    r2: np.ndarray, split_r2: np.ndarray | None, signal_share: np.ndarray
) -> dict[str, float | int | None]:
    """How well an encoding fit recovers a simulation's planted ground truth.

    Parameters
    ----------
    r2 : ndarray, shape (n_vertices,)
        Test R^2.
    split_r2 : ndarray, shape (n_bands, n_vertices) or None
        Each fitted band's share of the test R^2, rows in the order of ``signal_share``'s rows;
        None when the fit does not include every planted band.
    signal_share : ndarray, shape (n_bands, n_vertices)
        Planted share of response variance driven by each band (0 where none).

    Returns
    -------
    dict
        ``auc``: ROC AUC of test R^2 separating signal vertices (any planted share) from the rest;
        ``band_accuracy``: fraction of signal vertices whose largest split R^2 is the band with the
        largest planted share (None without ``split_r2``); ``n_signal``: number of signal vertices.
    """
    signal = signal_share.sum(axis=0) > 0
    if signal.all() or not signal.any():
        raise ValueError("Recovery needs both signal and non-signal vertices.")
    auc = roc_auc_score(signal, np.nan_to_num(r2, nan=-np.inf))
    accuracy = None
    if split_r2 is not None:
        planted = signal_share[:, signal].argmax(axis=0)
        found = np.nan_to_num(split_r2[:, signal], nan=-np.inf).argmax(axis=0)
        accuracy = float((planted == found).mean())
    return {"auc": float(auc), "band_accuracy": accuracy, "n_signal": int(signal.sum())}


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if np.shape(y_true) != np.shape(y_pred):
        raise ValueError(f"y_true has shape {np.shape(y_true)} but y_pred has {np.shape(y_pred)}.")
