"""musicnn in torch: the checkpoint reader, loud failures, and tags of real music that fit its genre."""

from pathlib import Path

import numpy as np
import pytest

musicnn_pkg = pytest.importorskip("musicnn", reason="musicnn weights need: pip install --no-deps musicnn==0.1.0")
torch = pytest.importorskip("torch", reason="the musicnn port runs in torch (the [models] extra)")

from encoding.features import get_extractor  # noqa: E402
from encoding.features.musicnn import MSD_TAGS, MTT_TAGS, build_network, checkpoint_prefix, log_mel_patches  # noqa: E402
from encoding.features.tfcheckpoint import read_checkpoint  # noqa: E402

FORREST = Path(__file__).parents[1] / ".." / "shared" / "data" / "studyforrest-music" / "stimuli"


def test_checkpoint_reader_finds_every_musicnn_variable():
    weights = read_checkpoint(checkpoint_prefix("MTT_musicnn"))
    assert len(weights) == 11 * 4 + 8 * 2 + 2 * 2  # batch norms, convolutions, dense layers
    assert weights["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert weights["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert weights["dense/kernel"].shape == (1506, 200) and weights["dense_1/kernel"].shape == (200, 50)
    assert all(np.isfinite(v).all() for v in weights.values())
    assert (weights["batch_normalization_9/moving_variance"] > 0).all()


def test_loading_fails_loudly_on_missing_or_misshaped_weights():
    weights = read_checkpoint(checkpoint_prefix("MTT_musicnn"))
    broken = dict(weights)
    del broken["conv2d_3/kernel"]
    with pytest.raises(ValueError, match="lacks the musicnn variable 'conv2d_3/kernel'"):
        build_network(broken)
    broken = dict(weights, **{"dense/bias": np.zeros(100, np.float32)})
    with pytest.raises(ValueError, match="shapes do not match"):
        build_network(broken)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint("/nonexistent/prefix")


def test_patches_and_layers_have_the_published_shapes_and_are_deterministic():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 6)).astype(np.float32)
    patches, starts = log_mel_patches(wave, 16000, hop_seconds=1.5)
    assert patches.shape[1:] == (187, 96) and np.allclose(np.diff(starts), 1.504, atol=0.01)
    loud = log_mel_patches(np.ones(16000 * 4, np.float32) * 0.99, 16000, 1.5)[0]
    assert np.isfinite(loud).all()  # float32, no float16 overflow
    ext = get_extractor("musicnn", layer="penultimate")
    layers = ext.layers(patches)
    dims = {k: v.shape[1] for k, v in layers.items()}
    assert dims == {"timbral": 408, "temporal": 153, "cnn1": 64, "cnn2": 64, "cnn3": 64, "mean_pool": 753,
                    "max_pool": 753, "penultimate": 200, "taggram": 50}
    np.testing.assert_array_equal(ext.layers(patches)["taggram"], layers["taggram"])
    assert ((layers["taggram"] >= 0) & (layers["taggram"] <= 1)).all()


GENRE_TAGS = {  # tags that should rank high for each studyforrest genre
    "MTT_musicnn": {"metal": {"rock", "metal", "guitar", "drums", "loud"},
                    "symphonic": {"classical", "strings", "violin", "cello", "classic"},
                    "ambient": {"ambient", "slow", "quiet", "soft", "synth", "new age"}},
    "MSD_musicnn": {"metal": {"rock", "metal", "hard rock", "heavy metal"},
                    "country": {"country", "folk", "oldies"},
                    "ambient": {"ambient", "chillout", "electronic", "instrumental", "chill"}},
}


@pytest.mark.shared_data
@pytest.mark.skipif(not FORREST.is_dir(), reason="../shared/data/studyforrest-music is absent")
@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_musicnn"])
def test_tags_of_real_clips_fit_their_genre(model):
    import librosa

    tags = MTT_TAGS if model == "MTT_musicnn" else MSD_TAGS
    ext = get_extractor("musicnn", model=model, layer="taggram")
    for genre, expected in GENRE_TAGS[model].items():
        scores = []
        for path in sorted(FORREST.glob(f"{genre}_*.wav")):
            wave, sr = librosa.load(path, sr=16000)
            scores.append(ext.extract_clip(wave, sr).values.mean(axis=0))
        top3 = {tags[i] for i in np.argsort(np.mean(scores, axis=0))[::-1][:3]}
        assert len(top3 & expected) >= 2, (genre, top3)
