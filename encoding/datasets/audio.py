"""Stimulus audio: excerpts cut from source files, faded, resampled, RMS-normalised and cached."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encoding.errors import DataError, MissingInputError
from encoding.io import atomic_path

TARGET_RMS = 0.05  # ds003720 normalised every clip's RMS; this level leaves headroom below full scale


def gtzan_path(root: Path, clip_id: str) -> Path:
    """GTZAN's layout: ``root/<genre>/<genre>.<track>.wav`` (genres_original), or flat ``root/<clip>.wav``."""
    genre = clip_id.split(".")[0]
    nested = root / genre / f"{clip_id}.wav"
    return nested if nested.is_file() else root / f"{clip_id}.wav"


def fade(wave: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of ``seconds`` each."""
    n = min(int(round(seconds * sample_rate)), len(wave) // 2)
    if n == 0:
        return wave
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    out = wave.copy()
    out[:n] *= ramp
    out[len(out) - n :] *= ramp[::-1]
    return out


def load_excerpts(
    table: pd.DataFrame,
    root: str | Path,
    sample_rate: int,
    locate: Callable[[Path, str], Path] = gtzan_path,
    fade_seconds: float = 2.0,
    cache: str | Path | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Load every clip of ``table`` as a mono waveform.

    Parameters
    ----------
    table : DataFrame
        Indexed by clip id; optional columns ``start`` and ``end`` (s in the source file; absent:
        the whole file).
    root : path
        Folder of the source audio.
    sample_rate : int
        Output rate, Hz (librosa resampling).
    locate : callable
        ``locate(root, clip_id)`` gives a clip's source file (default: GTZAN's layout).
    fade_seconds : float
        Raised-cosine fades at both ends (2 s in ds003720); 0 for none.
    cache : path or None
        Folder of cached waveforms, keyed by file, size, modification time and options; each
        written atomically, so an interrupted run leaves no partial file.
    progress : bool

    Raises
    ------
    FileNotFoundError
        Listing the missing files (all of them are checked before anything is read).
    ValueError
        Naming a file that cannot be decoded or is shorter than its excerpt.
    """
    import librosa

    root = Path(root)
    paths = {cid: locate(root, cid) for cid in table.index}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingInputError(
            f"{len(missing)} of {len(paths)} audio files are missing under {root}, e.g. {missing[:5]}. "
            "Point audio_root at the folder of the stimuli (GTZAN: genres_original/)."
        )
    out = {}
    for cid in tqdm(table.index, desc="audio", disable=not progress, leave=False):
        start = float(table.at[cid, "start"]) if "start" in table else 0.0
        end = float(table.at[cid, "end"]) if "end" in table else None
        path = paths[cid]
        key = _cache_key(path, start, end, sample_rate, fade_seconds)
        cached = Path(cache) / "audio" / f"{key}.npy" if cache else None
        if cached is not None and cached.is_file():
            out[cid] = np.load(cached)
            continue
        try:
            wave, _ = librosa.load(path, sr=sample_rate, mono=True, offset=start,
                                   duration=None if end is None else end - start)
        except Exception as err:  # decoders raise many types; name the file whatever they raise
            raise DataError(f"{path}: cannot read audio ({type(err).__name__}: {err}).") from err
        if end is not None and len(wave) < 0.99 * (end - start) * sample_rate:
            raise DataError(f"{path}: shorter ({len(wave) / sample_rate:.2f} s from {start} s) than its excerpt "
                             f"{start}-{end} s.")
        wave = fade(wave.astype(np.float32), sample_rate, fade_seconds)
        rms = np.sqrt(np.mean(wave**2))
        wave = (wave * (TARGET_RMS / rms) if rms > 0 else wave).astype(np.float32)
        if cached is not None:
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, wave)
        out[cid] = wave
    return out


def _cache_key(path: Path, start: float, end: float | None, sample_rate: int, fade_seconds: float) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{start}|{end}|{sample_rate}|{fade_seconds}|{TARGET_RMS}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]
