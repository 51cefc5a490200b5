"""The data model rejects bad input with messages that say what is wrong."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_experiment

from encoding.data import ClipSet, Experiment, Run

EVENTS = pd.DataFrame({"clip_id": ["a"], "onset": [0.0], "duration": [15.0]})


def test_valid_experiment_properties():
    exp = make_experiment(n_vertices=7)
    assert exp.n_vertices == 7 and exp.tr == 1.5
    assert [r.run_id for r in exp.train_runs] == ["train-0", "train-1"]
    assert list(exp.repeat_groups()) == ["seq"]
    assert exp.runs[0].responses.dtype == np.float32


@pytest.mark.parametrize(
    "responses, message",
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros(12), "2-D"),
        (np.where(np.eye(12, 3) > 0, np.nan, 1.0), "NaN"),
    ],
)
def test_run_rejects_bad_responses(responses, message):
    with pytest.raises(ValueError, match=message):
        Run("r1", responses, 1.5, EVENTS)


def test_run_rejects_events_beyond_the_run():
    with pytest.raises(ValueError, match="events end at 15.0 s but the run lasts 6.0 s"):
        Run("r1", np.ones((4, 2)), 1.5, EVENTS)


def test_run_rejects_missing_event_columns():
    with pytest.raises(ValueError, match="lack the columns"):
        Run("r1", np.ones((12, 2)), 1.5, EVENTS.drop(columns="duration"))


def test_experiment_rejects_mixed_tr_and_sizes():
    exp = make_experiment()
    odd = Run("odd", np.ones((20, exp.n_vertices)), 2.0, EVENTS)
    with pytest.raises(ValueError, match="different TRs"):
        Experiment("s", exp.runs + [odd], exp.clips)
    wide = Run("wide", np.ones((30, exp.n_vertices + 1)), 1.5, EVENTS)
    with pytest.raises(ValueError, match="different numbers of vertices"):
        Experiment("s", exp.runs + [wide], exp.clips)


def test_experiment_rejects_unknown_clips_and_unequal_repeats():
    exp = make_experiment()
    stranger = Run("x", np.ones((30, exp.n_vertices)), 1.5, EVENTS.assign(clip_id="zzz"))
    with pytest.raises(ValueError, match="missing from the clip table"):
        Experiment("s", exp.runs + [stranger], exp.clips)
    other = Run("t9", np.ones((30, exp.n_vertices)), 1.5, EVENTS, role="test", repeat_id="seq")
    with pytest.raises(ValueError, match="repeats must be identical"):
        Experiment("s", exp.runs + [other], exp.clips)


def test_clipset_requires_audio_for_every_clip():
    table = pd.DataFrame({"caption": ["x", "y"]}, index=["a", "b"])
    with pytest.raises(ValueError, match="have no audio"):
        ClipSet(table, {"a": np.zeros(10)}, 1000)
    with pytest.raises(ValueError, match="mono"):
        ClipSet(table, {"a": np.zeros(10), "b": np.zeros((10, 2))}, 1000)
