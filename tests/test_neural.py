"""transformers audio spaces, on tiny models built and saved here and loaded through the user's path."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="network spaces need the [models] extra")
transformers = pytest.importorskip("transformers", reason="network spaces need the [models] extra")

from encoding.features import get_extractor  # noqa: E402
from encoding.features.neural import load_pretrained  # noqa: E402


@pytest.fixture(scope="module")
def tiny_encodec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-encodec")
    torch.manual_seed(0)
    config = transformers.EncodecConfig(sampling_rate=16000, num_filters=4, hidden_size=16, codebook_size=32,
                                        codebook_dim=16, upsampling_ratios=[4, 4], target_bandwidths=[20.0],
                                        num_lstm_layers=1, audio_channels=1)
    transformers.EncodecModel(config).save_pretrained(folder)
    transformers.EncodecFeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-w2v")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=37, conv_dim=(8, 8), conv_stride=(5, 4),
                                         conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return str(folder)


def test_encodec_latents_match_the_model_run_by_hand(tiny_encodec):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(8000 * 4)).astype(np.float32)  # 4 s at 8 kHz: resampled to 16 kHz
    ext = get_extractor("encodec", model=tiny_encodec, window=1.0, hop=0.5)
    frames = ext.extract_clip(wave, 8000)
    assert frames.values.shape == (7, 16) and np.allclose(frames.starts, np.arange(7) * 0.5)
    net, _ = load_pretrained(tiny_encodec)
    import librosa

    window = librosa.resample(wave, orig_sr=8000, target_sr=16000)[:16000]
    with torch.inference_mode():
        expected = net.encoder(torch.from_numpy(window)[None, None]).mean(dim=2).numpy()
    np.testing.assert_allclose(frames.values[0], expected[0], rtol=1e-4, atol=1e-5)


def test_audio_ssl_layers_differ_and_are_deterministic(tiny_wav2vec2):
    wave = np.sin(2 * np.pi * 220 * np.arange(16000 * 3) / 16000).astype(np.float32)
    first = get_extractor("audio_ssl", model=tiny_wav2vec2, layer=1).extract_clip(wave, 16000)
    last = get_extractor("audio_ssl", model=tiny_wav2vec2, layer=-1).extract_clip(wave, 16000)
    assert first.values.shape == (2, 32)
    assert not np.allclose(first.values, last.values)
    np.testing.assert_array_equal(first.values,
                                  get_extractor("audio_ssl", model=tiny_wav2vec2, layer=1).extract_clip(wave, 16000).values)
    with pytest.raises(ValueError, match="layer 7 out of range"):
        get_extractor("audio_ssl", model=tiny_wav2vec2, layer=7).extract_clip(wave, 16000)


def test_unavailable_models_fail_with_a_clear_message(tmp_path):
    with pytest.raises(OSError, match="Cannot load .*save_pretrained"):
        get_extractor("encodec", model=str(tmp_path / "no-such-model")).extract_clip(np.zeros(48000, np.float32), 16000)
