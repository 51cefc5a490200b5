"""BIDS loading: the real ds003720 design and captions, synthetic BOLD in its layout, studyforrest, errors."""

import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.io import wavfile

from encoding.cli import main
from encoding.config import PipelineConfig
from encoding.datasets import ds003720
from encoding.datasets.bids import BidsConfig, RunFiles, find_runs, load_bids, load_bold, load_design
from encoding.datasets.captions import join_captions, read_captions
from encoding.preprocessing import PreprocessingConfig

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
DS = SHARED / "ds003720-design"
CAPTIONS = SHARED / "brain2music-captions" / "brain2music-captions.csv"
FORREST = SHARED / "studyforrest-music"
needs_ds = pytest.mark.skipif(not DS.is_dir(), reason="../shared/data/ds003720-design is absent")
pytestmark = pytest.mark.shared_data


@needs_ds
def test_real_ds003720_design_counts():
    table = ds003720.clip_table(DS)
    assert len(table) == 540
    assert (table["genre"].value_counts() == 54).all() and len(table["genre"].unique()) == 10
    assert (table["role"] == "train").sum() == 480 and (table["role"] == "test").sum() == 60


@needs_ds
def test_real_test_runs_repeat_a_sequence_four_times():
    events = ds003720.read_events(DS / "sub-001/func/sub-001_task-Test_run-01_events.tsv", test=True)
    assert len(events) == 41 and np.isnan(events["repeat"].iloc[0])
    assert events["repeat"].value_counts().to_dict() == {0.0: 10, 1.0: 10, 2.0: 10, 3.0: 10}
    assert events["genre"].iloc[0] == "pop" and events["clip_id"].iloc[0] == "pop.00032"


@needs_ds
@pytest.mark.skipif(not CAPTIONS.is_file(), reason="../shared/data/brain2music-captions is absent")
def test_captions_join_all_540_clips_after_the_typo_repair():
    with pytest.warns(UserWarning, match="'disco.000011_15s' repaired to 'disco.00011_15s'"):
        captions = read_captions(CAPTIONS)
    table, report = join_captions(ds003720.clip_table(DS), captions)
    assert report["matched"] == 540 and not report["clips_without_caption"] and not report["captions_without_clip"]
    assert table.loc["blues.00000", "caption"].startswith("Heavy blues")


def make_ds003720_copy(tmp_path: Path, runs=(("Training", "01"), ("Training", "02"), ("Test", "01"))) -> Path:
    """A copy of sub-001's real events and sidecars for a few runs (no BOLD yet)."""
    root = tmp_path / "ds003720"
    func = root / "sub-001" / "func"
    func.mkdir(parents=True)
    shutil.copy(DS / "dataset_description.json", root)
    for task, run in runs:
        for suffix in ("events.tsv", "bold.json"):
            name = f"sub-001_task-{task}_run-{run}_{suffix}"
            shutil.copy(DS / "sub-001" / "func" / name, func / name)
    return root


def write_silent_gtzan(root: Path, clip_ids, rate: int = 4000, seconds: float = 31.0) -> Path:
    audio = root / "gtzan"
    for cid in clip_ids:
        genre = cid.split(".")[0]
        (audio / genre).mkdir(parents=True, exist_ok=True)
        wavfile.write(audio / genre / f"{cid}.wav", rate, np.zeros(int(rate * seconds), dtype=np.int16))
    return audio


def write_gifti_bold(path_left: Path, Y: np.ndarray) -> None:
    for hemi, part in (("L", Y[:, :10242]), ("R", Y[:, 10242:])):
        darrays = [nib.gifti.GiftiDataArray(row.astype(np.float32), intent="NIFTI_INTENT_TIME_SERIES") for row in part]
        nib.save(nib.gifti.GiftiImage(darrays=darrays), str(path_left).replace("hemi-L", f"hemi-{hemi}"))


