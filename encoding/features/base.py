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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from encoding.data import ClipSet


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

    Subclasses set ``name`` and implement :meth:`extract`. Parameters are plain keyword
    arguments of ``__init__``, stored as attributes of the same name, so that
    :meth:`get_params` can record them in configs and provenance.
    """

    name: ClassVar[str]

    def get_params(self) -> dict:
        """Constructor parameters, as recorded in configs and provenance."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def extract(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        """Features of every clip, keyed by clip id."""


class AudioExtractor(FeatureExtractor):
    """A feature space computed from each clip's waveform on its own."""

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

    def extract(self, clips: ClipSet, progress: bool = True) -> dict[str, FeatureFrames]:
        if not clips.audio and clips.ids:
            raise ValueError(
                f"Feature space {self.name!r} needs the clips' audio, and none was loaded: set the data's "
                "audio folder (e.g. data.bids.audio_root), or use text spaces only."
            )
        return {
            cid: self.extract_clip(np.asarray(clips.audio[cid], dtype=np.float32), clips.sample_rate)
            for cid in tqdm(clips.ids, desc=f"features: {self.name}", disable=not progress, leave=False)
        }


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


def get_extractor(name: str, **params) -> FeatureExtractor:
    """Build the registered extractor ``name`` with ``params``.

    Raises
    ------
    KeyError
        If no feature space has that name; the message lists the available ones.
    """
    if name not in _REGISTRY:
        raise KeyError(f"Unknown feature space {name!r}. Available: {', '.join(available_spaces())}.")
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise TypeError(f"Bad parameters for feature space {name!r}: {err}") from None
