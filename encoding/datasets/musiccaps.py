"""MusicCaps (Agostinelli et al. 2023): 5,521 musician-written captions of 10-s AudioSet music clips.

The public table (``musiccaps-public.csv``) has one row per clip: ``ytid``, ``start_s``, ``end_s``
(the excerpt of the YouTube video, s), ``audioset_positive_labels`` (AudioSet label ids, comma-separated),
``aspect_list`` (a Python list literal of short descriptors), ``caption``, ``author_id``,
``is_balanced_subset`` and ``is_audioset_eval``. No audio is included. It is a caption library for
the text feature spaces and for caption retrieval (:class:`decoding.retrieval.EmbeddingIndex`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from encoding.errors import DataError, MissingInputError

REQUIRED_COLUMNS = ("ytid", "start_s", "end_s", "caption")
BOOLEAN_COLUMNS = ("is_balanced_subset", "is_audioset_eval")


def item_id(ytid: str, start_s: float) -> str:
    """The id of a MusicCaps clip: ``<ytid>_<start>`` (start in whole seconds when integral), e.g. ``-0Gj8-vB1q4_30``."""
    start = float(start_s)
    return f"{ytid}_{int(start) if start.is_integer() else start:g}"


def load_musiccaps(path: str | Path) -> pd.DataFrame:
    """Read the MusicCaps table.

    Parameters
    ----------
    path : path
        ``musiccaps-public.csv``.

    Returns
    -------
    DataFrame, shape (n_clips, n_columns)
        Indexed by ``item_id`` (:func:`item_id`, unique); columns ``ytid`` (str), ``start_s``,
        ``end_s`` (float, s), ``caption`` (str) and, when present in the file,
        ``audioset_positive_labels`` and ``aspect_list`` (lists of str), ``author_id`` and the
        boolean ``is_balanced_subset``, ``is_audioset_eval``. Other columns are kept as read.

    Raises
    ------
    MissingInputError
        If ``path`` is not a file.
    DataError
        If a needed column is missing, a start or end is not a number, a caption is empty, an
        aspect list cannot be read, or two rows have the same ytid and start.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"MusicCaps table {path} does not exist: give the path of musiccaps-public.csv.")
    table = pd.read_csv(path, encoding="utf-8-sig", dtype={"ytid": str, "caption": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a MusicCaps table, no column(s) {missing} (columns are {list(table.columns)}). "
                        f"MusicCaps needs {list(REQUIRED_COLUMNS)}.")
    table = table.copy()
    table["ytid"] = table["ytid"].astype(str).str.strip()
    for column in ("start_s", "end_s"):
        table[column] = _numbers(table[column], path, column)
    table["caption"] = table["caption"].fillna("").astype(str).str.strip()
    empty = table.loc[table["caption"] == "", "ytid"].tolist()
    if empty:
        raise DataError(f"{path}: {len(empty)} rows have an empty caption, e.g. ytid {empty[:5]}.")
    if "aspect_list" in table:
        table["aspect_list"] = [_aspects(v, path, y) for v, y in zip(table["aspect_list"], table["ytid"])]
    if "audioset_positive_labels" in table:
        table["audioset_positive_labels"] = [[] if pd.isna(v) else [s.strip() for s in str(v).split(",") if s.strip()]
                                             for v in table["audioset_positive_labels"]]
    for column in BOOLEAN_COLUMNS:
        if column in table:
            table[column] = _booleans(table[column], path, column)
    ids = [item_id(y, s) for y, s in zip(table["ytid"], table["start_s"])]
    table.index = pd.Index(ids, name="item_id")
    if not table.index.is_unique:
        dup = table.index[table.index.duplicated()].unique().tolist()[:5]
        raise DataError(f"{path}: rows with the same ytid and start_s, e.g. {dup}.")
    return table


def _numbers(values: pd.Series, path: Path, column: str) -> pd.Series:
    out = pd.to_numeric(values, errors="coerce").astype(float)
    bad = values[out.isna()].tolist()
    if bad:
        raise DataError(f"{path}: column {column!r} must hold numbers (seconds), got {bad[:5]}.")
    return out


def _aspects(value, path: Path, ytid: str) -> list[str]:
    if pd.isna(value) or not str(value).strip():
        return []
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, (list, tuple)):
        raise DataError(f"{path}: aspect_list of ytid {ytid!r} is not a list literal like \"['piano', 'slow']\": "
                        f"{str(value)[:80]!r}.")
    return [str(a).strip() for a in parsed]


def _booleans(values: pd.Series, path: Path, column: str) -> pd.Series:
    if values.dtype == bool:
        return values
    mapped = values.astype(str).str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
    bad = values[mapped.isna()].tolist()
    if bad:
        raise DataError(f"{path}: column {column!r} must hold True/False, got {bad[:5]}.")
    return mapped.astype(bool)
