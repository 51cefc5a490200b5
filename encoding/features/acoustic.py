"""Acoustic feature spaces computed from the waveform (librosa)."""

from __future__ import annotations

import numpy as np

from encoding.features.base import AudioExtractor, FeatureFrames, register, require_positive


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
        require_positive(self.name, n_mels=n_mels, hop=hop)
        if fmin < 0 or (fmax is not None and not fmax > fmin):
            raise ValueError(f"{self.name}: need 0 <= fmin < fmax (Hz), got fmin {fmin}, fmax {fmax}.")
        self.n_mels = n_mels
        self.hop = hop
        self.fmin = fmin
        self.fmax = fmax

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

        hop_length = max(1, round(self.hop * sample_rate))
        power = librosa.feature.melspectrogram(
            y=waveform, sr=sample_rate, n_fft=_n_fft(sample_rate), hop_length=hop_length,
            n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax, center=True,
        )
        db = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
        return _centred_frames(db.T, hop_length / sample_rate)


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
        require_positive(self.name, window=window, hop=hop, rates=tuple(rates), scales=tuple(scales), fmin=fmin,
                         bins_per_octave=bins_per_octave)
        self.window = window
        self.hop = hop
        self.rates = tuple(rates)
        self.scales = tuple(scales)
        self.fmin = fmin
        self.bins_per_octave = bins_per_octave

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

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


@register
class MFCC(AudioExtractor):
    """Mel-frequency cepstral coefficients (timbre): ``n_mfcc`` coefficients per frame.

    Parameters
    ----------
    n_mfcc : int
    n_mels : int
        Mel bands the cepstrum is taken from.
    hop : float
        Frame step, in seconds.
    """

    name = "mfcc"

    def __init__(self, n_mfcc: int = 20, n_mels: int = 64, hop: float = 0.025):
        require_positive(self.name, n_mfcc=n_mfcc, n_mels=n_mels, hop=hop)
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.hop = hop

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

        hop_length = max(1, round(self.hop * sample_rate))
        values = librosa.feature.mfcc(y=waveform, sr=sample_rate, n_mfcc=self.n_mfcc, n_mels=self.n_mels,
                                      n_fft=_n_fft(sample_rate), hop_length=hop_length)
        return _centred_frames(values.T, hop_length / sample_rate)


@register
class Tonal(AudioExtractor):
    """Chroma (12 pitch classes, energy-normalised) and tonal centroids (6-d tonnetz, Harte et al. 2006).

    Parameters
    ----------
    hop : float
        Frame step, in seconds.
    """

    name = "tonal"

    def __init__(self, hop: float = 0.05):
        require_positive(self.name, hop=hop)
        self.hop = hop

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

        hop_length = max(1, round(self.hop * sample_rate))
        chroma = librosa.feature.chroma_stft(y=waveform, sr=sample_rate, n_fft=4 * _n_fft(sample_rate),
                                             hop_length=hop_length)
        tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sample_rate)
        return _centred_frames(np.vstack([chroma, tonnetz]).T, hop_length / sample_rate)


@register
class Rhythm(AudioExtractor):
    """Onset strength and tempo: mean onset strength and a tempogram pooled into log-spaced tempo bands.

    In ``window``-s windows every ``hop`` s: the mean onset-strength envelope (librosa, spectral
    flux) and its autocorrelation tempogram averaged within the tempo bands whose edges are
    ``tempo_edges`` (beats per minute).

    Parameters
    ----------
    window, hop : float
        Seconds.
    tempo_edges : sequence of float
        Edges of the tempo bands, bpm.
    """

    name = "rhythm"

    def __init__(self, window: float = 4.0, hop: float = 0.5,
                 tempo_edges: tuple[float, ...] = (40, 60, 80, 100, 120, 140, 170, 200, 240)):
        require_positive(self.name, window=window, hop=hop, tempo_edges=tuple(tempo_edges))
        if len(tempo_edges) < 2 or list(tempo_edges) != sorted(set(tempo_edges)):
            raise ValueError(f"{self.name}: tempo_edges must be increasing (bpm), got {tempo_edges!r}.")
        self.window = window
        self.hop = hop
        self.tempo_edges = tuple(tempo_edges)

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

        hop_length = max(1, round(0.01 * sample_rate))
        frame_rate = sample_rate / hop_length
        onset = librosa.onset.onset_strength(y=waveform, sr=sample_rate, hop_length=hop_length)
        win = round(self.window * frame_rate)
        if len(onset) < win:
            raise ValueError(f"Clip of {len(waveform) / sample_rate:.2f} s is shorter than the rhythm window "
                             f"({self.window} s); lower `window`.")
        tempogram = librosa.feature.tempogram(onset_envelope=onset, sr=sample_rate, hop_length=hop_length,
                                              win_length=win, center=False)
        bpm = librosa.tempo_frequencies(tempogram.shape[0], sr=sample_rate, hop_length=hop_length)
        bands = np.stack([tempogram[(bpm >= lo) & (bpm < hi)].mean(axis=0)
                          for lo, hi in zip(self.tempo_edges[:-1], self.tempo_edges[1:])], axis=1)
        starts = np.arange(0, tempogram.shape[1] - 1, max(1, round(self.hop * frame_rate)))
        strength = np.array([onset[s : s + win].mean() for s in starts])
        values = np.column_stack([strength, bands[starts]])
        t0 = starts / frame_rate
        return FeatureFrames(values, t0, t0 + self.window)


@register
class Loudness(AudioExtractor):
    """Loudness: A-weighted and unweighted RMS level, in dB re full scale.

    Parameters
    ----------
    hop : float
        Frame step, in seconds.
    """

    name = "loudness"

    def __init__(self, hop: float = 0.05):
        require_positive(self.name, hop=hop)
        self.hop = hop

    def extract_clip(self, waveform: np.ndarray, sample_rate: int) -> FeatureFrames:
        import librosa

        hop_length = max(1, round(self.hop * sample_rate))
        n_fft = _n_fft(sample_rate)
        power = np.abs(librosa.stft(waveform, n_fft=n_fft, hop_length=hop_length)) ** 2
        freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
        weights = 10 ** (librosa.A_weighting(np.maximum(freqs, 1.0), min_db=-120) / 10)
        window = librosa.filters.get_window("hann", n_fft)
        scale = 2.0 / (n_fft * np.sum(window**2))  # Parseval: the mean square of the windowed frame
        a_level = 10 * np.log10(np.maximum((weights[:, None] * power).sum(axis=0) * scale, 1e-10))
        level = 10 * np.log10(np.maximum(power.sum(axis=0) * scale, 1e-10))
        return _centred_frames(np.column_stack([a_level, level]), hop_length / sample_rate)


def _centred_frames(values: np.ndarray, hop: float) -> FeatureFrames:
    """Frames centred on k * hop (librosa's ``center=True``), each ``hop`` long."""
    starts = np.arange(len(values)) * hop - hop / 2
    return FeatureFrames(values, starts, starts + hop)
