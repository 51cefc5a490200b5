"""musicnn (Pons & Serra 2019), a pretrained music tagger, re-implemented in torch.

The trained TensorFlow checkpoints ship inside the ``musicnn==0.1.0`` wheel (``pip install --no-deps
musicnn==0.1.0``; ``MTT_musicnn``: MagnaTagATune, 50 tags; ``MSD_musicnn``: Million Song Dataset,
50 tags). They are read with :mod:`encoding.features.tfcheckpoint` (no TensorFlow) into the network
below, written from the published architecture:

- input: a 96-band log-mel patch (16 kHz, 512-point FFT, hop 256: 187 frames = 3 s),
  ``log10(10000 x + 1)`` computed in float32 (the original's float16 overflows on loud input);
- front-end: batch norm, then timbral filters (7 frames x 38 and x 67 mel bands, 204 each) and
  temporal filters (128, 64, 32 frames x 1 band, 51 each), each max-pooled over frequency;
- mid-end: three 7-frame convolutions of 64 filters with residual connections (dense connection:
  the front-end and all three outputs are concatenated, 753 channels);
- back-end: max and mean over time, batch norm, a 200-unit dense layer (the penultimate layer),
  then 50 sigmoid tag outputs.

TensorFlow's batch norm uses epsilon 1e-3 and "same" padding puts the extra zero after the input;
both are kept. Loading fails loudly on any missing or mis-shaped weight (the original silently kept
random weights when its restore failed).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from encoding.errors import ModelLoadError
from encoding.features.base import AudioExtractor, FeatureFrames, register, require_positive

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s, the training input length
BN_EPS = 1e-3
MODELS = ("MTT_musicnn", "MSD_musicnn")
LAYERS = ("timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate", "taggram")
MTT_TAGS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
            "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
            "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
            "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
            "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral")
MSD_TAGS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
            "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
            "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
            "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
            "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
            "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")


def checkpoint_prefix(model: str) -> str:
    """Prefix of the checkpoint shipped in the musicnn wheel (its files are ``<folder>/.index`` ...)."""
    if model not in MODELS:
        raise ValueError(f"Unknown musicnn model {model!r}; available: {MODELS}.")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or spec.origin is None:
        raise ModelLoadError("musicnn weights need the musicnn wheel: pip install --no-deps musicnn==0.1.0 "
                          "(install.sh does it).")
    return str(Path(spec.origin).parent / model) + "/"


def log_mel_patches(waveform: np.ndarray, sample_rate: int, hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """musicnn's input: 3-s log-mel patches every ``hop_seconds``.

    Returns
    -------
    patches : ndarray, shape (n_patches, 187, 96), float32
    starts : ndarray, shape (n_patches,)
        Patch start times, s.
    """
    import librosa

    if sample_rate != SAMPLE_RATE:
        waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    mel = librosa.feature.melspectrogram(y=waveform.astype(np.float32), sr=SAMPLE_RATE, hop_length=HOP,
                                         n_fft=N_FFT, n_mels=N_MELS).T.astype(np.float32)
    logmel = np.log10(10000.0 * mel + 1.0)
    if len(logmel) < PATCH_FRAMES:  # short clips: repeat-pad, as musicnn was trained
        logmel = np.tile(logmel, (int(np.ceil(PATCH_FRAMES / max(len(logmel), 1))), 1))
    step = max(1, int(round(hop_seconds * SAMPLE_RATE / HOP)))
    first = np.arange(0, len(logmel) - PATCH_FRAMES + 1, step)
    patches = np.stack([logmel[s : s + PATCH_FRAMES] for s in first])
    return patches, first * HOP / SAMPLE_RATE


def build_network(weights: dict[str, np.ndarray]):
    """The musicnn network in torch, loaded with a checkpoint's variables (eval mode)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Musicnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn_input = nn.BatchNorm2d(1, eps=BN_EPS)
            self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, 38)), nn.Conv2d(1, 204, (7, 67))])
            self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
            self.bn_front = nn.ModuleList([nn.BatchNorm2d(c, eps=BN_EPS) for c in (204, 204, 51, 51, 51)])
            self.mid = nn.ModuleList([nn.Conv1d(561, 64, 7), nn.Conv1d(64, 64, 7), nn.Conv1d(64, 64, 7)])
            self.bn_mid = nn.ModuleList([nn.BatchNorm1d(64, eps=BN_EPS) for _ in range(3)])
            self.bn_pool = nn.BatchNorm1d(1506, eps=BN_EPS)
            self.dense = nn.Linear(1506, 200)
            self.bn_dense = nn.BatchNorm1d(200, eps=BN_EPS)
            self.out = nn.Linear(200, 50)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            """x: (batch, 187, 96) log-mel patches -> every exposed layer."""
            x = self.bn_input(x[:, None])
            front = []
            for conv, bn in zip(self.timbral, self.bn_front[:2]):
                front.append(bn(F.relu(conv(F.pad(x, (0, 0, 3, 3))))).amax(dim=3))
            for conv, bn in zip(self.temporal, self.bn_front[2:]):
                k = conv.kernel_size[0]
                same = F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))  # TensorFlow's "same"
                front.append(bn(F.relu(conv(same))).amax(dim=3))
            frontend = torch.cat(front, dim=1)  # (batch, 561, time)
            cnn1 = self.bn_mid[0](F.relu(self.mid[0](F.pad(frontend, (3, 3)))))
            cnn2 = self.bn_mid[1](F.relu(self.mid[1](F.pad(cnn1, (3, 3))))) + cnn1
            cnn3 = self.bn_mid[2](F.relu(self.mid[2](F.pad(cnn2, (3, 3))))) + cnn2
            midend = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)  # (batch, 753, time)
            max_pool, mean_pool = midend.amax(dim=2), midend.mean(dim=2)
            pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF order: max, mean per channel
            penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
            return {
                "timbral": torch.cat(front[:2], dim=1), "temporal": torch.cat(front[2:], dim=1),
                "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3, "mean_pool": mean_pool, "max_pool": max_pool,
                "penultimate": penultimate, "taggram": torch.sigmoid(self.out(penultimate)),
            }

    net = Musicnn()
    state = {}

    def conv2d(name, module):
        state[f"{module}.weight"] = weights[f"{name}/kernel"].transpose(3, 2, 0, 1)
        state[f"{module}.bias"] = weights[f"{name}/bias"]

    def conv1d(name, module):
        state[f"{module}.weight"] = weights[f"{name}/kernel"][:, :, 0, :].transpose(2, 1, 0)
        state[f"{module}.bias"] = weights[f"{name}/bias"]

    def batchnorm(name, module):
        for tf_name, torch_name in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                    ("moving_variance", "running_var")):
            state[f"{module}.{torch_name}"] = weights[f"{name}/{tf_name}"]

    try:
        batchnorm("batch_normalization", "bn_input")
        for i, module in enumerate(["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]):
            conv2d("conv2d" + (f"_{i}" if i else ""), module)
            batchnorm(f"batch_normalization_{i + 1}", f"bn_front.{i}")
        for i in range(3):
            conv1d(f"conv2d_{i + 5}", f"mid.{i}")
            batchnorm(f"batch_normalization_{i + 6}", f"bn_mid.{i}")
        batchnorm("batch_normalization_9", "bn_pool")
        batchnorm("batch_normalization_10", "bn_dense")
        for name, module in (("dense", "dense"), ("dense_1", "out")):
            state[f"{module}.weight"] = weights[f"{name}/kernel"].T
            state[f"{module}.bias"] = weights[f"{name}/bias"]
    except KeyError as err:
        raise ValueError(f"The checkpoint lacks the musicnn variable {err}; is it a musicnn checkpoint?") from None
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    wrong = {k: (tuple(tensors[k].shape), tuple(s)) for k, s in expected.items() if tuple(tensors[k].shape) != tuple(s)}
    if wrong:
        raise ValueError(f"Checkpoint shapes do not match the musicnn architecture: {wrong}.")
    net.load_state_dict(tensors, strict=False)
    missing = set(expected) - set(tensors)
    if missing:
        raise ValueError(f"Checkpoint leaves musicnn weights unset: {sorted(missing)}.")
    return net.eval()


@lru_cache(maxsize=2)
def load_musicnn(model: str = "MTT_musicnn"):
    """The pretrained network (cached per process)."""
    from encoding.features.tfcheckpoint import read_checkpoint

    return build_network(read_checkpoint(checkpoint_prefix(model)))


@register
class Musicnn(AudioExtractor):
    """Layers of the pretrained musicnn tagger as feature spaces.

    One vector per 3-s patch, every ``hop`` s: ``penultimate`` (200), ``taggram`` (50 tag
    probabilities), ``mean_pool`` / ``max_pool`` (753); the frame-level layers ``timbral`` (408),
    ``temporal`` (153), ``cnn1``-``cnn3`` (64) are averaged over the patch.

    Parameters
    ----------
    model : {"MTT_musicnn", "MSD_musicnn"}
    layer : str
        One of :data:`LAYERS`.
    hop : float
        Patch step, in seconds (1.5 s, the Brain2Music hop, by default).
    batch_size : int
        Patches per forward pass.
    """

    name = "musicnn"

    def __init__(self, model: str = "MTT_musicnn", layer: str = "penultimate", hop: float = 1.5, batch_size: int = 32):
        if layer not in LAYERS:
            raise ValueError(f"Unknown musicnn layer {layer!r}; available: {LAYERS}.")
        if model not in MODELS:
            raise ValueError(f"Unknown musicnn model {model!r}; available: {MODELS}.")
        require_positive(self.name, hop=hop, batch_size=batch_size)
        self.model = model
        self.layer = layer
        self.hop = hop
        self.batch_size = batch_size

    def preflight(self) -> None:
        load_musicnn(self.model)

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        patches, starts = log_mel_patches(waveform, sample_rate, self.hop)
        values = self.layers(patches)[self.layer]
        return FeatureFrames(values, starts, starts + PATCH_FRAMES * HOP / SAMPLE_RATE)

    def layers(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer for a batch of patches (n, 187, 96): (n, dims) arrays, frame-level layers averaged."""
        import torch

        net = load_musicnn(self.model)
        out: dict[str, list] = {}
        with torch.inference_mode():
            for i in range(0, len(patches), self.batch_size):
                for name, value in net(torch.from_numpy(patches[i : i + self.batch_size])).items():
                    out.setdefault(name, []).append((value.mean(dim=2) if value.ndim == 3 else value).numpy())
        return {name: np.concatenate(v) for name, v in out.items()}
