"""The fsaverage5 surface (nilearn's bundled meshes): vertices, neighbours, geodesic distances.

Vertex order everywhere in brain2music: the 10,242 left-hemisphere vertices, then the 10,242
right-hemisphere ones (20,484 in all).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

FSAVERAGE5 = "fsaverage5"
N_VERTICES_HEMI = 10242
HEMIS = ("left", "right")


@lru_cache(maxsize=1)
def load_fsaverage5():
    """nilearn's fsaverage5 meshes (dict with ``pial``, ``white_matter``, ``inflated`` ... PolyMeshes)."""
    from nilearn.datasets import load_fsaverage

    return load_fsaverage(FSAVERAGE5)


@lru_cache(maxsize=1)
def sulcal_depth() -> np.ndarray:
    """Sulcal depth of each vertex, shape (20484,), for background shading."""
    from nilearn.datasets import load_fsaverage_data

    data = load_fsaverage_data(mesh=FSAVERAGE5, data_type="sulcal")
    return np.concatenate([np.asarray(data.data.parts[h]).ravel() for h in HEMIS])


def coordinates(surface: str = "pial") -> np.ndarray:
    """Vertex coordinates in mm (fsaverage's MNI305-like space), shape (20484, 3)."""
    mesh = load_fsaverage5()[surface]
    return np.vstack([mesh.parts[h].coordinates for h in HEMIS])


def hemisphere_slices() -> dict[str, slice]:
    """Vertices of each hemisphere in the concatenated order."""
    return {"left": slice(0, N_VERTICES_HEMI), "right": slice(N_VERTICES_HEMI, 2 * N_VERTICES_HEMI)}


@lru_cache(maxsize=2)
def edge_graph(surface: str = "white_matter") -> sparse.csr_matrix:
    """Mesh edges of both hemispheres weighted by length in mm, shape (20484, 20484)."""
    mesh = load_fsaverage5()[surface]
    coords = coordinates(surface)
    faces = np.vstack([mesh.parts["left"].faces, mesh.parts["right"].faces + N_VERTICES_HEMI])
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    length = np.linalg.norm(coords[i] - coords[j], axis=1)
    graph = sparse.coo_matrix((length, (i, j)), shape=(len(coords),) * 2).tocsr()
    return graph.maximum(graph.T).tocsr()


def geodesic_distance(seed: int, limit: float = np.inf, surface: str = "white_matter") -> np.ndarray:
    """Shortest-path distance along the mesh from vertex ``seed`` (mm; inf beyond ``limit``)."""
    return dijkstra(edge_graph(surface), indices=seed, limit=limit)


def nearest_vertex(xyz, hemi: str, surface: str = "pial") -> int:
    """Index (in the concatenated order) of the ``hemi`` vertex closest to ``xyz`` (mm)."""
    coords = coordinates(surface)
    part = hemisphere_slices()[hemi]
    return int(part.start + np.argmin(np.linalg.norm(coords[part] - np.asarray(xyz), axis=1)))


def smooth(values: np.ndarray, n_iter: int = 5) -> np.ndarray:
    """Average each vertex with its mesh neighbours ``n_iter`` times.

    Parameters
    ----------
    values : ndarray, shape (20484,) or (20484, n)

    Returns
    -------
    ndarray, same shape
    """
    graph = edge_graph()
    adjacency = (graph > 0).astype(np.float32) + sparse.identity(graph.shape[0], dtype=np.float32, format="csr")
    step = sparse.diags(1 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
    out = np.asarray(values, dtype=np.float32)
    for _ in range(n_iter):
        out = step @ out
    return out


SURFACE_SIZES = {10242: "fsaverage5", 40962: "fsaverage6", 163842: "fsaverage", 2562: "fsaverage4",
                 642: "fsaverage3", 32492: "fsLR 32k"}


def check_fsaverage5(values: np.ndarray, what: str = "the map") -> np.ndarray:
    """``values`` as (20484, ...) float, or one message naming the surface its size belongs to.

    Raises
    ------
    DataError
        When the first axis does not hold 20,484 vertices (left then right hemisphere).
    """
    from encoding.errors import DataError

    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] != 2 * N_VERTICES_HEMI:
        size = values.shape[0] if values.ndim else 0
        guess = SURFACE_SIZES.get(size // 2) if size % 2 == 0 else None
        hint = (f" ({size // 2:,} per hemisphere: {guess}; resample it to fsaverage5, e.g. with nilearn or "
                "FreeSurfer's mri_surf2surf)") if guess and guess != "fsaverage5" else ""
        raise DataError(f"{what} has {size:,} vertices but fsaverage5 has 20,484 (10,242 per hemisphere, left "
                        f"first){hint}; volumes go through atlases.surface.volume_to_fsaverage5.")
    return values


def volume_to_fsaverage5(image, radius: float = 3.0, interpolation: str = "linear") -> np.ndarray:
    """Project a volume in MNI space onto fsaverage5 (nilearn's ``vol_to_surf``, pial to white matter).

    Each vertex takes the image sampled along the line from its white-matter to its pial position
    (nilearn's ``"line"`` kind), so results computed in volume space get the same maps, tables and
    statistics as surface results.

    Parameters
    ----------
    image : str, path or nibabel image
        3-D (one map) or 4-D (one map per volume) image in MNI152 space.
    radius : float
        mm; the sampling neighbourhood of nilearn's ``vol_to_surf``.
    interpolation : {"linear", "nearest"}

    Returns
    -------
    ndarray, shape (20484,) or (20484, n_volumes)

    Raises
    ------
    MissingInputError, DataError
        A file that does not exist or is not a 3-D / 4-D image.
    """
    import nibabel as nib
    from nilearn.surface import vol_to_surf

    from encoding.errors import DataError, MissingInputError

    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        try:
            image = nib.load(image)
        except FileNotFoundError:
            raise MissingInputError(f"Volume {image} does not exist.") from None
        except Exception as err:  # nibabel raises several types for files it cannot read
            raise DataError(f"Volume {image} is not an image nibabel can read ({err}).") from None
    if len(image.shape) not in (3, 4):
        raise DataError(f"A volume to project must be 3-D or 4-D; got shape {image.shape}.")
    meshes = load_fsaverage5()
    parts = [vol_to_surf(image, meshes["pial"].parts[h], radius=radius, interpolation=interpolation, kind="line",
                         inner_mesh=meshes["white_matter"].parts[h]) for h in HEMIS]
    return np.concatenate(parts, axis=0)
