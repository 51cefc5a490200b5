"""Feature spaces from pretrained audio networks loaded with transformers (any hub id or local folder).

Each clip is cut into ``window``-s windows every ``hop`` s (Brain2Music used 1.5-, 5- and 10-s
windows on a 1.5-s hop); a window's hidden states are averaged over time into one vector.

- ``encodec``: EnCodec's continuous encoder latents, before quantisation (the open analogue of
  SoundStream); default ``facebook/encodec_32khz``, MusicGen's codec.
- ``audio_ssl``: a hidden layer of a self-supervised speech/music model (wav2vec 2.0, HuBERT,
  MERT-style ``AutoModel``s); default ``facebook/hubert-base-ls960``;
- ``clap_audio``: CLAP's audio embedding (``laion/larger_clap_music``), the music-text joint
  space (``clap_text`` embeds captions in the same space);
- ``musicgen``: hidden states of MusicGen's decoder listening to the clip (``facebook/musicgen-small``).

Weights come from the Hugging Face hub on first use (cached by transformers), at ``revision`` (a
branch, tag or commit: part of the feature cache's key); offline, point ``model`` at a folder saved
with ``save_pretrained``.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import lru_cache
from typing import ClassVar

import numpy as np

from encoding.errors import ModelLoadError
from encoding.features.base import AudioExtractor, FeatureFrames, register, require_positive

OFFLINE_HINT = ("Hub ids download on first use and need the network then; offline, give the folder of a model "
                "saved with save_pretrained, or set HF_HUB_OFFLINE=1 once the model is in the hub cache.")


@lru_cache(maxsize=4)
def load_pretrained(model_id: str, revision: str = "main"):
    """(model in eval mode, feature extractor) for a hub id (at ``revision``) or folder, cached per process."""
    from transformers import AutoFeatureExtractor, AutoModel

    try:
        model = AutoModel.from_pretrained(model_id, revision=revision).eval()
        extractor = AutoFeatureExtractor.from_pretrained(model_id, revision=revision)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Cannot load the model {model_id!r} (revision {revision!r}): "
                             f"{str(err).splitlines()[0]} {OFFLINE_HINT}") from None
    return model, extractor


class WindowedNetwork(AudioExtractor):
    """Base of network spaces: windows in, one time-averaged hidden-state vector per window out."""

    def __init__(self, model: str, window: float = 1.5, hop: float = 1.5, batch_size: int = 8, revision: str = "main"):
        require_positive(self.name, window=window, hop=hop, batch_size=batch_size)
        self.model = model
        self.revision = revision
        self.window = window
        self.hop = hop
        self.batch_size = batch_size

    input_options: ClassVar[dict] = {}  # extra arguments of the feature extractor's call

    def preflight(self) -> None:
        load_pretrained(self.model, self.revision)

    @abstractmethod
    def embed(self, net, inputs) -> object:
        """One vector per window of a batch: a torch tensor of shape (n, dims)."""

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa
        import torch

        net, extractor = load_pretrained(self.model, self.revision)
        rate = extractor.sampling_rate
        if sample_rate != rate:
            waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=rate)
        length = int(round(self.window * rate))
        if len(waveform) < length:
            raise ValueError(f"{self.name}: clip of {len(waveform) / rate:.2f} s is shorter than the window "
                             f"({self.window} s); lower `window`.")
        starts = np.arange(0, len(waveform) - length + 1, int(round(self.hop * rate)))
        windows = np.stack([waveform[s : s + length] for s in starts]).astype(np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(windows), self.batch_size):
                inputs = extractor(list(windows[i : i + self.batch_size]), sampling_rate=rate, return_tensors="pt",
                                   **self.input_options)
                out.append(self.embed(net, inputs).float().numpy())
        t0 = starts / rate
        return FeatureFrames(np.concatenate(out), t0, t0 + self.window)


@register
class EncodecLatents(WindowedNetwork):
    """EnCodec encoder latents (continuous, before the residual vector quantiser).

    Parameters
    ----------
    model : str
        Hub id or folder of an ``EncodecModel``.
    window, hop : float
        Seconds.
    batch_size : int
    """

    name = "encodec"

    def __init__(self, model: str = "facebook/encodec_32khz", window: float = 1.5, hop: float = 1.5,
                 batch_size: int = 8, revision: str = "main"):
        super().__init__(model, window, hop, batch_size, revision)

    def embed(self, net, inputs):
        return net.encoder(inputs["input_values"]).mean(dim=2)


@register
class AudioSSL(WindowedNetwork):
    """A hidden layer of a self-supervised audio transformer (wav2vec 2.0, HuBERT, MERT-style).

    Parameters
    ----------
    model : str
        Hub id or folder of an audio ``AutoModel`` with ``output_hidden_states``.
    layer : int
        Hidden layer (0: the convolutional features' projection; -1: the last).
    window, hop : float
        Seconds.
    batch_size : int
    """

    name = "audio_ssl"

    def __init__(self, model: str = "facebook/hubert-base-ls960", layer: int = 6, window: float = 1.5,
                 hop: float = 1.5, batch_size: int = 8, revision: str = "main"):
        super().__init__(model, window, hop, batch_size, revision)
        self.layer = layer

    def embed(self, net, inputs):
        states = net(inputs["input_values"], output_hidden_states=True).hidden_states
        if not -len(states) <= self.layer < len(states):
            raise ValueError(f"audio_ssl: layer {self.layer} out of range; {self.model} has {len(states)} hidden states.")
        return states[self.layer].mean(dim=1)


@register
class ClapAudio(WindowedNetwork):
    """CLAP's audio embedding (the music-text joint space, the open analogue of MuLan).

    The default ``laion/larger_clap_music`` takes up to 10 s (Brain2Music's MuLan window); shorter
    windows are repeat-padded by CLAP's feature extractor. Windows must not exceed the model's
    maximum length, where CLAP would crop at random.

    Parameters
    ----------
    model : str
        Hub id or folder of a transformers ``ClapModel``.
    window, hop : float
        Seconds.
    batch_size : int
    """

    name = "clap_audio"
    input_options: ClassVar[dict] = {"truncation": "rand_trunc"}

    def __init__(self, model: str = "laion/larger_clap_music", window: float = 10.0, hop: float = 1.5,
                 batch_size: int = 4, revision: str = "main"):
        super().__init__(model, window, hop, batch_size, revision)

    def embed(self, net, inputs):
        _, extractor = load_pretrained(self.model, self.revision)
        if self.window > extractor.max_length_s + 1e-6:
            raise ValueError(f"clap_audio: window {self.window} s exceeds the model's {extractor.max_length_s} s; "
                             "CLAP would crop at random.")
        return pooled(net.get_audio_features(input_features=inputs["input_features"],
                                             is_longer=inputs.get("is_longer")))


def pooled(output):
    """A projected embedding: transformers 5 returns a model output whose ``pooler_output`` holds it."""
    return output if hasattr(output, "shape") else output.pooler_output


@lru_cache(maxsize=2)
def load_musicgen(model_id: str, revision: str = "main"):
    """A ``MusicgenForConditionalGeneration`` in eval mode (hub id at ``revision``, or folder), cached per process."""
    from transformers import MusicgenForConditionalGeneration

    try:
        return MusicgenForConditionalGeneration.from_pretrained(model_id, revision=revision).eval()
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Cannot load the MusicGen model {model_id!r} (revision {revision!r}): "
                             f"{str(err).splitlines()[0]} {OFFLINE_HINT}") from None


@register
class MusicgenStates(AudioExtractor):
    """Hidden states of MusicGen's decoder listening to the clip (teacher forcing).

    The clip is encoded by MusicGen's own EnCodec; its codes, in MusicGen's delay pattern (codebook
    k shifted by k steps after a start token), are fed to the decoder without a text prompt (the
    unconditional branch: zero text states). The state at the step where all codebooks of codec
    frame t have been read stands for frame t; states are averaged within ``hop``-s frames.

    Parameters
    ----------
    model : str
        Hub id or folder of a ``MusicgenForConditionalGeneration`` (``facebook/musicgen-small``:
        24 layers, 1024-d, 32-kHz EnCodec with 4 codebooks at 50 Hz).
    layer : int
        Decoder hidden state (0: embeddings; -1: the last layer).
    hop : float
        Output frame length, seconds.
    """

    name = "musicgen"

    def __init__(self, model: str = "facebook/musicgen-small", layer: int = 12, hop: float = 0.5,
                 revision: str = "main"):
        self.model = model
        self.revision = revision
        self.layer = layer
        self.hop = hop

    def preflight(self) -> None:
        load_musicgen(self.model, self.revision)

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa
        import torch

        net = load_musicgen(self.model, self.revision)
        rate = net.config.audio_encoder.sampling_rate
        if sample_rate != rate:
            waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=rate)
        with torch.inference_mode():
            codes = net.audio_encoder.encode(torch.from_numpy(waveform.astype(np.float32))[None, None]).audio_codes[0, 0]
            n_codebooks, n_frames = codes.shape
            if n_codebooks != net.decoder.config.num_codebooks:
                raise ValueError(f"musicgen: the codec gives {n_codebooks} codebooks but the decoder reads "
                                 f"{net.decoder.config.num_codebooks}.")
            ids = delay_pattern(codes, net.generation_config.decoder_start_token_id, net.generation_config.pad_token_id)
            text = torch.zeros((1, 1, net.config.text_encoder.hidden_size))
            out = net(encoder_outputs=(text,), attention_mask=torch.zeros((1, 1), dtype=torch.long),
                      decoder_input_ids=ids, output_hidden_states=True)
            states = out.decoder_hidden_states
            if not -len(states) <= self.layer < len(states):
                raise ValueError(f"musicgen: layer {self.layer} out of range; {self.model} has {len(states)} states.")
            per_frame = states[self.layer][0, n_codebooks : n_codebooks + n_frames].float().numpy()
        frame_rate = n_frames / (len(waveform) / rate)
        per_hop = max(1, int(round(self.hop * frame_rate)))
        n_out = n_frames // per_hop
        values = per_frame[: n_out * per_hop].reshape(n_out, per_hop, -1).mean(axis=1)
        starts = np.arange(n_out) * per_hop / frame_rate
        return FeatureFrames(values, starts, starts + per_hop / frame_rate)


def delay_pattern(codes, start_token: int, pad_token: int):
    """MusicGen's decoder input for codes (n_codebooks, n_frames): a start token, then codebook k
    delayed by k steps, padded; shape (n_codebooks, n_frames + n_codebooks)."""
    import torch

    n_codebooks, n_frames = codes.shape
    ids = torch.full((n_codebooks, n_frames + n_codebooks), pad_token, dtype=torch.long)
    ids[:, 0] = start_token
    for k in range(n_codebooks):
        ids[k, 1 + k : 1 + k + n_frames] = codes[k]
    return ids