@needs_ds
@pytest.mark.slow
@pytest.mark.skipif(not CAPTIONS.is_file(), reason="../shared/data/brain2music-captions is absent")
def test_synthetic_bold_in_ds003720_layout_runs_through_fit(tmp_path):
    root = make_ds003720_copy(tmp_path)
    deriv = tmp_path / "fmriprep"
    rng = np.random.default_rng(0)
    clip_ids = set()
    planted = np.arange(0, 20484, 40)  # every 40th vertex follows the clips' genre
    genre_code = {g: rng.standard_normal() for g in ds003720.GENRES}
    for events_file in sorted((root / "sub-001" / "func").glob("*_events.tsv")):
        events = ds003720.read_events(events_file, test="Test" in events_file.name)
        clip_ids |= set(events["clip_id"])
        drive = np.repeat([genre_code[g] for g in events["genre"]], 10)[:410]
        drive = np.convolve(drive, np.r_[0, 0.3, 1, 0.8, 0.3], mode="full")[:410]
        Y = rng.standard_normal((410, 20484)).astype(np.float32)
        Y[:, planted] += 1.5 * drive[:, None]
        name = events_file.name.replace("_events.tsv", "_hemi-L_space-fsaverage5_bold.func.gii")
        (deriv / "sub-001" / "func").mkdir(parents=True, exist_ok=True)
        write_gifti_bold(deriv / "sub-001" / "func" / name, Y)
    audio = write_silent_gtzan(tmp_path, sorted(clip_ids))
    config = PipelineConfig.from_dict({
        "data": {"source": "bids",
                 "bids": {"root": str(root), "derivatives": str(deriv), "subject": "001", "dataset": "ds003720",
                          "bold": "fsaverage5", "audio_root": str(audio), "captions": str(CAPTIONS),
                          "sample_rate": 8000, "cache": str(tmp_path / "cache")},
                 "preprocessing": {"detrend": "polynomial"}},
        "features": {"spaces": ["caption", "logmel"], "params": {"caption": {"model": "lsa"}}},
        "model": {"n_iter": 3, "backend": "numpy"},
        "statistics": {"n_permutations": 50, "n_bootstrap": 50},
    })
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["data"]["n_train_runs"] == 2 and summary["data"]["n_test_repeats"] == 4
    assert summary["data"]["n_test_trs"] == 100  # one 10-clip sequence, averaged over its 4 repeats
    assert (tmp_path / "out" / "figures" / "test_r2.png").is_file() and (tmp_path / "out" / "report.md").is_file()
    r2 = np.load(tmp_path / "out" / "results.npz")["test_r2"]
    others = np.setdiff1d(np.arange(20484), planted)
    assert np.nanmean(r2[planted]) > np.nanmean(r2[others]) + 0.05  # the genre-driven vertices are found
    assert list((tmp_path / "cache" / "responses").glob("*.npy"))  # preprocessed runs are cached


