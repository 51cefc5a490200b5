"""transformers audio spaces, on tiny models built and saved here and loaded through the user's path."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="network spaces need the [models] extra")
transformers = pytest.importorskip("transformers", reason="network spaces need the [models] extra")

from encoding.features import get_extractor  # noqa: E402
from encoding.features.neural import load_pretrained  # noqa: E402


def tiny_codec_config():
    """A 16-kHz EnCodec with 4 codebooks of 32 codes at 1,000 frames per second."""
    return transformers.EncodecConfig(sampling_rate=16000, num_filters=4, hidden_size=16, codebook_size=32,
                                      codebook_dim=16, upsampling_ratios=[4, 4], target_bandwidths=[20.0],
                                      num_lstm_layers=1, audio_channels=1)


@pytest.fixture(scope="module")
def tiny_encodec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-encodec")
    torch.manual_seed(0)
    transformers.EncodecModel(tiny_codec_config()).save_pretrained(folder)
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


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    """A tiny CLAP with a byte-level BPE tokenizer trained here (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tiny-clap")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["a loud rock song with distorted guitar and drums", "calm classical strings", "a jazz piano trio"] * 10
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = transformers.RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                  unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    torch.manual_seed(0)
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80, projection_dim=16),
        audio_config=dict(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32, patch_embeds_hidden_size=16,
                          enable_fusion=False, spec_size=128, num_mel_bins=64, window_size=4, projection_dim=16,
                          patch_stride=(4, 4), patch_size=4),
        projection_dim=16)
    transformers.ClapModel(config).save_pretrained(folder)
    extractor = transformers.ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=2,
                                                  fft_window_size=1024, hop_length=480)
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def test_clap_audio_and_text_embed_in_one_space(tiny_clap):
    import pandas as pd

    from encoding.data import ClipSet

    rng = np.random.default_rng(0)
    audio = {"a": (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32), "b": np.zeros(16000 * 3, np.float32)}
    clips = ClipSet(pd.DataFrame({"caption": ["a loud rock song", "calm classical strings"]}, index=["a", "b"]), audio, 16000)
    sound = get_extractor("clap_audio", model=tiny_clap, window=2.0, hop=1.0).extract(clips, progress=False)
    text = get_extractor("clap_text", model=tiny_clap).extract(clips, progress=False)
    assert sound["a"].values.shape == (2, 16) and text["a"].values.shape == (1, 16)
    assert not np.allclose(text["a"].values, text["b"].values)
    again = get_extractor("clap_audio", model=tiny_clap, window=2.0, hop=1.0).extract(clips, progress=False)
    np.testing.assert_array_equal(sound["a"].values, again["a"].values)  # no random cropping
    with pytest.raises(ValueError, match="exceeds the model's 2 s"):
        get_extractor("clap_audio", model=tiny_clap, window=3.0).extract_clip(audio["a"], 16000)


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-musicgen")
    torch.manual_seed(0)
    codec = tiny_codec_config()
    text = transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    decoder = transformers.MusicgenDecoderConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                 ffn_dim=64, num_codebooks=4, pad_token_id=32, bos_token_id=32)
    config = transformers.MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(),
                                         decoder=decoder.to_dict())
    model = transformers.MusicgenForConditionalGeneration(config)
    with torch.no_grad():  # a fresh codec's codebooks are zeros: every frame would get code 0
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(std=0.1)  # on the scale of the encoder latents
    model.generation_config.decoder_start_token_id = 32
    model.generation_config.pad_token_id = 32
    model.save_pretrained(folder)
    return str(folder)


def test_delay_pattern_matches_musicgen():
    from encoding.features.neural import delay_pattern

    codes = torch.arange(8).reshape(2, 4)
    ids = delay_pattern(codes, start_token=9, pad_token=8)
    assert ids.tolist() == [[9, 0, 1, 2, 3, 8], [9, 8, 4, 5, 6, 7]]


def test_musicgen_states_are_causal_and_pooled(tiny_musicgen):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    ext = get_extractor("musicgen", model=tiny_musicgen, layer=-1, hop=0.25)
    frames = ext.extract_clip(wave, 16000)
    assert frames.values.shape == (8, 32) and np.allclose(frames.ends - frames.starts, 0.25)
    # the decoder is causal: changing the second half of the clip leaves the first frames' states alone
    changed = wave.copy()
    changed[16000:] = 0.1 * rng.standard_normal(16000)
    other = ext.extract_clip(changed, 16000)
    np.testing.assert_allclose(other.values[:3], frames.values[:3], atol=1e-5)
    assert not np.allclose(other.values[-2:], frames.values[-2:])
