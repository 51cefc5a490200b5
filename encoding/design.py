"""From clip features to regression matrices: TR alignment, z-scoring, FIR delays, run stacking.

The steps, each a plain function:

1. :func:`align_to_trs` averages a clip's feature frames within each TR of a run (silence is 0);
2. :func:`features_on_trs` does that for every run and feature space;
3. :func:`make_design` z-scores features and responses per run, adds FIR delays within each run
   (never across run boundaries), stacks the training runs, averages the repeats of each test
   sequence (see :meth:`encoding.data.Run.repeat_segments`), and records which columns belong to
   which feature space (the bands).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from encoding.config import DEFAULT_DELAYS
from encoding.data import Experiment, Run
from encoding.errors import DataError
from encoding.features.base import FeatureFrames


@dataclass
class Design:
    """Regression matrices for an encoding fit.

    Attributes
    ----------
    X_train : ndarray, shape (n_train, n_features)
        Delayed, z-scored features of the training runs, stacked in run order.
    Y_train : ndarray, shape (n_train, n_vertices)
        Responses of the training runs, z-scored per run.
    groups : ndarray of int, shape (n_train,)
        Index of the training run of each sample (for leave-one-run-out CV).
    X_test : ndarray, shape (n_test, n_features)
        Features of each test sequence (one per repeat group), stacked; averaged over the
        repeats like the responses, which only matters where repeats differ in what precedes
        them (the delays see the preceding clip).
    Y_test : ndarray, shape (n_test, n_vertices)
        Responses of the test runs, z-scored per run and averaged over repeats (whole runs
        sharing a ``repeat_id`` and the ``repeat`` segments within a run).
    Y_test_repeats : ndarray, shape (n_repeats, n_test, n_vertices) or None
        The single repeats before averaging (None when the groups have different repeat counts).
    bands : dict of str to slice
        Columns of each feature space in X.
    delays : tuple of int
        FIR delays, in TRs.
    train_run_ids, test_run_ids : list of str
        Runs behind the rows of the training and test matrices.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    groups: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    Y_test_repeats: np.ndarray | None
    bands: dict[str, slice]
    delays: tuple[int, ...]
    train_run_ids: list[str]
    test_run_ids: list[str]

    @property
    def band_names(self) -> list[str]:
        """Feature-space names, in column order."""
        return list(self.bands)


def align_to_trs(frames: Mapping[str, FeatureFrames], events: pd.DataFrame, n_trs: int, tr: float) -> np.ndarray:
    """Average each clip's feature frames within the TRs of a run.

    TR ``i`` covers ``[i * tr, (i + 1) * tr)`` seconds. Within a TR, the frames of a playing clip
    are averaged, weighted by their overlap with the TR, and scaled by the fraction of the TR
    the clip covers; silence contributes zeros. A clip's frames beyond its event duration are cut.

    Parameters
    ----------
    frames : mapping of str to FeatureFrames
        Features of each clip, keyed by clip id.
    events : DataFrame
        Columns ``clip_id``, ``onset`` and ``duration`` (s).
    n_trs : int
        Volumes in the run.
    tr : float
        Repetition time, in seconds.

    Returns
    -------
    ndarray, shape (n_trs, n_dims)
    """
    n_dims = next(iter(frames.values())).n_dims
    out = np.zeros((n_trs, n_dims))
    tr_starts = np.arange(n_trs) * tr
    for clip_id, onset, duration in events[["clip_id", "onset", "duration"]].itertuples(index=False):
        f = frames[clip_id]
        if f.n_dims != n_dims:
            raise DataError(f"Clip {clip_id!r} has {f.n_dims} feature dimensions, others {n_dims}.")
        first = int(np.floor(onset / tr))
        last = min(n_trs, int(np.ceil((onset + duration) / tr)))
        if last <= first:
            continue
        t0 = tr_starts[first:last, None]
        starts = np.clip(f.starts, 0, duration) + onset
        ends = np.clip(f.ends, 0, duration) + onset
        overlap = np.clip(np.minimum(ends, t0 + tr) - np.maximum(starts, t0), 0, None)  # (n_tr, n_frames)
        coverage = np.clip(np.minimum(onset + duration, t0[:, 0] + tr) - np.maximum(onset, t0[:, 0]), 0, None) / tr
        total = overlap.sum(axis=1)
        mean = np.divide(overlap @ f.values, total[:, None], out=np.zeros((last - first, n_dims)), where=total[:, None] > 0)
        out[first:last] += coverage[:, None] * mean
    return out.astype(np.float32)


