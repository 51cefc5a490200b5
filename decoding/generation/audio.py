"""WAV files of generated audio: written atomically, read back as float32 (soundfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoding.errors import ConfigError, DataError, MissingInputError
from encoding.io import atomic_path

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a waveform to a WAV file atomically.

    Integer PCM cannot hold samples beyond full scale: a waveform whose peak exceeds 1 is scaled
    down as a whole to peak 1 (never clipped); quieter waveforms are written as they are. ``FLOAT``
    files keep every value.

    Parameters
    ----------
    path : path
        Output file (``.wav``); its folder is created.
    waveform : ndarray, shape (n_samples,) or (n_samples, n_channels)
        Audio, full scale 1.
    sample_rate : int
        In Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
        Sample format (16-bit PCM: quantisation step 2**-15).

    Returns
    -------
    Path
        ``path``.
    """
    import soundfile

    if subtype not in SUBTYPES:
        raise ConfigError(f"WAV subtype {subtype!r} is not supported; use one of {SUBTYPES}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}.")
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim not in (1, 2) or wave.size == 0:
        raise DataError(f"A waveform must be a non-empty (n_samples,) or (n_samples, n_channels) array, got shape "
                        f"{wave.shape}; writing {path}.")
    if not np.isfinite(wave).all():
        raise DataError(f"The waveform for {path} contains NaN or inf; check the generator's output.")
    peak = float(np.abs(wave).max())
    if subtype != "FLOAT" and peak > 1.0:
        wave = wave / peak
    with atomic_path(path) as tmp:
        soundfile.write(tmp, wave, int(sample_rate), subtype=subtype, format="WAV")
    return Path(path)


def read_wav(path: str | Path, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read a sound file as float32.

    Parameters
    ----------
    path : path
    mono : bool
        Average the channels into one.

    Returns
    -------
    waveform : ndarray, shape (n_samples,), or (n_samples, n_channels) if not ``mono``
        float32, full scale 1.
    sample_rate : int
        In Hz.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"Audio file {path} does not exist; check the path.")
    try:
        wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"Cannot read the audio file {path}: {err}. Give a WAV (or FLAC/OGG) file.") from None
    return (wave.mean(axis=1) if mono else wave), int(rate)
