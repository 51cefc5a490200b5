"""Music from a decoded CLAP audio embedding with MusicLDM (diffusers), no text in between.

Brain2Music decoded a MuLan embedding from fMRI and conditioned MusicLM on it; the open analogue
(Ciferri et al. 2025) decodes a CLAP embedding and conditions a CLAP-conditioned latent diffusion
model on it. CLAP's audio and text embeddings share one joint space (both L2-normalised
projections), so a decoded audio embedding can stand where the pipeline would put the embedding
of a text prompt.

Why MusicLDM (``ucsd-reach/musicldm``) and not AudioLDM 2:

- MusicLDM's UNet is conditioned on the CLAP embedding itself: the pipeline passes the
  projected, normalised CLAP vector (512-d) as the UNet's class label (``simple_projection``
  class embedding) and nothing else, so ``prompt_embeds`` *is* the CLAP embedding. MusicLDM adapts
  AudioLDM, whose UNet is trained on CLAP *audio* embeddings and given text embeddings only at
  sampling, so an audio embedding is an input of the kind the design was built on.
- AudioLDM 2 conditions through a GPT-2 "language of audio" over CLAP *and* FLAN-T5 sequences;
  its precomputed inputs are T5 hidden states (``prompt_embeds``) and GPT-2 outputs
  (``generated_prompt_embeds``), and a CLAP vector has no entry of its own.

MusicLDM sits under ``diffusers.pipelines.deprecated`` in diffusers 0.42 (importable, no
further fixes); loading it logs a deprecation notice, which is dropped here while the pipeline
loads (a filter on that one diffusers logger, removed afterwards). The pipeline's own text path
does not run on transformers 5 (``ClapModel.get_text_features`` now returns a model output), so
both the condition and the unconditional embedding are always passed in precomputed.

Classifier-free guidance mixes the conditional noise prediction with the unconditional one,
whose condition is what the pipeline itself uses: the CLAP text embedding of the empty prompt
``""``. Every embedding is generated on its own from the same seed (a CPU ``torch.Generator``,
so the initial noise is the same on every device), so a clip depends only on its embedding,
the seed and the settings, not on its place in the batch; the caller's random state is untouched.

The space matters, not only the size: MusicLDM has its own CLAP (trained on music), a different
512-d space from ``laion/larger_clap_music`` (the ``clap_audio`` default). Decode into the
pipeline's space: embed the stimuli with :meth:`EmbeddingToMusic.embed_audio`, or save its CLAP
with :meth:`EmbeddingToMusic.export_clap` and give that folder as the ``model`` of the
``clap_audio`` / ``clap_text`` feature spaces. Only the dimension can be checked here.

Weights come from the Hugging Face hub on first use (``ucsd-reach/musicldm``: 16-kHz mono audio
through a HiFi-GAN vocoder, 10-ms mel frames, trained on 10.24-s clips), at ``revision``;
offline, give a folder where a ``MusicLDMPipeline`` was saved with ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from encoding.errors import ConfigError, DataError, ModelLoadError
from encoding.features.neural import OFFLINE_HINT, pooled

DEFAULT_MODEL = "ucsd-reach/musicldm"
DTYPES = ("float32", "float16", "bfloat16")
_DEPRECATION_LOGGER = "diffusers.pipelines.pipeline_utils"  # where DeprecatedPipelineMixin logs its notice


class _DropDeprecationNotice(logging.Filter):
    """Drops diffusers' "MusicLDMPipeline has been deprecated" record; lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("MusicLDMPipeline" in message and "deprecated" in message)


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """Silence the deprecation notice of MusicLDM for the block only (the filter is removed after)."""
    logger = logging.getLogger(_DEPRECATION_LOGGER)
    notice = _DropDeprecationNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


