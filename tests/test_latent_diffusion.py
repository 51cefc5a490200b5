"""MusicLDM conditioned on CLAP embeddings, on a tiny pipeline built and saved here, loaded through the user's path."""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="latent diffusion needs the [models] extra")
transformers = pytest.importorskip("transformers", reason="latent diffusion needs the [models] extra")
diffusers = pytest.importorskip("diffusers", reason="latent diffusion needs diffusers")

from decoding.generation.latent_diffusion import EmbeddingToMusic, unit_rows
from encoding.errors import ConfigError, DataError, ModelLoadError

DIM = 16  # CLAP projection of the tiny pipeline
STEPS = 3
DURATION = 0.2515  # s: not a whole number of mel frames (1 ms each), nor of VAE blocks (2 frames)


def tiny_tokenizer():
    """A byte-level BPE RoBERTa tokenizer trained here (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["a loud rock song with distorted guitar and drums", "calm classical strings", "a jazz piano trio"] * 10
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                             pad_token="<pad>", mask_token="<mask>", model_max_length=64)


def tiny_clap(vocab_size: int):
    text = {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 37, "max_position_embeddings": 80, "projection_dim": DIM}
    audio = {"depths": [1, 1], "num_attention_heads": [2, 2], "hidden_size": 32, "patch_embeds_hidden_size": 16,
             "enable_fusion": False, "spec_size": 128, "num_mel_bins": 64, "window_size": 4, "projection_dim": DIM,
             "patch_stride": (4, 4), "patch_size": 4}
    return transformers.ClapModel(transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=DIM))


def tiny_musicldm():
    """A MusicLDM of a few thousand weights: 16-kHz vocoder with 1-ms mel frames of 8 bins, VAE scale 2."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16), attention_head_dim=2, norm_num_groups=4, class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=DIM, class_embeddings_concat=True)
    vae = diffusers.AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=4,
                                  down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                  latent_channels=4)
    vocoder = transformers.SpeechT5HifiGan(transformers.SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False))
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False)
    extractor = transformers.ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=1,
                                                  fft_window_size=1024, hop_length=480)
    return diffusers.MusicLDMPipeline(vae=vae, text_encoder=tiny_clap(len(tokenizer)), tokenizer=tokenizer,
                                      feature_extractor=extractor, unet=unet, scheduler=scheduler, vocoder=vocoder)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run 100x slower on 2 threads of a shared, busy CPU than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-musicldm")
    tiny_musicldm().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def generator(folder):
    gen = EmbeddingToMusic(model=folder, num_inference_steps=STEPS, guidance_scale=2.0)
    gen.preflight()
    return gen


@pytest.fixture(scope="module")
def embeddings():
    return np.random.default_rng(0).standard_normal((2, DIM))


@pytest.fixture(scope="module")
def clips(generator, embeddings):
    return generator.generate(embeddings, duration=DURATION, seed=3, progress=False)


