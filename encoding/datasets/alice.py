"""Brennan et al. (2016) *Alice in Wonderland* ROI data: real naturalistic-listening BOLD for validation.

11 subjects listened to 12 min of speech (TR 2 s, 362 volumes after 10 discarded); the data set
ships 6 ROI time courses per subject (LATL RATL LPTL LIPL LPreM LIFG; 6- and 10-mm spheres),
HRF-convolved sound-power and word-rate regressors, and SPM motion parameters (which still hold
the 10 discarded volumes). Speech, not music: it validates the encoding pipeline end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from encoding.config import DesignConfig, ModelConfig
from encoding.datasets.tables import TableRun, TablesConfig, load_tables
from encoding.pipeline import build_design, fit_model, score_model
from encoding.preprocessing import PreprocessingConfig

ROIS = ("LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG")
REGRESSORS = ("sndpwr", "rate")


def subjects(root: str | Path) -> list[str]:
    """Subject labels (``s18`` ...) with ROI time courses."""
    found = sorted(p.name.split("-")[0] for p in (Path(root) / "10mm").glob("*-timecourses.txt"))
    if not found:
        raise FileNotFoundError(f"No 10mm/*-timecourses.txt under {root}: is it the alice-brennan2016 folder?")
    return found


def tables_config(root: str | Path, subject: str, test_block: int, n_blocks: int = 5, radius: str = "10mm"
                  ) -> TablesConfig:
    """One subject's run cut into ``n_blocks`` blocks, ``test_block`` held out; motion as confounds."""
    root = Path(root)
    motion = next(root.glob(f"{subject}-rp_*.txt")).name
    run = TableRun(responses=f"{radius}/{subject}-timecourses.txt",
                   regressors={name: f"{subject}-{name}.txt" for name in REGRESSORS},
                   confounds=motion, skip_rows={"confounds": 10})
    return TablesConfig(root=str(root), subject=subject, tr=2.0, runs=[run], column_names=list(ROIS),
                        n_blocks=n_blocks, test_blocks=[test_block])


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
