"""Held-out prediction of real naturalistic-listening BOLD (Brennan et al. 2016, *Alice in Wonderland*).

Validates the encoding steps end to end on real data: sound power and word rate (already
HRF-convolved, delays 0-1 TR) predict each subject's ROI time courses in held-out blocks, and a
one-sample t-test across the 11 subjects says where the prediction is above chance. The data
are loaded by :mod:`encoding.datasets.alice`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from encoding.config import DesignConfig, ModelConfig, PreprocessingConfig
from encoding.datasets.alice import REGRESSORS, ROIS, subjects, tables_config
from encoding.datasets.tables import load_tables
from encoding.pipeline import build_design, fit_model, score_model


def held_out_correlations(root: str | Path, n_blocks: int = 5, high_pass: float = 0.01) -> pd.DataFrame:
    """Held-out prediction accuracy per subject and ROI.

    Each block is held out in turn; the others fit a banded ridge (sound power, word rate; delays
    0-1 TR; alphas by leave-one-block-out CV); responses and regressors are cosine high-passed at
    ``high_pass`` Hz. Returns the mean held-out Pearson r over blocks, subjects x ROIs.
    """
    rows = {}
    for subject in subjects(root):
        per_block = []
        for block in range(n_blocks):
            experiment = load_tables(tables_config(root, subject, block, n_blocks),
                                     PreprocessingConfig(detrend="cosine", high_pass=high_pass))
            design = build_design(experiment, {}, list(REGRESSORS), DesignConfig(delays=[0, 1]))
            model = fit_model(design, ModelConfig(n_iter=5, backend="numpy"), progress=False)
            per_block.append(score_model(model, design).test_r)
        rows[subject] = np.mean(per_block, axis=0)
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(ROIS))


def group_table(r: pd.DataFrame) -> pd.DataFrame:
    """Mean r, one-sample t-test against 0 across subjects, and subjects with r > 0, per ROI."""
    t, p = stats.ttest_1samp(r.to_numpy(), 0.0)
    return pd.DataFrame({"mean_r": r.mean(), "sem": r.sem(), "t": t, "p": p, "n_positive": (r > 0).sum(),
                         "n_subjects": len(r)}, index=r.columns)
