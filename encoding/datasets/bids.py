"""BIDS data sets: run discovery (nilearn's BIDS helpers), events, TR, and BOLD in three forms.

BOLD comes from one of:

- ``volume``: raw or preprocessed NIfTI (``*_bold.nii[.gz]``), masked with a brain mask (given,
  or computed from the first run with nilearn's ``compute_epi_mask``), or projected onto
  fsaverage5 with nilearn's ``vol_to_surf`` (MNI-space images only);
- ``fsaverage5``: fMRIPrep surface derivatives (``*_hemi-{L,R}_space-fsaverage5_bold.func.gii``);
- ``arrays``: preprocessed responses saved per run (``*_bold.npy``, n_trs x n_vertices).

The TR comes from the sidecar's ``RepetitionTime`` and is checked against the image header.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from nilearn.interfaces.bids import get_bids_files, parse_bids_filename
from tqdm.auto import tqdm

from encoding.config import BidsConfig, PreprocessingConfig
from encoding.data import ClipSet, Experiment, Run
from encoding.datasets import ds003720
from encoding.datasets.audio import gtzan_path, load_excerpts
from encoding.datasets.captions import join_captions, read_captions
from encoding.errors import DataError, MissingInputError
from encoding.io import atomic_path
from encoding.preprocessing import detrend, regress_out, shift_events


@dataclass
class RunFiles:
    """The files of one BIDS run."""

    task: str
    run: str
    events: Path
    sidecar: Path | None
    bold: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``task-X_run-Y``."""
        return f"task-{self.task}" + (f"_run-{self.run}" if self.run else "")


def find_runs(cfg: BidsConfig, task: str, with_bold: bool = True) -> list[RunFiles]:
    """Discover the runs of ``task`` for ``cfg.subject``: events, sidecar and (``with_bold``) BOLD files.

    Raises
    ------
    FileNotFoundError
        When the task has no events, or a run's BOLD files are missing (naming what was looked for).
    """
    root = Path(cfg.root)
    if not root.is_dir():
        raise MissingInputError(f"BIDS root {root} does not exist.")
    bold_root = Path(cfg.derivatives) if cfg.derivatives else root
    events = get_bids_files(root, "events", "tsv", sub_label=cfg.subject, modality_folder="func",
                            filters=[("task", task)])
    if not events:
        raise MissingInputError(f"No sub-{cfg.subject}/func/*task-{task}*_events.tsv under {root}.")
    if with_bold:
        _check_every_bold_run_has_events(bold_root, cfg, task, events)
    runs = []
    for path in events:
        entities = parse_bids_filename(path)["entities"]
        filters = [("task", task)] + ([("run", entities["run"])] if "run" in entities else [])
        sidecars = get_bids_files(root, "bold", "json", sub_label=cfg.subject, modality_folder="func", filters=filters)
        inherited = root / f"task-{task}_bold.json"  # BIDS inheritance: a data-set-level sidecar
        sidecar = Path(sidecars[0]) if sidecars else (inherited if inherited.is_file() else None)
        runs.append(RunFiles(task, entities.get("run", ""), Path(path), sidecar,
                             _bold_files(bold_root, cfg, filters, Path(path)) if with_bold else []))
    return runs


BOLD_EXTENSIONS = {"volume": ("nii.gz", "nii"), "arrays": ("npy",), "fsaverage5": ("func.gii",)}
N_VERTICES_HEMI = 10242  # fsaverage5


def _check_every_bold_run_has_events(bold_root: Path, cfg: BidsConfig, task: str, events: list[str]) -> None:
    """A BOLD run without its events file would otherwise be left out of the fit without a word."""
    def run_of(path) -> str:
        return parse_bids_filename(path)["entities"].get("run", "")

    with_events = {run_of(p) for p in events}
    bold = [f for ext in BOLD_EXTENSIONS[cfg.bold] for f in get_bids_files(
        bold_root, "bold", ext, sub_label=cfg.subject, modality_folder="func", filters=[("task", task)])]
    orphans = sorted(Path(f).name for f in bold if run_of(f) not in with_events)
    if orphans:
        runs = {run_of(f) for f in bold if run_of(f) not in with_events}
        raise MissingInputError(
            f"{len(runs)} BOLD run(s) of task {task!r} have no events file under {Path(cfg.root)}/sub-{cfg.subject}/"
            f"func: {', '.join(orphans[:4])}{' ...' if len(orphans) > 4 else ''}. Add their *_events.tsv, or move "
            "the runs out of the data set if they should not be fitted."
        )


