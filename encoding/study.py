"""Studies: the same analysis for every subject, each into its own folder, then the group level.

``brain2music fit CONFIG`` runs a study when ``[study] subjects`` is set::

    OUT/
        sub-<label>/      one subject's outputs (as a single-subject ``brain2music fit`` writes them;
                          with ``[study] decode``, its ``decoding/`` too), each whole or not at all
        group/            the group level (:mod:`encoding.group`), with ``cross_subject.csv``
        study.json        per subject: done, reused or failed (with the message), and provenance
        report.html       the study's page (each subject's and the group's numbers, maps and tables)

Before any fit, every subject's data are loaded and compared: subjects whose surfaces, runs,
TR, clips or feature spaces differ are named together. A subject whose folder already holds the
outputs of the same configuration is reused (an interrupted study resumes where it stopped); a
subject that fails is recorded and the others go on, and the study then exits with the list.
Subjects with the same design (the same clips in the same runs, so the same design matrices) are
fitted together (``[study] share_fits``, :func:`fit_shared`): their responses side by side, one
factorization of every band-weight candidate for all of them, exact for each. Then each subject's
scores, statistics and outputs follow one after another; the fits use the dask cluster
``[model] scheduler`` names, if any.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoding.config import PipelineConfig, StudyConfig
from encoding.data import Experiment
from encoding.errors import DataError, OutputError, UserError
from encoding.io import provenance, write_json
from encoding.design import Design
from encoding.pipeline import (
    SharedFit,
    build_design,
    check_against_data,
    extract_features,
    fit_model,
    fit_subset_models,
    load_data,
    partition_targets,
    partitions,
    preflight,
    run_pipeline,
)
from encoding.stats.report import summary_regions

MEMORY_BUDGET = 4 * 2**30  # bytes of responses kept in memory between the check and the fits


@dataclass
class StudyRun:
    """Outcome of :func:`run_study`.

    Attributes
    ----------
    subjects : list of str
    folders : dict of str to Path
        Each subject's output folder.
    status : dict of str to str
        ``"done"``, ``"reused"`` or ``"failed: <message>"``.
    group : GroupResults or None
    cross_subject : DataFrame or None
    """

    subjects: list[str]
    folders: dict[str, Path]
    status: dict[str, str]
    group: object | None = None
    cross_subject: object | None = None

    def _repr_html_(self) -> str:
        import pandas as pd

        from encoding.io import html_summary

        table = pd.DataFrame({"status": self.status, "folder": {k: str(v) for k, v in self.folders.items()}})
        significant = "n/a" if self.group is None else f"{int(self.group.significant().sum()):,}"
        return html_summary(f"StudyRun ({len(self.subjects)} subjects)", {"group: vertices significant": significant},
                            table)

    @property
    def failed(self) -> list[str]:
        return [s for s, status in self.status.items() if status.startswith("failed")]


def study_subjects(config: PipelineConfig) -> list[str]:
    """The study's subject labels, ``["all"]`` resolved against the data set.

    Raises
    ------
    MissingInputError, DataError
        A BIDS root without subjects, or listed subjects it does not hold.
    """
    from encoding.errors import MissingInputError

    wanted = config.study.subjects
    if config.data.source == "simulation":
        return config.data.simulation.subject_labels() if wanted == ["all"] else list(wanted)
    root = Path(config.data.bids.root)
    present = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not present:
        raise MissingInputError(f"{root} holds no sub-* folders: check data.bids.root.")
    if wanted == ["all"]:
        return present
    missing = [label for label in wanted if label not in present]
    if missing:
        raise DataError(f"study.subjects names {missing}, which {root} does not hold; it has {', '.join(present)}.")
    return list(wanted)


def subject_config(config: PipelineConfig, label: str) -> PipelineConfig:
    """The single-subject config of ``label``: the study's, with its subject selected and no study."""
    data = config.data
    if data.source == "simulation":
        simulation = dataclasses.replace(data.simulation, subject=data.simulation.subject_labels().index(label) + 1)
        data = dataclasses.replace(data, simulation=simulation)
    else:
        data = dataclasses.replace(data, bids=dataclasses.replace(data.bids, subject=label))
    return dataclasses.replace(config, data=data, study=StudyConfig())


