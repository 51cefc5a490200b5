"""Responses and regressors shared as plain text/CSV/TSV matrices (ROI time series, predictors).

One row per volume. A run names a responses file (n_trs x n_rois), regressor files (each a
feature space already on the TR grid, e.g. sound power, word rate) and optionally a confounds
file (e.g. motion parameters) regressed out of the responses. Detrending applies to responses and
regressors alike (a drift left in either would pair with the other). With one long run per subject, cut
it into contiguous blocks (``n_blocks``) that serve as runs for cross-validation, and hold some
out as the test set (``test_blocks``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from encoding.config import PreprocessingConfig, TablesConfig
from encoding.data import ClipSet, Experiment, Run
from encoding.errors import DataError, MissingInputError
from encoding.preprocessing import detrend, regress_out

EMPTY_EVENTS = pd.DataFrame({"clip_id": pd.Series(dtype=str), "onset": pd.Series(dtype=float),
                             "duration": pd.Series(dtype=float)})


def read_matrix(path: str | Path, skip_rows: int = 0) -> tuple[np.ndarray, list[str] | None]:
    """Read a numeric matrix from a text, CSV or TSV file.

    A first row with non-numeric entries is a header. Returns the values (n_rows, n_columns),
    float32, and the header (or None).

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file, when it is missing, empty, ragged or not numeric.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist.")
    sep = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower(), r"\s+")
    try:
        frame = pd.read_csv(path, sep=sep, header=None, engine="python", comment="#")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty.") from None
    header = None
    first = pd.to_numeric(frame.iloc[0], errors="coerce")
    if first.isna().any():
        header = [str(v) for v in frame.iloc[0]]
        frame = frame.iloc[1:]
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        row = int(np.argwhere(np.isnan(values))[0, 0]) + (2 if header else 1)
        raise DataError(f"{path}: non-numeric or missing value near line {row}.")
    return values[skip_rows:].astype(np.float32), header


def load_tables(cfg: TablesConfig, preprocessing: PreprocessingConfig | None = None) -> Experiment:
    """Load a table data set into an :class:`~encoding.data.Experiment` (space ``"roi"``)."""
    preprocessing = preprocessing or PreprocessingConfig(detrend="none")
    if not cfg.runs:
        raise DataError("tables.runs is empty: list at least one run with a responses file.")
    root = Path(cfg.root)
    runs, names = [], None
    for i, spec in enumerate(cfg.runs):
        Y, header = read_matrix(root / spec.responses, spec.skip_rows.get("responses", 0))
        names = names or cfg.column_names or header or [f"roi-{k}" for k in range(Y.shape[1])]
        if len(names) != Y.shape[1]:
            raise DataError(f"{root / spec.responses}: {Y.shape[1]} columns but {len(names)} column names.")
        regressors = {}
        for name, file in spec.regressors.items():
            X, _ = read_matrix(root / file, spec.skip_rows.get(name, 0))
            if len(X) != len(Y):
                raise DataError(f"{root / file}: {len(X)} rows but {root / spec.responses} has {len(Y)} volumes.")
            regressors[name] = X
        if spec.confounds:
            C, _ = read_matrix(root / spec.confounds, spec.skip_rows.get("confounds", 0))
            if len(C) != len(Y):
                raise DataError(
                    f"{root / spec.confounds}: {len(C)} rows but {root / spec.responses} has {len(Y)} volumes; "
                    "drop leading rows with skip_rows = {confounds = N}."
                )
            Y = regress_out(Y, C)
        # the same temporal filter on responses and regressors, so slow drifts cannot pair up
        Y = detrend(Y, cfg.tr, preprocessing)
        regressors = {name: detrend(X, cfg.tr, preprocessing) for name, X in regressors.items()}
        runs += split_blocks(f"run-{i + 1:02d}", Y, regressors, cfg)
    return Experiment(cfg.subject, runs, ClipSet(pd.DataFrame({"caption": []}), {}, 1), space="roi",
                      info={"source": "tables", "vertex_names": names})


def split_blocks(run_id: str, Y: np.ndarray, regressors: dict[str, np.ndarray], cfg: TablesConfig) -> list[Run]:
    """Cut a run into ``cfg.n_blocks`` contiguous blocks; ``cfg.test_blocks`` become test runs."""
    bounds = np.linspace(0, len(Y), cfg.n_blocks + 1).round().astype(int)
    test = {b % cfg.n_blocks for b in cfg.test_blocks}
    blocks = []
    for b, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        name = run_id if cfg.n_blocks == 1 else f"{run_id}-block-{b + 1}"
        blocks.append(Run(name, Y[start:stop], cfg.tr, EMPTY_EVENTS, role="test" if b in test else "train",
                          regressors={k: v[start:stop] for k, v in regressors.items()}))
    return blocks
