"""Brennan et al. (2016) *Alice in Wonderland* ROI data: real naturalistic-listening BOLD for validation.

11 subjects listened to 12 min of speech (TR 2 s, 362 volumes after 10 discarded); the data set
ships 6 ROI time courses per subject (LATL RATL LPTL LIPL LPreM LIFG; 6- and 10-mm spheres),
HRF-convolved sound-power and word-rate regressors, and SPM motion parameters (which still hold
the 10 discarded volumes). Speech, not music: it validates the encoding pipeline end to end
(:mod:`encoding.studies.alice`).
"""

from __future__ import annotations

from pathlib import Path

from encoding.config import TableRun, TablesConfig
from encoding.errors import MissingInputError

ROIS = ("LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG")
REGRESSORS = ("sndpwr", "rate")


def subjects(root: str | Path) -> list[str]:
    """Subject labels (``s18`` ...) with ROI time courses."""
    found = sorted(p.name.split("-")[0] for p in (Path(root) / "10mm").glob("*-timecourses.txt"))
    if not found:
        raise MissingInputError(f"No 10mm/*-timecourses.txt under {root}: is it the alice-brennan2016 folder?")
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