def _bold_files(bold_root: Path, cfg: BidsConfig, filters: list, events: Path) -> list[Path]:
    if cfg.bold == "fsaverage5":
        found = []
        for hemi in ("L", "R"):
            files = get_bids_files(bold_root, "bold", "func.gii", sub_label=cfg.subject, modality_folder="func",
                                   filters=filters + [("hemi", hemi), ("space", "fsaverage5")])
            if len(files) != 1:
                raise MissingInputError(
                    f"Run of {events.name}: expected one *_hemi-{hemi}_space-fsaverage5_bold.func.gii under "
                    f"{bold_root}/sub-{cfg.subject}/func, found {len(files)}. Run fMRIPrep with "
                    "--output-spaces fsaverage5, or choose bold = 'volume' or 'arrays'."
                )
            found.append(Path(files[0]))
        return found
    kinds = BOLD_EXTENSIONS[cfg.bold]
    files = [f for ext in kinds for f in get_bids_files(bold_root, "bold", ext, sub_label=cfg.subject,
                                                          modality_folder="func", filters=filters)]
    files = [f for f in files if "hemi" not in parse_bids_filename(f)["entities"]]
    if len(files) != 1:
        pattern = f"{events.name.replace('_events.tsv', '')}*_bold.{kinds[0]}"
        raise MissingInputError(
            f"Run of {events.name}: expected one {pattern} under {bold_root}/sub-{cfg.subject}/func, "
            f"found {len(files)}{': ' + ', '.join(Path(f).name for f in files) if files else ''}. "
            "Point bids.derivatives at the folder that holds the BOLD files."
        )
    return [Path(files[0])]


def repetition_time(run: RunFiles) -> float:
    """TR in seconds from the run's sidecar (``RepetitionTime``)."""
    if run.sidecar is None:
        raise MissingInputError(f"{run.events.name}: no *_bold.json sidecar to read RepetitionTime from.")
    meta = json.loads(run.sidecar.read_text())
    if "RepetitionTime" not in meta:
        raise DataError(f"{run.sidecar}: no RepetitionTime.")
    return float(meta["RepetitionTime"])


def load_bold(run: RunFiles, cfg: BidsConfig, tr: float, masker=None) -> np.ndarray:
    """A run's responses, shape (n_trs, n_vertices), float32.

    Raises
    ------
    ValueError
        When the image's TR differs from the sidecar's, or volumes hold NaN, naming the file.
    """
    if cfg.bold == "arrays":
        Y = np.load(run.bold[0])
        if Y.ndim != 2:
            raise DataError(f"{run.bold[0]}: expected an (n_trs, n_vertices) array, got shape {Y.shape}.")
    elif cfg.bold == "fsaverage5":
        import nibabel as nib

        hemispheres = []
        for path in run.bold:
            Y_hemi = np.column_stack([d.data for d in nib.load(path).darrays]).T
            if Y_hemi.shape[1] != N_VERTICES_HEMI:
                raise DataError(
                    f"{path}: {Y_hemi.shape[1]:,} vertices per volume, but fsaverage5 has {N_VERTICES_HEMI:,} per "
                    "hemisphere. Resample it to fsaverage5 (fMRIPrep --output-spaces fsaverage5), or read another "
                    "space with data.bids.bold = 'arrays' or 'volume'."
                )
            hemispheres.append(Y_hemi)
        Y = np.hstack(hemispheres)
    else:
        import nibabel as nib

        img = nib.load(run.bold[0])
        if img.ndim != 4:
            raise DataError(f"{run.bold[0]}: expected a 4-D image, got shape {img.shape}.")
        header_tr = float(img.header.get_zooms()[3])
        if header_tr > 0 and abs(header_tr - tr) > 1e-3:
            raise DataError(
                f"{run.bold[0]}: the image header says TR {header_tr} s but {run.sidecar.name} says {tr} s. "
                "Fix the header or the sidecar."
            )
        if cfg.project_to_surface:
            Y = project_to_fsaverage5(img)
        else:
            Y = masker.transform(img)
    Y = np.asarray(Y, dtype=np.float32)
    bad = ~np.isfinite(Y).all(axis=1)
    if bad.any():
        raise DataError(
            f"{run.bold[0]}: volumes {np.flatnonzero(bad)[:10].tolist()} hold NaN or inf values. "
            "Repair them, or discard them (preprocessing.discard_volumes for leading ones)."
        )
    return Y


