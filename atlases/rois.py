"""Landmarks of the simulation's territories: geodesic disks around published MNI coordinates.

The simulated experiment plants each feature space's territory around literature coordinates
(a geodesic disk on the white-matter surface around the vertex nearest each coordinate), so the
ground truth does not depend on any atlas. They are not anatomical labels: summaries, maps and
decoding's ROIs use the real atlases of :mod:`atlases.parcellations`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlases.surface import N_VERTICES_HEMI, geodesic_distance, nearest_vertex


@dataclass(frozen=True)
class Landmark:
    """An ROI centre: MNI coordinates (mm) per hemisphere and a default radius (mm)."""

    name: str
    description: str
    left: tuple[float, float, float]
    right: tuple[float, float, float]
    radius: float = 10.0


AUDITORY_LANDMARKS = {
    lm.name: lm
    for lm in (
        # primary auditory cortex on Heschl's gyrus (area TE1.0, Morosan et al. 2001)
        Landmark("HG", "Heschl's gyrus (primary auditory cortex)", (-45, -20, 8), (47, -17, 7), 10.0),
        # planum temporale, posterior to HG (Griffiths & Warren 2002)
        Landmark("PT", "planum temporale", (-52, -32, 10), (55, -28, 11), 10.0),
        # anterior superior temporal gyrus (music and voice selectivity, Norman-Haignere et al. 2015)
        Landmark("aSTG", "anterior superior temporal gyrus", (-56, -6, -4), (58, -2, -6), 10.0),
        # middle superior temporal sulcus (semantic and speech-like processing)
        Landmark("mSTS", "middle superior temporal sulcus", (-56, -28, -4), (56, -24, -6), 12.0),
    )
}


def landmark_distance(name: str, shift: np.ndarray | None = None) -> np.ndarray:
    """Geodesic distance (mm) of every vertex to a landmark's centre in its own hemisphere, shape (20484,).

    Parameters
    ----------
    name : str
        A key of :data:`AUDITORY_LANDMARKS`.
    shift : ndarray, shape (2, 3), optional
        Displacement (mm) of the left and right centres before they snap to the nearest vertex
        (one subject's individual anatomy in a simulated study).
    """
    lm = AUDITORY_LANDMARKS[name]
    shift = np.zeros((2, 3)) if shift is None else np.asarray(shift, dtype=np.float64)
    dist = np.full(2 * N_VERTICES_HEMI, np.inf)
    for k, (hemi, xyz) in enumerate((("left", lm.left), ("right", lm.right))):
        d = geodesic_distance(nearest_vertex(np.asarray(xyz, dtype=np.float64) + shift[k], hemi), limit=60.0)
        half = slice(0, N_VERTICES_HEMI) if hemi == "left" else slice(N_VERTICES_HEMI, None)
        dist[half] = d[half]
    return dist


def auditory_rois(radius: float | None = None) -> dict[str, np.ndarray]:
    """Boolean masks (20484,) of the auditory landmarks, both hemispheres.

    Parameters
    ----------
    radius : float or None
        Geodesic radius in mm; None uses each landmark's default.
    """
    return {
        name: landmark_distance(name) <= (lm.radius if radius is None else radius)
        for name, lm in AUDITORY_LANDMARKS.items()
    }
