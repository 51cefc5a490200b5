"""The decoding pipeline end to end: the planted embedding is identified, a permuted one is not; outputs."""

from __future__ import annotations

import dataclasses
import html.parser
import json
import shutil
import subprocess

import numpy as np
import pytest

from decoding.generation.audio import read_wav
from decoding.pipeline import decode_target, run_decoding
from decoding.report import decoded_vertices_map, region_counts
from decoding.retrieval import EmbeddingIndex
from encoding.cli import main
from encoding.config import demo_config
from encoding.data import Experiment
from encoding.simulation import simulate_experiment
from tests.test_generation import tiny_musicgen  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def quick_simulation():
    """The quick demo's simulated experiment (its planted caption embedding drives aSTG and mSTS)."""
    experiment, truth = simulate_experiment(demo_config(quick=True).data.simulation, progress=False)
    return experiment, truth


def block_permuted(experiment: Experiment, block: int, seed: int = 0) -> Experiment:
    """The experiment with every training run's responses shuffled in blocks of ``block`` volumes."""
    rng = np.random.default_rng(seed)
    runs = []
    for run in experiment.runs:
        if run.role == "train":
            starts = np.arange(0, run.n_trs, block)
            order = np.concatenate([np.arange(s, min(s + block, run.n_trs)) for s in rng.permutation(starts)])
            run = dataclasses.replace(run, responses=run.responses[order])
        runs.append(run)
    return dataclasses.replace(experiment, runs=runs)


@pytest.mark.slow
def test_the_planted_caption_embedding_is_identified_and_a_permuted_one_is_not(quick_simulation):
    experiment, truth = quick_simulation
    config = demo_config(quick=True)
    config.decoding.n_permutations = 100
    target = decode_target(experiment, "caption", truth.features["caption"], config, progress=False)
    result = target.identification
    assert result.values["pairwise"] >= 0.85
    assert result.p_value_external["pairwise"] <= 0.05 and result.p_value["pairwise"] <= 0.05
    assert np.isin(target.decoder.vertices_, truth.signal_vertices).mean() > 0.2  # 2,000 chosen, ~25 % planted
    counts = region_counts(target)  # the report's "where the decoder reads": the caption territory's regions
    share = counts["vertices_decoded"] / counts["region_vertices"]
    assert share["STG"] > 3 * 2000 / 20484 and share["STG"] > 3 * share[["IFG", "precentral", "V1"]].max()
    shuffled = decode_target(block_permuted(experiment, 10), "caption", truth.features["caption"], config,
                             progress=False).identification
    low, high = shuffled.ci["pairwise"]
    assert low <= 0.5 <= high
    assert shuffled.values["pairwise"] < result.ci["pairwise"][0]


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "audio":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def decoded(quick_simulation, tiny_musicgen, tmp_path_factory):  # noqa: F811
    """A decoding run with outputs: caption and logmel, retrieval, Griffin-Lim and (tiny) MusicGen."""
    experiment, truth = quick_simulation
    config = demo_config(quick=True)
    cfg = config.decoding
    cfg.targets, cfg.generators = ["caption", "logmel"], ["griffinlim", "musicgen"]
    cfg.generator_params = {"musicgen": {"model": tiny_musicgen}}
    cfg.n_permutations, cfg.n_bootstrap, cfg.n_reconstructed, cfg.duration = 20, 100, 3, 4.0
    out = tmp_path_factory.mktemp("decoded") / "out"
    run_decoding(config, out, progress=False, experiment=experiment, truth=truth)
    return out, experiment


