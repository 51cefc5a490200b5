"""Preprocessing of response time series: discarded volumes, detrending, confound regression.

Each function takes and returns an array of shape (n_trs, n_vertices). z-scoring per run and the
averaging of test repeats happen when the design is built (:mod:`encoding.design`).

Defaults follow the original ds003720 analyses (Nakai et al. 2021/2022): a 240-s running median
removed from each vertex. Polynomial and cosine (nilearn, SPM-style) detrending are alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

DETRENDS = ("median", "polynomial", "cosine", "none")


@dataclass
class PreprocessingConfig:
    """Preprocessing options.

    Attributes
    ----------
    discard_volumes : int
        Volumes dropped at the start of every run (steady state, lead-in clips); event onsets
        shift accordingly and events that start before the new first volume are dropped.
    detrend : {"median", "polynomial", "cosine", "none"}
        ``median``: subtract a running median of ``median_window`` s; ``polynomial``: subtract a
        least-squares polynomial of ``polynomial_order``; ``cosine``: nilearn's discrete cosine
        high-pass at ``high_pass`` Hz.
    median_window : float
        Seconds (240 in the original ds003720 work).
    polynomial_order : int
    high_pass : float
        Hz.
    confounds : list of str
        fMRIPrep confound strategies for nilearn's ``load_confounds`` (e.g. ``["motion",
        "wm_csf"]``), for BIDS data with fMRIPrep derivatives. Table data name a confounds file
        per run instead.
    """

    discard_volumes: int = 0
    detrend: str = "median"
    median_window: float = 240.0
    polynomial_order: int = 2
    high_pass: float = 0.008
    confounds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.detrend not in DETRENDS:
            raise ValueError(f"preprocessing.detrend must be one of {DETRENDS}, got {self.detrend!r}.")
        if self.discard_volumes < 0 or self.median_window <= 0 or self.polynomial_order < 0 or self.high_pass <= 0:
            raise ValueError("preprocessing: discard_volumes, polynomial_order >= 0; median_window, high_pass > 0.")


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
    """Subtract a running median of ``window`` seconds (an odd number of volumes, edges reflected)."""
    size = max(1, int(round(window / tr)) // 2 * 2 + 1)
    size = min(size, Y.shape[0] // 2 * 2 - 1) if Y.shape[0] > 2 else 1
    return (Y - median_filter(Y, size=(size, 1), mode="reflect")).astype(np.float32)


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
        raise ValueError(f"Confounds have {C.shape[0]} rows but the responses have {Y.shape[0]} volumes.")
    if not np.isfinite(C).all():
        raise ValueError("Confounds contain NaN or inf (fMRIPrep derivatives' first rows: use a strategy that fills them).")
    coef, *_ = np.linalg.lstsq(C, Y, rcond=None)
    return (Y - C @ coef + coef[0]).astype(np.float32)


def shift_events(events: pd.DataFrame, discarded: int, tr: float) -> pd.DataFrame:
    """Events after ``discarded`` leading volumes: onsets shifted, events starting earlier dropped."""
    if discarded == 0:
        return events
    shifted = events.assign(onset=events["onset"] - discarded * tr)
    return shifted[shifted["onset"] >= -1e-6].reset_index(drop=True)
