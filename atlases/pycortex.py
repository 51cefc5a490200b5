"""fsaverage5 flat maps drawn by pycortex, from nilearn's bundled meshes only.

pycortex (Gao et al. 2015, Front. Neuroinform. 9:23) draws a vertex map on a subject of its
*filestore*: a folder per subject holding its surfaces. :func:`fsaverage5_subject` writes such a
subject, ``fsaverage5``, once, from the fsaverage5 GIFTI meshes that ship inside nilearn
(``nilearn/datasets/data/fsaverage5/{pial,white,infl,flat}_{left,right}.gii.gz``). fsaverage is
FreeSurfer's template (Fischl et al. 1999) and comes under FreeSurfer's licence (nilearn's dataset
description gives its licence as "unknown"). No FreeSurfer install, no Inkscape and no download is
needed: pycortex only reads the surfaces, computes the curvature shading from them and caches its
pixel-to-vertex map.

The subject folder holds (pycortex's layout, see ``cortex/database.py``)::

    fsaverage5/
        surfaces/{pia,wm,inflated,flat}_{lh,rh}.gii   pial, white-matter, inflated, flat meshes
        surface-info/curvature.npz                    mean curvature (shading under the data)
        cache/flatmask_1024.npz, flatverts_1024.npz   flat-map image mask and pixel -> vertex map
        transforms/, views/                           empty (pycortex lists them)
        brain2music.json                              provenance; written last

No volume, transform or ``overlays.svg`` is needed for a :class:`cortex.Vertex` without ROIs or
sulci. nilearn's flat patches already lie the way pycortex draws flat maps (as in pycortex's own
demo subject ``S1``, whose overlays put V1 between the hemispheres and Broca's area and the frontal
eye fields at the outer edges): left hemisphere on the left, right on the right, dorsal up, the
occipital poles meeting in the middle and the frontal poles at the outer edges. They are kept
unflipped; only their third column (0 on the patch) is zeroed, and so are the vertices the cut
leaves out (the medial wall, in no face), as pycortex's own FreeSurfer import does, so that they do
not stretch the image bounds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from atlases.surface import FSAVERAGE5, N_VERTICES_HEMI, load_fsaverage5
from encoding.errors import DataError, MissingInputError, OutputError

if TYPE_CHECKING:
    from cortex.database import Database

PYCORTEX_VERSION = "1.4.0"
FOLDER_VARIABLE = "BRAIN2MUSIC_PYCORTEX_DIR"
DEFAULT_FOLDER = Path("~/.cache/brain2music/pycortex")
FLATMAP_HEIGHT = 1024  # pixels: the flat-map image pycortex renders (and caches)

_HEMIS = {"lh": "left", "rh": "right"}
_SURFACES = {"pia": "pial", "wm": "white_matter", "inflated": "inflated", "flat": "flat"}
_LAYOUT = 1  # bump when the files written change, so older subjects are rebuilt
_MARKER = "brain2music.json"
_REQUIRED = (*(f"surfaces/{s}_{h}.gii" for s in _SURFACES for h in _HEMIS), "surface-info/curvature.npz", "transforms")
_KINDS = {"sequential": "inferno", "diverging": "RdBu_r"}
_DB_STATE = ("filestore", "_subjects", "_memocache", "auxfile")  # what _filestore sets aside on cortex.db

# figure layout, inches
_WIDTH, _TITLE_STRIP, _COLORBAR_STRIP, _MARGIN = 12.0, 0.9, 0.85, 0.02  # inches, inches, inches, fraction


def fsaverage5_subject(folder: str | Path | None = None) -> Path:
    """The pycortex subject ``fsaverage5``, written on first use.

    A complete subject is reused as it is; a missing, partial or outdated one is (re)built in a
    temporary folder next to it and renamed into place, so an interrupted build never leaves a
    half subject behind. A build takes a few seconds.

    Parameters
    ----------
    folder : str, Path or None
        The pycortex filestore to hold the subject. None: ``$BRAIN2MUSIC_PYCORTEX_DIR`` when set,
        else ``~/.cache/brain2music/pycortex``.

    Returns
    -------
    Path
        The subject's folder, ``<folder>/fsaverage5``.

    Raises
    ------
    MissingInputError
        When pycortex is not installed.
    OutputError
        When the folder cannot be written.
    """
    store = _filestore_folder(folder)
    subject = store / FSAVERAGE5
    if _is_complete(subject):
        return subject
    _import_cortex()
    try:
        store.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{FSAVERAGE5}-", dir=store))
    except OSError as err:
        raise OutputError(f"Cannot write the pycortex subject in {store} ({err}): choose a writable folder "
                          f"with the folder argument or ${FOLDER_VARIABLE}.") from err
    try:
        _write_subject(staging / FSAVERAGE5)
        _move_into_place(staging / FSAVERAGE5, subject, staging / "replaced")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return subject


@contextlib.contextmanager
def fsaverage5_filestore(folder: str | Path | None = None) -> Iterator[Database]:
    """Point pycortex's database (``cortex.db``) at the filestore holding ``fsaverage5``.

    Within the block, pycortex calls (``cortex.Vertex(..., "fsaverage5")``,
    ``cortex.quickflat.make_figure``, ``cortex.db.get_surf``) find the subject; afterwards the
    database is as before. Not thread-safe: ``cortex.db`` is one object per process.

    Parameters
    ----------
    folder : str, Path or None
        As for :func:`fsaverage5_subject` (built there when needed).

    Yields
    ------
    cortex.database.Database
        ``cortex.db``.
    """
    subject = fsaverage5_subject(folder)
    with _filestore(subject.parent) as db:
        yield db


def quickflat_figure(
    values: np.ndarray,
    title: str = "",
    *,
    kind: str = "sequential",
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
    label: str = "",
    folder: str | Path | None = None,
) -> Figure:
    """A vertex map on pycortex's flat fsaverage5, over curvature shading, with a colour bar.

    Parameters
    ----------
    values : ndarray, shape (20484,)
        One value per vertex: the 10,242 left-hemisphere vertices, then the 10,242 right ones.
        NaN is not shown (the curvature shows through).
    title : str
        Figure title.
    kind : {"sequential", "diverging"}
        ``"sequential"`` (``inferno``; by default from 0 to the 99th percentile of the finite
        values) for R^2, accuracies and other non-negative quantities; ``"diverging"``
        (``RdBu_r``; by default symmetric about 0, up to the 99th percentile of ``|values|``) for
        signed ones.
    vmin, vmax : float or None
        Ends of the colour scale, in the units of ``values`` (None: the defaults above; for
        ``"diverging"``, one given end mirrors the other).
    cmap : str or None
        Matplotlib colour map overriding the kind's.
    label : str
        Colour-bar label, with units (e.g. ``"test R^2"``, ``"t (df = 9)"``).
    folder : str, Path or None
        The filestore holding the subject, as for :func:`fsaverage5_subject`.

    Returns
    -------
    matplotlib.figure.Figure
        Made without pyplot (no global matplotlib state changes): save it with ``fig.savefig``.

    Raises
    ------
    DataError
        When ``values`` is not of shape (20484,) or holds no finite value (a ``ValueError``).
    ValueError
        For an unknown ``kind`` or ``vmin > vmax``.
    MissingInputError
        When pycortex is not installed.
    """
    values = _check_values(values)
    vmin, vmax = _colour_limits(values, kind, vmin, vmax)
    cortex = _import_cortex()
    fig = Figure()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    with fsaverage5_filestore(folder):
        vertex = cortex.Vertex(values, FSAVERAGE5, vmin=vmin, vmax=vmax, cmap=cmap or _KINDS[kind])
        cortex.quickflat.make_figure(vertex, fig=ax, height=FLATMAP_HEIGHT, with_rois=False, with_labels=False,
                                     with_sulci=False, with_curvature=True, with_colorbar=False)
    finite = values[np.isfinite(values)]
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool((finite < vmin).any()), bool((finite > vmax).any()))]
    _lay_out(fig, ax, title, label, extend)
    return fig


# -- building the subject ---------------------------------------------------------------------


def _filestore_folder(folder: str | Path | None) -> Path:
    chosen = folder if folder is not None else os.environ.get(FOLDER_VARIABLE) or DEFAULT_FOLDER
    return Path(chosen).expanduser().absolute()


def _is_complete(subject: Path) -> bool:
    """Whether ``subject`` holds every file pycortex needs, written by this layout version."""
    try:
        layout = json.loads((subject / _MARKER).read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        return False
    return layout == _LAYOUT and all((subject / name).exists() for name in _REQUIRED)


def _write_subject(subject: Path) -> None:
    """Write the surfaces, then let pycortex compute the curvature and flat-map caches from them."""
    import nilearn

    for name in ("surfaces", "surface-info", "cache", "transforms", "views"):
        (subject / name).mkdir(parents=True)
    meshes = load_fsaverage5()
    for ours, theirs in _SURFACES.items():
        for hemi, part in _HEMIS.items():
            mesh = meshes[theirs].parts[part]
            points = np.array(mesh.coordinates, dtype=np.float32)
            faces = np.asarray(mesh.faces, dtype=np.int32)
            if ours == "flat":
                points = _flat_points(points, faces)
            _write_gifti(subject / "surfaces" / f"{ours}_{hemi}.gii", points, faces)
    _precompute(subject)
    marker = {"layout": _LAYOUT, "surfaces": f"nilearn {nilearn.__version__}, datasets/data/fsaverage5",
              "licence": "fsaverage: FreeSurfer's licence"}
    (subject / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _flat_points(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """nilearn's flat patch, shape (10242, 3) mm: x, y on the patch, z and the cut-out vertices zeroed."""
    flat = points.copy()
    flat[:, 2] = 0.0
    on_patch = np.zeros(len(flat), dtype=bool)
    on_patch[np.unique(faces)] = True
    flat[~on_patch] = 0.0
    return flat


