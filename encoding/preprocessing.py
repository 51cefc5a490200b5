"""Preprocessing of response time series: discarded volumes, detrending, confound regression.

Each function takes and returns an array of shape (n_trs, n_vertices). z-scoring per run and the
averaging of test repeats happen when the design is built (:mod:`encoding.design`).

Defaults follow the original ds003720 analyses (Nakai et al. 2021/2022): a 240-s running median
removed from each vertex. Polynomial and cosine (nilearn, SPM-style) detrending are alternatives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from encoding.config import PreprocessingConfig
from encoding.errors import DataError


def detrend(Y: np.ndarray, tr: float, config: PreprocessingConfig) -> np.ndarray:
    """Remove slow drifts from each column of ``Y`` (n_trs, n_vertices) as ``config`` says."""
    Y = np.asarray(Y, dtype=np.float32)
    if config.detrend == "median":
        return median_detrend(Y, tr, config.median_window)
    if config.detrend == "polynomial":
        return polynomial_detrend(Y, config.polynomial_order)
    if config.detrend == "cosine":
        from nilearn.signal import clean

        return clean(Y, t_r=tr, detrend=False, standardize=None, filter="cosine", high_pass=config.high_pass,
                     ensure_finite=False).astype(np.float32)
    return Y


def median_detrend(Y: np.ndarray, tr: float, window: float) -> np.ndarray:
    """Subtract a running median of ``window`` seconds from each column of ``Y`` (n_trs, n_vertices).

    The window is an odd number of volumes centred on each one; at the edges the series is
    reflected about its first and last volume (``d c b a | a b c d | d c b a``, the
    ``mode="reflect"`` of ``scipy.ndimage.median_filter``, which gives the same numbers). The
    median runs in O(log window) per sample (bottleneck's double heap), so a 240-s window costs
    what a short one does.
    """
    import bottleneck

    Y = np.asarray(Y, dtype=np.float32)
    size = max(1, int(round(window / tr)) // 2 * 2 + 1)
    size = min(size, Y.shape[0] // 2 * 2 - 1) if Y.shape[0] > 2 else 1
    half = size // 2
    padded = np.concatenate([Y[:half][::-1], Y, Y[Y.shape[0] - half:][::-1]])
    running = bottleneck.move_median(padded, size, axis=0)[size - 1:]
    return (Y - running).astype(np.float32)


def polynomial_detrend(Y: np.ndarray, order: int) -> np.ndarray:
    """Subtract the least-squares polynomial of ``order`` in time (Legendre basis) from each column."""
    t = np.linspace(-1, 1, Y.shape[0])
    basis = np.polynomial.legendre.legvander(t, order)
    coef, *_ = np.linalg.lstsq(basis, Y, rcond=None)
    return (Y - basis @ coef).astype(np.float32)


def regress_out(Y: np.ndarray, confounds: np.ndarray) -> np.ndarray:
    """Residuals of ``Y`` after least-squares regression on ``confounds`` (n_trs, k) and a constant."""
    C = np.column_stack([np.ones(len(Y)), np.asarray(confounds, dtype=np.float64)])
    if C.shape[0] != Y.shape[0]:
        raise DataError(f"Confounds have {C.shape[0]} rows but the responses have {Y.shape[0]} volumes.")
    if not np.isfinite(C).all():
        raise DataError("Confounds contain NaN or inf (fMRIPrep derivatives' first rows: use a strategy that fills them).")
    coef, *_ = np.linalg.lstsq(C, Y, rcond=None)
    return (Y - C @ coef + coef[0]).astype(np.float32)


def shift_events(events: pd.DataFrame, discarded: int, tr: float) -> pd.DataFrame:
    """Events after ``discarded`` leading volumes: onsets shifted, events starting earlier dropped."""
    if discarded == 0:
        return events
    shifted = events.assign(onset=events["onset"] - discarded * tr)
    return shifted[shifted["onset"] >= -1e-6].reset_index(drop=True)
