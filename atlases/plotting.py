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

from atlases.surface import HEMIS, hemisphere_slices, load_fsaverage5, sulcal_depth

VIEWS = ("lateral", "medial")


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
    values = np.where(values > thr, np.minimum(values, top), 0.0)

    fig = _four_views(
        lambda ax, hemi, view, part, mesh, sulc: plot_surf_stat_map(
            surf_mesh=mesh, stat_map=values[part], hemi=hemi, view=view, bg_map=sulc, axes=ax,
            figure=ax.figure, colorbar=False, cmap=cmap, threshold=thr if thr > 0 else 1e-12,
            vmin=0.0, vmax=top, symmetric_cbar=False,
        )
    )
    cax = fig.add_axes([0.9, 0.2, 0.022, 0.58])
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, top), cmap=cmap), cax=cax)
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
    colors = matplotlib.colormaps["tab10"].colors[: len(names)]
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
