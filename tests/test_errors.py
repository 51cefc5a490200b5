"""The catalogue of user mistakes: every wrong option, input file and output folder gives one clear
message and exit status 2, before any heavy work and without a traceback; a bug is a traceback
with a request to report it; Ctrl-C says what was kept.

Each case is a config (a small table data set, changed in one place) or an input file made wrong
the way a new user would, and the message it must produce.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import tomli_w
from conftest import tables_config

from encoding.cli import main


def changed(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set to ``value`` (``...`` removes the key)."""
    out = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    # progress bars, when shown, come before it (cleared with carriage returns and cursor moves)
    message = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", err.strip().splitlines()[-1]).strip()
    assert "Traceback" not in err and message.startswith("brain2music: error: "), err
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# (case id, dotted option, wrong value, fragments the message must hold)
OPTION_CASES = [
    ("permutations-as-string", "statistics.n_permutations", "100",
     ["statistics.n_permutations must be an integer (without quotes), got '100'"]),
    ("n_alphas-fractional", "model.n_alphas", 3.5, ["model.n_alphas must be an integer, got 3.5"]),
    ("figures-as-string", "output.figures", "no", ["output.figures must be true or false", "'no'"]),
    ("map-threshold-as-string", "output.map_threshold", "0.1", ["output.map_threshold must be a number"]),
    ("map-threshold-above-one", "output.map_threshold", 2.0, ["output.map_threshold must be less than 1"]),
    ("dpi-too-small", "output.dpi", 5, ["output.dpi must be at least 20, got 5"]),
    ("alpha-min-negative", "model.alpha_min", -1.0, ["model.alpha_min must be greater than 0"]),
    ("alpha-range-reversed", "model.alpha_min", 1e9, ["model.alpha_min (1e+09) must be smaller than model.alpha_max"]),
    ("memory-zero", "model.memory_gb", 0, ["model.memory_gb must be greater than 0, got 0.0"]),
    ("form-unknown", "model.form", "kernel", ["model.form must be one of 'auto', 'primal', 'dual'; got 'kernel'"]),
    ("strategy-unknown", "model.strategy", "loo", ["model.strategy must be one of"]),
    ("backend-unknown", "model.backend", "cuda", ["model.backend must be one of", "'torch_cuda'"]),
    ("n_iter-zero", "model.n_iter", 0, ["model.n_iter must be at least 1, got 0"]),
    ("concentration-zero", "model.concentration", [0.0], ["model.concentration[0] must be greater than 0, got 0.0"]),
    ("concentration-not-a-list", "model.concentration", 1.0, ["model.concentration must be a list of numbers"]),
    ("scheduler-not-an-address", "model.scheduler", "localhost", ["model.scheduler must be a dask scheduler address"]),
    ("seed-as-float", "model.random_state", 0.5, ["model.random_state must be an integer"]),
    ("significance-above-one", "statistics.alpha", 1.5, ["statistics.alpha must be less than 1, got 1.5"]),
    ("correction-unknown", "statistics.correction", "bonferroni", ["statistics.correction must be one of", "'fwer'"]),
    ("scheme-unknown", "statistics.scheme", "shuffle", ["statistics.scheme must be one of"]),
    ("null-unknown", "statistics.null", "permute", ["statistics.null must be one of 'refit', 'selection', 'test'"]),
    ("metric-unknown", "statistics.metric", "mse", ["statistics.metric must be one of 'r2', 'r'"]),
    ("fwer-unknown", "statistics.fwer", "bonferroni", ["statistics.fwer must be one of 'max', 'step-down', 'tfce'"]),
    ("cluster-threshold-zero", "statistics.cluster_threshold", 0, ["statistics.cluster_threshold must be greater"]),
    ("permutations-negative", "statistics.n_permutations", -5, ["statistics.n_permutations must be at least 0"]),
    ("bootstrap-one", "statistics.n_bootstrap", 1, ["statistics.n_bootstrap must be at least 2"]),
    ("partition-as-int", "statistics.partition", 1, ["statistics.partition must be true or false"]),
    ("delays-repeated", "design.delays", [1, 1], ["design.delays must be a non-empty list of distinct integers"]),
    ("delays-negative", "design.delays", [-1, 0], ["design.delays[0] must be at least 0, got -1"]),
    ("delays-as-string", "design.delays", "1,2", ["design.delays must be a list of integers"]),
    ("spaces-empty", "features.spaces", [], ["features.spaces is empty"]),
    ("spaces-repeated", "features.spaces", ["loud", "loud"], ["features.spaces lists a space twice"]),
    ("space-unknown", "features.spaces", ["mfcc_typo"], ["features.spaces: unknown feature space(s) ['mfcc_typo']",
                                                           "regressors of the data: loud"]),
    ("space-param-unknown", "features.params", {"logmel": {"n_bands": 3}},
     ["features.params.logmel: 'logmel' has no parameter(s) ['n_bands']", "n_mels (default 32)"]),
    ("space-param-type", "features.params", {"logmel": {"n_mels": "32"}},
     ["features.params.logmel.n_mels must be of the type of its default 32 (int), got '32' (str)"]),
    ("space-param-value", "features.params", {"musicnn": {"layer": "conv9"}},
     ["features.params.musicnn: Unknown musicnn layer 'conv9'"]),
    ("space-param-negative", "features.params", {"logmel": {"n_mels": -5}},
     ["features.params.logmel: logmel: n_mels must be positive, got -5"]),
    ("space-param-range", "features.params", {"logmel": {"fmin": 4000.0, "fmax": 1000.0}},
     ["features.params.logmel: logmel: need 0 <= fmin < fmax (Hz), got fmin 4000.0, fmax 1000.0"]),
    ("bids-subject-empty", "data.bids.subject", "", ["data.bids.subject is empty"]),
    ("params-for-a-regressor", "features.params", {"loud": {"hop": 1.0}},
     ["features.params gives parameters to ['loud'], regressors of the data"]),
    ("pca-unfitted-space", "features.pca", {"caption": 8}, ["features.pca names spaces that are not in features.spaces"]),
    ("pca-zero", "features.pca", {"loud": 0}, ["features.pca asks for fewer than 1 component"]),
    ("section-unknown", "modle", {"n_iter": 3}, ["Unknown option(s) 'modle' in the config; valid keys: data,"]),
    ("key-unknown", "model.n_itr", 3, ["Unknown option(s) 'n_itr' in [model]; valid keys: alpha_min"]),
    ("section-not-a-table", "model", 3, ["[model] must be a table, got 3"]),
    ("source-unknown", "data.source", "nifti", ["data.source must be one of 'simulation', 'bids', 'tables'"]),
    ("bids-without-root", "data.source", "bids", ["data.source is 'bids' but data.bids.root is empty"]),
    ("tables-without-runs", "data.tables.runs", [], ["data.source is 'tables' but data.tables.runs is empty"]),
    ("table-run-without-responses", "data.tables.runs", [{"regressors": {"loud": "x.txt"}}],
     ["[data.tables.runs[0]]", "responses"]),
    ("test-block-outside", "data.tables.test_blocks", [7], ["data.tables.test_blocks [7] do not exist"]),
    ("tr-zero", "data.tables.tr", 0, ["data.tables.tr must be greater than 0"]),
    ("detrend-unknown", "data.preprocessing.detrend", "linear", ["data.preprocessing.detrend must be one of"]),
    ("simulation-one-run", "data.simulation.n_train_runs", 1, ["data.simulation.n_train_runs must be at least 2"]),
    ("simulation-landmark-unknown", "data.simulation.territories", {"logmel": ["V1"]},
     ["data.simulation.territories.logmel names unknown landmarks ['V1']", "HG, PT"]),
    ("simulation-share-one", "data.simulation.peak_share", 1.0, ["data.simulation.peak_share must be less than 1"]),
    ("simulation-noise-unknown", "data.simulation.noise", "pink", ["data.simulation.noise must be one of"]),
    ("bids-subject-prefix", "data.bids.subject", "sub-01", ["data.bids.subject is the label without 'sub-'"]),
    ("bids-bold-unknown", "data.bids.bold", "cifti", ["data.bids.bold must be one of 'volume', 'fsaverage5', 'arrays'"]),
    ("atlas-unknown", "statistics.atlas", "glasser",
     ["statistics.atlas = 'glasser' is not an atlas", "desikan_killiany, hcp_mmp1, harvard_oxford"]),
    ("decoding-roi-other-atlas", "decoding", {"selection": "roi", "atlas": "desikan_killiany", "rois": ["A1"]},
     ["decoding.rois names unknown regions ['A1'] of the desikan_killiany atlas", "HG, STG, STS"]),
    ("sweep-parameter-unknown", "sweep", {"space": "musicnn", "parameter": "depth", "values": [1]},
     ["sweep.parameter 'depth' is not a parameter of 'musicnn'"]),
]


