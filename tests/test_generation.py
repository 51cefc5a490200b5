"""Music generation and its evaluation: MusicGen from text (a tiny model built offline), log-mel
resynthesis by Griffin-Lim, WAV files, and tag agreement with musicnn's trained tagger."""

import numpy as np
import pytest

from decoding.evaluation import tag_agreement, tag_names, top_k_overlap, top_tags
from decoding.generation.audio import read_wav, write_wav
from decoding.generation.resynthesis import mel_to_power, resynthesize_logmel
from encoding.errors import ConfigError, DataError, ModelLoadError
from encoding.features import get_extractor

SR = 16000


# ---------------------------------------------------------------- MusicGen from text

@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory):
    """A tiny MusicGen (16-kHz codec, 250 frames/s, 4 codebooks) with a T5 tokenizer made here, saved
    with save_pretrained. Weights are scaled up where random init would make the text or the codes
    irrelevant (cross-attention, output heads, codebooks)."""
    torch = pytest.importorskip("torch", reason="MusicGen needs the [models] extra")
    transformers = pytest.importorskip("transformers", reason="MusicGen needs the [models] extra")
    folder = tmp_path_factory.mktemp("tiny-musicgen-t2m")
    torch.manual_seed(0)
    codec = transformers.EncodecConfig(sampling_rate=SR, num_filters=4, hidden_size=16, codebook_size=32,
                                       codebook_dim=16, upsampling_ratios=[8, 8], target_bandwidths=[20.0],
                                       num_lstm_layers=1, audio_channels=1)
    text = transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    decoder = transformers.MusicgenDecoderConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, ffn_dim=64, num_codebooks=4,
                                                 pad_token_id=32, bos_token_id=32)
    model = transformers.MusicgenForConditionalGeneration(transformers.MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict()))
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(std=1.0)
        for name, weight in model.decoder.named_parameters():
            if "encoder_attn." in name and name.endswith("weight"):
                weight.normal_(std=0.5)
        model.enc_to_dec_proj.weight.normal_(std=0.5)
        for head in model.decoder.lm_heads:
            head.weight.normal_(std=0.3)
    model.generation_config.decoder_start_token_id = 32
    model.generation_config.pad_token_id = 32
    model.save_pretrained(folder)
    words = ["a", "loud", "rock", "song", "with", "distorted", "guitar", "and", "drums", "calm", "classical",
             "strings", "jazz", "piano", "trio"]
    tokenizer = transformers.T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
                                         + [("\u2581" + w, -1.0) for w in words], extra_ids=0)
    processor = transformers.MusicgenProcessor(
        feature_extractor=transformers.EncodecFeatureExtractor(feature_size=1, sampling_rate=SR), tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def generated(tiny_musicgen):
    from decoding.generation.text_to_music import TextToMusic

    generator = TextToMusic(model=tiny_musicgen)
    generator.preflight()
    waves, rate = generator.generate(["a loud rock song with drums", "calm classical strings"], duration=0.203,
                                     seed=1, progress=False)
    return generator, waves, rate


def test_musicgen_clips_have_the_duration_asked_for(generated):
    generator, waves, rate = generated
    assert rate == SR == generator.sample_rate
    assert len(waves) == 2
    for wave in waves:
        assert wave.dtype == np.float32 and wave.shape == (round(0.203 * SR),)
        assert np.isfinite(wave).all() and wave.std() > 1e-3  # sound, not silence


def test_musicgen_is_reproducible_per_prompt_and_leaves_the_callers_random_state(generated):
    import torch

    generator, waves, _ = generated
    state = torch.random.get_rng_state()
    (again,), _ = generator.generate(["a loud rock song with drums"], duration=0.203, seed=1, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(again, waves[0])  # the same prompt and seed, alone or in a list
    (other_seed,), _ = generator.generate(["a loud rock song with drums"], duration=0.203, seed=2, progress=False)
    assert np.abs(other_seed - waves[0]).max() > 1e-3


def test_musicgen_follows_the_prompt(generated):
    _, waves, _ = generated
    assert np.abs(waves[0] - waves[1]).max() > 1e-3
    assert np.corrcoef(waves[0], waves[1])[0, 1] < 0.99


def test_generated_audio_survives_a_16_bit_wav(generated, tmp_path):
    _, waves, rate = generated
    path = write_wav(tmp_path / "out" / "clip.wav", waves[0], rate)
    back, back_rate = read_wav(path)
    assert back_rate == rate and back.shape == waves[0].shape
    np.testing.assert_allclose(back, waves[0], atol=1.01 / 2**15)
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.wav"]  # no temporary file left


def test_wav_writing_scales_loud_audio_instead_of_clipping(tmp_path):
    wave = np.array([0.5, -2.0, 1.0, 0.0], np.float32)
    back, _ = read_wav(write_wav(tmp_path / "loud.wav", wave, 8000))
    np.testing.assert_allclose(back, wave / 2, atol=1.01 / 2**15)
    exact, _ = read_wav(write_wav(tmp_path / "float.wav", wave, 8000, subtype="FLOAT"))
    np.testing.assert_array_equal(exact, wave)
    with pytest.raises(DataError, match="NaN"):
        write_wav(tmp_path / "bad.wav", np.array([0.0, np.nan]), 8000)
    assert not (tmp_path / "bad.wav").exists()


def test_an_unavailable_model_names_itself_and_how_to_get_it(monkeypatch, tiny_musicgen, tmp_path):
    from decoding.generation.text_to_music import TextToMusic

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"'brain2music-tests/no-such-musicgen'.*save_pretrained"):
        TextToMusic(model="brain2music-tests/no-such-musicgen").preflight()
    import shutil

    bare = tmp_path / "model-without-processor"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(f"{tiny_musicgen}/{name}", bare)
    with pytest.raises(ModelLoadError, match=r"processor.*model-without-processor|model-without-processor.*processor"):
        TextToMusic(model=str(bare)).preflight()


def test_musicgen_arguments_are_checked():
    from decoding.generation.text_to_music import TextToMusic

    with pytest.raises(ConfigError, match="guidance_scale"):
        TextToMusic(guidance_scale=0.5)
    generator = TextToMusic(model="never-loaded")
    with pytest.raises(ConfigError, match=r"wrap it: \[prompt\]"):
        generator.generate("a rock song")
    with pytest.raises(ConfigError, match="duration"):
        generator.generate(["a rock song"], duration=0)


# ---------------------------------------------------------------- log-mel resynthesis

def harmonic_melody(seconds: float = 3.0) -> np.ndarray:
    """Six notes of a 7-harmonic tone with a 2-Hz amplitude swell, float32 at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = np.repeat([220.0, 277.2, 329.6, 440.0, 329.6, 277.2], len(t) // 6 + 1)[: len(t)]
    phase = 2 * np.pi * np.cumsum(f0) / SR
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * t))
    return (0.2 * envelope * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def melody_logmel():
    wave = harmonic_melody()
    ext = get_extractor("logmel")
    return wave, ext, ext.extract_clip(wave, SR)


def test_griffin_lim_recovers_the_logmel_it_was_given(melody_logmel):
    wave, ext, frames = melody_logmel
    rebuilt = resynthesize_logmel(frames, SR, **ext.get_params())
    assert rebuilt.dtype == np.float32 and abs(len(rebuilt) - len(wave)) <= round(ext.hop * SR)
    again = ext.extract_clip(rebuilt, SR).values
    assert again.shape == frames.values.shape
    assert corr(again, frames.values) > 0.9
    error = np.abs(again - frames.values).mean()  # dB

    noise = np.random.default_rng(0).standard_normal(len(wave)).astype(np.float32) * wave.std()
    assert corr(ext.extract_clip(noise, SR).values, frames.values) < 0.5

    import librosa

    n_fft, hop_length = 1024, round(ext.hop * SR)  # the extractor's STFT at 16 kHz
    basis = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=ext.n_mels, fmin=ext.fmin)
    magnitude = np.sqrt(mel_to_power(librosa.db_to_power(frames.values.T), basis))
    phase = np.exp(2j * np.pi * np.random.default_rng(0).random(magnitude.shape))
    random_phase = librosa.istft(magnitude * phase, hop_length=hop_length, n_fft=n_fft, length=len(wave))
    baseline = np.abs(ext.extract_clip(random_phase, SR).values - frames.values).mean()
    assert error < 0.75 * baseline  # Griffin-Lim's phase makes the spectrum consistent


def test_the_mel_inversion_matches_every_band():
    import librosa

    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=32, fmin=30.0)
    noise = 10 ** np.random.default_rng(1).uniform(-9, -1, size=(513, 10))  # power over 80 dB
    lines = np.abs(librosa.stft(harmonic_melody(), n_fft=1024, hop_length=400)) ** 2  # harmonics, near-silent bands
    for spectrum in (noise, lines):
        mel = np.maximum(basis @ spectrum, 1e-10)  # the extractor's floor
        power = mel_to_power(mel, basis)
        assert power.shape == spectrum.shape and (power >= 0).all()
        np.testing.assert_allclose(10 * np.log10(basis @ power), 10 * np.log10(mel), atol=0.05)


def test_tr_level_frames_are_interpolated_onto_the_stft(melody_logmel):
    _, ext, frames = melody_logmel
    bins = 0.5  # s, like frames averaged within TRs
    which = ((frames.starts + frames.ends) / 2 // bins).astype(int)
    coarse = np.stack([frames.values[which == k].mean(axis=0) for k in range(6)])
    rebuilt = resynthesize_logmel(coarse, SR, frame_hop=bins, duration=3.0)
    assert rebuilt.shape == (3 * SR,)
    again = ext.extract_clip(rebuilt, SR)
    which = ((again.starts + again.ends) / 2 // bins).astype(int)
    coarse_again = np.stack([again.values[which == k].mean(axis=0) for k in range(6)])
    assert corr(coarse_again, coarse) > 0.9


def test_resynthesis_arguments_are_checked(melody_logmel):
    frames = melody_logmel[2]
    np.testing.assert_array_equal(resynthesize_logmel(frames, SR, n_iter=2),
                                  resynthesize_logmel(frames.values, SR, starts=frames.starts, ends=frames.ends,
                                                      n_iter=2))
    with pytest.raises(ConfigError, match="say when the frames are"):
        resynthesize_logmel(frames.values, SR)
    with pytest.raises(DataError, match="n_mels is 64"):
        resynthesize_logmel(frames, SR, n_mels=64)
    with pytest.raises(DataError, match="NaN"):
        resynthesize_logmel(np.full((4, 32), np.nan), SR, frame_hop=1.5)


# ---------------------------------------------------------------- tag agreement

def test_tag_agreement_on_hand_made_probabilities():
    a = np.array([[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.3, 0.4]])
    b = np.array([[0.9, 0.1, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]])
    out = tag_agreement(a, b, top_k=2)
    np.testing.assert_allclose(out["pearson"], [1.0, -1.0])
    np.testing.assert_allclose(out["top_k_overlap"], [1.0, 0.0])
    np.testing.assert_allclose(top_k_overlap(a[:1], np.array([[0.9, 0.6, 0.5, 0.2]]), 2), [0.5])
    with pytest.raises(ConfigError, match="top_k"):
        tag_agreement(a, b, top_k=5)
    with pytest.raises(DataError, match="one shape"):
        tag_agreement(a, b[:1])


def drum_loop(seconds: float = 6.0) -> np.ndarray:
    """Noise bursts every quarter second with a 60-Hz kick on every other one, float32 at 16 kHz."""
    rng = np.random.default_rng(0)
    wave = np.zeros(int(seconds * SR))
    length = int(0.12 * SR)
    decay = np.arange(length) / SR
    for i, onset in enumerate(np.arange(0, seconds, 0.25)):
        start = int(onset * SR)
        hit = 0.8 * rng.standard_normal(length) * np.exp(-decay / 0.02)
        if i % 2 == 0:
            hit += 0.8 * np.sin(2 * np.pi * 60 * decay) * np.exp(-decay / 0.05)
        wave[start : start + length] += hit[: len(wave) - start]
    return wave.astype(np.float32)


@pytest.mark.slow
def test_tags_agree_for_the_same_music_and_its_resynthesis_not_for_other_music():
    pytest.importorskip("musicnn", reason="musicnn weights need: pip install --no-deps musicnn==0.1.0")
    pytest.importorskip("torch", reason="the musicnn port runs in torch (the [models] extra)")
    from decoding.evaluation import tag_probabilities

    drums = drum_loop()
    t = np.arange(len(drums)) / SR
    tone = (0.3 * sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 6)) * np.minimum(1, 4 * t)).astype(np.float32)
    ext = get_extractor("logmel")
    rebuilt = resynthesize_logmel(ext.extract_clip(drums, SR), SR, duration=len(drums) / SR)
    probs = tag_probabilities([drums, tone, rebuilt], SR)
    assert probs.shape == (3, 50) and ((probs >= 0) & (probs <= 1)).all() and len(tag_names()) == 50
    same = tag_agreement(probs[[0]], probs[[0]])
    np.testing.assert_allclose(same["pearson"], [1.0])
    np.testing.assert_allclose(same["top_k_overlap"], [1.0])
    other = tag_agreement(probs[[0]], probs[[1]])
    resynthesised = tag_agreement(probs[[0]], probs[[2]])
    assert other["pearson"][0] < 0.5 and other["top_k_overlap"][0] <= 0.4
    assert resynthesised["pearson"][0] > 0.8 > other["pearson"][0] + 0.3
    assert "drums" in top_tags(probs[[0]], k=5)[0]
