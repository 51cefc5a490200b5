"""Simulated cortical responses on fsaverage5: planted feature-space territories and realistic noise.

The response of vertex v in run r is

    y_v(t) = sum_k sqrt(s_k(v)) * g_kv(t) + sqrt(1 - sum_k s_k(v)) * e_v(t)

where g_kv is feature space k's stimulus time course (features on the TR grid, z-scored per run,
convolved with the Glover HRF, projected on random weights, scaled to unit variance), e_v is unit
variance noise and s_k(v) the planted share of variance of space k. Shares fall off as a Gaussian
of the geodesic distance to the territory's landmarks (see :mod:`atlases.rois`) and are zero beyond
two widths, so most vertices carry no signal and vertices between two territories carry both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import lfilter

from atlases.rois import landmark_distance
from atlases.surface import smooth
from encoding.design import zscore
from encoding.errors import DataError, MissingInputError

N_VERTICES = 20484


@dataclass
class GroundTruth:
    """What the simulation planted.

    Attributes
    ----------
    band_names : list of str
        Planted feature spaces, in the order of ``signal_share``'s rows.
    signal_share : ndarray, shape (n_bands, n_vertices)
        Share of each vertex's response variance driven by each space (0 where none).
    weights : dict of str to ndarray, shape (n_dims, n_signal_vertices)
        Random weights of each space at the signal vertices (before variance scaling).
    signal_vertices : ndarray of int
        Vertices with any planted signal.
    noise : str
        ``"resting_state"`` or ``"synthetic"``.
    snr_peak : float
        Signal-to-noise variance ratio at a territory centre (single presentation).
    features : dict of str to (dict of clip id to FeatureFrames)
        The planted spaces' features, as extracted for the simulation (the pipeline reuses them).
    """

    band_names: list[str]
    signal_share: np.ndarray
    weights: dict[str, np.ndarray]
    signal_vertices: np.ndarray
    noise: str
    snr_peak: float
    features: dict = field(default_factory=dict)

    @property
    def dominant_band(self) -> np.ndarray:
        """Index of the largest planted share per vertex (-1 where there is no signal)."""
        return np.where(self.signal_share.sum(axis=0) > 0, self.signal_share.argmax(axis=0), -1)


def territory_shares(
    territories: Mapping[str, Sequence[str]], peak_share: float, width: float,
    shifts: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Planted share of variance per space and vertex.

    Parameters
    ----------
    territories : mapping of space name to landmark names
        Where each space drives cortex (landmarks of :data:`atlases.rois.AUDITORY_LANDMARKS`).
    peak_share : float
        Share at a landmark's centre, in (0, 1).
    width : float
        Gaussian width (sigma) of a territory, in mm of geodesic distance; zero beyond 2 widths.
    shifts : mapping of landmark name to ndarray, shape (2, 3), optional
        Displacement (mm, left and right hemisphere) of each landmark's centre: one subject's
        individual territories in a simulated study.

    Returns
    -------
    ndarray, shape (n_spaces, 20484)
        Shares; their sum over spaces never exceeds ``peak_share``.
    """
    if not 0 < peak_share < 1:
        raise DataError(f"peak_share must lie in (0, 1), got {peak_share}.")
    shares = []
    for landmarks in territories.values():
        dist = np.min([landmark_distance(name, (shifts or {}).get(name)) for name in landmarks], axis=0)
        profile = np.exp(-(dist**2) / (2 * width**2))
        shares.append(np.where(dist <= 2 * width, peak_share * profile, 0.0))
    shares = np.array(shares)
    total = shares.sum(axis=0)
    return shares * np.where(total > peak_share, peak_share / np.maximum(total, 1e-12), 1.0)