def signature(experiment: Experiment) -> dict:
    """What subjects of one study must share: surface, vertices, TR, runs and clips."""
    runs = experiment.runs
    return {
        "surface": f"{experiment.space} ({experiment.n_vertices:,} vertices)",
        "TR": f"{runs[0].tr:g} s",
        "runs": f"{sum(r.role == 'train' for r in runs)} training, {sum(r.role == 'test' for r in runs)} test",
        "clips": f"{len(experiment.clips.table)} clips" + ("" if experiment.clips.audio else " (no audio)"),
        "clip ids": hash(tuple(sorted(experiment.clips.ids))),
    }


def check_subjects(signatures: dict[str, dict]) -> None:
    """One message naming the subjects that differ from the first, and how.

    Raises
    ------
    DataError
    """
    (first, reference), *others = signatures.items()
    lines = []
    for label, sig in others:
        for key, value in sig.items():
            if value != reference[key]:
                what = "other clips" if key == "clip ids" else f"{value} (sub-{first}: {reference[key]})"
                lines.append(f"sub-{label} has {key} {what}" if key != "clip ids" else f"sub-{label} heard {what}")
    if lines:
        raise DataError("The study's subjects differ (nothing was fitted): " + "; ".join(lines)
                        + ". Fix their data or leave them out of study.subjects.")


def design_key(design: Design) -> str:
    """Fingerprint of what a fit depends on besides the responses: design matrices, runs and bands."""
    digest = hashlib.sha256()
    for array in (design.X_train, design.groups, design.X_test):
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr([(name, band.start, band.stop) for name, band in design.bands.items()]).encode())
    return digest.hexdigest()