@pytest.mark.parametrize("case, path, value, fragments", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_wrong_option_is_one_message_before_any_work(table_data, capsys, case, path, value, fragments):
    config = changed(tables_config(table_data), path, value)
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(config))
    out = table_data / "out"
    code, err = run_cli(capsys, "fit", file, "--out", out, "--no-progress")
    assert_user_error(code, err, str(file), *fragments)
    assert not out.exists()  # nothing was started


# (case id, what is wrong with the data or the options that depend on it, message fragments)
DATA_CASES = [
    ("responses-missing", lambda c, d: (d / "y.tsv").unlink(), ["y.tsv does not exist"]),
    ("regressor-rows", lambda c, d: np.savetxt(d / "x.txt", np.zeros(300)), ["x.txt: 300 rows but", "400 volumes"]),
    ("responses-not-numeric", lambda c, d: (d / "y.tsv").write_text("A\tB\n1\t2\n3\toops\n"),
     ["y.tsv: non-numeric or missing value near line 3"]),
    ("block-longer-than-run", lambda c, d: c["statistics"].update(block_length=80),
     ["statistics.block_length = 80 TRs is too long for run", "(100 volumes)", "Use at most 50"]),
    ("delays-longer-than-run", lambda c, d: c["design"].update(delays=[0, 150]),
     ["design.delays go up to 150 TRs but run", "has only 100 volumes"]),
    ("memory-too-small", lambda c, d: c["model"].update(memory_gb=1e-7),
     ["model.memory_gb = 1e-07 GiB cannot hold the design", "Raise model.memory_gb to at least 0.00"]),
    ("pca-of-a-regressor", lambda c, d: c["features"].update(pca={"loud": 1}),
     ["features.pca.loud: 'loud' is a regressor of the data"]),
    ("test-null-block-longer-than-test-set", lambda c, d: c["statistics"].update(null="test", block_length=60),
     ["statistics.block_length = 60 TRs is too long for the test set (repeats averaged) (100 volumes)",
      "Use at most 50"]),
    ("fit-cache-is-a-file", lambda c, d: ((d / "cache.txt").write_text("x"), c["model"].update(cache="cache.txt")),
     ["model.cache = ", "cache.txt' cannot be written", "choose a writable folder"]),
    ("no-test-runs", lambda c, d: c["data"]["tables"].update(test_blocks=[]), ["has no test runs to score on"]),
    ("tfce-without-a-mesh", lambda c, d: c["statistics"].update(fwer="tfce"),
     ["statistics.fwer = 'tfce' needs data on fsaverage5's mesh", "use 'step-down' or 'max'"]),
]


