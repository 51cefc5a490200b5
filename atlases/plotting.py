"""Surface maps on the inflated fsaverage5: both hemispheres, lateral and medial views.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so drawing works headless
and changes no global matplotlib state (no backend switch); save them with
:func:`encoding.io.save_figure` or ``fig.savefig``, or show them in a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from atlases.surface import HEMIS, check_fsaverage5, hemisphere_slices, load_fsaverage5, sulcal_depth

VIEWS = ("lateral", "medial")
# One colour per feature space everywhere: the first three follow the RGB map's channels (red,
# green, blue), so a space has the same colour in the best-space map and in the unique-variance map.
CATEGORY_COLOURS = ("#d62728", "#2ca02c", "#1f77b4", *matplotlib.colormaps["tab10"].colors[1:2],
                    *matplotlib.colormaps["tab10"].colors[4:])


def plot_surface_map(
    values: np.ndarray,
    title: str,
    *,
    threshold: float | None = None,
    vmax: float | None = None,
    cmap: str = "inferno",
    label: str = "",
) -> Figure:
    """Plot a non-negative vertex map on the inflated fsaverage5.

    Parameters
    ----------
    values : ndarray, shape (20484,)
        One value per vertex (left then right hemisphere); NaN is not shown.
    title : str
        Figure title.
    threshold : float or None
        Values below it are not shown (None: show all positive values).
    vmax : float or None
        Top of the colour scale (None: the 99th percentile of shown values).
    cmap : str
        Matplotlib colormap.
    label : str
        Colour-bar label (units).

    Returns
    -------
    Figure
        Four panels (left/right hemisphere x lateral/medial) and a colour bar.
    """
    from nilearn.plotting import plot_surf_stat_map

    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    if values.shape != (20484,):
        raise ValueError(f"Expected one value per fsaverage5 vertex (20484,), got shape {values.shape}.")
    thr = 0.0 if threshold is None else float(threshold)
    shown = values[values > thr]
    top = vmax if vmax is not None else (np.percentile(shown, 99) if shown.size else 1.0)
    top = max(float(top), thr + 1e-6)
    clipped = bool((values > top).any())
    values = np.where(values > thr, np.minimum(values, top), 0.0)

    fig = _four_views(
        lambda ax, hemi, view, part, mesh, sulc: plot_surf_stat_map(
            surf_mesh=mesh, stat_map=values[part], hemi=hemi, view=view, bg_map=sulc, axes=ax,
            figure=ax.figure, colorbar=False, cmap=cmap, threshold=thr if thr > 0 else 1e-12,
            vmin=0.0, vmax=top, symmetric_cbar=False, avg_method="median",
        )
    )
    cax = fig.add_axes([0.9, 0.2, 0.022, 0.58])
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, top), cmap=cmap), cax=cax,
                       extend="max" if clipped else "neither")
    bar.set_label(label, fontsize=11)
    bar.ax.tick_params(labelsize=9)
    caption = f"{title}" + (f"  (shown: > {thr:.3g})" if thr > 0 else "")
    fig.suptitle(caption, fontsize=14, y=0.975)
    return fig


def plot_surface_labels(labels: np.ndarray, names: Sequence[str], title: str) -> Figure:
    """Plot a categorical vertex map (e.g. the best feature space per vertex).

    Parameters
    ----------
    labels : ndarray of int, shape (20484,)
        ``k`` (1-based) shows category ``names[k - 1]``; 0 is not shown.
    names : sequence of str
        Category names, for the legend.
    title : str

    Returns
    -------
    Figure
    """
    from nilearn.plotting import plot_surf_roi

    labels = np.asarray(labels)
    if labels.shape != (20484,):
        raise ValueError(f"Expected one label per fsaverage5 vertex (20484,), got shape {labels.shape}.")
    if labels.min() < 0 or labels.max() > len(names):
        raise ValueError(f"Labels must lie in 0..{len(names)} (0: not shown).")
    if len(names) > len(CATEGORY_COLOURS):
        raise ValueError(f"At most {len(CATEGORY_COLOURS)} categories can be told apart, got {len(names)}.")
    colors = CATEGORY_COLOURS[: len(names)]
    cmap = ListedColormap(colors)
    fig = _four_views(
        lambda ax, hemi, view, part, mesh, sulc: plot_surf_roi(
            surf_mesh=mesh, roi_map=labels[part].astype(float), hemi=hemi, view=view, bg_map=sulc,
            axes=ax, figure=ax.figure, colorbar=False, cmap=cmap, vmin=1, vmax=max(len(names), 2),
            avg_method="median", threshold=0.5,
        )
    )
    counts = np.bincount(labels, minlength=len(names) + 1)[1:]
    handles = [Patch(color=c, label=f"{n} ({k:,} vertices)") for c, n, k in zip(colors, names, counts)]
    fig.legend(handles=handles, loc="center right", fontsize=11, frameon=False)
    fig.suptitle(title, fontsize=14, y=0.975)
    return fig


def _four_views(draw) -> Figure:
    """A figure with left/right x lateral/medial inflated views; ``draw(ax, hemi, view, part, mesh, sulc)`` fills each."""
    mesh = load_fsaverage5()["inflated"]
    sulc = sulcal_depth()
    fig = Figure(figsize=(10, 6.2))
    for row, view in enumerate(VIEWS):
        for col, hemi in enumerate(HEMIS):
            ax = fig.add_axes([0.0 + col * 0.44, 0.46 - row * 0.45, 0.44, 0.46], projection="3d")
            part = hemisphere_slices()[hemi]
            draw(ax, hemi, view, part, mesh.parts[hemi], sulc[part])
            ax.set_box_aspect(None, zoom=1.45)
            ax.set_title(f"{hemi} {view}", fontsize=11, y=0.9)
    return fig


# -- flat maps ------------------------------------------------------------------------------

FLAT_BACKGROUND = (0.62, 0.82)  # grey of sulci and of gyri


def flat_hemisphere(hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """nilearn's fsaverage5 flat patch of ``hemi``: 2-D vertex positions (mm) and the patch's faces.

    Positions are nilearn's, which is how pycortex lays out flat maps: dorsal up, the occipital
    poles toward the middle (where the two hemispheres meet), the frontal poles at the outer
    edges. Vertices the cut leaves out (the medial wall) are in no face.

    Returns
    -------
    xy : ndarray, shape (10242, 2)
    faces : ndarray of int, shape (n_faces, 3)
    """
    part = load_fsaverage5()["flat"].parts[hemi]
    xy = np.asarray(part.coordinates, dtype=np.float64)[:, :2]
    return xy, np.asarray(part.faces)


def _face_colors(rgba: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return rgba[faces].mean(axis=1)


def _flat_background(part: slice) -> np.ndarray:
    """Grey per vertex from sulcal depth: sulci dark, gyri light (RGBA, shape (10242, 4))."""
    depth = sulcal_depth()[part]
    light = np.where(depth > 0, *FLAT_BACKGROUND)
    return np.column_stack([light, light, light, np.ones_like(light)])


def _flat_figure(rgba: np.ndarray, title: str, outlines: dict[str, np.ndarray] | None) -> Figure:
    """Both flat hemispheres coloured per vertex by ``rgba`` (20484, 4), with optional ROI outlines."""
    from matplotlib.collections import PolyCollection
    from matplotlib.tri import Triangulation

    fig = Figure(figsize=(12, 4.6))
    for col, hemi in enumerate(HEMIS):
        ax = fig.add_axes([0.0 + col * 0.4, 0.04, 0.39, 0.82])
        part = hemisphere_slices()[hemi]
        xy, faces = flat_hemisphere(hemi)
        ax.add_collection(PolyCollection(xy[faces], facecolors=_face_colors(rgba[part], faces), edgecolors="none",
                                         antialiased=False))
        used = np.unique(faces)
        ax.set_xlim(xy[used, 0].min() - 5, xy[used, 0].max() + 5)
        ax.set_ylim(xy[used, 1].min() - 5, xy[used, 1].max() + 5)
        ax.set_aspect("equal")
        if outlines:  # black lines (no colour that could read as data), each name just above its region
            triangulation = Triangulation(xy[:, 0], xy[:, 1], faces)
            anchors = {}
            for name, mask in outlines.items():
                ax.tricontour(triangulation, mask[part].astype(float), levels=[0.5], colors=["black"],
                              linewidths=0.9)
                inside = mask[part] & np.isin(np.arange(len(xy)), faces)
                if inside.any():
                    anchors[name] = (xy[inside, 0].mean(), xy[inside, 1].max() + 2.0)
            _label_regions(ax, anchors)
        ax.set_axis_off()
        ax.set_title(f"{hemi} hemisphere (flat)", fontsize=12)
    fig.suptitle(title, fontsize=14, y=0.98)
    return fig


def _label_regions(ax, anchors: dict[str, tuple[float, float]], fontsize: float = 9.0) -> None:
    """Name regions at their anchors (mm on the flat patch), moving a name up until it overlaps no other."""
    bbox = ax.get_position()
    fig_width, fig_height = ax.figure.get_size_inches()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    # mm per point: the patch is drawn with equal aspect, so the tighter axis sets the scale
    per_point = max((x1 - x0) / (bbox.width * fig_width * 72), (y1 - y0) / (bbox.height * fig_height * 72))
    height = 1.5 * fontsize * per_point
    placed: list[tuple[float, float, float]] = []  # centre x, bottom y, half width
    for name, (x, y) in sorted(anchors.items(), key=lambda item: item[1][1]):
        half = 0.35 * fontsize * per_point * len(name) + 1.0
        while any(abs(x - px) < half + ph and abs(y - py) < height for px, py, ph in placed):
            y += height
        placed.append((x, y, half))
        ax.text(x, y, name, fontsize=fontsize, ha="center", va="bottom",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 0.8})


def plot_flat_map(values: np.ndarray, title: str, *, kind: str = "sequential", threshold: float | None = None,
                  vmax: float | None = None, cmap: str | None = None, label: str = "",
                  outlines: dict[str, np.ndarray] | None = None) -> Figure:
    """A vertex map on the flattened fsaverage5 (both hemispheres), over sulcal depth.

    The colour map follows the quantity: ``kind="sequential"`` (``inferno`` from 0; negative
    values are not shown) for R^2, variance shares and other non-negative quantities;
    ``kind="diverging"`` (``RdBu_r``, symmetric about 0) for signed values (effects, t, raw
    unique variance).

    Parameters
    ----------
    values : ndarray, shape (20484,)
        One value per vertex; NaN is not shown.
    title : str
    kind : {"sequential", "diverging"}
    threshold : float or None
        Values with ``|value| <= threshold`` are not shown (None: 0 is not shown).
    vmax : float or None
        End of the colour scale (None: the 99th percentile of shown ``|values|``).
    cmap : str or None
        Override the colour map.
    label : str
        Colour-bar label, with units (e.g. ``"test R^2"``).
    outlines : dict of str to ndarray of bool, shape (20484,)
        Regions to outline and name (e.g. :func:`atlases.parcellations.atlas_rois`).

    Returns
    -------
    Figure
    """
    values = check_fsaverage5(values)
    if kind not in ("sequential", "diverging"):
        raise ValueError(f"kind must be 'sequential' or 'diverging', got {kind!r}.")
    finite = np.nan_to_num(values, nan=0.0)
    signed = kind == "diverging"
    thr = 0.0 if threshold is None else float(threshold)
    shown = np.isfinite(values) & ((np.abs(finite) if signed else finite) > thr)
    top = vmax if vmax is not None else (np.percentile(np.abs(finite[shown]), 99) if shown.any() else 1.0)
    top = max(float(top), thr + 1e-6)
    colormap = matplotlib.colormaps[cmap or ("RdBu_r" if signed else "inferno")]
    norm = Normalize(-top, top) if signed else Normalize(0.0, top)
    rgba = np.vstack([_flat_background(hemisphere_slices()[h]) for h in HEMIS])
    rgba[shown] = colormap(norm(np.clip(finite[shown], -top, top)))
    shown_text = f"|value| > {thr:.3g}" if signed else f"> {thr:.3g}"
    fig = _flat_figure(rgba, title + (f"  (shown: {shown_text})" if thr > 0 else ""), outlines)
    cax = fig.add_axes([0.84, 0.2, 0.016, 0.58])
    beyond = np.abs(finite[shown]) > top if signed else finite[shown] > top
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colormap), cax=cax,
                       extend=("both" if signed else "max") if beyond.any() else "neither")
    bar.set_label(label, fontsize=12)
    bar.ax.tick_params(labelsize=10)
    return fig


def plot_flat_rgb(channels: np.ndarray, names: Sequence[str], title: str, *, vmax: float | None = None,
                  opacity: np.ndarray | None = None, label: str = "value", opacity_label: str = "",
                  outlines: dict[str, np.ndarray] | None = None) -> Figure:
    """Three vertex maps at once, one colour channel each (red, green, blue), on the flat fsaverage5.

    Made for the unique variance of three feature spaces: a vertex where only the first space
    explains variance is red, where the first two both do yellow, and so on. The hue says which
    channels, the strength of the colour over the grey background how large: a vertex at
    ``vmax`` (values clipped at 0 and at ``vmax``) is fully coloured, one at ``vmax / 2`` half
    way, and ``opacity`` (e.g. the noise ceiling) multiplies that strength.

    Parameters
    ----------
    channels : ndarray, shape (3, 20484)
    names : sequence of three str
        What each channel shows (the legend).
    title : str
    vmax : float or None
        Value of full intensity (None: the median of the positive values, so that half of the
        shown vertices are fully coloured and the rest fade with their value).
    opacity : ndarray, shape (20484,), optional
        Per-vertex factor in [0, 1] of the colour's strength (e.g. the noise ceiling), so
        unreliable vertices fade.
    label : str
        What the channels hold, with units (the legend's title), e.g. ``"unique R²"``.
    opacity_label : str
        What ``opacity`` is, for the legend (e.g. ``"CC_norm"``).
    outlines : dict of str to ndarray of bool, optional

    Returns
    -------
    Figure
    """
    channels = np.nan_to_num(np.asarray(channels, dtype=np.float64), nan=0.0)
    if channels.shape != (3, 20484) or len(names) != 3:
        raise ValueError(f"Expected three maps of 20484 vertices and three names, got {channels.shape} and "
                         f"{len(names)} names.")
    positive = np.clip(channels, 0, None)
    top = vmax if vmax is not None else max(float(np.median(positive[positive > 0])) if (positive > 0).any()
                                            else 1.0, 1e-12)
    colour = np.clip(positive / top, 0, 1).T  # (20484, 3)
    weight = colour.max(axis=1)  # the strength: the largest channel relative to vmax
    if opacity is not None:
        weight = weight * np.clip(np.nan_to_num(np.asarray(opacity, dtype=np.float64)), 0, 1)
    background = np.vstack([_flat_background(hemisphere_slices()[h]) for h in HEMIS])
    rgba = background.copy()
    full = colour / np.maximum(colour.max(axis=1, keepdims=True), 1e-12)  # the hue at full brightness
    rgba[:, :3] = (1 - weight[:, None]) * background[:, :3] + weight[:, None] * full
    fig = _flat_figure(rgba, title, outlines)
    legend = fig.add_axes([0.81, 0.25, 0.18, 0.5])
    legend.set_axis_off()
    swatches = [((1, 0, 0), names[0]), ((0, 1, 0), names[1]), ((0, 0, 1), names[2]),
                ((1, 1, 0), f"{names[0]} + {names[1]}"), ((1, 0, 1), f"{names[0]} + {names[2]}"),
                ((0, 1, 1), f"{names[1]} + {names[2]}"), ((1, 1, 1), "all three")]
    handles = [Patch(facecolor=c, edgecolor="0.3", label=n) for c, n in swatches]
    strength = f"full colour: {label} ≥ {top:.3g}" + (f",\nfaded by {opacity_label}" if opacity_label else "")
    legend.legend(handles=handles, loc="center left", fontsize=9, frameon=False, title=strength, title_fontsize=9)
    return fig


# -- interactive views ----------------------------------------------------------------------

def view_surface(values: np.ndarray, title: str = "", *, kind: str = "sequential", threshold: float | None = None,
                 vmax: float | None = None, surface: str = "inflated"):
    """An interactive 3-D view of a vertex map, both hemispheres (nilearn's ``view_surf``, plotly).

    The view shows itself in Jupyter; ``.save_as_html(path)`` writes a self-contained page that
    opens offline (plotly's JavaScript is inlined). Colours follow ``kind`` as in
    :func:`plot_flat_map`.

    Parameters
    ----------
    values : ndarray, shape (20484,)
    title : str
    kind : {"sequential", "diverging"}
    threshold : float or None
        Values with ``|value|`` below it are not coloured.
    vmax : float or None
    surface : {"inflated", "pial", "white_matter"}

    Returns
    -------
    nilearn ``SurfaceView``

    Raises
    ------
    ImportError
        Without plotly (``pip install 'brain2music[viewer]'``).
    """
    import importlib.util

    if importlib.util.find_spec("plotly") is None:
        raise ImportError("Interactive surface views need plotly: pip install 'brain2music[viewer]'.")
    from nilearn.plotting import view_surf
    from nilearn.surface import SurfaceImage

    values = np.nan_to_num(check_fsaverage5(values), nan=0.0)
    if kind not in ("sequential", "diverging"):
        raise ValueError(f"kind must be 'sequential' or 'diverging', got {kind!r}.")
    signed = kind == "diverging"
    values = values if signed else np.clip(values, 0, None)
    mesh = load_fsaverage5()[surface]
    parts = hemisphere_slices()
    image = SurfaceImage(mesh=mesh, data={h: values[parts[h]] for h in HEMIS})
    sulc = sulcal_depth()
    background = SurfaceImage(mesh=mesh, data={h: sulc[parts[h]] for h in HEMIS})
    top = vmax if vmax is not None else max(float(np.percentile(np.abs(values[values != 0]), 99))
                                            if (values != 0).any() else 1.0, 1e-6)
    return view_surf(mesh, image, bg_map=background, hemi="both", threshold=threshold, vmax=top,
                     vmin=None if signed else 0.0, symmetric_cmap=signed, cmap="RdBu_r" if signed else "inferno",
                     title=title or None)
