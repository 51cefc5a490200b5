"""The data model: clips, runs of responses and experiments.

Every loader (the simulation, BIDS, plain arrays) produces these objects and every later step
(features, design, fit, statistics, decoding) consumes them, so they stay general: volume or
surface responses, any TR, any number of runs.

Times are in seconds. Responses are ``float32`` arrays of shape ``(n_trs, n_vertices)``;
"vertex" stands for a surface vertex, a voxel or an ROI alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from encoding.errors import DataError

EVENT_COLUMNS = ("clip_id", "onset", "duration")
ROLES = ("train", "test")


@dataclass
class ClipSet:
    """The stimulus clips of an experiment.

    Parameters
    ----------
    table : DataFrame
        One row per clip, indexed by clip id (str). Column ``caption`` (str) holds a text
        description; any other column is a label (``genre``, ``tempo_bpm`` ...).
    audio : mapping of str to ndarray
        Clip id to mono waveform, shape ``(n_samples,)``, float32 in [-1, 1]; empty when the
        audio is not available (then only text spaces can be extracted).
    sample_rate : int
        Sampling rate of every waveform, in Hz.
    """

    table: pd.DataFrame
    audio: Mapping[str, np.ndarray]
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise DataError(f"sample_rate must be positive, got {self.sample_rate}.")
        if not self.table.index.is_unique:
            dup = self.table.index[self.table.index.duplicated()].unique().tolist()[:5]
            raise DataError(f"Clip table has duplicated clip ids, e.g. {dup}.")
        missing = [cid for cid in self.table.index if cid not in self.audio]
        if missing and self.audio:
            raise DataError(
                f"{len(missing)} clips of the clip table have no audio, e.g. {missing[:5]}. "
                "Give a waveform for every clip id."
            )
        for cid in self.audio:
            wave = np.asarray(self.audio[cid])
            if wave.ndim != 1 or wave.size == 0:
                raise DataError(
                    f"Audio of clip {cid!r} must be a non-empty mono waveform (1-D); "
                    f"got shape {wave.shape}. Average the channels of stereo audio first."
                )

    @property
    def ids(self) -> list[str]:
        """Clip ids in table order."""
        return list(self.table.index)

    @property
    def captions(self) -> list[str]:
        """Caption of each clip, in table order (empty string when absent)."""
        if "caption" not in self.table:
            return [""] * len(self.table)
        return self.table["caption"].fillna("").astype(str).tolist()

    def duration(self, clip_id: str) -> float:
        """Length of a clip's audio, in seconds (inf without audio: then the events set the length)."""
        return len(self.audio[clip_id]) / self.sample_rate if clip_id in self.audio else np.inf

    def subset(self, clip_ids: list[str]) -> ClipSet:
        """The clips named in ``clip_ids``, in that order."""
        return ClipSet(self.table.loc[clip_ids], {c: self.audio[c] for c in clip_ids}, self.sample_rate)


@dataclass
class Run:
    """One fMRI run: responses and the clips played during it.

    Parameters
    ----------
    run_id : str
        Unique name of the run within its experiment (e.g. ``"train-01"``).
    responses : ndarray, shape (n_trs, n_vertices)
        BOLD responses, converted to float32.
    tr : float
        Repetition time, in seconds.
    events : DataFrame
        Stimulus schedule with columns ``clip_id`` (str), ``onset`` and ``duration``
        (seconds from the first volume of the run). Test runs that repeat a sequence within the
        run (ds003720: 10 clips, 4 times) add a column ``repeat``: the presentation index
        (0, 1, ...) of each event, NaN for events outside the repeats (a lead-in clip).
    role : {"train", "test"}
        Training runs are cross-validated over; test runs are held out for scoring.
    repeat_id : str or None
        Test runs that present the identical stimulus sequence share a ``repeat_id``; their
        responses are averaged before scoring and give the noise ceiling.
    regressors : dict of str to ndarray, shape (n_trs, n_columns)
        Stimulus descriptors already sampled on the run's TR grid, as some data sets ship them
        (sound power, word rate ...); each name is a feature space usable like an extracted one.
    """

    run_id: str
    responses: np.ndarray
    tr: float
    events: pd.DataFrame
    role: Literal["train", "test"] = "train"
    repeat_id: str | None = None
    regressors: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.responses = np.asarray(self.responses, dtype=np.float32)
        where = f"Run {self.run_id!r}"
        if self.responses.ndim != 2:
            raise DataError(
                f"{where}: responses must be 2-D (n_trs, n_vertices), got shape {self.responses.shape}."
            )
        if self.responses.shape[0] == 0 or self.responses.shape[1] == 0:
            raise DataError(f"{where}: responses are empty, shape {self.responses.shape}.")
        if not np.isfinite(self.responses).all():
            bad = np.flatnonzero(~np.isfinite(self.responses).all(axis=0))
            raise DataError(
                f"{where}: {bad.size} vertices hold NaN or inf values (first: {bad[:5].tolist()}). "
                "Mask or interpolate them before building the experiment."
            )
        if not self.tr > 0:
            raise DataError(f"{where}: tr must be a positive number of seconds, got {self.tr}.")
        if self.role not in ROLES:
            raise DataError(f"{where}: role must be one of {ROLES}, got {self.role!r}.")
        missing = [c for c in EVENT_COLUMNS if c not in self.events.columns]
        if missing:
            raise DataError(f"{where}: events lack the columns {missing}; they need {list(EVENT_COLUMNS)}.")
        self.events = self.events.reset_index(drop=True).astype({"clip_id": str})
        for name, values in list(self.regressors.items()):
            values = np.asarray(values, dtype=np.float32)
            values = values[:, None] if values.ndim == 1 else values
            if values.ndim != 2 or values.shape[0] != self.n_trs:
                raise DataError(
                    f"{where}: regressor {name!r} has shape {values.shape}; it needs one row per volume "
                    f"({self.n_trs})."
                )
            if not np.isfinite(values).all():
                raise DataError(f"{where}: regressor {name!r} contains NaN or inf values.")
            self.regressors[name] = values
        if (self.events["onset"] < 0).any() or (self.events["duration"] <= 0).any():
            raise DataError(f"{where}: event onsets must be >= 0 and durations > 0 seconds.")
        end = float((self.events["onset"] + self.events["duration"]).max())
        if end > self.duration + self.tr:
            raise DataError(
                f"{where}: events end at {end:.1f} s but the run lasts {self.duration:.1f} s "
                f"({self.n_trs} volumes x TR {self.tr} s). Check the TR and the event onsets."
            )

    def repeat_segments(self) -> list[slice]:
        """Volumes of each repeated presentation in the run (the whole run without a ``repeat`` column).

        A segment starts at the volume of its first onset and lasts as long as the repeated
        sequence; all segments present the same clips at the same relative onsets.
        """
        if "repeat" not in self.events:
            return [slice(0, self.n_trs)]
        segments, reference = [], None
        for rep, ev in self.events.dropna(subset=["repeat"]).groupby("repeat", sort=True):
            first = float(ev["onset"].min())
            start = int(round(first / self.tr))
            length = int(np.ceil((float((ev["onset"] + ev["duration"]).max()) - first) / self.tr - 1e-9))
            pattern = (list(ev["clip_id"]), list(np.round(ev["onset"] - first, 3)), length)
            if reference is not None and pattern != reference:
                raise DataError(
                    f"Run {self.run_id!r}: repeat {rep:g} does not present the same clips at the same "
                    "relative onsets as repeat 0; check the events' 'repeat' column."
                )
            if start + length > self.n_trs:
                raise DataError(f"Run {self.run_id!r}: repeat {rep:g} runs past the last volume.")
            reference = pattern
            segments.append(slice(start, start + length))
        return segments

    @property
    def n_trs(self) -> int:
        """Number of volumes."""
        return self.responses.shape[0]

    @property
    def n_vertices(self) -> int:
        """Number of vertices (or voxels, ROIs)."""
        return self.responses.shape[1]

    @property
    def duration(self) -> float:
        """Length of the run, in seconds."""
        return self.n_trs * self.tr