@pytest.mark.parametrize("case, spoil, fragments", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_wrong_data_is_one_message_and_no_output(table_data, capsys, case, spoil, fragments):
    config = tables_config(table_data)
    spoil(config, table_data)
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(config))
    out = table_data / "out"
    code, err = run_cli(capsys, "fit", file, "--out", out, "--no-progress")
    assert_user_error(code, err, *fragments)
    assert "at least 0.00," not in err  # a memory size is never rounded to zero
    assert not out.exists() and not list(table_data.glob(".out.partial-*"))


def test_a_backend_that_cannot_run_here_stops_before_the_data(table_data, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: torch_cuda can run here")
    import subprocess
    import sys

    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(changed(tables_config(table_data), "model.backend", "torch_cuda")))
    # in its own process: himalaya's torch_cuda module skips the test instead of failing when pytest is loaded
    done = subprocess.run([sys.executable, "-m", "encoding.cli", "fit", str(file), "--out", str(table_data / "out")],
                          capture_output=True, text=True, timeout=300)
    assert_user_error(done.returncode, done.stderr, "model.backend = 'torch_cuda' cannot run here",
                      "use 'auto' or 'numpy'")


def test_config_file_problems(tmp_path, capsys):
    assert_user_error(*run_cli(capsys, "fit", tmp_path / "missing.toml"), "missing.toml does not exist")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nn_iter = 3\n")
    assert_user_error(*run_cli(capsys, "fit", bad), "bad.toml is not valid TOML")
    bad.write_bytes(b"\xff\xfe\x00binary")
    assert_user_error(*run_cli(capsys, "fit", bad), "bad.toml is not a text file")
    assert_user_error(*run_cli(capsys, "fit", tmp_path), "does not exist (it is a folder)")
    empty = tmp_path / "sweep.toml"
    empty.write_text("")
    assert_user_error(*run_cli(capsys, "sweep", empty), "[sweep] needs a space and values to sweep")


