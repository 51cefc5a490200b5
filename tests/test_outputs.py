"""No work lost, nothing stale: run folders appear whole or not at all, and an interrupted fit resumes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tomli_w
from conftest import tables_config

import encoding.ridge.search as search
from encoding.cli import main
from encoding.io import RunFolder
from encoding.ridge import RidgeProblem, band_weight_candidates, fit_banded_ridge


def test_a_run_folder_replaces_the_earlier_run_whole(tmp_path):
    target = tmp_path / "out"
    first = RunFolder(target)
    (first.staging / "summary.json").write_text("{}")
    (first.staging / "old-figure.png").write_text("x")
    first.commit()
    second = RunFolder(target)
    assert target.is_dir() and (target / "old-figure.png").exists()  # untouched until the new run commits
    (second.staging / "summary.json").write_text('{"run": 2}')
    second.commit()
    assert sorted(p.name for p in target.iterdir()) == [".brain2music", "summary.json"]  # no stale figure
    assert not list(tmp_path.glob(".out.*"))


def test_the_current_folder_is_never_an_output_folder(tmp_path, monkeypatch):
    from encoding.errors import OutputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="is the current folder"):
        RunFolder(".")


def test_a_failed_run_leaves_nothing_and_a_killed_one_is_cleaned_up(tmp_path):
    target = tmp_path / "out"
    folder = RunFolder(target)
    (folder.staging / "summary.json").write_text("{}")
    folder.discard()
    assert not target.exists() and not list(tmp_path.glob(".out.*"))
    dead = tmp_path / ".out.partial-999999999"  # a staging folder whose process was killed
    dead.mkdir()
    (dead / "results.npz").write_text("half")
    RunFolder(target).discard()
    assert not dead.exists()
    alive = tmp_path / f".out.partial-{os.getppid()}"  # one of a live process is left alone
    alive.mkdir()
    RunFolder(target).discard()
    assert alive.exists()


def make_problem(n_vertices=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((160, 12)).astype(np.float32)
    groups = np.repeat(np.arange(4), 40)
    Y = (X @ rng.standard_normal((12, n_vertices)) * 0.3 + rng.standard_normal((160, n_vertices))).astype(np.float32)
    return RidgeProblem(X, groups, {"a": slice(0, 6), "b": slice(6, 12)}), Y


def test_an_interrupted_fit_resumes_without_refitting_finished_batches(tmp_path, monkeypatch):
    problem, Y = make_problem()
    alphas, candidates = np.logspace(-1, 3, 5), band_weight_candidates(2, 4)
    memory_gb = 0.2 / 1024  # several vertex batches
    reference = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, progress=False)
    n_batches = -(-Y.shape[1] // reference.batch_size)
    assert n_batches >= 3
    real_score, calls = search._score_task, []

    def interrupt_after(limit):
        def score(*args):
            if len(calls) == limit:
                raise KeyboardInterrupt
            calls.append(1)
            return real_score(*args)
        return score

    finished = len(candidates) * n_batches // 2
    monkeypatch.setattr(search, "_score_task", interrupt_after(finished))
    with pytest.raises(KeyboardInterrupt):
        fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, cache=tmp_path, progress=False)
    calls.clear()
    monkeypatch.setattr(search, "_score_task", interrupt_after(10**9))
    resumed = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, cache=tmp_path, progress=False)
    assert len(calls) == len(candidates) * n_batches - finished  # only the missing batches were scored
    assert resumed.profile["cached_tasks"] == finished
    np.testing.assert_array_equal(resumed.cv_scores, reference.cv_scores)  # the same tasks, the same numbers
    np.testing.assert_array_equal(resumed.coef, reference.coef)
    calls.clear()
    again = fit_banded_ridge(problem, Y, alphas, candidates, memory_gb=memory_gb, cache=tmp_path, progress=False)
    assert not calls and again.profile["cached_tasks"] > len(candidates) * n_batches  # scores and refits cached
    other = fit_banded_ridge(problem, Y + 1e-3, alphas, candidates, memory_gb=memory_gb, cache=tmp_path,
                             progress=False)
    assert len(calls) == len(candidates) * n_batches  # other responses: a different key, nothing reused
    assert not np.array_equal(other.coef, reference.coef)


def test_a_rerun_of_the_cli_replaces_figures_of_the_earlier_run(table_data):
    config = tables_config(table_data)
    file = table_data / "c.toml"
    file.write_text(tomli_w.dumps(config))
    out = table_data / "out"
    assert main(["fit", str(file), "--out", str(out), "--no-progress"]) == 0
    assert (out / "figures" / "split_r2_bars.png").is_file()
    config["output"] = {"figures": False}
    file.write_text(tomli_w.dumps(config))
    assert main(["fit", str(file), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "figures").exists()
    assert json.loads((out / "summary.json").read_text())["files"]["figures"] == {}
