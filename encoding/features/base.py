"""The feature-extractor interface and its registry.

An extractor turns each clip into a time series of feature frames. A frame covers an interval of
the clip (``starts`` to ``ends``, in seconds from the clip's start), so a per-clip embedding is
one frame spanning the whole clip and a spectrogram is many short frames. Alignment onto the TR
grid (:func:`encoding.design.align_to_trs`) only needs those intervals.

Add a feature space by subclassing :class:`AudioExtractor` (or :class:`FeatureExtractor` for
spaces that see the whole clip set, like captions) and decorating it with :func:`register`::

    @register
    class Loudness(AudioExtractor):
        name = "loudness"

        def extract_clip(self, waveform, sample_rate):
            ...
            return FeatureFrames(values, starts, ends)
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from encoding.data import ClipSet
from encoding.errors import ConfigError, DataError


@dataclass(frozen=True)
class FeatureFrames:
    """Features of one clip.

    Parameters
    ----------
    values : ndarray, shape (n_frames, n_dims)
        Feature values, float32.
    starts, ends : ndarray, shape (n_frames,)
        Interval covered by each frame, in seconds from the start of the clip.
    """

    values: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"Feature values must be 2-D (n_frames, n_dims), got shape {values.shape}.")
        if not (len(self.starts) == len(self.ends) == len(values)):
            raise ValueError(
                f"Got {len(values)} frames but {len(self.starts)} starts and {len(self.ends)} ends."
            )
        if not np.isfinite(values).all():
            raise ValueError("Feature values contain NaN or inf.")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "starts", np.asarray(self.starts, dtype=np.float64))
        object.__setattr__(self, "ends", np.asarray(self.ends, dtype=np.float64))

    @property
    def n_dims(self) -> int:
        """Number of feature dimensions."""
        return self.values.shape[1]


class FeatureExtractor(ABC):
    """Base class of feature spaces.

    Subclasses set ``name`` and implement :meth:`compute` (the whole clip set at once, for spaces
    that learn from it, like LSA) or derive from :class:`AudioExtractor`. Parameters are plain
    keyword arguments of ``__init__``, stored as attributes of the same name, so that
    :meth:`get_params` can record them in configs, provenance and cache keys. Bump
    ``code_revision`` when a change of the code changes the features (a parameter such as a hub
    ``revision`` is part of the key through :meth:`get_params`).
    """

    name: ClassVar[str]
    code_revision: ClassVar[str] = "1"

    def get_params(self) -> dict:
        """Constructor parameters, as recorded in configs and provenance."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def fingerprint(self) -> str:
        """What identifies this extractor's output for given input: name, code revision, parameters."""
        return f"{self.name}|code-{type(self).code_revision}|{sorted(self.get_params().items())!r}"

    def preflight(self) -> None:
        """Check, before any heavy work, that this extractor can run here (e.g. that its model loads).

        Raises
        ------
        UserError
            Saying what is missing and what to do.
        """

    @abstractmethod
    def compute(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        """Features of every clip, keyed by clip id (no cache)."""

    def extract(self, clips: ClipSet, progress: bool = True, cache: FeatureCache | None = None
                ) -> dict[str, FeatureFrames]:
        """Features of every clip, keyed by clip id, read from and written to ``cache`` when given.

        The whole set is one cache entry: a change to any clip recomputes it.
        """
        if cache is None:
            return self.compute(clips, progress)
        digest = hashlib.sha1(self.fingerprint().encode())
        for cid, text in zip(clips.ids, clips.captions):
            digest.update(f"{cid}|{text}|".encode())
            if cid in clips.audio:
                digest.update(np.ascontiguousarray(clips.audio[cid]).tobytes())
        key = digest.hexdigest()[:24]
        found = {cid: cache.load(self.name, f"{key}-{i}") for i, cid in enumerate(clips.ids)}
        if all(v is not None for v in found.values()):
            return found
        out = self.compute(clips, progress)
        for i, cid in enumerate(clips.ids):
            cache.save(self.name, f"{key}-{i}", out[cid])
        return out


class AudioExtractor(FeatureExtractor):
    """A feature space computed from each clip's waveform on its own (cached clip by clip)."""

    @abstractmethod
    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        """Features of one clip.

        Parameters
        ----------
        waveform : ndarray, shape (n_samples,)
            Mono audio, float32.
        sample_rate : int
            In Hz.
        """

    def compute(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        return self.extract(clips, progress)

    def extract(self, clips: ClipSet, progress: bool = True, cache: FeatureCache | None = None
                ) -> dict[str, FeatureFrames]:
        """Features of every clip; with a ``cache``, only clips not cached yet are computed, so an
        interrupted extraction resumes where it stopped."""
        if not clips.audio and clips.ids:
            raise DataError(
                f"Feature space {self.name!r} needs the clips' audio, and none was loaded: set the data's "
                "audio folder (e.g. data.bids.audio_root), or use text spaces only."
            )
        out = {}
        for cid in tqdm(clips.ids, desc=f"features: {self.name}", disable=not progress, leave=False):
            wave = np.ascontiguousarray(clips.audio[cid], dtype=np.float32)
            key = None
            if cache is not None:
                key = hashlib.sha1(f"{self.fingerprint()}|{clips.sample_rate}|".encode() + wave.tobytes()).hexdigest()[:24]
                out[cid] = cache.load(self.name, key)
                if out[cid] is not None:
                    continue
            out[cid] = self.extract_clip(wave, clips.sample_rate)
            if cache is not None:
                cache.save(self.name, key, out[cid])
        return out


class FeatureCache:
    """Feature frames on disk: ``folder/<space>/<key>.npz``, each written atomically.

    Keys come from the extractor's fingerprint and the clip's content (audio samples, caption),
    so a changed parameter, model revision or clip never reads stale features.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, space: str, key: str) -> Path:
        return self.folder / space / f"{key}.npz"

    def load(self, space: str, key: str) -> FeatureFrames | None:
        """Cached frames, or None."""
        path = self.path(space, key)
        if not path.is_file():
            return None
        with np.load(path) as f:
            return FeatureFrames(f["values"], f["starts"], f["ends"])

    def save(self, space: str, key: str, frames: FeatureFrames) -> None:
        from encoding.io import write_arrays

        write_arrays(self.path(space, key), values=frames.values, starts=frames.starts, ends=frames.ends)


_REGISTRY: dict[str, type[FeatureExtractor]] = {}


def register(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    """Class decorator: make an extractor available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"A feature space named {cls.name!r} is already registered.")
    _REGISTRY[cls.name] = cls
    return cls


def available_spaces() -> list[str]:
    """Names of the registered feature spaces."""
    return sorted(_REGISTRY)


def require_positive(space: str, **values) -> None:
    """Raise ValueError unless every value (a number, or a sequence of numbers) is positive."""
    for name, value in values.items():
        numbers = value if isinstance(value, (tuple, list)) else [value]
        if not numbers or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in numbers):
            raise ValueError(f"{space}: {name} must be positive, got {value!r}.")