def test_output_folder_problems_are_found_first(table_data, capsys):
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(tables_config(table_data)))
    (table_data / "a-file").write_text("x")
    assert_user_error(*run_cli(capsys, "fit", file, "--out", table_data / "a-file"),
                      "Output folder", "a-file is a file: choose another --out")
    assert_user_error(*run_cli(capsys, "fit", file, "--out", table_data / "a-file" / "out"),
                      "Cannot write the output folder", "Choose a writable --out")
    mine = table_data / "my-thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    assert_user_error(*run_cli(capsys, "fit", file, "--out", mine), "holds files that brain2music did not write")
    (mine / "summary.json").write_text("{}")  # a summary beside the user's own files does not make it ours
    assert_user_error(*run_cli(capsys, "fit", file, "--out", mine), "holds files that brain2music did not write")
    assert (mine / "chapter1.tex").read_text() == "precious"
    (table_data / "link").symlink_to(mine)
    assert_user_error(*run_cli(capsys, "fit", file, "--out", table_data / "link"), "is a symbolic link")


def test_paths_in_a_config_are_relative_to_its_folder(table_data, capsys, tmp_path_factory, monkeypatch):
    config = tables_config(table_data)
    config["data"]["tables"]["root"] = "."  # relative: the folder of config.toml, not the current directory
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(config))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert main(["fit", str(file), "--out", "out", "--no-progress"]) == 0, capsys.readouterr().err
    summary = json.loads(open("out/summary.json").read())
    assert summary["provenance"]["config"]["data"]["tables"]["root"] == str(table_data.resolve())