def volume_masker(cfg: BidsConfig, first_run: RunFiles):
    """A fitted nilearn NiftiMasker: the configured mask, or an EPI mask of the first run."""
    from nilearn.maskers import NiftiMasker

    if cfg.mask:
        return NiftiMasker(mask_img=cfg.mask, standardize=None).fit()
    return NiftiMasker(mask_strategy="epi", standardize=None).fit(str(first_run.bold[0]))


def project_to_fsaverage5(img) -> np.ndarray:
    """Sample an MNI-space 4-D image on fsaverage5 (nilearn ``vol_to_surf``), shape (n_trs, 20484)."""
    from nilearn.surface import vol_to_surf

    from atlases.surface import HEMIS, load_fsaverage5

    meshes = load_fsaverage5()
    parts = [vol_to_surf(img, meshes["pial"].parts[h], inner_mesh=meshes["white_matter"].parts[h]) for h in HEMIS]
    return np.vstack(parts).T


CLIP_COLUMNS = ("stim_file", "stim", "trial_type")


def read_run_events(run: RunFiles, cfg: BidsConfig, test: bool) -> pd.DataFrame:
    """A run's events with a ``clip_id`` column (ds003720 dialect, or the generic BIDS columns)."""
    if cfg.dataset == "ds003720":
        return ds003720.read_events(run.events, test=test)
    events = pd.read_csv(run.events, sep="\t")
    column = next((c for c in CLIP_COLUMNS if c in events.columns), None)
    if column is None or "onset" not in events or "duration" not in events:
        raise DataError(f"{run.events}: events need onset, duration and one of {CLIP_COLUMNS} to name the clip.")
    events["clip_file"] = events[column].astype(str)
    events["clip_id"] = [Path(s).stem for s in events["clip_file"]]
    return events