@needs_ds
def test_bad_bids_input_gives_errors_naming_the_file(tmp_path):
    root = make_ds003720_copy(tmp_path, runs=(("Training", "01"), ("Training", "02"), ("Test", "01")))
    func = root / "sub-001" / "func"
    cfg = BidsConfig(root=str(root), subject="001", dataset="ds003720", bold="arrays")
    pre = PreprocessingConfig(detrend="none")
    # a missing run
    with pytest.raises(FileNotFoundError, match=r"sub-001_task-Training_run-01_events.tsv: expected one .*_bold.npy"):
        find_runs(cfg, "Training")
    np.save(func / "sub-001_task-Training_run-01_bold.npy", np.ones((410, 5), np.float32) + np.arange(5))
    np.save(func / "sub-001_task-Training_run-02_bold.npy", np.random.default_rng(0).standard_normal((300, 5)))
    np.save(func / "sub-001_task-Test_run-01_bold.npy", np.random.default_rng(1).standard_normal((410, 5)))
    # events that overrun the scan (run 02 has 300 volumes)
    with pytest.raises(ValueError, match=r"run-02_events.tsv: .*events end at 615.0 s but the run lasts 450.0 s"):
        load_bids(cfg, pre, progress=False)
    np.save(func / "sub-001_task-Training_run-02_bold.npy", np.full((410, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"run-02_bold.npy: volumes \[0, 1, 2.*NaN"):
        load_bids(cfg, pre, progress=False)
    # a TR mismatch between sidecar and image
    vol = func / "sub-001_task-Training_run-01_bold.nii.gz"
    img = nib.Nifti1Image(np.ones((3, 3, 3, 410), np.float32), np.eye(4))
    img.header.set_zooms((2, 2, 2, 2.0))
    nib.save(img, vol)
    files = RunFiles("Training", "01", func / "sub-001_task-Training_run-01_events.tsv",
                     func / "sub-001_task-Training_run-01_bold.json", [vol])
    with pytest.raises(ValueError, match=r"run-01_bold.nii.gz: the image header says TR 2.0 s but .*run-01_bold.json says 1.5 s"):
        load_bold(files, BidsConfig(bold="volume"), 1.5, masker=None)
    # missing audio
    cfg_audio = BidsConfig(root=str(root), subject="001", dataset="ds003720", bold="arrays",
                           audio_root=str(tmp_path / "no-audio"))
    with pytest.raises(FileNotFoundError, match=r"of \d+ audio files are missing under .*no-audio"):
        load_design(cfg_audio, progress=False)


@needs_ds
def test_volume_bold_is_masked(tmp_path):
    root = make_ds003720_copy(tmp_path, runs=(("Training", "01"), ("Training", "02"), ("Test", "01")))
    func = root / "sub-001" / "func"
    rng = np.random.default_rng(0)
    data_mask = np.zeros((6, 6, 6), bool)
    data_mask[1:5, 1:5, 1:5] = True
    for f in func.glob("*_events.tsv"):
        data = np.zeros((6, 6, 6, 410), np.float32)
        data[data_mask] = 100 + rng.standard_normal((data_mask.sum(), 410))
        img = nib.Nifti1Image(data, np.diag([3, 3, 3, 1]))
        img.header.set_zooms((3, 3, 3, 1.5))
        nib.save(img, str(f).replace("_events.tsv", "_bold.nii.gz"))
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(data_mask.astype(np.uint8), np.diag([3, 3, 3, 1])), mask)
    cfg = BidsConfig(root=str(root), subject="001", dataset="ds003720", bold="volume", mask=str(mask))
    exp = load_bids(cfg, PreprocessingConfig(detrend="median"), progress=False)
    assert exp.space == "volume" and exp.n_vertices == 64
    assert [r.role for r in exp.runs] == ["train", "train", "test"]
    assert len(exp.test_runs[0].repeat_segments()) == 4


@pytest.mark.skipif(not FORREST.is_dir(), reason="../shared/data/studyforrest-music is absent")
def test_studyforrest_design_and_real_audio():
    cfg = BidsConfig(root=str(FORREST / "ds113b-events"), subject="01", train_task="auditoryperception",
                     test_task="", test_runs=["08"], bold="arrays", audio_root=str(FORREST / "stimuli"),
                     sample_rate=16000)
    runs, clips = load_design(cfg, progress=False)
    assert len(runs) == 8 and [role for *_, role in runs].count("test") == 1
    assert len(clips.table) == 25
    assert sorted(clips.table["genre"].value_counts().to_dict().values()) == [5] * 5
    durations = [clips.duration(c) for c in clips.ids]
    assert np.allclose(durations, 6.3158, atol=0.01)
    assert all(np.sqrt(np.mean(clips.audio[c] ** 2)) > 1e-3 for c in clips.ids)  # real, not silent
    assert runs[0][0].sidecar.name == "task-auditoryperception_bold.json"  # inherited sidecar (TR 2 s)


def nifti(data: np.ndarray, tr: float = 1.5) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_zooms((1.0, 1.0, 1.0, tr))
    return img


def write_fmriprep_run(func: Path, stem: str, data: np.ndarray, rng) -> np.ndarray:
    """A volume run as fMRIPrep writes it, with a confounds table; returns the motion traces."""
    n = data.shape[-1]
    cols = {}
    for name in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf", "white_matter"):
        v = rng.standard_normal(n)
        d = np.r_[np.nan, np.diff(v)]
        cols.update({name: v, f"{name}_derivative1": d, f"{name}_power2": v**2, f"{name}_derivative1_power2": d**2})
    frame = pd.DataFrame(cols)
    frame.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
    (func / f"{stem}_desc-confounds_timeseries.json").write_text("{}")
    return frame[["trans_x", "rot_z"]].to_numpy()


@needs_ds
def test_fmriprep_confounds_are_regressed_out(tmp_path):
    root = make_ds003720_copy(tmp_path)
    deriv = tmp_path / "derivatives" / "fmriprep"
    func = deriv / "sub-001" / "func"
    func.mkdir(parents=True)
    rng = np.random.default_rng(0)
    motion = {}
    for f in sorted((root / "sub-001" / "func").glob("*_events.tsv")):
        stem = f.name.replace("_events.tsv", "")
        data = 100 + rng.standard_normal((2, 2, 2, 410)).astype(np.float32)
        traces = write_fmriprep_run(func, stem, data, rng)
        data += 5 * traces[:, 0].astype(np.float32)  # motion leaks into every voxel
        nib.save(nifti(data), func / f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz")
        motion[stem] = traces
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), mask)
    cfg = BidsConfig(root=str(root), derivatives=str(deriv), subject="001", dataset="ds003720", bold="volume",
                     mask=str(mask))
    exp = load_bids(cfg, PreprocessingConfig(detrend="none", confounds=["motion", "wm_csf"]), progress=False)
    run = exp.runs[0]
    trans_x = motion["sub-001_task-Training_run-01"][:, 0]
    assert abs(np.corrcoef(run.responses[:, 0], trans_x)[0, 1]) < 0.05
    raw = load_bids(cfg, PreprocessingConfig(detrend="none"), progress=False).runs[0]
    assert np.corrcoef(raw.responses[:, 0], trans_x)[0, 1] > 0.9


def test_projection_to_fsaverage5_samples_an_mni_image():
    from encoding.datasets.bids import project_to_fsaverage5

    affine = np.array([[8, 0, 0, -96], [0, 8, 0, -132], [0, 0, 8, -78], [0, 0, 0, 1]], float)
    data = np.ones((25, 29, 25, 3), np.float32) * np.arange(1, 4, dtype=np.float32)
    Y = project_to_fsaverage5(nib.Nifti1Image(data, affine))
    assert Y.shape == (3, 20484)
    np.testing.assert_allclose(np.nanmedian(Y, axis=1), [1, 2, 3], rtol=1e-3)