def test_missing_events_gifti_size_and_bids_root(tmp_path, capsys):
    import nibabel as nib

    func = tmp_path / "ds" / "sub-001" / "func"
    func.mkdir(parents=True)
    (tmp_path / "ds" / "task-Training_bold.json").write_text('{"RepetitionTime": 1.5}')
    events = "onset\tduration\tstim_file\n0\t15\ta.wav\n"
    for run in ("01", "02"):
        if run == "01":
            (func / f"sub-001_task-Training_run-{run}_events.tsv").write_text(events)
        for hemi in ("L", "R"):
            image = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(40, np.float32))
                                                  for _ in range(20)])
            nib.save(image, func / f"sub-001_task-Training_run-{run}_hemi-{hemi}_space-fsaverage5_bold.func.gii")
    base = {"data": {"source": "bids", "bids": {"root": str(tmp_path / "ds"), "test_task": ""}},
            "features": {"spaces": ["caption"], "params": {"caption": {"model": "lsa"}}}}
    file = tmp_path / "c.toml"
    file.write_text(tomli_w.dumps(base))
    assert_user_error(*run_cli(capsys, "fit", file, "--out", tmp_path / "o"),
                      "1 BOLD run(s) of task 'Training' have no events file",
                      "sub-001_task-Training_run-02_hemi-L_space-fsaverage5_bold.func.gii")
    (func / "sub-001_task-Training_run-02_events.tsv").write_text(events)
    file.write_text(tomli_w.dumps(changed(base, "data.bids.test_runs", ["07"])))
    assert_user_error(*run_cli(capsys, "fit", file, "--out", tmp_path / "o"),
                      "data.bids.test_runs names runs ['07'] that task 'Training' of sub-001 does not have",
                      "its runs: ['01', '02']")
    file.write_text(tomli_w.dumps(base))
    assert_user_error(*run_cli(capsys, "fit", file, "--out", tmp_path / "o"),
                      "_bold.func.gii: 40 vertices per volume, but fsaverage5 has 10,242 per hemisphere")
    file.write_text(tomli_w.dumps(changed(base, "data.bids.root", str(tmp_path / "nowhere"))))
    assert_user_error(*run_cli(capsys, "fit", file, "--out", tmp_path / "o"), "nowhere does not exist")
    assert not (tmp_path / "o").exists()


def test_a_model_that_cannot_load_stops_before_the_data(tmp_path, capsys):
    """The default simulation takes a minute to build; a caption model that cannot load is found first."""
    file = tmp_path / "c.toml"
    file.write_text(tomli_w.dumps({"features": {"params": {"caption": {"model": str(tmp_path / "no-such-model")}}}}))
    code, err = run_cli(capsys, "fit", file, "--out", tmp_path / "o")
    assert_user_error(code, err, "Cannot load the tokenizer", "no-such-model", "save_pretrained")
    assert not (tmp_path / "o").exists()


def test_a_bug_is_a_traceback_with_a_request_to_report_it(table_data, capsys, monkeypatch):
    import encoding.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("an internal inconsistency")

    monkeypatch.setattr(encoding.pipeline, "fit_model", broken)
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(tables_config(table_data)))
    code, err = run_cli(capsys, "fit", file, "--out", table_data / "out", "--no-progress")
    assert code == 1
    assert "Traceback" in err and "RuntimeError: an internal inconsistency" in err
    assert "this is a bug, not a mistake in your input. Please report it" in err
    assert not (table_data / "out").exists()


def test_ctrl_c_says_what_was_kept_and_leaves_the_earlier_run_whole(table_data, capsys, monkeypatch):
    import encoding.pipeline

    config = tables_config(table_data)
    config["model"]["cache"] = "fit-cache"
    file = table_data / "config.toml"
    file.write_text(tomli_w.dumps(config))
    out = table_data / "out"
    assert main(["fit", str(file), "--out", str(out), "--no-progress"]) == 0
    before = (out / "summary.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoding.pipeline, "score_model", interrupted)
    capsys.readouterr()
    code = main(["fit", str(file), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 130 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"interrupted; nothing was written to {out} (the earlier run there is untouched)" in err
    assert f"finished fit batches are kept in {table_data.resolve() / 'fit-cache'}: run the same command again to resume" in err
    assert (out / "summary.json").read_text() == before
    assert not list(table_data.glob(".out.*"))
    monkeypatch.undo()  # the same command again: the fit's batches come from the cache
    assert main(["fit", str(file), "--out", str(out), "--no-progress"]) == 0
    profile = json.loads((out / "summary.json").read_text())["model"]["solver_profile"]
    assert profile["cached_tasks"] >= 2  # every score and refit task of the fit
