"""Table data (ROI time series + regressors): reading, errors, and the real Alice data end to end."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from encoding.config import DesignConfig, ModelConfig, PipelineConfig
from encoding.datasets.tables import TableRun, TablesConfig, load_tables, read_matrix
from encoding.pipeline import build_design, fit_model, score_model
from encoding.preprocessing import PreprocessingConfig, median_detrend, polynomial_detrend, regress_out

ALICE = Path(__file__).parents[1] / ".." / "shared" / "data" / "alice-brennan2016"
ROIS = ["LATL", "RATL", "LPTL", "LIPL", "LPreM", "LIFG"]


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


def test_config_accepts_regressor_spaces_and_rejects_unknown_ones():
    tables = {"source": "tables", "tables": {"runs": [{"responses": "y.txt", "regressors": {"sndpwr": "p.txt"}}]}}
    config = PipelineConfig.from_dict({"data": tables, "features": {"spaces": ["sndpwr"]}})
    assert config.data.tables.runs[0].regressors == {"sndpwr": "p.txt"}
    with pytest.raises(ValueError, match=r"Unknown feature space\(s\) \['rate'\].*regressors of the data: sndpwr"):
        PipelineConfig.from_dict({"data": tables, "features": {"spaces": ["rate"]}})


def alice_subjects() -> list[str]:
    return sorted(p.name.split("-")[0] for p in (ALICE / "10mm").glob("*-timecourses.txt"))


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not ALICE.is_dir(), reason="../shared/data/alice-brennan2016 is absent (real data for validation)")
def test_alice_sound_power_and_word_rate_predict_temporal_lobe_on_held_out_data():
    """Brennan et al. 2016: 11 subjects, 12 min of speech, 6 ROIs. Each subject's run is cut into
    5 blocks; each block in turn is held out (the other 4 fit, with leave-one-block-out CV for the
    alphas). Measured here: mean held-out r = 0.16 in left posterior temporal lobe (t(10) = 8.6),
    above chance across subjects; anterior temporal ROIs are not."""
    results = []
    for subject in alice_subjects():
        motion = next(ALICE.glob(f"{subject}-rp_*.txt")).name
        per_fold = []
        for block in range(5):
            cfg = TablesConfig(
                root=str(ALICE), subject=subject, tr=2.0, column_names=ROIS, n_blocks=5, test_blocks=[block],
                runs=[TableRun(responses=f"10mm/{subject}-timecourses.txt",
                               regressors={"sndpwr": f"{subject}-sndpwr.txt", "rate": f"{subject}-rate.txt"},
                               confounds=motion, skip_rows={"confounds": 10})],  # motion keeps the 10 dropped volumes
            )
            experiment = load_tables(cfg, PreprocessingConfig(detrend="cosine", high_pass=0.01))
            design = build_design(experiment, {}, ["sndpwr", "rate"], DesignConfig(delays=[0, 1]))
            model = fit_model(design, ModelConfig(n_iter=5, backend="numpy"), progress=False)
            per_fold.append(score_model(model, design).test_r)
        results.append(np.mean(per_fold, axis=0))
    r = np.array(results)
    assert r.shape == (11, 6)
    t, p = stats.ttest_1samp(r, 0.0)
    lptl = ROIS.index("LPTL")
    assert r[:, lptl].mean() > 0.1 and p[lptl] < 0.001
    assert (r[:, lptl] > 0).sum() >= 9