@pytest.mark.slow
def test_decoding_outputs_with_retrieval_griffin_lim_and_musicgen(decoded):
    out, experiment = decoded
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["targets"]) == {"caption", "logmel"}
    report = (out / "report.md").read_text()
    assert "0.876" in report and "0.914" in report and "Protocol differences" in report
    # retrieval: the decoded caption embedding finds training clips of the heard clip's genre more often than chance
    import pandas as pd

    retrieved = pd.read_csv(out / "retrieval.csv")
    top = retrieved[(retrieved["target"] == "caption") & (retrieved["rank"] == 1) & (retrieved["source"] == "decoded")]
    genres = experiment.clips.table["genre"]
    same = (genres[top["clip_id"]].to_numpy() == genres[top["item_id"]].to_numpy()).mean()
    assert same > 1 / genres.nunique() + 0.2
    assert not set(top["item_id"]) & set(top["clip_id"])  # the heard clip is not in the library
    # the listening page points at wav files a person can play: right length, not silent
    page = _Links()
    page.feed((out / "listen.html").read_text())
    assert len(page.sources) >= 3 * 5  # 3 clips x (original, 2 retrievals, Griffin-Lim, MusicGen) at least
    for source in page.sources:
        wave, rate = read_wav(out / source)
        assert rate == experiment.clips.sample_rate and len(wave) >= 3.9 * rate and np.abs(wave).max() > 1e-3
    table = pd.read_csv(out / "reconstructions.csv")
    oracle = table[(table["method"] == "griffinlim") & (table["source"] == "oracle")].iloc[0]
    assert oracle["pairwise_logmel"] >= 0.9  # resynthesis keeps the spectrum it is given


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_listening_page_opens_in_a_headless_browser(decoded, tmp_path):
    out, _ = decoded
    page = (out / "listen.html").resolve().as_uri()
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True).stdout
    parsed = _Links()
    parsed.feed(dom)
    assert len(parsed.sources) >= 15 and "Original, retrieved and generated music" in dom
    shot = tmp_path / "listen.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1400,900", page], capture_output=True,
                   timeout=120, check=True)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1400) and pixels[..., :3].std() > 0.05  # a rendered table, not a blank page


