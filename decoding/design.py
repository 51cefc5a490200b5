"""From runs to decoding samples: responses averaged over each embedding window, at each lag.

A decoding sample is one window of one clip presentation. For a window covering stimulus time
``[s, s + w)`` seconds (``w`` the embedding's window, ``s`` stepping by ``hop`` within the clip),

- the **target** is the feature space's frames averaged over the window, weighted by their
  overlap with it (a clip-level space such as ``caption`` gives the clip's embedding);
- the **responses** are the run's volumes (z-scored per run, as in encoding) whose acquisition
  times ``t_i = i * TR`` fall in ``[s + d * TR, s + w + d * TR)``, averaged, for each lag ``d`` in
  ``delays`` (TRs); the lags are stacked delay-major, like the encoding design's FIR delays:
  column ``k * n_vertices + v`` holds vertex ``v`` at lag ``delays[k]``.

Brain2Music averages the fMRI over each 10-s MuLan window on a 1.5-s hop; ``window = TR`` and
``hop = TR`` with ``delays = (1, 2, 3, 4)`` is the TR-level FIR decoder. Windows whose lagged
volumes run past the end of the run are dropped.

Test samples average every presentation of the same clip window (the repeats of ds003720's test
runs), as encoding averages test repeats. Test presentations of clips that training runs also
play are left out: a test clip must be new to the decoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from encoding.data import Experiment, Run
from encoding.design import zscore
from encoding.errors import DataError
from encoding.features.base import FeatureFrames

DEFAULT_WINDOW = 10.0  # s, Brain2Music's MuLan window
DEFAULT_HOP = 1.5  # s
DEFAULT_LAGS = (3,)  # TRs: 4.5 s, near the peak of the haemodynamic response


@dataclass
class DecodingDesign:
    """Samples of a decoder: lagged window responses (X) and the target embedding (Y).

    Attributes
    ----------
    X_train : ndarray, shape (n_train, n_delays * n_vertices)
        Window-averaged responses of the training runs at each lag (delay-major).
    Y_train : ndarray, shape (n_train, n_dims)
        Target embedding of each training window, in the feature space's units.
    groups : ndarray of int, shape (n_train,)
        Training run of each sample (leave-one-run-out CV).
    blocks : ndarray of int, shape (n_train,)
        Clip presentation of each training sample (the unit a permutation moves).
    X_test, Y_test : ndarray, shapes (n_test, n_delays * n_vertices) and (n_test, n_dims)
        Test windows, each averaged over its presentations.
    train_samples, test_samples : DataFrame
        One row per sample: ``clip_id``, ``window`` (index within the clip), ``start`` (s from
        the clip's onset); training rows add ``run_id``, test rows ``n_presentations``.
    n_vertices : int
    delays : tuple of int
        Lags, in TRs.
    window, hop : float
        Seconds.
    target : str
        Name of the target feature space.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    groups: np.ndarray
    blocks: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    train_samples: pd.DataFrame
    test_samples: pd.DataFrame
    n_vertices: int
    delays: tuple[int, ...]
    window: float
    hop: float
    target: str

    @property
    def test_clips(self) -> list[str]:
        """Test clip ids, in order of first appearance."""
        return list(dict.fromkeys(self.test_samples["clip_id"]))

    @property
    def train_clips(self) -> list[str]:
        """Training clip ids, in order of first appearance."""
        return list(dict.fromkeys(self.train_samples["clip_id"]))


def window_mean(frames: FeatureFrames, start: float, end: float) -> np.ndarray:
    """Frames averaged over ``[start, end)`` seconds of the clip, weighted by overlap, shape (n_dims,).

    A window that no frame overlaps takes the nearest frame (a clip-level frame covers every window).
    """
    overlap = np.clip(np.minimum(frames.ends, end) - np.maximum(frames.starts, start), 0, None)
    if overlap.sum() <= 0:
        centre = 0.5 * (start + end)
        nearest = np.argmin(np.abs(0.5 * (frames.starts + frames.ends) - centre))
        return frames.values[nearest].astype(np.float32)
    return (overlap @ frames.values / overlap.sum()).astype(np.float32)


def window_starts(duration: float, window: float, hop: float) -> np.ndarray:
    """Starts (s from the clip onset) of the windows that fit in a clip; one clip-long window if none fits."""
    if window >= duration:
        return np.zeros(1)
    n = int(np.floor((duration - window) / hop + 1e-9)) + 1
    return np.arange(n) * hop


def _run_samples(run: Run, frames: Mapping[str, FeatureFrames], window: float, hop: float,
                 delays: tuple[int, ...], exclude: set[str]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Lagged window responses, targets and sample descriptions of one run."""
    Y = zscore(run.responses, name=f"responses of run {run.run_id!r}", allow_constant=False)
    tr, n_trs = run.tr, run.n_trs
    xs, ys, rows = [], [], []
    for event, (clip_id, onset, duration) in enumerate(run.events[["clip_id", "onset", "duration"]].itertuples(
            index=False)):
        if clip_id in exclude:
            continue
        length = min(window, duration)
        for k, offset in enumerate(window_starts(duration, window, hop)):
            s = onset + offset
            first = int(np.ceil(s / tr - 1e-9))
            stop = max(first + 1, int(np.ceil((s + length) / tr - 1e-9)))
            if stop + max(delays) > n_trs or first + min(delays) < 0:
                continue
            xs.append(np.concatenate([Y[first + d: stop + d].mean(axis=0) for d in delays]))
            ys.append(window_mean(frames[clip_id], offset, offset + length))
            rows.append({"run_id": run.run_id, "event": event, "clip_id": clip_id, "window": k,
                         "start": float(offset)})
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32), rows


def make_decoding_design(
    experiment: Experiment,
    target_frames: Mapping[str, FeatureFrames],
    target: str = "target",
    window: float = DEFAULT_WINDOW,
    hop: float = DEFAULT_HOP,
    delays: Sequence[int] = DEFAULT_LAGS,
) -> DecodingDesign:
    """Decoding samples of every training and test run.

    Parameters
    ----------
    experiment : Experiment
    target_frames : mapping of clip id to FeatureFrames
        The target feature space of every clip the runs play.
    target : str
        The space's name (recorded, and used in messages).
    window, hop : float
        Embedding window and hop, in seconds (a window longer than a clip covers the whole clip).
    delays : sequence of int
        Lags of the responses behind the stimulus, in TRs.

    Returns
    -------
    DecodingDesign

    Raises
    ------
    DataError
        When clips lack the target feature, or a run set yields no samples.
    """
    delays = tuple(int(d) for d in delays)
    if not delays or len(set(delays)) != len(delays):
        raise DataError(f"Give distinct lags (TRs) for the decoder, got {list(delays)}.")
    if not window > 0 or not hop > 0:
        raise DataError(f"The decoder's window and hop must be positive seconds, got {window} and {hop}.")
    played = {c for run in experiment.runs for c in run.events["clip_id"]}
    missing = sorted(played - set(target_frames))
    if missing:
        raise DataError(f"The target space {target!r} has no features for {len(missing)} clips played in the runs, "
                        f"e.g. {missing[:5]}; extract {target!r} for every clip (or decode a space they all have).")
    dims = {f.n_dims for f in target_frames.values()}
    if len(dims) > 1:
        raise DataError(f"The target space {target!r} has clips with different dimensions: {sorted(dims)}.")

    train_runs = experiment.train_runs
    train_clips = {c for run in train_runs for c in run.events["clip_id"]}
    xs, ys, rows, groups = [], [], [], []
    for index, run in enumerate(train_runs):
        X, Y, described = _run_samples(run, target_frames, window, hop, delays, set())
        if not described:
            continue
        xs.append(X)
        ys.append(Y)
        rows += described
        groups.append(np.full(len(X), index))
    train = pd.DataFrame(rows, columns=["run_id", "event", "clip_id", "window", "start"])
    if train.empty:
        raise DataError(f"No training window of {window:g} s fits in the runs with lags {list(delays)} TRs; "
                        "shorten the window or the lags.")
    blocks = train.groupby(["run_id", "event"], sort=False).ngroup().to_numpy()

    test_x: dict[tuple, list] = {}
    test_y: dict[tuple, np.ndarray] = {}
    for run in experiment.test_runs:
        X, Y, described = _run_samples(run, target_frames, window, hop, delays, train_clips)
        for x, y, row in zip(X, Y, described):
            key = (row["clip_id"], row["window"], row["start"])
            test_x.setdefault(key, []).append(x)
            test_y[key] = y
    if not test_x:
        raise DataError(f"No test window: the test runs play no clip absent from the training runs, or none fits "
                        f"a {window:g}-s window with lags {list(delays)} TRs. Decoding is scored on new clips.")
    keys = list(test_x)
    test = pd.DataFrame([{"clip_id": c, "window": k, "start": s, "n_presentations": len(test_x[(c, k, s)])}
                         for c, k, s in keys])
    return DecodingDesign(
        X_train=np.vstack(xs), Y_train=np.vstack(ys), groups=np.concatenate(groups), blocks=blocks,
        X_test=np.stack([np.mean(test_x[k], axis=0) for k in keys]).astype(np.float32),
        Y_test=np.stack([test_y[k] for k in keys]), train_samples=train, test_samples=test,
        n_vertices=experiment.n_vertices, delays=delays, window=float(window), hop=float(hop), target=target,
    )


def clip_means(values: np.ndarray, samples: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Sample rows averaged per clip: (clip ids in order of first appearance, array (n_clips, n_dims))."""
    codes, ids = pd.factorize(samples["clip_id"], sort=False)
    sums = np.zeros((len(ids), values.shape[1]))
    np.add.at(sums, codes, values)
    return list(ids), (sums / np.bincount(codes)[:, None]).astype(np.float32)