def _runs_key(experiment: Experiment) -> str:
    """Fingerprint of what a design is built from besides the shared clips: runs, events, regressors."""
    digest = hashlib.sha256()
    for run in experiment.runs:
        digest.update(repr((run.role, run.n_trs, run.tr)).encode())
        digest.update(run.events.to_csv().encode())
        for name, values in sorted((run.regressors or {}).items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def fit_shared(configs: dict[str, PipelineConfig], loaded: dict[str, tuple], progress: bool = True
               ) -> dict[str, SharedFit]:
    """Fit together the subjects whose designs are the same: one fit of their responses side by side.

    A vertex's banded ridge (its cross-validated search, screen and successive halving included)
    depends on the design and on its own responses only, so fitting several subjects' columns at
    once gives each the model it would get alone (up to float32 rounding in the products), while
    every candidate's factorization, the bulk of the fit, is computed once for all of them. The
    subset models of variance partitioning are fitted the same way. Subjects whose design differs
    from every other's are left to their own pipeline (their designs are not built here when their
    runs, events or regressors already differ).

    Parameters
    ----------
    configs : dict of str to PipelineConfig
        Each subject's configuration (one study: the same features, design and model).
    loaded : dict of str to (Experiment, GroundTruth or None)
        The subjects to fit.
    progress : bool

    Returns
    -------
    dict of str to SharedFit
        For every subject that shares its design with another.
    """
    runs = defaultdict(list)  # only subjects whose runs match another's can share a design: build those
    for label, (experiment, _) in loaded.items():
        runs[_runs_key(experiment)].append(label)
    candidates = {label: loaded[label] for group in runs.values() if len(group) >= 2 for label in group}
    designs = {}
    for label, (experiment, truth) in tqdm(candidates.items(), desc="study: designs", disable=not progress):
        cfg = configs[label]
        features = extract_features(experiment, cfg.features, progress, truth.features if truth is not None else None)
        designs[label] = build_design(experiment, features, cfg.features.spaces, cfg.design)
    members = defaultdict(list)
    for label, design in designs.items():
        members[design_key(design)].append(label)
    shared = {}
    for labels in (group for group in members.values() if len(group) >= 2):
        cfg, parts = configs[labels[0]], [designs[label] for label in labels]
        joint = dataclasses.replace(parts[0], Y_train=np.hstack([d.Y_train for d in parts]),
                                    Y_test=np.hstack([d.Y_test for d in parts]), Y_test_repeats=None)
        start = time.perf_counter()
        model = fit_model(joint, cfg.model, progress)
        timings = {"fit": round(time.perf_counter() - start, 3)}
        subset_predictions = None
        edges = np.cumsum([0] + [d.Y_train.shape[1] for d in parts])
        if partitions(cfg.statistics, len(joint.bands)):
            start = time.perf_counter()
            targets = [partition_targets(model.select_targets(np.arange(first, stop)), cfg.statistics,
                                         summary_regions(loaded[label][0], cfg.statistics.atlas))
                       for label, first, stop in zip(labels, edges[:-1], edges[1:])]
            subset_predictions = fit_subset_models(joint, cfg.model, progress, full_model=model,
                                                   targets=None if targets[0] is None else np.concatenate(targets))[1]
            timings["subset_models"] = round(time.perf_counter() - start, 3)
        for label, design, first, stop in zip(labels, parts, edges[:-1], edges[1:]):
            columns = np.arange(first, stop)
            shared[label] = SharedFit(
                design, model.select_targets(columns),
                None if subset_predictions is None else {s: p[:, columns] for s, p in subset_predictions.items()},
                list(labels), timings)
    return shared


def _reusable(folder: Path, config: PipelineConfig) -> bool:
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    try:
        saved = json.loads(summary.read_text())["provenance"]["config"]
    except (ValueError, KeyError):
        return False
    return saved == json.loads(json.dumps(config.to_dict()))


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"Study output {out} is a file: choose another --out.")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if not (p.name.startswith(("sub-", ".sub-", "group", ".group"))
                                                        or p.name in ("study.json", "report.html"))]
        if foreign:
            raise OutputError(f"Study output {out} holds files a study did not write ({', '.join(foreign[:5])}): "
                              "choose an empty or new folder for --out.")


def cross_subject_table(config: PipelineConfig, subjects: dict[str, tuple], progress: bool = True):
    """Cross-subject decoding of every ``[decoding]`` target with the study's alignments, one table.

    ``subjects`` maps labels to ``(experiment, truth)``; the target features are extracted once
    (the subjects heard the same clips) or taken from the simulation's truth.
    """
    import pandas as pd

    from decoding.alignment import cross_subject_decoding
    from encoding.config import FeaturesConfig
    from encoding.pipeline import extract_features

    experiment, truth = next(iter(subjects.values()))
    targets = FeaturesConfig(spaces=list(config.decoding.targets), params=config.features.params,
                             cache=config.features.cache)
    frames = extract_features(experiment, targets, progress, truth.features if truth is not None else None)
    experiments = {label: pair[0] for label, pair in subjects.items()}
    cfg, model = config.decoding, config.model
    vertices = decoder = None
    if cfg.selection == "roi":  # align and decode the regions' vertices only
        from atlases.parcellations import atlas_rois
        from decoding.model import make_decoder

        masks = atlas_rois(cfg.atlas)
        vertices = np.any([masks[name] for name in cfg.rois], axis=0)
        decoder = make_decoder(dataclasses.replace(cfg, selection="all"), int(vertices.sum()), False, model.backend,
                               model.memory_gb)
    return pd.concat([cross_subject_decoding(experiments, frames[space], cfg, space, alignments=config.study.cross_subject,
                                             vertices=vertices, decoder=decoder, backend=model.backend,
                                             memory_gb=model.memory_gb, progress=progress)
                      for space in cfg.targets], ignore_index=True)


