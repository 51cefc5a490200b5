"""Surfaces, regions of interest and surface maps (fsaverage5 through nilearn).

The names below are imported on first use, so ``import atlases.rois`` loads no plotting library.
"""

from importlib import import_module

_PUBLIC = {"plot_surface_map": "atlases.plotting", "AUDITORY_LANDMARKS": "atlases.rois",
           "auditory_rois": "atlases.rois", "coordinates": "atlases.surface", "load_fsaverage5": "atlases.surface",
           "desikan_killiany": "atlases.parcellations", "atlas_rois": "atlases.parcellations",
           "load_parcellation": "atlases.parcellations", "region_table": "atlases.parcellations"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'atlases' has no attribute {name!r}")