def planted_weights(
    train_features: np.ndarray, n_vertices: int, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """Random weights in the span of a space's leading principal axes.

    Brains respond to the main dimensions along which stimuli vary, and an encoding model can
    only learn weights that the training stimuli span: the weights of vertex v are
    ``V @ (c_v / sqrt(rank))`` with ``V`` the top ``n_components`` principal axes of the
    (z-scored) training features and ``c_v`` standard normal, so leading axes weigh more.

    Parameters
    ----------
    train_features : ndarray, shape (n_samples, n_dims)
        The space's features on the training TRs.
    n_vertices : int
        Vertices to draw weights for.
    n_components : int
        Principal axes spanned.

    Returns
    -------
    ndarray, shape (n_dims, n_vertices)
    """
    X = zscore(train_features).astype(np.float64)
    if not np.isfinite(X).all():
        raise DataError("Planted-space features contain NaN or inf.")
    # principal axes from the covariance's eigendecomposition (robust where LAPACK's SVD may not converge)
    eigval, eigvec = np.linalg.eigh(X.T @ X)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    k = int(min(n_components, (eigval > 1e-10 * eigval[0]).sum()))
    vt = eigvec.T
    coefs = rng.standard_normal((k, n_vertices)) / np.sqrt(np.arange(1, k + 1))[:, None]
    return (vt[:k].T @ coefs).astype(np.float32)


def glover_hrf(tr: float, duration: float = 32.0) -> np.ndarray:
    """The Glover (1999) haemodynamic response sampled every ``tr`` seconds, unit sum."""
    from nilearn.glm.first_level import glover_hrf as nilearn_glover

    hrf = nilearn_glover(t_r=tr, oversampling=1, time_length=duration)
    return hrf / hrf.sum()


def stimulus_signals(
    run_features: Sequence[np.ndarray], weights: np.ndarray, tr: float
) -> list[np.ndarray]:
    """HRF-convolved, weighted features of each run, scaled to unit variance over all runs.

    Parameters
    ----------
    run_features : sequence of ndarray, shape (n_trs_r, n_dims)
        One space's features on each run's TR grid.
    weights : ndarray, shape (n_dims, n_signal)
    tr : float

    Returns
    -------
    list of ndarray, shape (n_trs_r, n_signal)
    """
    hrf = glover_hrf(tr)
    out = []
    for X in run_features:
        X = zscore(X)
        conv = np.apply_along_axis(lambda c: np.convolve(c, hrf)[: len(c)], 0, X)
        out.append(conv @ weights)
    scale = np.concatenate(out).std(axis=0)
    return [s / np.where(scale > 0, scale, 1.0) for s in out]


class NoiseGenerator:
    """Unit-variance noise runs on fsaverage5 with realistic temporal and spatial structure.

    ``"resting_state"`` mixes real physiological fluctuations with thermal noise. The real part
    comes from the resting-state run that brainspace ships (LEMON subject sub-010188, 652 volumes
    on fsaverage5): each run is a multivariate phase-randomised surrogate of it (Prichard &
    Theiler 1994), which keeps every vertex's spectrum and the spatial correlations while drawing
    new time courses. That run was band-pass filtered (0.01-0.1 Hz; lag-1 autocorrelation 0.97),
    so a share ``1 - rest_share`` of the variance is the synthetic noise below, as thermal noise
    would add (lag-1 autocorrelation about 0.6 in the mix). Its constant vertices (the medial
    wall) get synthetic noise only.

    ``"synthetic"``: AR(1) time courses (``phi``) smoothed on the mesh (``smoothing`` iterations).

    Parameters
    ----------
    kind : {"auto", "resting_state", "synthetic"}
        ``"auto"``: resting state when brainspace is installed.
    rng : numpy Generator
    rest_share : float
        Share of the resting-state part in the ``"resting_state"`` mix.
    phi : float
        AR(1) coefficient of the synthetic noise (per TR).
    smoothing : int
        Mesh-smoothing iterations of the synthetic noise.
    """

    def __init__(self, kind: str, rng: np.random.Generator, rest_share: float = 0.5, phi: float = 0.3,
                 smoothing: int = 2):
        if kind not in ("auto", "resting_state", "synthetic"):
            raise DataError(f"noise must be 'auto', 'resting_state' or 'synthetic', got {kind!r}.")
        self.rng = rng
        self.rest_share = rest_share
        self.phi = phi
        self.smoothing = smoothing
        self._spectrum = None
        if kind in ("auto", "resting_state"):
            rest = load_resting_state(required=kind == "resting_state")
            if rest is not None:
                self._n_rest = len(rest)
                self._spectrum = sp_fft.rfft(rest, axis=0, workers=-1)
                self._dead = rest.std(axis=0) < 1e-8
        self.kind = "resting_state" if self._spectrum is not None else "synthetic"

    def run(self, n_trs: int) -> np.ndarray:
        """One run of noise, shape (n_trs, 20484), float32, z-scored per vertex."""
        noise = zscore(self._synthetic(n_trs))
        if self.kind == "resting_state":
            pieces, have = [], 0
            while have < n_trs:
                pieces.append(self._surrogate())
                have += len(pieces[-1])
            rest = zscore(np.concatenate(pieces)[:n_trs])
            live = ~self._dead
            noise[:, live] = np.sqrt(self.rest_share) * rest[:, live] + np.sqrt(1 - self.rest_share) * noise[:, live]
        return zscore(noise)

    def _surrogate(self) -> np.ndarray:
        phases = np.exp(2j * np.pi * self.rng.random(self._spectrum.shape[0])).astype(np.complex64)
        phases[0] = 1.0
        if self._n_rest % 2 == 0:
            phases[-1] = 1.0
        return sp_fft.irfft(self._spectrum * phases[:, None], n=self._n_rest, axis=0, workers=-1)

    def _synthetic(self, n_trs: int) -> np.ndarray:
        innovations = self.rng.standard_normal((n_trs, N_VERTICES)).astype(np.float32)
        return smooth(lfilter([1.0], [1.0, -self.phi], innovations, axis=0).T, self.smoothing).T


def load_resting_state(required: bool = False) -> np.ndarray | None:
    """brainspace's real resting-state run on fsaverage5, shape (652, 20484), float32, z-scored per vertex.

    Returns None when brainspace is not installed, unless ``required`` (then ImportError).
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("brainspace")
    if spec is None or spec.origin is None:
        if required:
            raise MissingInputError(
                "Resting-state noise needs brainspace's bundled data: pip install --no-deps brainspace "
                "(install.sh does it), or set the simulation's noise to 'synthetic'."
            )
        return None
    import nibabel as nib

    folder = Path(spec.origin).parent / "datasets" / "preprocessing"
    hemis = []
    for h in ("lh", "rh"):
        files = sorted(folder.glob(f"*.fsa5.{h}.mgz"))
        if not files:
            raise MissingInputError(f"brainspace is installed but {folder} holds no *.fsa5.{h}.mgz run.")
        image = nib.load(files[0])
        hemis.append(np.asarray(image.get_fdata(dtype=np.float32)).reshape(-1, image.shape[-1]))
    return zscore(np.concatenate(hemis).T)