def run_study(config: PipelineConfig, out_dir: str | Path, progress: bool = True) -> StudyRun:
    """Run ``config`` for each subject of ``config.study``, then the group level.

    Parameters
    ----------
    config : PipelineConfig
        With ``study.subjects`` set.
    out_dir : path
    progress : bool

    Returns
    -------
    StudyRun

    Raises
    ------
    DataError
        Before any fit, when subjects differ; after the others finished, when subjects failed
        (the message lists them).
    """
    from decoding.pipeline import run_decoding
    from encoding.group import run_group
    from encoding.html_report import write_html_report

    out = Path(out_dir)
    _check_out(out)
    labels = study_subjects(config)
    configs = {label: subject_config(config, label) for label in labels}
    folders = {label: out / f"sub-{label}" for label in labels}
    for cfg in configs.values():
        preflight(cfg)
    reused = {label for label in labels if _reusable(folders[label], configs[label])
              and (not config.study.decode or _reusable(folders[label] / "decoding", configs[label]))}
    needed = labels if config.study.cross_subject else [label for label in labels if label not in reused]
    loaded, signatures, size, heard = {}, {}, 0, None
    for label in tqdm(needed, desc="study: checking subjects", disable=not progress):  # reused ones were checked
        params = configs[label].features.params
        if configs[label].data.source == "simulation":
            from encoding.simulation import simulate_experiment

            experiment, truth = simulate_experiment(configs[label].data.simulation, params, progress, heard)
            heard = experiment, truth  # every simulated subject hears the same clips
        else:
            experiment, truth = load_data(configs[label].data, params, progress)
        check_against_data(configs[label], experiment)
        signatures[label] = signature(experiment)
        size += sum(run.responses.nbytes for run in experiment.runs)
        if size <= MEMORY_BUDGET or config.study.cross_subject:
            loaded[label] = (experiment, truth)
    if signatures:
        check_subjects(signatures)
    to_fit = {label: loaded[label] for label in labels if label in loaded and label not in reused}
    shared = fit_shared(configs, to_fit, progress) if config.study.share_fits and len(to_fit) >= 2 else {}
    status: dict[str, str] = {}
    for label in tqdm(labels, desc="study: subjects", disable=not progress):
        cfg = configs[label]
        if label in reused:
            status[label] = "reused"
            continue
        experiment, truth = loaded.get(label, (None, None))
        try:
            run = run_pipeline(cfg, folders[label], progress, experiment=experiment, truth=truth,
                               shared=shared.pop(label, None))
            if config.study.decode:
                run_decoding(cfg, folders[label] / "decoding", progress, experiment=run.experiment, truth=run.truth)
                write_html_report(folders[label])  # the subject's page, now with its decoding
            status[label] = "done"
        except KeyboardInterrupt:
            raise
        except UserError as err:
            status[label] = f"failed: {err}"
        except Exception as err:  # noqa: BLE001 - one subject's bug must not lose the others; the trace is kept
            status[label] = f"failed: {type(err).__name__}: {err} ({traceback.format_exc(limit=3)})"
    study = StudyRun(labels, folders, status)
    finished = [folders[s] for s in labels if not status[s].startswith("failed")]
    if config.study.cross_subject and len(labels) >= 2:
        study.cross_subject = cross_subject_table(config, {label: loaded[label] for label in labels}, progress)
    if config.study.group and len(finished) >= 2:
        study.group = run_group(finished, out / "group", alpha=config.statistics.alpha,
                                correction=config.statistics.correction, random_state=config.statistics.random_state,
                                cross_subject=study.cross_subject, fwer=config.statistics.fwer,
                                cluster_threshold=config.statistics.cluster_threshold)
    write_json(out / "study.json", {"subjects": labels, "status": status,
                                    "folders": {k: str(v.relative_to(out)) for k, v in folders.items()},
                                    "provenance": provenance(config.to_dict())})
    write_html_report(out)  # the study's page: subjects, group maps and tables
    if study.failed:
        raise DataError(f"{len(study.failed)} of {len(labels)} subjects failed (the others are in {out}): "
                        + "; ".join(f"sub-{s}: {status[s][8:]}" for s in study.failed))
    return study