@dataclass
class Experiment:
    """One subject's runs in one response space, with the clips they heard.

    Parameters
    ----------
    subject : str
        Subject label.
    runs : list of Run
        All runs; they share the TR and the number of vertices.
    clips : ClipSet
        Every clip named in the runs' events.
    space : str
        Where the responses live: ``"fsaverage5"`` (20,484 vertices, left then right
        hemisphere), ``"volume"``, ``"roi"`` ...
    info : dict
        Free-form description (data set, preprocessing, vertex names ...).
    """

    subject: str
    runs: list[Run]
    clips: ClipSet
    space: str = "fsaverage5"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.runs:
            raise DataError(f"Experiment {self.subject!r} has no runs.")
        ids = [r.run_id for r in self.runs]
        if len(set(ids)) != len(ids):
            raise DataError(f"Experiment {self.subject!r}: run ids are not unique: {ids}.")
        n_vertices = {r.run_id: r.n_vertices for r in self.runs}
        if len(set(n_vertices.values())) > 1:
            raise DataError(f"Runs have different numbers of vertices: {n_vertices}.")
        trs = {r.run_id: r.tr for r in self.runs}
        if len(set(trs.values())) > 1:
            raise DataError(f"Runs have different TRs (s): {trs}. Resample them to one TR first.")
        known = set(self.clips.table.index)
        for run in self.runs:
            unknown = sorted(set(run.events["clip_id"]) - known)
            if unknown:
                raise DataError(
                    f"Run {run.run_id!r} plays clips missing from the clip table: {unknown[:5]}"
                    f"{' ...' if len(unknown) > 5 else ''}."
                )
        if not self.train_runs:
            raise DataError(f"Experiment {self.subject!r} has no training runs (role='train').")
        for repeat_id, runs in self.repeat_groups().items():
            first = runs[0]
            for other in runs[1:]:
                same = first.n_trs == other.n_trs and first.events[list(EVENT_COLUMNS)].equals(
                    other.events[list(EVENT_COLUMNS)]
                )
                if not same:
                    raise DataError(
                        f"Test runs {first.run_id!r} and {other.run_id!r} share repeat_id {repeat_id!r} "
                        "but differ in length or stimulus schedule; repeats must be identical."
                    )

    @property
    def tr(self) -> float:
        """Repetition time shared by all runs, in seconds."""
        return self.runs[0].tr

    @property
    def n_vertices(self) -> int:
        """Number of vertices (or voxels, ROIs)."""
        return self.runs[0].n_vertices

    @property
    def train_runs(self) -> list[Run]:
        """Runs with role ``"train"``."""
        return [r for r in self.runs if r.role == "train"]

    @property
    def test_runs(self) -> list[Run]:
        """Runs with role ``"test"``."""
        return [r for r in self.runs if r.role == "test"]

    def repeat_groups(self) -> dict[str, list[Run]]:
        """Test runs grouped by ``repeat_id`` (a run without one is its own group)."""
        groups: dict[str, list[Run]] = {}
        for run in self.test_runs:
            groups.setdefault(run.repeat_id or run.run_id, []).append(run)
        return groups