def features_on_trs(
    experiment: Experiment, features: Mapping[str, Mapping[str, FeatureFrames]]
) -> dict[str, dict[str, np.ndarray]]:
    """Align every feature space onto every run's TR grid.

    Parameters
    ----------
    experiment : Experiment
    features : mapping of space name to (mapping of clip id to FeatureFrames)

    Returns
    -------
    dict of space name to (dict of run id to ndarray of shape (n_trs, n_dims))
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for space, frames in features.items():
        missing = sorted({c for r in experiment.runs for c in r.events["clip_id"]} - set(frames))
        if missing:
            raise DataError(f"Feature space {space!r} lacks clips played in the runs: {missing[:5]}.")
        out[space] = {r.run_id: align_to_trs(frames, r.events, r.n_trs, r.tr) for r in experiment.runs}
    return out


def zscore(X: np.ndarray, *, name: str = "array", allow_constant: bool = True) -> np.ndarray:
    """Z-score the columns of ``X`` (n_samples, n_columns), in float32.

    Constant columns become zeros when ``allow_constant``; otherwise they raise a ValueError
    naming ``name`` and the first offending columns.
    """
    X = np.asarray(X, dtype=np.float32)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    constant = std < 1e-6 * (np.abs(mean) + 1.0)
    if constant.any() and not allow_constant:
        idx = np.flatnonzero(constant)
        raise DataError(
            f"{name}: {idx.size} columns are constant (first: {idx[:5].tolist()}); they cannot be z-scored. "
            "Exclude them (e.g. the medial wall) with a vertex mask before fitting."
        )
    return np.where(constant, 0.0, (X - mean) / np.where(constant, 1.0, std)).astype(np.float32)


def delay(X: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """FIR delays: copies of ``X`` (n_trs, n_dims) shifted down by each delay, zero-filled.

    Returns
    -------
    ndarray, shape (n_trs, n_dims * len(delays))
        Delay-major: columns ``[k * n_dims, (k + 1) * n_dims)`` hold ``X`` delayed by ``delays[k]``.
    """
    n = X.shape[0]
    out = np.zeros((n, X.shape[1] * len(delays)), dtype=X.dtype)
    for k, d in enumerate(delays):
        cols = slice(k * X.shape[1], (k + 1) * X.shape[1])
        if 0 <= d < n:
            out[d:, cols] = X[: n - d]
        elif -n < d < 0:
            out[:d, cols] = X[-d:]
    return out


def make_design(
    experiment: Experiment,
    tr_features: Mapping[str, Mapping[str, np.ndarray]],
    delays: Sequence[int] = DEFAULT_DELAYS,
) -> Design:
    """Stack delayed features and responses into training and test matrices.

    Parameters
    ----------
    experiment : Experiment
    tr_features : mapping of space name to (mapping of run id to ndarray (n_trs, n_dims))
        Features on each run's TR grid, e.g. from :func:`features_on_trs` or computed elsewhere.
    delays : sequence of int
        FIR delays in TRs (default 1-4 TRs, 1.5-6 s at TR 1.5 s).

    Returns
    -------
    Design
    """
    if not tr_features:
        raise DataError("No feature spaces given.")
    delays = tuple(int(d) for d in delays)
    if not delays:
        raise DataError("Give at least one delay.")
    names = list(tr_features)

    def run_X(run: Run) -> np.ndarray:
        blocks = []
        for space in names:
            if run.run_id not in tr_features[space]:
                raise DataError(f"Feature space {space!r} has no features for run {run.run_id!r}.")
            X = np.asarray(tr_features[space][run.run_id])
            if X.ndim != 2 or X.shape[0] != run.n_trs:
                raise DataError(
                    f"Feature space {space!r} has {X.shape[0] if X.ndim else 0} TRs in run {run.run_id!r} "
                    f"but its responses have {run.n_trs}. Align the features to the run's TR grid "
                    "(encoding.design.features_on_trs) or trim the responses."
                )
            blocks.append(delay(zscore(X), delays))
        return np.hstack(blocks)

    def run_Y(run: Run) -> np.ndarray:
        return zscore(run.responses, name=f"responses of run {run.run_id!r}", allow_constant=False)

    sizes = [np.asarray(next(iter(tr_features[s].values()))).shape[1] * len(delays) for s in names]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    bands = {s: slice(int(a), int(b)) for s, a, b in zip(names, bounds[:-1], bounds[1:])}

    train = experiment.train_runs
    X_train = np.vstack([run_X(r) for r in train])
    Y_train = np.vstack([run_Y(r) for r in train])
    groups = np.concatenate([np.full(r.n_trs, i) for i, r in enumerate(train)])

    X_test, Y_test, repeats, test_ids = [], [], [], []
    for runs in experiment.repeat_groups().values():
        xs, ys = [], []
        for run in runs:
            X, Y = run_X(run), run_Y(run)  # delayed over the whole run, then cut into repeats
            for seg in run.repeat_segments():
                xs.append(X[seg])
                ys.append(Y[seg])
        X_test.append(np.mean(xs, axis=0))  # equal but for carry-over from what precedes each repeat
        Y_test.append(np.mean(ys, axis=0))
        repeats.append(np.stack(ys))
        test_ids += [r.run_id for r in runs]
    if not X_test:
        raise DataError(f"Experiment {experiment.subject!r} has no test runs (role='test') to score on.")
    same_repeats = len({y.shape[0] for y in repeats}) == 1
    return Design(
        X_train=X_train,
        Y_train=Y_train,
        groups=groups,
        X_test=np.vstack(X_test),
        Y_test=np.vstack(Y_test).astype(np.float32),
        Y_test_repeats=np.concatenate(repeats, axis=1) if same_repeats else None,
        bands=bands,
        delays=delays,
        train_run_ids=[r.run_id for r in train],
        test_run_ids=test_ids,
    )
