"""pycortex flat maps of fsaverage5: the subject built from nilearn's meshes, and where maps land."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atlases import pycortex as flat
from atlases.surface import N_VERTICES_HEMI, coordinates, load_fsaverage5
from encoding.errors import MissingInputError

LEFT = np.arange(2 * N_VERTICES_HEMI) < N_VERTICES_HEMI


@pytest.fixture(scope="module")
def cortex():
    return pytest.importorskip("cortex", reason="pycortex is an optional dependency (pip install pycortex==1.4.0)")


@pytest.fixture(scope="module")
def store(cortex, tmp_path_factory) -> Path:
    """A filestore holding the fsaverage5 subject, built once for the module."""
    folder = tmp_path_factory.mktemp("pycortex")
    flat.fsaverage5_subject(folder)
    return folder


def coloured_pixels(values: np.ndarray, store: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Rows and columns (pixels) of the flat map where ``values`` is drawn, and the map's midline / middle row.

    The map is drawn at 1 (the bright end of inferno) where ``values`` is True, NaN elsewhere, so the
    data are the only non-grey pixels inside the flat map's axes (the curvature is grey).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = flat.quickflat_figure(np.where(values, 1.0, np.nan), vmin=0.0, vmax=1.0, folder=store)
    FigureCanvasAgg(fig).draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    ax = fig.axes[0]
    x0, y0, x1, y1 = ax.get_window_extent().extents
    height = image.shape[0]
    inside = np.zeros(image.shape[:2], dtype=bool)
    inside[int(height - y1):int(height - y0), int(x0):int(x1)] = True
    rows, cols = np.nonzero(inside & (np.ptp(image, axis=-1) > 40))
    bottom, top = ax.get_ylim()
    midline, middle = ax.transData.transform((0.0, (bottom + top) / 2))  # x = 0: where the hemispheres meet
    return rows, cols, float(midline), float(height - middle)


def test_subject_surfaces_read_back_through_pycortex(cortex, store):
    meshes = load_fsaverage5()
    before = cortex.db.filestore, cortex.db.__dict__.get("_memocache")
    with flat.fsaverage5_filestore(store) as db:
        assert db is cortex.db and Path(db.filestore) == store
        pia, faces = db.get_surf("fsaverage5", "pia", merge=True)
        flat_parts = [db.get_surf("fsaverage5", "flat", hemi) for hemi in ("lh", "rh")]
        vertex = cortex.Vertex(np.zeros(2 * N_VERTICES_HEMI), "fsaverage5")
    np.testing.assert_array_equal(pia, coordinates("pial"))
    assert faces.shape == (2 * len(meshes["pial"].parts["left"].faces), 3)
    assert (vertex.llen, vertex.rlen) == (N_VERTICES_HEMI, N_VERTICES_HEMI)
    for (points, polys), hemi in zip(flat_parts, ("left", "right")):
        nilearn_flat = meshes["flat"].parts[hemi]
        on_patch = np.unique(nilearn_flat.faces)
        assert points.shape == (N_VERTICES_HEMI, 3)
        np.testing.assert_array_equal(polys, nilearn_flat.faces)
        np.testing.assert_array_equal(points[on_patch, :2], np.asarray(nilearn_flat.coordinates)[on_patch, :2])
        assert not points[:, 2].any()
        assert not points[np.setdiff1d(np.arange(N_VERTICES_HEMI), on_patch)].any()  # cut-out vertices at 0
    assert (cortex.db.filestore, cortex.db.__dict__.get("_memocache")) == before  # nothing leaks out


def test_left_hemisphere_left_right_hemisphere_right(store):
    _, cols, midline, _ = coloured_pixels(LEFT, store)
    assert cols.size > 10_000 and cols.max() < midline + 5
    _, cols, midline, _ = coloured_pixels(~LEFT, store)
    assert cols.size > 10_000 and cols.min() > midline - 5


def test_dorsal_up_ventral_down(store):
    z = coordinates("pial")[:, 2]  # mm, inferior -> superior
    dorsal, _, _, middle = coloured_pixels(z > 40, store)
    ventral, _, _, _ = coloured_pixels(z < -10, store)
    assert dorsal.mean() < middle < ventral.mean()  # image rows grow downwards


def test_occipital_poles_meet_in_the_middle_frontal_poles_outside(store):
    y = coordinates("pial")[:, 1]  # mm, posterior -> anterior
    _, occipital, midline, _ = coloured_pixels(y < -70, store)
    _, frontal, _, _ = coloured_pixels(y > 30, store)
    assert (occipital < midline).any() and (occipital > midline).any()  # both hemispheres
    assert np.abs(occipital - midline).mean() < 0.5 * np.abs(frontal - midline).mean()


def test_diverging_map_is_symmetric_with_title_and_label(store):
    values = np.random.default_rng(0).normal(0.5, 1.0, 2 * N_VERTICES_HEMI)
    values[:100] = np.nan
    fig = flat.quickflat_figure(values, "contrast", kind="diverging", label="t value", folder=store)
    data = next(image for image in fig.axes[0].get_images() if image.get_label() == "data")
    limit = np.nanpercentile(np.abs(values), 99)
    np.testing.assert_allclose(data.get_clim(), (-limit, limit))
    assert data.get_cmap().name == "RdBu_r"
    assert [text.get_text() for text in fig.texts] == ["contrast", "left hemisphere", "right hemisphere"]
    assert fig.axes[-1].get_xlabel() == "t value"


def test_subject_is_reused_and_a_partial_one_rebuilt(cortex, tmp_path, monkeypatch):
    subject = flat.fsaverage5_subject(tmp_path)
    assert subject == tmp_path / "fsaverage5"
    stamps = {path: path.stat().st_mtime_ns for path in subject.rglob("*")}
    monkeypatch.setenv(flat.FOLDER_VARIABLE, str(tmp_path))
    assert flat.fsaverage5_subject() == subject
    assert {path: path.stat().st_mtime_ns for path in subject.rglob("*")} == stamps  # nothing rewritten
    (subject / "surfaces" / "flat_rh.gii").unlink()
    flat.fsaverage5_subject(tmp_path)
    assert (subject / "surfaces" / "flat_rh.gii").exists()
    assert (subject / "brain2music.json").stat().st_mtime_ns != stamps[subject / "brain2music.json"]
    assert [path.name for path in tmp_path.iterdir()] == ["fsaverage5"]  # no build folder left


def test_interrupted_build_leaves_no_subject(cortex, tmp_path, monkeypatch):
    def interrupted(subject):
        raise KeyboardInterrupt

    monkeypatch.setattr(flat, "_precompute", interrupted)  # after the surfaces are written
    with pytest.raises(KeyboardInterrupt):
        flat.fsaverage5_subject(tmp_path)
    assert not any(tmp_path.iterdir())


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(20484,\).*got shape \(10242,\)"):
        flat.quickflat_figure(np.zeros(N_VERTICES_HEMI))
    with pytest.raises(ValueError, match="kind must be one of"):
        flat.quickflat_figure(np.zeros(2 * N_VERTICES_HEMI), kind="qualitative")


def test_missing_pycortex_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cortex", None)  # import cortex now fails
    with pytest.raises(MissingInputError, match=r"pip install pycortex==1\.4\.0"):
        flat.quickflat_figure(np.zeros(2 * N_VERTICES_HEMI), folder=tmp_path)
    assert not any(tmp_path.iterdir())


def test_importing_the_module_leaves_pycortex_unloaded():
    code = "import sys, atlases.pycortex; assert 'cortex' not in sys.modules, 'cortex imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