def clip_table_from_events(events: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per clip named in the events, with label columns that are constant per clip."""
    allev = pd.concat(events, ignore_index=True)
    labels = [c for c in ("genre", "trial_type", "track", "start", "end", "clip_file") if c in allev.columns]
    table = allev.drop_duplicates("clip_id").set_index("clip_id")[labels].sort_index()
    return table


def load_design(cfg: BidsConfig, progress: bool = True, with_bold: bool = False
                ) -> tuple[list[tuple[RunFiles, pd.DataFrame, str]], ClipSet]:
    """Runs with their events and role, and the clip set (audio and captions when configured).

    BOLD files are only looked for ``with_bold``; without, a design loads from events alone.
    """
    runs = []
    for task, role in ((cfg.train_task, "train"), (cfg.test_task, "test")):
        if not task:
            continue
        found = find_runs(cfg, task, with_bold=with_bold)
        if role == "train":
            unknown = sorted(set(cfg.test_runs) - {run.run for run in found})
            if unknown:
                raise DataError(f"data.bids.test_runs names runs {unknown} that task {task!r} of sub-{cfg.subject} "
                                f"does not have; its runs: {sorted(run.run for run in found)}.")
        for run in found:
            run_role = "test" if run.run in cfg.test_runs else role
            runs.append((run, read_run_events(run, cfg, test=run_role == "test"), run_role))
    table = clip_table_from_events([ev for _, ev, _ in runs])
    if cfg.captions:
        table, report = join_captions(table, read_captions(cfg.captions))
    else:
        table = table.assign(caption="")
    audio = {}
    if cfg.audio_root:
        locate = gtzan_path if cfg.dataset == "ds003720" else (lambda root, cid: root / table.at[cid, "clip_file"])
        audio = load_excerpts(table, cfg.audio_root, cfg.sample_rate, locate=locate,
                              fade_seconds=2.0 if cfg.dataset == "ds003720" else 0.0,
                              cache=cfg.cache or None, progress=progress)
    return runs, ClipSet(table, audio, cfg.sample_rate)


def load_bids(cfg: BidsConfig, preprocessing: PreprocessingConfig, progress: bool = True) -> Experiment:
    """Load one subject of a BIDS data set into an :class:`~encoding.data.Experiment`.

    Errors name the file at fault: missing runs or BOLD files, events that overrun the scan, a TR
    mismatch between sidecar and image, NaN volumes, missing audio.
    """
    design, clips = load_design(cfg, progress, with_bold=True)
    masker = None
    if cfg.bold == "volume" and not cfg.project_to_surface:
        masker = volume_masker(cfg, design[0][0])
    runs = []
    for files, events, role in tqdm(design, desc="runs", disable=not progress, leave=False):
        tr = repetition_time(files)
        Y = _cached(cfg, files, preprocessing, lambda: _preprocessed(files, cfg, tr, masker, preprocessing))
        events = shift_events(events, preprocessing.discard_volumes, tr)
        try:
            runs.append(Run(f"{files.name}", Y, tr, events, role=role))
        except ValueError as err:
            raise DataError(f"{files.events}: {err}") from None
    info = {"source": "bids", "root": cfg.root, "dataset": cfg.dataset, "masker": masker}
    return Experiment(f"sub-{cfg.subject}", runs, clips, space=response_space(cfg, runs[0].n_vertices), info=info)


def response_space(cfg: BidsConfig, n_vertices: int) -> str:
    """``fsaverage5`` for surface data (arrays of 20,484 columns included), else ``volume`` or ``arrays``."""
    if cfg.bold == "fsaverage5" or cfg.project_to_surface or (cfg.bold == "arrays" and n_vertices == 20484):
        return "fsaverage5"
    return cfg.bold


def _preprocessed(files: RunFiles, cfg: BidsConfig, tr: float, masker, preprocessing: PreprocessingConfig) -> np.ndarray:
    Y = load_bold(files, cfg, tr, masker)
    if preprocessing.confounds:
        Y = regress_out(Y, fmriprep_confounds(files, preprocessing.confounds))
    Y = Y[preprocessing.discard_volumes:]
    return detrend(Y, tr, preprocessing)


def fmriprep_confounds(files: RunFiles, strategy: list[str]) -> np.ndarray:
    """Confounds of an fMRIPrep run (nilearn ``load_confounds``), shape (n_trs, k)."""
    from nilearn.interfaces.fmriprep import load_confounds

    try:
        confounds, _ = load_confounds(str(files.bold[0]), strategy=tuple(strategy))
    except Exception as err:  # nilearn raises ValueError or FileNotFoundError depending on what is missing
        raise DataError(
            f"{files.bold[0]}: cannot load fMRIPrep confounds {strategy} ({err}). Confound strategies need "
            "fMRIPrep derivatives with their *_desc-confounds_timeseries.tsv."
        ) from err
    return confounds.to_numpy()


def _cached(cfg: BidsConfig, files: RunFiles, preprocessing: PreprocessingConfig, compute) -> np.ndarray:
    if not cfg.cache:
        return compute()
    parts = [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files.bold]
    text = "|".join(parts) + repr(sorted(vars(preprocessing).items())) + f"{cfg.bold}|{cfg.mask}|{cfg.project_to_surface}"
    path = Path(cfg.cache) / "responses" / f"{hashlib.sha1(text.encode()).hexdigest()[:20]}.npy"
    if path.is_file():
        return np.load(path)
    Y = compute()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, Y)
    return Y
