"""Table data (ROI time series + regressors): reading, errors, and the real Alice data end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from encoding.config import PipelineConfig
from encoding.datasets.tables import TablesConfig, load_tables, read_matrix
from encoding.preprocessing import median_detrend, polynomial_detrend, regress_out
from encoding.studies import alice

ALICE = Path(__file__).parents[1] / ".." / "shared" / "data" / "alice-brennan2016"


def test_read_matrix_formats_and_errors(tmp_path):
    (tmp_path / "a.tsv").write_text("x\ty\n1\t2\n3\t4\n")
    values, header = read_matrix(tmp_path / "a.tsv")
    assert header == ["x", "y"] and values.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "b.txt").write_text("  1.0e+00   2\n 3 4\n 5 6\n")
    values, header = read_matrix(tmp_path / "b.txt", skip_rows=1)
    assert header is None and values.tolist() == [[3, 4], [5, 6]]
    (tmp_path / "c.csv").write_text("1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"c.csv: non-numeric or missing value near line 2"):
        read_matrix(tmp_path / "c.csv")
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        read_matrix(tmp_path / "nope.txt")


def test_tables_blocks_roles_and_row_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "y.txt", rng.standard_normal((100, 3)))
    np.savetxt(tmp_path / "x.txt", rng.standard_normal(100))
    np.savetxt(tmp_path / "short.txt", rng.standard_normal(90))
    cfg = TablesConfig(root=str(tmp_path), tr=2.0, runs=[{"responses": "y.txt", "regressors": {"x": "x.txt"}}],
                       n_blocks=4, test_blocks=[-1])
    exp = load_tables(cfg)
    assert [r.role for r in exp.runs] == ["train", "train", "train", "test"]
    assert [r.n_trs for r in exp.runs] == [25, 25, 25, 25] and exp.runs[0].regressors["x"].shape == (25, 1)
    cfg.runs[0].regressors["x"] = "short.txt"
    with pytest.raises(ValueError, match="short.txt: 90 rows but .*y.txt has 100 volumes"):
        load_tables(cfg)


def test_detrending_and_confound_regression_remove_what_they_should():
    t = np.linspace(0, 1, 200)[:, None]
    rng = np.random.default_rng(1)
    signal = np.sin(2 * np.pi * 20 * t)
    drift = 3 * t**2 - 2 * t + 1
    np.testing.assert_allclose(polynomial_detrend(drift, 2), 0, atol=1e-5)  # a quadratic goes entirely
    assert np.corrcoef(polynomial_detrend(signal + drift, 2)[:, 0], signal[:, 0])[0, 1] > 0.99
    ramp = median_detrend(signal + 5 * t, tr=1.0, window=41)
    assert np.corrcoef(ramp[:, 0], signal[:, 0])[0, 1] > 0.9 and abs(ramp.mean()) < 0.1
    motion = rng.standard_normal((200, 2))
    cleaned = regress_out(signal + motion @ [[1.0], [2.0]], motion)
    assert np.corrcoef(cleaned[:, 0], signal[:, 0])[0, 1] > 0.99
    assert np.abs(cleaned.T @ (motion - motion.mean(0))).max() < 1e-3  # orthogonal to the confounds


@pytest.mark.parametrize("n_trs, window", [(410, 240.0), (37, 240.0), (60, 9.0), (5, 3.0)])
def test_running_median_matches_scipy_median_filter(n_trs, window):
    """The O(log window) running median equals scipy's reference (O(window) per sample), edges
    included; the window is clipped to the series as before."""
    from scipy.ndimage import median_filter

    Y = np.random.default_rng(n_trs).standard_normal((n_trs, 50)).astype(np.float32)
    Y[:, 0] = np.cumsum(Y[:, 0])  # a drifting column
    size = max(1, int(round(window / 1.5)) // 2 * 2 + 1)
    size = min(size, n_trs // 2 * 2 - 1)
    expected = Y - median_filter(Y, size=(size, 1), mode="reflect")
    np.testing.assert_array_equal(median_detrend(Y, tr=1.5, window=window), expected)


def test_config_accepts_regressor_spaces_and_rejects_unknown_ones():
    tables = {"source": "tables", "tables": {"runs": [{"responses": "y.txt", "regressors": {"sndpwr": "p.txt"}}]}}
    config = PipelineConfig.from_dict({"data": tables, "features": {"spaces": ["sndpwr"]}})
    assert config.data.tables.runs[0].regressors == {"sndpwr": "p.txt"}
    with pytest.raises(ValueError, match=r"features.spaces: unknown feature space\(s\) \['rate'\].*regressors of the data: sndpwr"):
        PipelineConfig.from_dict({"data": tables, "features": {"spaces": ["rate"]}})


@pytest.mark.slow
@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice-brennan2016 is absent (real data for validation)")
def test_alice_sound_power_and_word_rate_predict_temporal_lobe_on_held_out_data():
    """Brennan et al. 2016, 11 subjects: held-out prediction is above chance in the left posterior
    temporal ROI across subjects (benchmarks/alice.py prints the whole table)."""
    r = alice.held_out_correlations(ALICE)
    table = alice.group_table(r)
    assert r.shape == (11, 6)
    assert table.loc["LPTL", "mean_r"] > 0.1 and table.loc["LPTL", "p"] < 0.001
    assert table.loc["LPTL", "n_positive"] >= 9


def test_fit_on_tables_reports_per_target(tmp_path):
    from encoding.cli import main

    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(400), np.ones(4) / 4, mode="same")
    Y = rng.standard_normal((400, 3))
    Y[:, 0] += 2 * x  # only the first ROI follows the regressor
    np.savetxt(tmp_path / "y.tsv", Y, delimiter="\t", header="A1\tSTG\tV1", comments="")
    np.savetxt(tmp_path / "x.txt", x)
    (tmp_path / "c.toml").write_text(f"""
[data]
source = "tables"
[data.tables]
root = "{tmp_path}"
tr = 2.0
n_blocks = 4
test_blocks = [-1]
runs = [{{responses = "y.tsv", regressors = {{loud = "x.txt"}}}}]
[data.preprocessing]
detrend = "none"
[features]
spaces = ["loud"]
[design]
delays = [0]
[model]
backend = "numpy"
n_iter = 1
""")
    assert main(["fit", str(tmp_path / "c.toml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    targets = summary["targets"]
    assert list(targets) == ["A1", "STG", "V1"]  # names from the file's header
    assert targets["A1"]["test_r"] > 0.6 and abs(targets["V1"]["test_r"]) < 0.3
    assert (tmp_path / "out" / "figures" / "split_r2_bars.png").is_file()
    assert "| A1 |" in (tmp_path / "out" / "report.md").read_text()