@lru_cache(maxsize=1)
def load_pipeline(model_id: str, revision: str = "main", dtype: str = "float32"):
    """A ``MusicLDMPipeline`` on the CPU (hub id at ``revision``, or folder), cached per process.

    Parameters
    ----------
    model_id : str
        Hub id or folder of a pipeline saved with ``save_pretrained``.
    revision : str
        Branch, tag or commit of a hub id.
    dtype : {"float32", "float16", "bfloat16"}
        Torch dtype of the weights.

    Raises
    ------
    ModelLoadError
        Naming the model and how to make it available.
    """
    import torch

    try:
        from diffusers import MusicLDMPipeline
        from diffusers.utils import is_accelerate_available
    except ImportError as err:
        raise ModelLoadError(f"Cannot load the MusicLDM pipeline {model_id!r}: diffusers is missing or too old "
                             f"({err}); install brain2music's models extra (bash install.sh).") from None
    try:
        with _quiet_deprecation():
            pipe = MusicLDMPipeline.from_pretrained(model_id, revision=revision, dtype=getattr(torch, dtype),
                                                    low_cpu_mem_usage=is_accelerate_available())
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        first = first.replace(" Please check out the root cause in the stacktrace above.", "").rstrip(".")  # none shown
        raise ModelLoadError(f"Cannot load the MusicLDM pipeline {model_id!r} (revision {revision!r}): {first}. A local "
                             "folder must hold a MusicLDMPipeline saved with save_pretrained (model_index.json and its "
                             f"component folders). {OFFLINE_HINT}") from None
    _check_pipeline(pipe, model_id)
    pipe.set_progress_bar_config(disable=True)  # generate() shows one bar over items instead
    return pipe


def _check_pipeline(pipe, model_id: str) -> None:
    """The CLAP projection feeds the UNet's class embedding: their sizes must agree."""
    clap_dim = clap_dimension(pipe)
    unet_dim = pipe.unet.config.get("projection_class_embeddings_input_dim")
    if unet_dim is not None and int(unet_dim) != clap_dim:
        raise ModelLoadError(f"The MusicLDM pipeline {model_id!r} is inconsistent: its CLAP projects to {clap_dim} "
                             f"dimensions but its UNet's class embedding takes {unet_dim}; re-save a matching pipeline.")


def clap_dimension(pipe) -> int:
    """Size of the pipeline's CLAP projection (the joint audio-text embedding; 512 for MusicLDM)."""
    return int(pipe.text_encoder.config.projection_dim)


