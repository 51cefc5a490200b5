"""Stimulus audio: excerpts, fades, RMS, cache, and errors for missing or unreadable files."""

import numpy as np
import pandas as pd
import pytest
from scipy.io import wavfile

from encoding.datasets.audio import TARGET_RMS, fade, load_excerpts


def write_tone(path, rate=8000, seconds=10.0, freq=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    wavfile.write(path, rate, (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16))


def test_excerpts_are_cut_faded_normalised_and_cached(tmp_path):
    write_tone(tmp_path / "gtzan" / "jazz" / "jazz.00001.wav")
    table = pd.DataFrame({"start": [2.0], "end": [7.0]}, index=["jazz.00001"])
    cache = tmp_path / "cache"
    audio = load_excerpts(table, tmp_path / "gtzan", 4000, cache=cache, progress=False)
    wave = audio["jazz.00001"]
    assert wave.shape == (20000,)  # 5 s at 4 kHz
    np.testing.assert_allclose(np.sqrt(np.mean(wave**2)), TARGET_RMS, rtol=1e-3)
    assert abs(wave[0]) < 1e-4 and abs(wave[-1]) < 1e-4  # faded in and out
    assert np.abs(wave[9000:11000]).max() > 0.05
    cached = list((cache / "audio").glob("*.npy"))
    assert len(cached) == 1 and not list(cache.rglob("*.tmp*"))
    np.testing.assert_array_equal(load_excerpts(table, tmp_path / "gtzan", 4000, cache=cache, progress=False)["jazz.00001"], wave)


def test_missing_files_are_all_listed_before_reading(tmp_path):
    write_tone(tmp_path / "gtzan" / "jazz" / "jazz.00001.wav")
    table = pd.DataFrame({"start": [0.0] * 3, "end": [1.0] * 3}, index=["jazz.00001", "rock.00002", "pop.00003"])
    with pytest.raises(FileNotFoundError, match=r"2 of 3 audio files are missing under .*gtzan.*rock.00002.wav"):
        load_excerpts(table, tmp_path / "gtzan", 4000, progress=False)


def test_unreadable_or_short_files_are_named(tmp_path):
    bad = tmp_path / "gtzan" / "rock" / "rock.00002.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not audio at all")
    table = pd.DataFrame({"start": [0.0], "end": [1.0]}, index=["rock.00002"])
    with pytest.raises(ValueError, match=r"rock.00002.wav: cannot read audio"):
        load_excerpts(table, tmp_path / "gtzan", 4000, cache=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing half-written
    write_tone(bad, seconds=3.0)
    table = pd.DataFrame({"start": [1.0], "end": [16.0]}, index=["rock.00002"])
    with pytest.raises(ValueError, match=r"rock.00002.wav: shorter .* than its excerpt 1.0-16.0 s"):
        load_excerpts(table, tmp_path / "gtzan", 4000, progress=False)


def test_fade_ramps():
    out = fade(np.ones(100, np.float32), 10, 2.0)
    assert out[0] == 0 and out[-1] == 0 and np.all(out[20:80] == 1) and np.all(np.diff(out[:20]) >= 0)
