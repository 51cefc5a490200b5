"""OpenNeuro ds003720 (Nakai et al. 2021): 5 subjects, 540 GTZAN clips in 10 genres, TR 1.5 s.

Facts from the data set's README and events: each subject has 12 ``task-Training`` runs and 6
``task-Test`` runs of 41 15-s clips (410 volumes). Events carry ``onset duration genre track start
end``; ``genre`` is quoted (``'disco'``) and the clip is GTZAN ``{genre}.{track:05d}.wav`` cut from
``start`` to ``end`` s, with 2-s fades. A training run's first clip repeats the previous run's last
one. A test run's first clip is a lead-in equal to its last clip; the other 40 events are one
sequence of 10 clips presented 4 times, so the repeats share what precedes them. In all: 480
training clips, 60 test clips, 54 per genre.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from encoding.errors import DataError, MissingInputError

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
N_TEST_REPEATS = 4


def clip_id(genre: str, track: int) -> str:
    """GTZAN's name of a track: ``{genre}.{track:05d}``."""
    return f"{genre}.{int(track):05d}"


def read_events(path: str | Path, test: bool) -> pd.DataFrame:
    """A ds003720 events file with ``clip_id`` (and, for test runs, ``repeat``) columns added.

    Raises
    ------
    ValueError
        Naming the file, when columns are missing or a test run does not have the lead-in plus
        4 repeats structure.
    """
    path = Path(path)
    events = pd.read_csv(path, sep="\t")
    needed = {"onset", "duration", "genre", "track", "start", "end"}
    if not needed <= set(events.columns):
        raise DataError(f"{path}: ds003720 events need the columns {sorted(needed)}; got {list(events.columns)}.")
    events["genre"] = events["genre"].astype(str).str.strip().str.strip("'\"")
    unknown = sorted(set(events["genre"]) - set(GENRES))
    if unknown:
        raise DataError(f"{path}: unknown genres {unknown}.")
    events["clip_id"] = [clip_id(g, t) for g, t in zip(events["genre"], events["track"])]
    if test:
        events["repeat"] = test_repeats(events["clip_id"].tolist(), path)
    return events


def test_repeats(clips: list[str], path: Path) -> np.ndarray:
    """Repeat index of each event of a test run: NaN for the lead-in, then 0-3 for the 4 presentations."""
    body = clips[1:]
    period = len(body) // N_TEST_REPEATS
    ok = (period > 0 and len(body) == period * N_TEST_REPEATS and clips[0] == body[-1]
          and all(body[i] == body[i % period] for i in range(len(body))))
    if not ok:
        raise DataError(
            f"{path}: a ds003720 test run is a lead-in clip followed by one sequence presented "
            f"{N_TEST_REPEATS} times; these events are not."
        )
    return np.concatenate([[np.nan], np.repeat(np.arange(N_TEST_REPEATS, dtype=float), period)])


def clip_table(root: str | Path, train_task: str = "Training", test_task: str = "Test") -> pd.DataFrame:
    """Every clip of the data set (all subjects' events), indexed by clip id.

    Columns: ``genre``, ``track``, ``start``, ``end`` (s in the GTZAN file) and ``role``
    (``train`` or ``test``).

    Raises
    ------
    ValueError
        When a clip appears with different excerpt times, or in both training and test runs.
    """
    root = Path(root)
    frames = []
    for task, role in ((train_task, "train"), (test_task, "test")):
        files = sorted(root.glob(f"sub-*/func/*task-{task}_*events.tsv"))
        if not files:
            raise MissingInputError(f"No task-{task} events under {root}/sub-*/func.")
        for f in files:
            frames.append(read_events(f, test=role == "test").assign(role=role))
    events = pd.concat(frames, ignore_index=True)
    table = events.drop_duplicates(["clip_id", "start", "end", "role"])
    clash = table["clip_id"][table["clip_id"].duplicated()].unique().tolist()
    if clash:
        raise DataError(f"Clips with inconsistent excerpts or roles across runs: {clash[:5]}.")
    return table.set_index("clip_id")[["genre", "track", "start", "end", "role"]].sort_index()