class EmbeddingToMusic:
    """Generate music conditioned on CLAP audio embeddings with MusicLDM.

    Parameters
    ----------
    model : str
        Hub id or folder of a ``MusicLDMPipeline``.
    revision : str
        Branch, tag or commit of a hub id.
    num_inference_steps : int
        Denoising steps (the pipeline's default 200; fewer are faster and rougher).
    guidance_scale : float
        Classifier-free guidance weight (1: no guidance, only the conditional prediction; MusicLDM's
        default 2).
    device : str
        Torch device to run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``). Off the CPU the instance holds
        its own copy of the pipeline.
    dtype : {"float32", "float16", "bfloat16"}
        Weights' dtype (half precision on a GPU only).
    """

    def __init__(self, model: str = DEFAULT_MODEL, revision: str = "main", num_inference_steps: int = 200,
                 guidance_scale: float = 2.0, device: str = "cpu", dtype: str = "float32"):
        _require(isinstance(model, str) and model != "", "model", model, "a hub id or a folder")
        _require(_is_int(num_inference_steps) and num_inference_steps >= 1, "num_inference_steps",
                 num_inference_steps, "a positive integer")
        _require(_is_number(guidance_scale) and math.isfinite(guidance_scale) and guidance_scale >= 1,
                 "guidance_scale", guidance_scale, "a number >= 1 (1 turns guidance off)")
        _require(dtype in DTYPES, "dtype", dtype, f"one of {DTYPES}")
        self.model = model
        self.revision = revision
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.device = device
        self.dtype = dtype
        self._pipe = None
        self._uncond = None

    def get_params(self) -> dict:
        """Constructor parameters, for provenance."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def preflight(self) -> None:
        """Load the pipeline now.

        Raises
        ------
        ModelLoadError
            Naming the model id and how to make it available.
        """
        self._pipeline()

    @property
    def sample_rate(self) -> int:
        """Sampling rate of the generated audio, Hz (16,000 for MusicLDM; loads the pipeline)."""
        return int(self._pipeline().vocoder.config.sampling_rate)

    @property
    def embedding_dim(self) -> int:
        """Size of the CLAP embeddings the pipeline is conditioned on (loads the pipeline)."""
        return clap_dimension(self._pipeline())

    def generate(self, embeddings, duration: float = 10.0, seed: int = 0, progress: bool = True
                 ) -> tuple[list[np.ndarray], int]:
        """Generate one clip per CLAP embedding.

        Parameters
        ----------
        embeddings : array-like, shape (n, embedding_dim)
            CLAP audio (or text) embeddings in the pipeline's CLAP space, e.g. decoded from fMRI. Each
            row is L2-normalised first, as CLAP's projections are; only its direction counts.
        duration : float
            Length of every clip, seconds (MusicLDM was trained on 10.24-s clips).
        seed : int
            Seed of the initial noise, the same for every embedding.
        progress : bool
            Show a progress bar over embeddings.

        Returns
        -------
        waveforms : list of ndarray, each shape (round(duration * sample_rate),)
            Mono float32 audio, full scale 1.
        sample_rate : int
            Hz.

        Raises
        ------
        DataError
            Embeddings not 2-D, not finite, all zero in a row, or of another size than the CLAP projection.
        """
        import torch
        from tqdm.auto import tqdm

        _require(_is_number(duration) and math.isfinite(duration) and duration > 0, "duration", duration,
                 "a positive number of seconds")
        _require(_is_int(seed) and seed >= 0, "seed", seed, "a non-negative integer")
        pipe = self._pipeline()
        rows = unit_rows(embeddings, clap_dimension(pipe), self.model)
        rate = int(pipe.vocoder.config.sampling_rate)
        n_samples = max(1, round(duration * rate))
        length_s = _requested_length(pipe, n_samples)
        uncond = self._unconditional()
        waves = []
        for row in tqdm(rows, desc="generating music from embeddings", disable=not progress, leave=False):
            audio = pipe(prompt_embeds=torch.from_numpy(row[None]), negative_prompt_embeds=uncond,
                         audio_length_in_s=length_s, num_inference_steps=self.num_inference_steps,
                         guidance_scale=self.guidance_scale, generator=torch.Generator("cpu").manual_seed(int(seed)),
                         output_type="np").audios[0]
            waves.append(_fit_length(np.asarray(audio, dtype=np.float32), n_samples))
        return waves, rate

    def embed_audio(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embed clips with the pipeline's own CLAP, the space :meth:`generate` is conditioned in.

        A clip is resampled to CLAP's rate; one no longer than CLAP's maximum input (10 s for
        MusicLDM) is embedded whole (repeat-padded by the feature extractor); a longer one is cut
        into evenly spaced, overlapping windows of that maximum length covering it from start to
        end, whose embeddings are averaged (unit vectors, then renormalised). No random crop, and
        a fused CLAP is told that no window is longer than its maximum, so the result is
        deterministic.

        Parameters
        ----------
        waveforms : sequence of ndarray, each shape (n_samples,)
            Mono audio, full scale 1 (e.g. the output of :meth:`generate`).
        sample_rate : int
            Of the waveforms, Hz.

        Returns
        -------
        ndarray, shape (n, embedding_dim), float32
            Unit-norm CLAP audio embeddings, one per clip.
        """
        import librosa
        import torch

        _require(_is_int(sample_rate) and sample_rate > 0, "sample_rate", sample_rate, "a positive integer (Hz)")
        pipe = self._pipeline()
        clap = _audio_clap(pipe, self.model)
        extractor = pipe.feature_extractor
        rate = int(extractor.sampling_rate)
        window = round(extractor.max_length_s * rate)
        fused = bool(getattr(clap.config.audio_config, "enable_fusion", False))
        out = []
        for wave in _check_waveforms(waveforms):
            if sample_rate != rate:
                wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=rate)
            feats, is_longer = _clap_inputs(extractor, _windows(wave, window), fused)
            with torch.no_grad():
                feats = feats.to(device=clap.device, dtype=clap.dtype)
                is_longer = None if is_longer is None else is_longer.to(clap.device)
                emb = pooled(clap.get_audio_features(input_features=feats, is_longer=is_longer)).float().mean(dim=0)
            out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.stack(out).astype(np.float32)

    def export_clap(self, folder: str | Path) -> Path:
        """Save the pipeline's CLAP (model, feature extractor, tokenizer) as one transformers folder.

        That folder, given as ``model`` to the ``clap_audio`` and ``clap_text`` feature spaces,
        embeds stimuli and captions in the space :meth:`generate` is conditioned in.

        Parameters
        ----------
        folder : path
            Created if missing.

        Returns
        -------
        Path
            ``folder``.
        """
        from transformers import ClapProcessor

        pipe = self._pipeline()
        clap = _audio_clap(pipe, self.model)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clap.save_pretrained(folder)
        ClapProcessor(feature_extractor=pipe.feature_extractor, tokenizer=pipe.tokenizer).save_pretrained(folder)
        return folder

    def _pipeline(self):
        """The pipeline: the shared per-process copy on the CPU, an own copy on another device."""
        if self._pipe is None:
            if str(self.device) == "cpu":
                self._pipe = load_pipeline(self.model, self.revision, self.dtype)
            else:
                self._pipe = load_pipeline.__wrapped__(self.model, self.revision, self.dtype).to(self.device)
        return self._pipe

    def _unconditional(self):
        """The unconditional condition of guidance, shape (1, embedding_dim): CLAP's embedding of ``""``."""
        if self._uncond is None:
            self._uncond = empty_prompt_embedding(self._pipeline())
        return self._uncond


