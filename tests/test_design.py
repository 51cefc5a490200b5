"""TR alignment, delays and design matrices, checked against hand-computed values."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_experiment

from encoding.design import align_to_trs, delay, features_on_trs, make_design, zscore
from encoding.features import FeatureFrames


def constant_frames(value: float, duration: float = 15.0, hop: float = 0.5) -> FeatureFrames:
    starts = np.arange(0, duration, hop)
    return FeatureFrames(np.full((len(starts), 1), value), starts, starts + hop)


def test_alignment_of_back_to_back_clips_with_silence():
    frames = {"a": constant_frames(1.0), "b": constant_frames(3.0)}
    events = pd.DataFrame({"clip_id": ["a", "b"], "onset": [0.0, 15.0], "duration": [15.0, 15.0]})
    X = align_to_trs(frames, events, n_trs=22, tr=1.5)[:, 0]
    np.testing.assert_allclose(X[:10], 1.0)
    np.testing.assert_allclose(X[10:20], 3.0)
    np.testing.assert_allclose(X[20:], 0.0)  # silence after the clips


def test_alignment_weights_partial_trs_and_overlapping_frames():
    # one frame per clip (a clip embedding) starting mid-TR; overlapping frames average, not add
    emb = FeatureFrames(np.array([[2.0]]), np.array([0.0]), np.array([3.0]))
    events = pd.DataFrame({"clip_id": ["a"], "onset": [0.75], "duration": [3.0]})
    X = align_to_trs({"a": emb}, events, n_trs=4, tr=1.5)[:, 0]
    np.testing.assert_allclose(X, [1.0, 2.0, 1.0, 0.0])  # half-covered TRs get half the value
    overlapping = FeatureFrames(np.array([[1.0], [3.0]]), np.array([0.0, 0.0]), np.array([1.5, 1.5]))
    X = align_to_trs({"a": overlapping}, events.assign(onset=0.0, duration=1.5), n_trs=1, tr=1.5)
    np.testing.assert_allclose(X, [[2.0]])


def test_alignment_cuts_frames_beyond_the_event():
    frames = {"a": FeatureFrames(np.array([[1.0], [5.0]]), np.array([0.0, 1.5]), np.array([1.5, 3.0]))}
    events = pd.DataFrame({"clip_id": ["a"], "onset": [0.0], "duration": [1.5]})
    np.testing.assert_allclose(align_to_trs(frames, events, 2, 1.5)[:, 0], [1.0, 0.0])


def test_delay_shifts_within_run_and_zero_fills():
    X = np.arange(1, 6, dtype=np.float32)[:, None]
    D = delay(X, [0, 1, 3])
    np.testing.assert_array_equal(D[:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(D[:, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(D[:, 2], [0, 0, 0, 1, 2])


def test_zscore_names_constant_columns():
    Z = zscore(np.array([[1.0, 2.0], [3.0, 2.0]]))
    np.testing.assert_allclose(Z, [[-1, 0], [1, 0]])
    with pytest.raises(ValueError, match=r"responses of run 'r': 1 columns are constant \(first: \[1\]\)"):
        zscore(np.array([[1.0, 2.0], [3.0, 2.0]]), name="responses of run 'r'", allow_constant=False)


def test_make_design_shapes_bands_and_repeat_average():
    exp = make_experiment(n_vertices=4, n_trs=30)
    frames = {"a": constant_frames(1.0), "b": constant_frames(-1.0)}
    on_trs = features_on_trs(exp, {"one": frames, "two": frames})
    design = make_design(exp, on_trs, delays=(1, 2))
    assert design.X_train.shape == (60, 4) and design.Y_train.shape == (60, 4)
    assert design.bands == {"one": slice(0, 2), "two": slice(2, 4)}
    np.testing.assert_array_equal(np.bincount(design.groups), [30, 30])
    assert design.Y_test.shape == (30, 4) and design.Y_test_repeats.shape == (2, 30, 4)
    np.testing.assert_allclose(design.Y_test, design.Y_test_repeats.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(design.Y_train.mean(axis=0), 0, atol=1e-5)


def test_make_design_rejects_mismatched_tr_counts():
    exp = make_experiment(n_trs=30)
    tr_features = {"logmel": {r.run_id: np.zeros((29, 3)) for r in exp.runs}}
    with pytest.raises(ValueError, match="has 29 TRs in run 'train-0' but its responses have 30"):
        make_design(exp, tr_features)


def test_make_design_rejects_constant_vertices():
    exp = make_experiment(n_trs=30)
    exp.runs[1].responses[:, 2] = 4.0
    frames = {"a": constant_frames(1.0), "b": constant_frames(-1.0)}
    with pytest.raises(ValueError, match=r"run 'train-1'.*constant \(first: \[2\]\).*mask"):
        make_design(exp, features_on_trs(exp, {"f": frames}))


def test_within_run_repeats_are_cut_and_averaged():
    # a test run like ds003720's: a lead-in clip, then the sequence (a, b) three times
    from encoding.data import Experiment, Run

    exp = make_experiment(n_vertices=3, n_trs=30)
    events = pd.DataFrame({
        "clip_id": ["b", "a", "b", "a", "b", "a", "b"],
        "onset": np.arange(7) * 6.0, "duration": np.full(7, 6.0),
        "repeat": [np.nan, 0, 0, 1, 1, 2, 2],
    })
    rng = np.random.default_rng(3)
    test = Run("test-x", rng.standard_normal((30, 3)), 1.5, events, role="test")
    assert test.repeat_segments() == [slice(4, 12), slice(12, 20), slice(20, 28)]
    exp = Experiment("s", exp.train_runs + [test], exp.clips, space="roi")
    frames = {"a": constant_frames(1.0), "b": constant_frames(-1.0)}
    design = make_design(exp, features_on_trs(exp, {"f": frames}), delays=(1,))
    assert design.Y_test_repeats.shape == (3, 8, 3)
    Y = zscore(test.responses)
    np.testing.assert_allclose(design.Y_test, (Y[4:12] + Y[12:20] + Y[20:28]) / 3, atol=1e-5)
    bad = events.assign(clip_id=["b", "a", "b", "a", "b", "b", "a"])
    with pytest.raises(ValueError, match="repeat 2 does not present the same clips"):
        Run("test-y", test.responses, 1.5, bad, role="test").repeat_segments()
