"""Per-vertex scores of predicted responses, and recovery of a simulation's ground truth."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination of each column (1 - SSE / SS around the column mean).

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_samples, n_vertices)

    Returns
    -------
    ndarray, shape (n_vertices,)
        Can be negative; NaN where ``y_true`` is constant.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    sse = ((y_true - y_pred) ** 2).sum(axis=0)
    sst = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (1 - sse / sst).astype(np.float32)


def correlation_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``y_true`` with the same column of ``y_pred``.

    Returns
    -------
    ndarray, shape (n_vertices,)
        NaN where either column is constant.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    a = y_true - y_true.mean(axis=0)
    b = y_pred - y_pred.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))).astype(np.float32)


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


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}.")
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    return y_true, y_pred
