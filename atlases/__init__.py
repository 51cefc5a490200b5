"""Surfaces, regions of interest and surface maps (fsaverage5 through nilearn)."""

from atlases.plotting import plot_surface_map
from atlases.rois import AUDITORY_LANDMARKS, auditory_rois
from atlases.surface import coordinates, load_fsaverage5

__all__ = ["AUDITORY_LANDMARKS", "auditory_rois", "coordinates", "load_fsaverage5", "plot_surface_map"]
