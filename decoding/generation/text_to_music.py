"""Music from text with MusicGen (transformers), the generator of a Brain2Music-style decoding.

Brain2Music decoded a MuLan embedding from fMRI and generated music from it; with an open text
generator the decoded embedding is turned into text first (captions retrieved for a decoded
text/CLAP embedding), and those captions are the prompts here.

Weights come from the Hugging Face hub on first use (``facebook/musicgen-small``: 300 M
parameters, 32-kHz mono EnCodec, 50 codec frames per second), at ``revision``; offline, point
``model`` at a folder where ``MusicgenForConditionalGeneration`` and its ``MusicgenProcessor``
were saved with ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from encoding.errors import ConfigError, ModelLoadError
from encoding.features.neural import OFFLINE_HINT, load_musicgen

DEFAULT_MODEL = "facebook/musicgen-small"


@lru_cache(maxsize=2)
def load_processor(model_id: str, revision: str = "main"):
    """MusicGen's processor (T5 tokenizer and EnCodec feature extractor), cached per process."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"Cannot load the processor (tokenizer) of the MusicGen model {model_id!r} (revision "
                             f"{revision!r}): {str(err).splitlines()[0].rstrip('.')}. A local folder needs the processor saved "
                             f"beside the model (processor.save_pretrained(folder)). {OFFLINE_HINT}") from None
    if not hasattr(processor, "tokenizer"):
        raise ModelLoadError(f"{model_id!r} (revision {revision!r}) has no tokenizer, so it cannot read text prompts: "
                             "give a MusicGen model saved with its MusicgenProcessor.")
    return processor


class TextToMusic:
    """Generate music from text prompts with MusicGen.

    Each prompt is generated on its own from ``seed`` (sampling, classifier-free guidance), so a
    prompt's audio is reproducible and does not depend on the other prompts or on its place in
    the list. The random state of the caller is left as it was.

    Parameters
    ----------
    model : str
        Hub id or folder of a ``MusicgenForConditionalGeneration`` saved with its processor.
    revision : str
        Branch, tag or commit of a hub id.
    guidance_scale : float
        Classifier-free guidance weight (1: no guidance; MusicGen's default 3).
    top_k : int
        Sample from the ``top_k`` most likely codes at each step (0: from all).
    temperature : float
        Softmax temperature of the sampling.
    device : str
        Torch device to run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``). Off the CPU the instance holds
        its own copy of the model.
    """

    def __init__(self, model: str = DEFAULT_MODEL, revision: str = "main", guidance_scale: float = 3.0,
                 top_k: int = 250, temperature: float = 1.0, device: str = "cpu"):
        _require(isinstance(model, str) and model != "", "model", model, "a hub id or a folder")
        _require(_is_number(guidance_scale) and guidance_scale >= 1, "guidance_scale", guidance_scale,
                 "a number >= 1 (1 turns guidance off)")
        _require(isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 0, "top_k", top_k,
                 "an integer >= 0 (0: no top-k filtering)")
        _require(_is_number(temperature) and temperature > 0, "temperature", temperature, "a positive number")
        self.model = model
        self.revision = revision
        self.guidance_scale = float(guidance_scale)
        self.top_k = top_k
        self.temperature = float(temperature)
        self.device = device
        self._net = None

    def get_params(self) -> dict:
        """Constructor parameters, for provenance."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def preflight(self) -> None:
        """Load the model and its processor now.

        Raises
        ------
        ModelLoadError
            Naming the model id and how to make it available.
        """
        self._network()
        load_processor(self.model, self.revision)

    @property
    def sample_rate(self) -> int:
        """Sampling rate of the generated audio, Hz (loads the model)."""
        return int(self._network().config.audio_encoder.sampling_rate)

    def generate(self, prompts: list[str], duration: float = 10.0, seed: int = 0, progress: bool = True
                 ) -> tuple[list[np.ndarray], int]:
        """Generate one clip per prompt.

        Parameters
        ----------
        prompts : list of str
            Text descriptions, e.g. captions retrieved for a decoded embedding.
        duration : float
            Length of every clip, seconds (MusicGen was trained on 30-s clips).
        seed : int
            Seed of the sampling, the same for every prompt.
        progress : bool
            Show a progress bar over prompts.

        Returns
        -------
        waveforms : list of ndarray, each shape (round(duration * sample_rate),)
            Mono float32 audio, full scale 1 (stereo models are averaged over channels).
        sample_rate : int
            Hz (32,000 for ``facebook/musicgen-small``).
        """
        from tqdm.auto import tqdm

        prompts = _check_prompts(prompts)
        _require(_is_number(duration) and math.isfinite(duration) and duration > 0, "duration", duration,
                 "a positive number of seconds")
        _require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0, "seed", seed,
                 "a non-negative integer")
        net = self._network()
        processor = load_processor(self.model, self.revision)
        rate = int(net.config.audio_encoder.sampling_rate)
        n_samples = round(duration * rate)
        steps = self._decoder_steps(net, duration)
        waves = [self._generate_one(net, processor, text, steps, int(seed))[:n_samples]
                 for text in tqdm(prompts, desc="generating music", disable=not progress, leave=False)]
        return waves, rate

    def _network(self):
        """The model: the shared per-process copy on the CPU, an own copy on another device."""
        if self._net is None:
            if str(self.device) == "cpu":
                self._net = load_musicgen(self.model, self.revision)
            else:
                self._net = load_musicgen.__wrapped__(self.model, self.revision).to(self.device)
        return self._net

    @staticmethod
    def _decoder_steps(net, duration: float) -> int:
        """Decoder steps for ``duration`` s: the delay pattern spends ``num_codebooks - 1`` extra steps."""
        frames = math.ceil(duration * net.config.audio_encoder.frame_rate)
        return frames + net.decoder.config.num_codebooks - 1

    def _generate_one(self, net, processor, text: str, steps: int, seed: int) -> np.ndarray:
        """One prompt's mono float32 waveform (at least ``steps - num_codebooks + 1`` codec frames)."""
        import torch

        inputs = processor(text=[text], padding=True, return_tensors="pt").to(net.device)
        with _seeded(seed, net.device), torch.inference_mode():
            audio = net.generate(**inputs, do_sample=True, guidance_scale=self.guidance_scale, top_k=self.top_k,
                                 temperature=self.temperature, max_new_tokens=steps)
        return audio[0].float().mean(dim=0).cpu().numpy().astype(np.float32)


@contextlib.contextmanager
def _seeded(seed: int, device) -> Iterator[None]:
    """Seed torch's generator of ``device`` for the block; the caller's random state is restored after."""
    import torch

    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        yield


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise ConfigError(f"prompts must be a list of strings, got one string ({prompts[:40]!r}); wrap it: [prompt].")
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ConfigError(f"prompts must be a non-empty list of non-empty strings, got {prompts[:3]!r}.")
    return prompts


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require(ok: bool, name: str, value, what: str) -> None:
    if not ok:
        raise ConfigError(f"TextToMusic: {name} must be {what}, got {value!r}.")