def _write_gifti(path: Path, points: np.ndarray, faces: np.ndarray) -> None:
    import nibabel
    from nibabel.gifti import GiftiDataArray, GiftiImage

    arrays = [GiftiDataArray(points, intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32"),
              GiftiDataArray(faces, intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32")]
    nibabel.save(GiftiImage(darrays=arrays), path)


def _precompute(subject: Path) -> None:
    """Curvature and the flat-map caches of the default height, so drawing writes nothing."""
    from cortex.quickflat.utils import get_flatcache, get_flatmask
    from scipy.sparse import SparseEfficiencyWarning

    with _filestore(subject.parent) as db, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", SparseEfficiencyWarning)  # inside pycortex's curvature smoothing
        db.get_surfinfo(FSAVERAGE5)
        get_flatmask(FSAVERAGE5, height=FLATMAP_HEIGHT)
        get_flatcache(FSAVERAGE5, None, height=FLATMAP_HEIGHT)


def _move_into_place(built: Path, subject: Path, replaced: Path) -> None:
    """Rename ``built`` to ``subject``, moving an incomplete ``subject`` to ``replaced`` first."""
    if subject.exists():
        os.replace(subject, replaced)
    try:
        os.replace(built, subject)
    except OSError:
        if not _is_complete(subject):  # else another process finished the same build first
            raise


# -- pycortex ---------------------------------------------------------------------------------


def _import_cortex():
    """pycortex, imported quietly (it prints that Inkscape, which quickflat does not need, is missing)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import cortex
    except ImportError as err:
        raise MissingInputError(f"pycortex is not installed ({err}): pip install pycortex=={PYCORTEX_VERSION} "
                                "(bash install.sh installs it).") from err
    return cortex


@contextlib.contextmanager
def _filestore(store: Path) -> Iterator[Database]:
    """``cortex.db`` reading the filestore ``store`` for the duration of the block.

    pycortex's database memoises surfaces by subject name only and may keep its caches in a
    folder of its config (``[basic] cache``) keyed by subject name only, so both are set aside
    too: a different ``fsaverage5`` elsewhere can neither be read nor be given our caches.
    """
    from cortex.database import db
    from cortex.options import config

    saved = {name: db.__dict__[name] for name in _DB_STATE if name in db.__dict__}
    cache = config.get("basic", "cache", fallback=None)
    db.filestore, db._memocache, db.auxfile = str(store), {}, None
    config.remove_option("basic", "cache")
    try:
        db.reload_subjects()
        yield db
    finally:
        for name in _DB_STATE:
            db.__dict__.pop(name, None)
        db.__dict__.update(saved)
        if cache is not None:
            config.set("basic", "cache", cache)


# -- the figure -------------------------------------------------------------------------------


def _check_values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (2 * N_VERTICES_HEMI,):
        raise DataError(f"Expected one value per fsaverage5 vertex, shape ({2 * N_VERTICES_HEMI},) "
                        f"({N_VERTICES_HEMI} left then {N_VERTICES_HEMI} right), got shape {values.shape}.")
    if not np.isfinite(values).any():
        raise DataError("The map holds no finite value: nothing to draw.")
    return values


def _colour_limits(values: np.ndarray, kind: str, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """Ends of the colour scale (units of ``values``) for ``kind``, filling in the defaults."""
    finite = values[np.isfinite(values)]
    if kind == "sequential":
        vmin = 0.0 if vmin is None else vmin
        vmax = float(np.percentile(finite, 99)) if vmax is None else vmax
    elif kind == "diverging":
        if vmax is None:
            vmax = -vmin if vmin is not None else float(np.percentile(np.abs(finite), 99))
        vmin = -vmax if vmin is None else vmin
    else:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}.")
    if vmin > vmax:
        raise ValueError(f"vmin ({vmin:g}) is above vmax ({vmax:g}).")
    return float(vmin), float(vmax)


def _lay_out(fig, ax, title: str, label: str, extend: str = "neither") -> None:
    """Size ``fig`` to the flat map's aspect: a title strip with the hemispheres named, the map, a colour bar."""
    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
    map_width = 1.0 - 2 * _MARGIN  # figure fraction
    map_height = _WIDTH * map_width * (top - bottom) / (right - left)
    height = _TITLE_STRIP + map_height + _COLORBAR_STRIP
    fig.set_size_inches(_WIDTH, height)
    ax.set_position((_MARGIN, _COLORBAR_STRIP / height, map_width, map_height / height))
    if title:
        fig.text(0.5, 1.0 - 0.35 * _TITLE_STRIP / height, title, ha="center", va="center", fontsize=14)
    midline = (0.0 - left) / (right - left)  # the hemispheres meet at x = 0 of the flat map
    for name, at in (("left hemisphere", midline / 2), ("right hemisphere", (1 + midline) / 2)):
        fig.text(_MARGIN + at * map_width, 1.0 - 0.8 * _TITLE_STRIP / height, name, ha="center", va="center",
                 fontsize=12)
    cax = fig.add_axes((0.35, 0.5 * _COLORBAR_STRIP / height, 0.3, 0.16 / height))
    data = next(image for image in ax.get_images() if image.get_label() == "data")
    bar = fig.colorbar(data, cax=cax, orientation="horizontal", extend=extend)
    bar.set_label(label, fontsize=12)
    bar.ax.tick_params(labelsize=10)
