"""Studies and the group level: a simulated 5-subject study recovers the shared territories, resumes,
survives a failing subject, and refuses subjects or outputs that differ."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from encoding.cli import main
from encoding.errors import ConfigError, DataError
from encoding.group import SubjectOutputs, check_compatible, group_identification, load_subject, subject_folders
from encoding.study import check_subjects, run_study, subject_config


def study_config(n_subjects: int = 5, decode: bool = True):
    """Five small simulated subjects: log-mel on Heschl's gyrus, modulation on the planum temporale (both
    fitted), caption semantics on the anterior STG and middle STS (decoded in each subject, and across
    subjects after anatomical and functional alignment)."""
    config = tiny_config(figures=False)
    sim = config.data.simulation
    sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats = 3, 10, 10, 2
    sim.n_subjects = n_subjects
    sim.territories = {"logmel": ["HG"], "modulation": ["PT"], "caption": ["aSTG", "mSTS"]}
    config.features.spaces = ["logmel", "modulation"]
    config.model.n_iter, config.model.n_alphas = 2, 6
    config.statistics.n_permutations, config.statistics.partition = 20, False
    config.study.subjects, config.study.decode = ["all"], decode
    config.study.cross_subject = ["anatomical", "functional"] if decode else []
    cfg = config.decoding
    cfg.targets, cfg.n_permutations, cfg.n_bootstrap, cfg.n_reconstructed = ["caption"], 0, 100, 0
    cfg.selection, cfg.rois = "roi", ["STG", "STS"]  # where the caption territory lies
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    return run_study(study_config(), out, progress=False), out


@pytest.mark.slow
def test_a_simulated_study_recovers_the_shared_territories_at_group_level(study):
    run, out = study
    assert run.status == {f"sim{k:02d}": "done" for k in range(1, 6)}
    arrays = [np.load(out / f"sub-sim{k:02d}" / "results.npz") for k in range(1, 6)]
    planted = np.stack([a["planted_share"].sum(axis=0) for a in arrays])
    fitted = np.stack([a["planted_share"][:2].sum(axis=0) for a in arrays])  # logmel and modulation
    assert list(arrays[0]["planted_spaces"]) == ["logmel", "modulation", "caption"]
    assert not np.array_equal(planted[0] > 0, planted[1] > 0)  # individual territories
    significant = run.group.significant()
    assert not (significant & ~(planted > 0).any(axis=0)).any()  # FWER: nothing outside any subject's territory
    core = (fitted > 0.1).all(axis=0)  # the fitted spaces' territories in every subject: the group effect
    assert core.sum() > 50 and (significant & core).sum() > 0.3 * core.sum()
    assert run.group.maps.p_values.min() == pytest.approx(1 / 32)  # 5 subjects: an exact sign-flip test
    summary = json.loads((out / "group" / "summary.json").read_text())
    assert summary["n_subjects"] == 5 and summary["n_significant"] == significant.sum()
    rois = pd.read_csv(out / "group" / "rois.csv", index_col=0)
    assert rois.loc["HG", "ci_low"] > 0.05 and rois.loc["V1", "ci_high"] < 0.02  # nothing planted in V1
    identification = pd.read_csv(out / "group" / "identification.csv", index_col=0)
    group = identification[identification["subject"] == "group"].iloc[0]
    assert group["ci_low"] > 0.5 and group["p_value"] == pytest.approx(1 / 32)  # every subject above chance
    assert (out / "group" / "figures" / "flat_group_r.png").read_bytes()[:4] == b"\x89PNG"
    # across subjects (70 % of each vertex's weights shared): a decoder trained on four subjects decodes the
    # fifth, on the same vertices and after functional alignment of the regions' vertices
    cross = pd.read_csv(out / "group" / "cross_subject.csv", index_col=0)
    assert set(cross["alignment"]) == {"anatomical", "functional"} and len(cross) == 10
    assert (cross["ci_low"] > 0.5).all() and summary["cross_subject"]


@pytest.mark.slow
def test_a_study_resumes_and_a_failing_subject_does_not_lose_the_others(study, tmp_path, monkeypatch):
    run, out = study
    before = {p: p.stat().st_mtime_ns for p in out.glob("sub-*/summary.json")}
    toml = tmp_path / "study.toml"  # the same study from the command line: every subject's outputs are there
    toml.write_text(study_config().to_toml())
    assert main(["fit", str(toml), "--out", str(out), "--no-progress"]) == 0
    assert set(json.loads((out / "study.json").read_text())["status"].values()) == {"reused"}
    assert {p: p.stat().st_mtime_ns for p in out.glob("sub-*/summary.json")} == before  # nothing refitted
    # a subject that fails is recorded; the others finish and the group level uses them
    copy = tmp_path / "partial"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "sub-sim03")
    shutil.rmtree(copy / "sub-sim04")
    import encoding.study as study_module

    real = study_module.run_pipeline

    def failing(config, folder, *args, **kwargs):
        if config.data.simulation.subject == 3:
            raise RuntimeError("disk full")
        return real(config, folder, *args, **kwargs)

    monkeypatch.setattr(study_module, "run_pipeline", failing)
    with pytest.raises(DataError, match=r"1 of 5 subjects failed .*sub-sim03: RuntimeError: disk full"):
        run_study(study_config(), copy, progress=False)
    status = json.loads((copy / "study.json").read_text())["status"]
    assert status["sim04"] == "done" and status["sim03"].startswith("failed") and status["sim01"] == "reused"
    assert json.loads((copy / "group" / "summary.json").read_text())["n_subjects"] == 4


@pytest.mark.slow
def test_subjects_with_the_same_design_fitted_together_get_what_each_gets_alone(tmp_path):
    config = study_config(n_subjects=2, decode=False)
    config.statistics.partition, config.study.group = True, False  # the subset models are shared too
    alone = dataclasses.replace(config, study=dataclasses.replace(config.study, share_fits=False))
    run_study(config, tmp_path / "shared", progress=False)
    run_study(alone, tmp_path / "alone", progress=False)
    for label in ("sim01", "sim02"):
        shared = json.loads((tmp_path / "shared" / f"sub-{label}" / "summary.json").read_text())["model"]
        assert shared["shared_fit"]["subjects"] == ["sim01", "sim02"]
        assert "One fit for sub-sim01, sub-sim02" in (tmp_path / "shared" / f"sub-{label}" / "report.md").read_text()
        assert json.loads((tmp_path / "alone" / f"sub-{label}" / "summary.json").read_text())["model"][
            "shared_fit"] is None
        a, b = (np.load(tmp_path / folder / f"sub-{label}" / "results.npz") for folder in ("shared", "alone"))
        keys = [k for k in a.files if k.startswith(("test_r2", "unique_", "shared_", "p_value"))]
        assert {"test_r2", "p_value", "unique_logmel", "unique_modulation"} <= set(keys)
        for key in keys:
            close = np.isclose(a[key], b[key], rtol=1e-3, atol=1e-4, equal_nan=True)
            # a tie between band-weight candidates may break the other way under float32 rounding
            assert close.mean() >= 0.99, key
        assert (a["test_r2"] > 0.05).sum() > 50  # the planted territories are there to compare


@pytest.mark.slow
def test_the_group_command_reads_a_study_folder_and_refuses_outputs_made_differently(study, tmp_path, capsys):
    _, out = study
    assert main(["group", str(out), "--out", str(tmp_path / "group")]) == 0
    assert "5 subjects" in capsys.readouterr().out
    # TFCE on the mesh from the same sign flips: the shared territories found at least as widely
    assert main(["group", str(out), "--out", str(tmp_path / "tfce"), "--fwer", "tfce"]) == 0
    assert "FWER (TFCE) p <= 0.05" in capsys.readouterr().out.replace("≤", "<=")
    counts = json.loads((tmp_path / "tfce" / "summary.json").read_text())["fwer_procedures"]
    assert counts["tfce"] >= counts["step-down"] >= counts["max"] > 0
    assert "threshold-free cluster enhancement" in (tmp_path / "tfce" / "report.md").read_text()
    odd = tmp_path / "odd"
    shutil.copytree(out / "sub-sim02", odd)
    text = (odd / "config.toml").read_text().replace("n_iter = 2", "n_iter = 7")
    (odd / "config.toml").write_text(text)
    subjects = [load_subject(out / "sub-sim01"), load_subject(odd)]
    with pytest.raises(ConfigError, match=r"model.n_iter: sim01 2, sim02 7"):
        check_compatible(subjects)
    with pytest.raises(DataError, match="appear more than once"):
        check_compatible([load_subject(out / "sub-sim01"), load_subject(out / "sub-sim01")])
    assert main(["group", str(out / "sub-sim01")]) == 2  # one subject is not a group


def test_subjects_that_differ_are_named_before_any_fit():
    same = {"surface": "fsaverage5 (20,484 vertices)", "TR": "1.5 s", "runs": "12 training, 6 test",
            "clips": "540 clips", "clip ids": 1}
    check_subjects({"001": same, "002": dict(same)})
    with pytest.raises(DataError, match=r"sub-003 has runs 11 training, 6 test \(sub-001: 12 training, 6 test\); "
                                        r"sub-004 heard other clips"):
        check_subjects({"001": same, "002": same, "003": {**same, "runs": "11 training, 6 test"},
                        "004": {**same, "clip ids": 2}})


def test_a_subject_config_selects_one_subject_and_no_study():
    config = study_config()
    one = subject_config(config, "sim04")
    assert one.data.simulation.subject == 4 and one.data.simulation.n_subjects == 5 and not one.study.subjects
    with pytest.raises(ConfigError, match="study.subjects names \\['sim09'\\]"):
        type(config).from_dict({**config.to_dict(), "study": {"subjects": ["sim09"]}})


def test_group_identification_is_a_mean_with_a_t_interval_and_an_exact_sign_flip_p():
    def subject(label, value):
        table = pd.DataFrame([dict(target="caption", metric="pairwise", value=value, ci_low=value - 0.1,
                                   ci_high=value + 0.05, chance=0.5)])
        return SubjectOutputs(None, label, {}, {}, {}, None, table)

    values = [0.8, 0.7, 0.9, 0.75, 0.85]
    table = group_identification([subject(f"s{k}", v) for k, v in enumerate(values)])
    group = table[table["subject"] == "group"].iloc[0]
    from scipy import stats

    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert group["value"] == pytest.approx(0.8) and group["ci_high"] - group["value"] == pytest.approx(half)
    assert group["p_value"] == pytest.approx(1 / 32)  # all five above chance: the smallest exact p
    mixed = group_identification([subject(f"s{k}", v) for k, v in enumerate([0.6, 0.4, 0.55, 0.45, 0.5])])
    assert mixed.iloc[-1]["p_value"] > 0.2


def test_group_inputs_that_are_not_outputs_get_one_message(tmp_path):
    from encoding.errors import MissingInputError

    with pytest.raises(MissingInputError, match="holds no subject outputs"):
        subject_folders([tmp_path])
    with pytest.raises(MissingInputError, match="is not a folder"):
        subject_folders([tmp_path / "missing"])


def test_results_show_a_compact_html_summary_in_jupyter(tiny_run):
    page = tiny_run.results._repr_html_()
    r2 = tiny_run.results.test_r2
    assert f"{np.median(r2):.3f}, {np.percentile(r2, 99):.3f}" in page and "logmel, modulation, caption" in page
    assert f"{int((r2 > 0.05).sum()):,}" in page


def test_all_subjects_of_a_bids_tree_and_unknown_ones_are_named(tmp_path):
    from encoding.config import PipelineConfig
    from encoding.study import study_subjects

    for label in ("02", "01", "10"):
        (tmp_path / f"sub-{label}").mkdir()
    (tmp_path / "sub-notes.txt").write_text("not a subject")
    config = PipelineConfig.from_dict({"data": {"source": "bids", "bids": {"root": str(tmp_path)}},
                                       "study": {"subjects": ["all"]}, "features": {"spaces": ["logmel"]}})
    assert study_subjects(config) == ["01", "02", "10"]
    config.study.subjects = ["01", "03"]
    with pytest.raises(DataError, match=r"study.subjects names \['03'\], which .* does not hold; it has 01, 02, 10"):
        study_subjects(config)
    assert subject_config(config, "02").data.bids.subject == "02"