def relative_difference(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_clips_have_the_requested_length_and_rate(generator, clips):
    waves, rate = clips
    assert rate == generator.sample_rate == 16000 and generator.embedding_dim == DIM
    assert len(waves) == 2
    for wave in waves:
        assert wave.dtype == np.float32 and wave.shape == (round(DURATION * rate),)
        assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def test_same_seed_and_embedding_give_the_same_audio_whatever_the_batch(generator, clips, embeddings):
    waves, _ = clips
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    alone, _ = generator.generate(embeddings[1:], duration=DURATION, seed=3, progress=False)
    np.testing.assert_array_equal(alone[0], waves[1])  # alone or second in a batch: the same clip
    assert torch.rand(1) == before  # the caller's random state is untouched
    other_seed, _ = generator.generate(embeddings[1:], duration=DURATION, seed=4, progress=False)
    assert relative_difference(other_seed[0], waves[1]) > 0.05


def test_the_embedding_steers_the_audio(generator, clips, embeddings):
    waves, _ = clips
    assert relative_difference(waves[0], waves[1]) > 1e-3
    # only the direction counts: a rescaled embedding is the same condition
    scaled, _ = generator.generate(5.0 * embeddings[:1], duration=DURATION, seed=3, progress=False)
    np.testing.assert_allclose(scaled[0], waves[0], rtol=0, atol=1e-6 * np.abs(waves[0]).max())


def test_guidance_scale_changes_the_audio(folder, clips, embeddings):
    plain, _ = EmbeddingToMusic(model=folder, num_inference_steps=STEPS, guidance_scale=1.0).generate(
        embeddings[:1], duration=DURATION, seed=3, progress=False)
    assert relative_difference(plain[0], clips[0][0]) > 1e-3


def test_guidance_uses_the_empty_prompt_as_the_unconditional_embedding(generator):
    """Guidance with the condition equal to the unconditional embedding is no guidance at all."""
    pipe = generator._pipeline()
    uncond = generator._unconditional()
    inputs = pipe.tokenizer([""], return_tensors="pt")
    with torch.no_grad():
        expected = pipe.text_encoder.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(uncond, expected)
    assert uncond.shape == (1, DIM) and abs(float(uncond.norm()) - 1) < 1e-5
    folder = generator.model
    guided, _ = generator.generate(uncond.numpy(), duration=0.1, seed=0, progress=False)
    plain, _ = EmbeddingToMusic(model=folder, num_inference_steps=STEPS, guidance_scale=1.0).generate(
        uncond.numpy(), duration=0.1, seed=0, progress=False)
    np.testing.assert_allclose(guided[0], plain[0], rtol=0, atol=1e-5 * np.abs(plain[0]).max())


def test_embeddings_are_checked(generator):
    with pytest.raises(DataError, match=f"have 512 dimensions but the CLAP of .* projects to {DIM}"):
        generator.generate(np.ones((1, 512)), duration=0.1, progress=False)
    with pytest.raises(DataError, match=r"embedding\[None\]"):
        generator.generate(np.ones(DIM), duration=0.1, progress=False)
    with pytest.raises(DataError, match="all zero"):
        generator.generate(np.zeros((1, DIM)), duration=0.1, progress=False)
    with pytest.raises(DataError, match="NaN"):
        generator.generate(np.full((1, DIM), np.nan), duration=0.1, progress=False)
    with pytest.raises(ConfigError, match="duration"):
        generator.generate(np.ones((1, DIM)), duration=0, progress=False)
    rows = unit_rows([[3.0, 4.0]], 2)
    np.testing.assert_allclose(rows, [[0.6, 0.8]])
    assert rows.dtype == np.float32


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="guidance_scale"):
        EmbeddingToMusic(guidance_scale=0.5)
    with pytest.raises(ConfigError, match="num_inference_steps"):
        EmbeddingToMusic(num_inference_steps=0)
    with pytest.raises(ConfigError, match="dtype"):
        EmbeddingToMusic(dtype="float64")


def test_a_hub_id_offline_fails_with_one_clear_message():
    with pytest.raises(ModelLoadError, match=r"'ucsd-reach/no-such-musicldm'.*save_pretrained") as info:
        EmbeddingToMusic(model="ucsd-reach/no-such-musicldm").preflight()
    assert "HF_HUB_OFFLINE" in str(info.value)


def test_a_folder_without_a_pipeline_fails_with_a_clear_message(tmp_path):
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        EmbeddingToMusic(model=str(tmp_path)).preflight()


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_deprecation_notice_is_dropped_only_while_loading(folder):
    from decoding.generation.latent_diffusion import load_pipeline

    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")  # diffusers' loggers do not propagate
    filters, records = list(logger.filters), Records()
    logger.addHandler(records)
    try:
        load_pipeline.cache_clear()
        EmbeddingToMusic(model=folder).preflight()
        assert not [m for m in records.messages if "deprecated" in m]
        assert logger.filters == filters
        tiny_musicldm()  # outside the loader the notice is diffusers' own business
        assert [m for m in records.messages if "MusicLDMPipeline has been deprecated" in m]
    finally:
        logger.removeHandler(records)


def test_embed_audio_is_the_pipelines_clap_and_deterministic(generator, clips):
    import librosa

    waves, rate = clips
    rng = np.random.default_rng(1)
    long = (0.1 * rng.standard_normal(int(2.5 * rate))).astype(np.float32)  # longer than CLAP's 1 s: 3 windows
    emb = generator.embed_audio(waves + [long], rate)
    assert emb.shape == (3, DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(emb, generator.embed_audio(waves + [long], rate))
    assert not np.allclose(emb[0], emb[1])
    pipe = generator._pipeline()  # by hand: resample to 48 kHz, CLAP's features, the projected embedding
    inputs = pipe.feature_extractor([librosa.resample(waves[0], orig_sr=rate, target_sr=48000)], sampling_rate=48000,
                                    return_tensors="pt", truncation="rand_trunc")
    with torch.no_grad():
        expected = pipe.text_encoder.get_audio_features(input_features=inputs["input_features"]).pooler_output
    np.testing.assert_allclose(emb[0], expected[0].numpy(), atol=1e-5)
    with pytest.raises(DataError, match="wrap it"):
        generator.embed_audio(waves[0], rate)


def test_exported_clap_feeds_the_clap_audio_space(generator, clips, tmp_path):
    from encoding.features import get_extractor

    waves, rate = clips
    clip = np.tile(waves[0], 4)[:rate]  # 1 s: one clap_audio window
    folder = generator.export_clap(tmp_path / "clap")
    frames = get_extractor("clap_audio", model=str(folder), window=1.0, hop=1.0).extract_clip(clip, rate)
    np.testing.assert_allclose(frames.values[0], generator.embed_audio([clip], rate)[0], atol=1e-5)
