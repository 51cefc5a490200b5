"""Acoustic feature spaces computed from the waveform (librosa)."""

from __future__ import annotations

import librosa
import numpy as np

from encoding.features.base import AudioExtractor, FeatureFrames, register


@register
class LogMel(AudioExtractor):
    """Log-mel spectrogram: the energy in ``n_mels`` mel bands, in dB re 1 (full scale).

    Parameters
    ----------
    n_mels : int
        Number of mel bands.
    hop : float
        Frame step, in seconds.
    fmin, fmax : float
        Frequency range of the mel bank, in Hz (``fmax=None``: half the sampling rate).
    """

    name = "logmel"

    def __init__(self, n_mels: int = 32, hop: float = 0.025, fmin: float = 30.0, fmax: float | None = None):
        self.n_mels = n_mels
        self.hop = hop
        self.fmin = fmin
        self.fmax = fmax

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        hop_length = max(1, round(self.hop * sample_rate))
        power = librosa.feature.melspectrogram(
            y=waveform, sr=sample_rate, n_fft=_n_fft(sample_rate), hop_length=hop_length,
            n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax, center=True,
        )
        db = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
        hop = hop_length / sample_rate
        starts = np.arange(db.shape[1]) * hop - hop / 2  # librosa centres frame k on k * hop
        return FeatureFrames(db.T, starts, starts + hop)


@register
class SpectroTemporalModulation(AudioExtractor):
    """Spectro-temporal modulation energy (the modulation transfer function space).

    In the spirit of Chi et al. (2005) and Nakai et al. (2021): a log-frequency spectrogram
    (``bins_per_octave`` bands from ``fmin``) is cut into ``window``-s patches every ``hop`` s; the
    2-D Fourier power of each patch is pooled into octave bins of temporal rate (Hz, upward and
    downward sweeps together) and spectral scale (cycles per octave). Features are log10 energies,
    ``len(rates) - 1`` x ``len(scales) - 1`` per frame, rate-major.

    Parameters
    ----------
    window, hop : float
        Patch length and step, in seconds.
    rates : sequence of float
        Edges of the temporal-modulation bins, in Hz.
    scales : sequence of float
        Edges of the spectral-modulation bins, in cycles per octave.
    fmin : float
        Lowest band centre, in Hz.
    bins_per_octave : int
        Spectral sampling; it sets the highest resolvable scale (``bins_per_octave / 2``).
    """

    name = "modulation"

    def __init__(
        self,
        window: float = 2.0,
        hop: float = 0.5,
        rates: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        scales: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0),
        fmin: float = 62.5,
        bins_per_octave: int = 8,
    ):
        self.window = window
        self.hop = hop
        self.rates = tuple(rates)
        self.scales = tuple(scales)
        self.fmin = fmin
        self.bins_per_octave = bins_per_octave

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        frame_rate = 100.0  # spectrogram frames per second: resolves rates up to 50 Hz
        hop_length = round(sample_rate / frame_rate)
        spec = np.abs(librosa.stft(waveform, n_fft=_n_fft(sample_rate), hop_length=hop_length)) ** 2
        bank = log_frequency_bank(sample_rate, _n_fft(sample_rate), self.fmin, self.bins_per_octave)
        power_bands = bank @ spec
        logspec = np.log10(np.maximum(power_bands, max(power_bands.max(), 1e-10) * 1e-8))  # 80 dB range

        n_win = round(self.window * frame_rate)
        n_hop = round(self.hop * frame_rate)
        if logspec.shape[1] < n_win:
            raise ValueError(
                f"Clip of {len(waveform) / sample_rate:.2f} s is shorter than the modulation window "
                f"({self.window} s); lower `window`."
            )
        starts = np.arange(0, logspec.shape[1] - n_win + 1, n_hop)
        patches = np.stack([logspec[:, s : s + n_win] for s in starts])  # (n_patches, n_bands, n_win)
        patches = patches - patches.mean(axis=2, keepdims=True)  # no energy at rate 0
        patches = patches * np.hanning(n_win)
        power = np.abs(np.fft.fft2(patches)) ** 2
        rate = np.abs(np.fft.fftfreq(n_win, d=1 / frame_rate))
        scale = np.abs(np.fft.fftfreq(logspec.shape[0], d=1 / self.bins_per_octave))
        rate_bin = np.digitize(rate, self.rates) - 1
        scale_bin = np.digitize(scale, self.scales) - 1
        n_r, n_s = len(self.rates) - 1, len(self.scales) - 1
        energy = np.zeros((len(starts), n_r, n_s))
        for i in range(n_r):
            for j in range(n_s):
                cell = np.ix_(scale_bin == j, rate_bin == i)
                energy[:, i, j] = power[:, cell[0], cell[1]].mean(axis=(1, 2))
        values = np.log10(energy.reshape(len(starts), -1) + 1e-10)
        t0 = starts / frame_rate
        return FeatureFrames(values, t0, t0 + self.window)


def log_frequency_bank(sample_rate: int, n_fft: int, fmin: float, bins_per_octave: int) -> np.ndarray:
    """Triangular filters with log-spaced centres, from ``fmin`` up to the Nyquist frequency.

    Returns
    -------
    ndarray, shape (n_bands, n_fft // 2 + 1)
        Each row sums to one.
    """
    n_octaves = np.log2(sample_rate / 2 / fmin)
    centres = fmin * 2.0 ** (np.arange(int(n_octaves * bins_per_octave) + 1) / bins_per_octave)
    freqs = np.fft.rfftfreq(n_fft, d=1 / sample_rate)
    ratio = 2.0 ** (1 / bins_per_octave)
    bank = np.stack([
        np.clip(np.minimum((freqs - c / ratio) / (c - c / ratio), (c * ratio - freqs) / (c * ratio - c)), 0, None)
        for c in centres[1:-1]
    ])
    keep = bank.sum(axis=1) > 0
    bank = bank[keep]
    return bank / bank.sum(axis=1, keepdims=True)


def _n_fft(sample_rate: int) -> int:
    """FFT size giving about 64 ms windows (a power of two)."""
    return int(2 ** np.ceil(np.log2(0.064 * sample_rate)))