def test_decode_refuses_bad_input_before_fitting(tmp_path, capsys):
    config = demo_config(quick=True)
    config.decoding.top_k = [40]
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert main(["decode", str(path), "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "has 12 test clips" in capsys.readouterr().err and not (tmp_path / "a").exists()

    config = demo_config(quick=True)
    config.decoding.generators = ["musicgen"]
    config.decoding.generator_params = {"musicgen": {"model": "brain2music-tests/no-such-musicgen"}}
    path.write_text(config.to_toml())
    assert main(["decode", str(path), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "brain2music-tests/no-such-musicgen" in capsys.readouterr().err

    library = tmp_path / "library.npz"
    EmbeddingIndex(np.eye(3, 32, dtype=np.float32) + 0.1, ["x", "y", "z"], space="logmel",
                   fingerprint="logmel-abc").save(library)
    config = demo_config(quick=True)
    config.decoding.library = str(library)
    config.decoding.n_permutations = 0
    config.data.simulation.n_train_runs, config.data.simulation.clips_per_run = 3, 4
    config.data.simulation.n_test_clips = 6
    path.write_text(config.to_toml())
    assert main(["decode", str(path), "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "space 'caption'" in err and "'logmel'" in err and "Traceback" not in err


@pytest.mark.slow
def test_decoded_clap_embedding_conditions_latent_diffusion(quick_simulation, tmp_path):
    """The CLAP path: decode the embedding of the generator's own CLAP, generate from it (tiny MusicLDM)."""
    torch = pytest.importorskip("torch", reason="latent diffusion needs the [models] extra")
    pytest.importorskip("diffusers", reason="latent diffusion needs the [generation] extra")
    from decoding.generation.latent_diffusion import EmbeddingToMusic
    from tests.test_latent_diffusion import tiny_musicldm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions are far slower on two busy threads
    try:
        tiny_musicldm().save_pretrained(tmp_path / "musicldm")
        clap = EmbeddingToMusic(model=str(tmp_path / "musicldm")).export_clap(tmp_path / "clap")
        experiment, truth = quick_simulation
        config = demo_config(quick=True)
        config.features.params = {"clap_audio": {"model": str(clap), "window": 1.0}}
        cfg = config.decoding
        cfg.targets, cfg.generators = ["clap_audio"], ["latent_diffusion"]
        cfg.generator_params = {"latent_diffusion": {"model": str(tmp_path / "musicldm"), "num_inference_steps": 3}}
        cfg.n_permutations, cfg.n_bootstrap, cfg.n_reconstructed, cfg.duration = 0, 0, 2, 1.0
        run = run_decoding(config, tmp_path / "out", progress=False, experiment=experiment, truth=truth)
    finally:
        torch.set_num_threads(threads)
    decoded = read_wav(tmp_path / "out" / "audio" / f"{run.targets['clap_audio'].clip_ids[0]}_latent_diffusion_decoded.wav")
    oracle = read_wav(tmp_path / "out" / "audio" / f"{run.targets['clap_audio'].clip_ids[0]}_latent_diffusion_oracle.wav")
    assert decoded[1] == oracle[1] == experiment.clips.sample_rate
    assert len(decoded[0]) == experiment.clips.sample_rate and not np.allclose(decoded[0], oracle[0])
    table = run.reconstructions.set_index(["method", "source"])
    assert {("latent_diffusion", "decoded"), ("latent_diffusion", "oracle")} <= set(table.index)
    assert "pairwise_clap_audio" in table


@pytest.mark.slow
def test_a_folder_of_audio_is_a_retrieval_library_and_its_files_are_played(quick_simulation, tmp_path):
    from decoding.generation.audio import write_wav

    experiment, truth = quick_simulation
    config = demo_config(quick=True)
    library = tmp_path / "library"
    train = [c for run in experiment.train_runs for c in run.events["clip_id"]][:8]
    for clip in train:
        write_wav(library / f"{clip}.wav", experiment.clips.audio[clip], experiment.clips.sample_rate)
    cfg = config.decoding
    cfg.targets, cfg.generators, cfg.library = ["logmel"], [], str(library)
    cfg.n_permutations, cfg.n_bootstrap, cfg.n_reconstructed = 0, 0, 2
    run = run_decoding(config, None, progress=False, experiment=experiment, truth=truth)
    found = run.targets["logmel"].retrieval
    assert set(found["item_id"]) <= set(train)
    clip = run.targets["logmel"].clip_ids[0]
    item = found[(found["clip_id"] == clip) & (found["rank"] == 1) & (found["source"] == "decoded")]["item_id"].item()
    wave, _ = run.audio[clip, "retrieval_logmel", "decoded"]
    expected, _ = read_wav(library / f"{item}.wav")
    np.testing.assert_allclose(wave, expected, atol=1e-3)


@pytest.mark.slow
def test_decoding_from_atlas_regions_uses_only_their_vertices(quick_simulation):
    from atlases.parcellations import atlas_rois

    experiment, truth = quick_simulation
    config = demo_config(quick=True)
    config.decoding.selection, config.decoding.rois, config.decoding.n_permutations = "roi", ["STG", "STS"], 0
    target = decode_target(experiment, "caption", truth.features["caption"], config, progress=False)
    rois = atlas_rois()
    assert np.array_equal(target.decoder.vertices_, np.flatnonzero(rois["STG"] | rois["STS"]))
    counts = region_counts(target)
    assert (counts.loc[["STG", "STS"], "vertices_decoded"] == counts.loc[["STG", "STS"], "region_vertices"]).all()
    assert counts.loc[["HG", "IFG", "precentral", "V1"], "vertices_decoded"].sum() == 0
    from matplotlib.collections import PolyCollection

    from atlases.plotting import flat_hemisphere

    fig = decoded_vertices_map(target)  # the left flat map: coloured on the STG and STS, grey elsewhere
    (patch,) = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    grey = np.ptp(patch.get_facecolor()[:, :3], axis=1) < 1e-6
    _, faces = flat_hemisphere("left")
    chosen = (rois["STG"] | rois["STS"])[:10242][faces]
    assert not grey[chosen.all(axis=1)].any() and grey[~chosen.any(axis=1)].all()
    assert target.identification.values["pairwise"] > 0.8  # the caption territory lies in the STG and STS
    config.decoding.rois = ["V1"]
    control = decode_target(experiment, "caption", truth.features["caption"], config, progress=False)
    low, high = control.identification.ci["pairwise"]
    assert low <= 0.5 <= high  # nothing was planted in the visual control
