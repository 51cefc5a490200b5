"""Shared fixtures: a tiny simulated experiment and one pipeline run on it (built once per session)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the network

from encoding.config import PipelineConfig  # noqa: E402
from encoding.data import ClipSet, Experiment, Run  # noqa: E402


def tiny_config(seed: int = 0, figures: bool = False) -> PipelineConfig:
    """A small simulation (3 training runs of 12 clips, 12 test clips x 3 repeats) and a short search."""
    config = PipelineConfig()
    sim = config.data.simulation
    sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats = 3, 12, 12, 3
    sim.sample_rate = 8000
    sim.seed = seed
    config.model.n_iter = 4
    config.model.random_state = seed
    config.statistics.n_permutations = 100
    config.statistics.n_bootstrap = 100
    config.output.figures = figures
    return config


@pytest.fixture(scope="session")
def tiny_run():
    """The pipeline run on the tiny simulation (no outputs written)."""
    from encoding.pipeline import run_pipeline

    return run_pipeline(tiny_config(figures=True), None, progress=False)


def make_experiment(n_vertices: int = 5, n_trs: int = 30, tr: float = 1.5, rng=None) -> Experiment:
    """A minimal valid experiment: 2 training runs and 2 repeated test runs of 2 silent 15-s clips."""
    rng = rng or np.random.default_rng(0)
    sr = 1000
    table = pd.DataFrame({"caption": ["a quiet piano piece", "a loud rock song"]}, index=["a", "b"])
    clips = ClipSet(table, {c: np.zeros(15 * sr, dtype=np.float32) for c in table.index}, sr)
    events = pd.DataFrame({"clip_id": ["a", "b"], "onset": [0.0, 15.0], "duration": [15.0, 15.0]})
    runs = [Run(f"train-{i}", rng.standard_normal((n_trs, n_vertices)), tr, events) for i in range(2)]
    runs += [Run(f"test-{i}", rng.standard_normal((n_trs, n_vertices)), tr, events, role="test", repeat_id="seq")
             for i in range(2)]
    return Experiment("s01", runs, clips, space="roi")


def tables_config(root) -> dict:
    """A valid config: 3 ROIs and one regressor, one run cut into 4 blocks (the last one held out)."""
    return {
        "data": {"source": "tables",
                 "tables": {"root": str(root), "tr": 2.0, "n_blocks": 4, "test_blocks": [-1],
                            "runs": [{"responses": "y.tsv", "regressors": {"loud": "x.txt"}}]},
                 "preprocessing": {"detrend": "none"}},
        "features": {"spaces": ["loud"]},
        "design": {"delays": [0, 1]},
        "model": {"n_iter": 2, "n_alphas": 5},
        "statistics": {"n_permutations": 20, "n_bootstrap": 20},
    }


@pytest.fixture
def table_data(tmp_path):
    """Files of the table data set (400 volumes)."""
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(400), np.ones(4) / 4, mode="same")
    Y = rng.standard_normal((400, 3))
    Y[:, 0] += 2 * x
    np.savetxt(tmp_path / "y.tsv", Y, delimiter="\t", header="A1\tSTG\tV1", comments="")
    np.savetxt(tmp_path / "x.txt", x)
    return tmp_path