def empty_prompt_embedding(pipe):
    """CLAP's text embedding of the empty prompt, the pipeline's own unconditional condition.

    Parameters
    ----------
    pipe : MusicLDMPipeline

    Returns
    -------
    torch.Tensor, shape (1, embedding_dim)
        Unit norm, on the pipeline's text encoder's device and dtype.
    """
    import torch

    encoder = pipe.text_encoder
    inputs = pipe.tokenizer([""], return_tensors="pt").to(encoder.device)
    with torch.no_grad():
        if hasattr(encoder, "get_text_features"):  # ClapModel
            emb = pooled(encoder.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
        else:  # ClapTextModelWithProjection: unnormalised text_embeds
            emb = encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).text_embeds
    return torch.nn.functional.normalize(emb, dim=-1)


def unit_rows(embeddings, dim: int, model: str = DEFAULT_MODEL) -> np.ndarray:
    """Embeddings as float32 rows of unit L2 norm, checked against the CLAP projection size.

    Parameters
    ----------
    embeddings : array-like, shape (n, dim)
    dim : int
        The CLAP projection size.
    model : str
        Named in messages.

    Returns
    -------
    ndarray, shape (n, dim), float32
    """
    values = np.asarray(embeddings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        hint = " (one embedding: pass embedding[None])" if values.ndim == 1 else ""
        raise DataError(f"EmbeddingToMusic: embeddings must be a non-empty (n, {dim}) array, got shape "
                        f"{values.shape}{hint}.")
    if values.shape[1] != dim:
        raise DataError(f"EmbeddingToMusic: the embeddings have {values.shape[1]} dimensions but the CLAP of "
                        f"{model!r} projects to {dim}; decode into this pipeline's CLAP space (embed the stimuli "
                        "with EmbeddingToMusic.embed_audio, or use export_clap's folder as the clap_audio model).")
    if not np.isfinite(values).all():
        raise DataError("EmbeddingToMusic: the embeddings contain NaN or inf; check the decoder's output.")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError(f"EmbeddingToMusic: embedding rows {np.flatnonzero(norms[:, 0] == 0)[:5].tolist()} are all "
                        "zero and have no direction to condition on.")
    return (values / norms).astype(np.float32)


def _requested_length(pipe, n_samples: int) -> float:
    """The ``audio_length_in_s`` that makes the pipeline return at least ``n_samples`` samples.

    The pipeline makes ``int(length / frame)`` mel frames (rounded up to a multiple of the VAE's
    downsampling) and cuts the audio to ``int(length * rate)`` samples; asking for a whole
    multiple of frames plus half a frame keeps float rounding from losing a frame or a sample.
    """
    hop = int(np.prod(pipe.vocoder.config.upsample_rates))  # samples per mel frame
    scale = int(pipe.vae_scale_factor)
    frames = math.ceil(math.ceil(n_samples / hop) / scale) * scale
    return (frames + 0.5) * hop / float(pipe.vocoder.config.sampling_rate)


def _fit_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Cut to ``n_samples`` (a vocoder a few samples short is padded with zeros at the end)."""
    wave = wave.reshape(-1)[:n_samples]
    return np.pad(wave, (0, n_samples - len(wave))) if len(wave) < n_samples else wave


def _windows(wave: np.ndarray, window: int) -> list[np.ndarray]:
    """The clip itself if it fits ``window`` samples, else the fewest evenly spaced windows covering it."""
    if len(wave) <= window:
        return [wave]
    starts = np.linspace(0, len(wave) - window, math.ceil(len(wave) / window)).round().astype(int)
    return [wave[s : s + window] for s in starts]


def _clap_inputs(extractor, windows: list[np.ndarray], fused: bool):
    """CLAP's mel features of windows no longer than its maximum input, without random choices.

    Returns
    -------
    input_features : torch.Tensor, shape (n_windows, 1 or 4, n_frames, n_mels)
    is_longer : torch.Tensor of bool, shape (n_windows, 1), or None for an unfused CLAP
        All False: no window exceeds the maximum (the extractor would mark one at random).
    """
    import torch

    rate = extractor.sampling_rate
    if not fused:
        return extractor(windows, sampling_rate=rate, return_tensors="pt", truncation="rand_trunc")["input_features"], None
    inputs = extractor(windows, sampling_rate=rate, return_tensors="pt", truncation="fusion")
    return inputs["input_features"], torch.zeros_like(torch.as_tensor(inputs["is_longer"]), dtype=torch.bool)


def _audio_clap(pipe, model: str):
    """The pipeline's CLAP with its audio branch (a ``ClapModel``)."""
    if not hasattr(pipe.text_encoder, "get_audio_features"):
        raise ModelLoadError(f"The MusicLDM pipeline {model!r} keeps only CLAP's text branch "
                             f"({type(pipe.text_encoder).__name__}), so it cannot embed audio; use a pipeline saved "
                             "with the full ClapModel as its text_encoder (as ucsd-reach/musicldm is).")
    return pipe.text_encoder


def _check_waveforms(waveforms) -> list[np.ndarray]:
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        raise DataError("EmbeddingToMusic.embed_audio: waveforms must be a list of clips, got one 1-D array; "
                        "wrap it: [waveform].")
    clips = [np.asarray(w, dtype=np.float32) for w in waveforms]
    if not clips:
        raise DataError("EmbeddingToMusic.embed_audio: no waveforms given.")
    for i, clip in enumerate(clips):
        if clip.ndim != 1 or clip.size == 0 or not np.isfinite(clip).all():
            raise DataError(f"EmbeddingToMusic.embed_audio: waveform {i} must be a non-empty, finite mono (n_samples,) "
                            f"array, got shape {clip.shape}.")
    return clips


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require(ok: bool, name: str, value, what: str) -> None:
    if not ok:
        raise ConfigError(f"EmbeddingToMusic: {name} must be {what}, got {value!r}.")