def _extractor_class(name: str) -> type[FeatureExtractor]:
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown feature space {name!r}. Available: {', '.join(available_spaces())}.")
    return _REGISTRY[name]


def extractor_parameters(name: str) -> dict[str, object]:
    """Parameters of feature space ``name`` and their defaults."""
    signature = inspect.signature(_extractor_class(name).__init__)
    return {p.name: p.default for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_extractor_params(name: str, params: dict, key: str = "") -> None:
    """Raise :class:`ConfigError` if ``params`` are not parameters of ``name`` (a typo, a wrong type)."""
    key = key or f"features.params.{name}"
    allowed = extractor_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}: {name!r} has no parameter(s) {unknown}; its parameters: "
                          + ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) + ".")
    for param, value in params.items():
        default = allowed[param]
        if default is None or default is inspect.Parameter.empty:
            continue
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{key}.{param} must be of the type of its default {default!r} "
                              f"({type(default).__name__}), got {value!r} ({type(value).__name__}).")


def get_extractor(name: str, **params) -> FeatureExtractor:
    """Build the registered extractor ``name`` with ``params``.

    Raises
    ------
    ConfigError
        If no feature space has that name (the message lists the available ones), or a parameter
        is unknown or refused by the extractor.
    """
    cls = _extractor_class(name)
    check_extractor_params(name, params)
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"features.params.{name}: {err}") from None
