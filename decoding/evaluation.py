"""How much of the original music a reconstruction keeps, judged by a trained music tagger.

Brain2Music compared reconstructions with the music the subject heard through an AudioSet
classifier's class probabilities; here the classifier is musicnn's MagnaTagATune tagger
(:mod:`encoding.features.musicnn`: 50 tags, trained weights shipped with the ``musicnn`` wheel,
offline). Each clip's tag probabilities are the taggram averaged over its 3-s patches; agreement
between an original and its reconstruction is the Pearson correlation of the two probability
vectors and the overlap of their ``top_k`` tags.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from encoding.errors import ConfigError, DataError


def tag_names(model: str = "MTT_musicnn") -> tuple[str, ...]:
    """The tagger's tag names, in the order of :func:`tag_probabilities`' columns."""
    from encoding.features.musicnn import MODELS, MSD_TAGS, MTT_TAGS

    if model not in MODELS:
        raise ConfigError(f"Unknown musicnn model {model!r}; available: {MODELS}.")
    return MTT_TAGS if model == "MTT_musicnn" else MSD_TAGS


def tag_probabilities(waveforms: Sequence[np.ndarray] | np.ndarray, sample_rate: int, model: str = "MTT_musicnn",
                      hop: float = 1.5) -> np.ndarray:
    """Mean tag probabilities of each clip.

    Parameters
    ----------
    waveforms : sequence of ndarray, each shape (n_samples,), or ndarray (n_clips, n_samples)
        Mono audio, full scale 1 (resampled to 16 kHz; clips under 3 s are repeat-padded).
    sample_rate : int
        Hz.
    model : {"MTT_musicnn", "MSD_musicnn"}
    hop : float
        Step between the tagger's 3-s patches, s.

    Returns
    -------
    ndarray, shape (n_clips, 50)
        Probabilities in [0, 1], columns in the order of :func:`tag_names`.
    """
    from encoding.features import get_extractor

    tag_names(model)
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        raise DataError("tag_probabilities takes several clips: wrap a single waveform in a list.")
    clips = [np.ascontiguousarray(w, dtype=np.float32) for w in waveforms]
    if not clips:
        raise DataError("tag_probabilities: no waveforms given.")
    for i, wave in enumerate(clips):
        if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
            raise DataError(f"Waveform {i} must be a non-empty, finite mono array (n_samples,), got shape {wave.shape}.")
    tagger = get_extractor("musicnn", model=model, layer="taggram", hop=hop)
    return np.stack([tagger.extract_clip(wave, sample_rate).values.mean(axis=0) for wave in clips])


def tag_agreement(original: np.ndarray, reconstructed: np.ndarray, top_k: int = 5) -> dict[str, np.ndarray]:
    """Per-clip agreement of two sets of tag probabilities.

    Parameters
    ----------
    original, reconstructed : ndarray, shape (n_clips, n_tags)
        Tag probabilities of the clips heard and of their reconstructions, row for row.
    top_k : int
        How many of the most probable tags to compare.

    Returns
    -------
    dict
        ``"pearson"``: (n_clips,) correlation of the probability vectors (NaN where one is
        constant); ``"top_k_overlap"``: (n_clips,) share of the original's ``top_k`` tags among the
        reconstruction's ``top_k``, from 0 to 1.
    """
    a, b = _pair(original, reconstructed)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= a.shape[1]:
        raise ConfigError(f"top_k must be an integer from 1 to the number of tags ({a.shape[1]}), got {top_k!r}.")
    return {"pearson": rowwise_pearson(a, b), "top_k_overlap": top_k_overlap(a, b, int(top_k))}


def top_tags(probabilities: np.ndarray, k: int = 5, model: str = "MTT_musicnn") -> list[list[str]]:
    """Names of each clip's ``k`` most probable tags, most probable first."""
    names = tag_names(model)
    probs = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    if probs.shape[1] != len(names):
        raise DataError(f"{model} has {len(names)} tags, but the probabilities have {probs.shape[1]} columns.")
    return [[names[j] for j in row] for row in _top(probs, k)]


def rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b``; shape (n_rows,), NaN for a constant row."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Share of each row's ``k`` largest entries of ``a`` that are among the ``k`` largest of ``b``."""
    top_a, top_b = _top(a, k), _top(b, k)
    return np.array([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)])


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values (ties: the lower index first)."""
    return np.argsort(-values, axis=1, kind="stable")[:, :k]


def _pair(original, reconstructed) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(reconstructed, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.size == 0:
        raise DataError(f"Original and reconstructed tag probabilities must be non-empty arrays of one shape "
                        f"(n_clips, n_tags), got {a.shape} and {b.shape}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("Tag probabilities contain NaN or inf.")
    return a, b
