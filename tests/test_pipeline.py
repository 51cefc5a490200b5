"""End to end: the pipeline recovers a planted ground truth; the CLI and configs behave."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from encoding.cli import build_parser, main
from encoding.config import PipelineConfig
from encoding.report import recovery, write_outputs


def test_tiny_simulation_recovers_ground_truth(tiny_run):
    res = tiny_run.results
    metrics = recovery(tiny_run)
    # chance is 0.5 for the AUC and about 1/3 for band accuracy
    assert metrics["auc"] > 0.8
    assert metrics["band_accuracy"] > 0.7
    assert res.test_r2.shape == (20484,) and res.split_r2.shape == (3, 20484)
    np.testing.assert_allclose(np.nansum(res.split_r2, axis=0), np.nan_to_num(res.test_r2), atol=1e-3)
    assert (res.best_alphas > 0).all()


def test_outputs_are_all_written(tiny_run, tmp_path):
    out = tmp_path / "demo"
    write_outputs(tiny_run, out)
    summary = json.loads((out / "summary.json").read_text())
    assert {"auc", "band_accuracy"} <= set(summary["recovery"])
    assert summary["data"]["n_vertices"] == 20484
    assert summary["provenance"]["versions"]["himalaya"]
    assert summary["provenance"]["config"]["data"]["simulation"]["seed"] == 0
    figures = summary["files"]["figures"]
    pycortex = {"pycortex_significant_r2"} if importlib.util.find_spec("cortex") else set()  # the extra's quickflat
    assert set(figures) == {"test_r2", "split_r2_logmel", "split_r2_modulation", "split_r2_caption",
                            "planted_share", "best_space", "significant_r2", "unique_logmel", "unique_modulation",
                            "unique_caption", "flat_significant_r2", "unique_rgb"} | pycortex
    for path in figures.values():
        assert (out / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "Ground-truth recovery" in report and "figures/test_r2.png" in report
    assert "Noise ceiling" in report and summary["noise_ceiling"]["n_vertices_reliable"] > 100
    # statistics: corrected significance, unique variance, the methods paragraph and the tables
    stats = summary["statistics"]
    assert stats["test"]["n_permutations"] == 100 and stats["test"]["n_significant"] > 50
    assert stats["power"]["false_positive_rate"] < 0.01 and stats["power"]["sensitivity_share_above_0.1"] > 0.05
    assert "### Methods" in report and "100 permutations" in (out / "statistics" / "methods.md").read_text()
    # every FWER procedure from the same permutations, the maps' one named; step-down never below max-T
    procedures = stats["test"]["fwer_procedures"]
    assert set(procedures) == {"max", "step-down", "tfce", "cluster-mass", "cluster-extent"}
    assert procedures["step-down"] == stats["test"]["n_significant"] >= procedures["max"]
    assert "| **step-down max-T** |" in report and "FWER (step-down max-T) p ≤ 0.05" in report
    by_procedure = stats["power"]["by_procedure"]
    assert by_procedure["tfce"]["sensitivity"] >= by_procedure["max"]["sensitivity"]
    for suffix in ("csv", "md", "tex"):
        assert (out / "statistics" / f"rois.{suffix}").stat().st_size > 100
    # the ROI table is in Desikan-Killiany regions, and the planted territories show where they were planted
    rois = pd.read_csv(out / "statistics" / "rois.csv", index_col=0)
    assert list(rois.index) == ["HG", "STG", "STS", "IFG", "precentral", "V1"]
    assert rois.loc["HG", "test_r2"] > 0.1 and rois.loc["STG", "test_r2"] > 0.05
    assert rois.loc[["IFG", "precentral", "V1"], "fraction_significant"].max() == 0  # nothing planted there
    unique = rois.loc["HG", ["unique_logmel", "unique_modulation", "unique_caption"]]
    assert unique.idxmax() == "unique_logmel"  # Heschl's gyrus carries the log-mel territory
    # with block-bootstrap intervals of the ROI means, each right after its estimate
    assert list(rois.columns[1:4]) == ["test_r2", "test_r2_ci_low", "test_r2_ci_high"]
    assert rois.loc["HG", "test_r2_ci_low"] > 0.05 and rois.loc["HG", "unique_logmel_ci_low"] > 0
    assert (rois["test_r2_ci_low"] <= rois["test_r2"]).all() and (rois["test_r2"] <= rois["test_r2_ci_high"]).all()
    assert rois.loc["V1", "test_r2_ci_high"] < 0.02  # the visual control explains nothing
    arrays = np.load(out / "results.npz")
    assert arrays["test_r2"].shape == (20484,) and list(arrays["band_names"]) == ["logmel", "modulation", "caption"]
    assert arrays["significant"].dtype == bool and arrays["unique_caption"].shape == (20484,)
    assert arrays["p_value"].min() == pytest.approx(1 / 101)
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temporary files
    # the written config reads back to the same configuration
    assert PipelineConfig.from_toml(out / "config.toml").to_dict() == PipelineConfig.from_dict(
        summary["provenance"]["config"]).to_dict()


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "fit", "decode", "sweep", "spaces"):
        assert command in text


def test_fit_runs_a_config_file(tmp_path, capsys):
    config = tiny_config()
    config.features.spaces = ["logmel", "modulation"]  # the caption territory is planted but not fitted
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert main(["fit", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "band accuracy n/a" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["features"]) == ["logmel", "modulation"]
    assert summary["recovery"]["auc"] > 0.7
    assert summary["recovery"]["band_accuracy"] is None
    assert summary["recovery"]["unfitted_planted_spaces"] == ["caption"]


def test_sweep_finds_the_planted_resolution(tmp_path, capsys):
    """The simulation plants logmel with 32 bands at Heschl's gyrus: a sweep over n_mels prefers 32 there."""
    config = tiny_config(figures=True)
    config.sweep.space, config.sweep.parameter, config.sweep.values = "logmel", "n_mels", [4, 32]
    path = tmp_path / "sweep.toml"
    path.write_text(config.to_toml())
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "n_mels=32: best at" in capsys.readouterr().out
    arrays = np.load(tmp_path / "out" / "sweep.npz")
    assert arrays["test_r2"].shape == (2, 20484) and list(arrays["values"]) == ["4", "32"]
    from encoding.simulation import simulate_experiment

    _, truth = simulate_experiment(config.data.simulation, config.features.params, progress=False)
    hg = truth.dominant_band == truth.band_names.index("logmel")
    strong = hg & (truth.signal_share.sum(axis=0) > 0.3)
    best = np.nan_to_num(arrays["test_r2"], nan=-np.inf).argmax(axis=0)
    assert (best[strong] == 1).mean() > 0.6
    assert (tmp_path / "out" / "figures" / "sweep_best.png").is_file()
    assert "| 32 |" in (tmp_path / "out" / "sweep.md").read_text()


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    import os

    from encoding.io import write_text

    path = write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_noise_ceiling_is_reported_and_follows_the_planted_share(tiny_run):
    res = tiny_run.results
    share = tiny_run.truth.signal_share.sum(axis=0)
    ev = res.explainable_variance
    assert ev.shape == (20484,) and res.cc_norm.shape == (20484,)
    # the explainable variance of a presentation is the planted signal share, up to estimation noise
    strong, silent = share > 0.35, share == 0
    assert abs(np.nanmean(ev[strong]) - share[strong].mean()) < 0.1
    assert abs(np.nanmean(ev[silent])) < 0.05
