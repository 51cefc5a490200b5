"""Caption tables (Brain2Music's: columns ``ID,DescEN``, IDs like ``blues.00000_15s``) joined to clips."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from encoding.errors import DataError, MissingInputError

KNOWN_TYPOS = {"disco.000011_15s": "disco.00011_15s"}  # a mistyped ID in the released file


def read_captions(path: str | Path, id_column: str = "ID", text_column: str = "DescEN") -> pd.Series:
    """Captions indexed by ID (a UTF-8 byte-order mark is handled; known ID typos are repaired with a warning)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"Caption table {path} does not exist.")
    table = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    missing = [c for c in (id_column, text_column) if c not in table.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; columns are {list(table.columns)}.")
    ids = table[id_column].str.strip()
    for typo, fixed in KNOWN_TYPOS.items():
        if (ids == typo).any():
            warnings.warn(f"{path}: caption ID {typo!r} repaired to {fixed!r} (a known typo).", stacklevel=2)
            ids = ids.replace(typo, fixed)
    if ids.duplicated().any():
        raise DataError(f"{path}: duplicated caption IDs {ids[ids.duplicated()].tolist()[:5]}.")
    return pd.Series(table[text_column].fillna("").str.strip().values, index=ids.values, name="caption")


def join_captions(table: pd.DataFrame, captions: pd.Series, id_format: str = "{clip_id}_15s"
                  ) -> tuple[pd.DataFrame, dict]:
    """Add a ``caption`` column to a clip table.

    Parameters
    ----------
    table : DataFrame
        Indexed by clip id.
    captions : Series
        Caption text indexed by caption ID.
    id_format : str
        How a clip id maps to a caption ID.

    Returns
    -------
    table : DataFrame
        With ``caption`` ("" where none matched).
    report : dict
        ``matched`` (int), ``clips_without_caption`` and ``captions_without_clip`` (lists of IDs):
        reported, never hidden.
    """
    wanted = {cid: id_format.format(clip_id=cid) for cid in table.index}
    out = table.copy()
    out["caption"] = [captions.get(wanted[cid], "") for cid in table.index]
    without = [cid for cid in table.index if wanted[cid] not in captions.index]
    unused = sorted(set(captions.index) - set(wanted.values()))
    if without:
        warnings.warn(f"{len(without)} clips have no caption, e.g. {without[:5]}.", stacklevel=2)
    return out, {"matched": len(table) - len(without), "clips_without_caption": without,
                 "captions_without_clip": unused}
