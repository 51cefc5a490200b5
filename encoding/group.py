"""The group level of a study, from the subjects' output folders (``brain2music group DIR...``).

Each subject's folder is what ``brain2music fit`` wrote (``summary.json``, ``config.toml``,
``results.npz``, ``statistics/rois.csv``; ``decoding/`` when it was decoded). The group level:

- **maps**: the test correlation of every subject, Fisher-z transformed (its null spread,
  about ``1 / sqrt(n_test - 3)``, is the same at every vertex), tested against zero with an exact
  sign-flip test of the mean over subjects (:func:`encoding.stats.group.sign_flip_test`), FWER by
  the step-down maximum statistic, or FDR; shown with the subjects' figure conventions;
- **ROIs**: each region's test R^2 from the subjects' ROI tables in a mixed model (one fixed
  effect per region, a random intercept per subject; :func:`encoding.stats.group.roi_mixed_model`)
  with Wald intervals and Cohen's d;
- **decoding**: each subject's identification with its bootstrap interval, and the group mean
  with a t interval over subjects and a sign-flip p-value against chance;
- **cross-subject decoding** (written by a study, ``cross_subject.csv``), shown when present.

Outputs made with different settings are refused before any work, naming the settings.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from encoding.config import CLUSTER_THRESHOLD, CORRECTIONS, FWER_METHODS, SPATIAL_METHODS
from encoding.errors import ConfigError, DataError, MissingInputError
from encoding.io import (
    RunFolder,
    provenance,
    save_figure,
    write_arrays,
    write_json,
    write_text,
)
from encoding.stats.group import roi_mixed_model, sign_flip_test
from encoding.stats.permutation import PermutationResult
from encoding.stats.report import (
    correction_label,
    fwer_method_text,
    fwer_procedures,
    procedure_markdown,
    write_table,
)
from encoding.stats.spatial import SurfaceGraph, fsaverage5_graph

# settings that name the subject, not the analysis: they may differ between subjects
SUBJECT_SETTINGS = ("data.bids.subject", "data.simulation.subject", "study")
N_EXACT = 12  # exact sign flips up to this many subjects (2^12 patterns)


@dataclass
class SubjectOutputs:
    """What one subject's output folder holds, for the group level."""

    folder: Path
    subject: str
    summary: dict
    config: dict
    arrays: dict[str, np.ndarray]
    rois: pd.DataFrame | None
    decoding: pd.DataFrame | None  # identification rows (target, metric, value, ci_low, ci_high, chance)


@dataclass
class GroupResults:
    """The group level of a study.

    Attributes
    ----------
    subjects : list of str
    maps : PermutationResult
        Sign-flip test of the mean Fisher-z test correlation per vertex.
    mean_r : ndarray, shape (n_vertices,)
        Group mean test correlation (back-transformed mean z).
    rois : DataFrame or None
        Mixed-model ROI effects of the test R^2 (:func:`encoding.stats.group.roi_mixed_model`).
    identification : DataFrame or None
        One row per subject and target, and a ``group`` row per target.
    cross_subject : DataFrame or None
    settings : dict
    space : str
        The subjects' surface (``"fsaverage5"`` gets maps).
    """

    subjects: list[str]
    maps: PermutationResult
    mean_r: np.ndarray
    rois: pd.DataFrame | None
    identification: pd.DataFrame | None
    cross_subject: pd.DataFrame | None
    settings: dict
    space: str
    atlas: str = "desikan_killiany"

    def _repr_html_(self) -> str:
        from encoding.io import html_summary

        s = self.settings
        rows = {"subjects": ", ".join(self.subjects), "vertices significant": f"{int(self.significant().sum()):,} "
                f"({correction_label(s)}, sign flips)"}
        table = None if self.rois is None else self.rois[["estimate", "ci_low", "ci_high", "p", "cohen_d"]]
        return html_summary("GroupResults", rows, table)

    def significant(self) -> np.ndarray:
        """Vertices significant at the settings' ``alpha`` and ``correction``, shape (n_vertices,)."""
        return self.maps.significant(self.settings["alpha"], self.settings["correction"])


# -- reading the subjects -----------------------------------------------------------------

def subject_folders(paths: list[str | Path]) -> list[Path]:
    """The subject output folders among ``paths``: each path is one, or a study folder holding ``sub-*/``.

    Raises
    ------
    MissingInputError
        A path that does not exist or holds no subject output.
    """
    folders = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise MissingInputError(f"{path} is not a folder: give subject output folders (written by "
                                    "`brain2music fit`) or a study folder holding sub-*/ folders.")
        if (path / "summary.json").is_file() and (path / "results.npz").is_file():
            folders.append(path)
            continue
        found = sorted(p for p in path.glob("sub-*") if (p / "summary.json").is_file())
        if not found:
            raise MissingInputError(f"{path} holds no subject outputs (summary.json and results.npz, or sub-*/ "
                                    "folders with them): run `brain2music fit` first.")
        folders += found
    if len(folders) < 2:
        raise DataError(f"The group level needs at least 2 subjects; found {len(folders)} ({', '.join(map(str, folders))}).")
    return folders


def load_subject(folder: Path) -> SubjectOutputs:
    """Read one subject's output folder."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    if "data" not in summary or not (folder / "results.npz").is_file():
        raise MissingInputError(f"{folder} is not an encoding output folder (no results.npz or summary.json with "
                                "data): give the folders `brain2music fit` wrote.")
    config = tomllib.loads((folder / "config.toml").read_text()) if (folder / "config.toml").is_file() else \
        summary["provenance"]["config"]
    with np.load(folder / "results.npz") as npz:
        arrays = {key: npz[key] for key in ("test_r", "test_r2") if key in npz.files}
    rois = pd.read_csv(folder / "statistics" / "rois.csv", index_col=0) if \
        (folder / "statistics" / "rois.csv").is_file() else None
    identification = folder / "decoding" / "identification.csv"
    decoding = pd.read_csv(identification, index_col=0) if identification.is_file() else None
    return SubjectOutputs(folder, summary["data"]["subject"], summary, config, arrays, rois, decoding)


def _flatten(values: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out |= _flatten(value, name)
        else:
            out[name] = value
    return out


def check_compatible(subjects: list[SubjectOutputs]) -> None:
    """Refuse subjects whose analyses differ: other settings, surfaces, vertex counts or feature spaces.

    Raises
    ------
    ConfigError
        Naming each setting that differs and its value per subject.
    DataError
        Subjects on different surfaces or with different numbers of vertices, or the same subject twice.
    """
    labels = [s.subject for s in subjects]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise DataError(f"Subject(s) {twice} appear more than once: " + ", ".join(
            str(s.folder) for s in subjects if s.subject in twice) + ".")
    shapes = {s.subject: (s.summary["data"]["space"], s.summary["data"]["n_vertices"]) for s in subjects}
    if len(set(shapes.values())) > 1:
        raise DataError("Subjects are on different surfaces or vertex sets: " + "; ".join(
            f"{k}: {v[0]} ({v[1]:,} vertices)" for k, v in shapes.items()) + ". Resample them to one surface.")
    flat = {s.subject: _flatten(s.config) for s in subjects}
    keys = sorted(set().union(*flat.values()))
    differ = [k for k in keys if not k.startswith(SUBJECT_SETTINGS)
              and len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat.values()}) > 1]
    if differ:
        lines = [f"{k}: " + ", ".join(f"{label} {flat[label].get(k)!r}" for label in flat) for k in differ[:8]]
        raise ConfigError("The subjects' outputs were made with different settings (the group level compares like "
                          "with like; refit them with one config):\n  " + "\n  ".join(lines)
                          + ("\n  ..." if len(differ) > 8 else ""))


# -- statistics ---------------------------------------------------------------------------

def fisher_z(r: np.ndarray) -> np.ndarray:
    """``arctanh`` of correlations, clipped away from +-1."""
    return np.arctanh(np.clip(np.asarray(r, dtype=np.float64), -0.999999, 0.999999))


def group_maps(subjects: list[SubjectOutputs], n_permutations: int = 10000, random_state: int = 0,
               fwer: str = "step-down", graph: SurfaceGraph | None = None,
               cluster_threshold: float = CLUSTER_THRESHOLD) -> tuple[PermutationResult, np.ndarray]:
    """Sign-flip test of the mean Fisher-z test correlation, and the group mean correlation."""
    z = np.stack([fisher_z(np.nan_to_num(s.arrays["test_r"])) for s in subjects])
    result = sign_flip_test(z, n_permutations, random_state, statistic="mean", fwer=fwer, graph=graph,
                            cluster_threshold=cluster_threshold)
    return result, np.tanh(z.mean(axis=0))


def group_rois(subjects: list[SubjectOutputs], value: str = "test_r2", random_state: int = 0) -> pd.DataFrame | None:
    """Mixed-model ROI effects of ``value`` from the subjects' ROI tables (None without them)."""
    tables = [s.rois.assign(subject=s.subject).rename_axis("roi").reset_index() for s in subjects
              if s.rois is not None and value in s.rois]
    if len(tables) < 2:
        return None
    long = pd.concat(tables, ignore_index=True)[["subject", "roi", value]]
    order = list(dict.fromkeys(long["roi"]))
    return roi_mixed_model(long, value=value, random_state=random_state).reindex(order)


def group_identification(subjects: list[SubjectOutputs], metric: str = "pairwise") -> pd.DataFrame | None:
    """Each subject's identification (``metric``) per target and the group mean per target.

    The group row: the mean over subjects with a 95 % t interval, and the exact sign-flip
    p-value of the mean above chance (one-sided).
    """
    from scipy import stats

    rows = [dict(subject=s.subject, target=r.target, value=r.value, ci_low=r.ci_low, ci_high=r.ci_high,
                 chance=r.chance) for s in subjects if s.decoding is not None
            for r in s.decoding[s.decoding["metric"] == metric].itertuples()]
    if not rows:
        return None
    table = pd.DataFrame(rows)
    groups = []
    for target, part in table.groupby("target", sort=False):
        values, chance = part["value"].to_numpy(), float(part["chance"].iloc[0])
        n = len(values)
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        p = sign_flip_test((values - chance)[:, None]).p_values[0] if n > 1 else np.nan
        groups.append(dict(subject="group", target=target, value=values.mean(), ci_low=values.mean() - half,
                           ci_high=values.mean() + half, chance=chance, p_value=p, n_subjects=n))
    return pd.concat([table, pd.DataFrame(groups)], ignore_index=True)


def run_group(paths: list[str | Path], out_dir: str | Path | None = None, alpha: float = 0.05,
              correction: str = "fwer", n_permutations: int = 10000, random_state: int = 0,
              cross_subject: pd.DataFrame | None = None, fwer: str = "step-down",
              cluster_threshold: float = CLUSTER_THRESHOLD) -> GroupResults:
    """The group level of the subjects in ``paths``; written to ``out_dir`` when given (whole or not at all).

    Parameters
    ----------
    paths : list of paths
        Subject output folders, or study folders holding ``sub-*/``.
    out_dir : path or None
    alpha : float
        Significance level of the maps.
    correction : {"fwer", "fdr_bh", "fdr_by", "none"}
    fwer : {"step-down", "max", "tfce", "cluster-mass", "cluster-extent"}
        FWER procedure (the spatial ones on fsaverage5 subjects only), on the mean Fisher z in
        units of its sign-flip spread pooled over vertices.
    cluster_threshold : float
        Cluster-forming threshold of the cluster procedures (pooled null standard deviations).
    n_permutations : int
        Random sign patterns beyond 12 subjects (exact below).
    random_state : int
    cross_subject : DataFrame, optional
        Cross-subject decoding results (a study passes them); else read from a study folder's
        ``group/cross_subject.csv`` when present.
    """
    folder = RunFolder(out_dir) if out_dir is not None else None
    try:
        if correction not in CORRECTIONS:
            raise ConfigError(f"correction must be one of {CORRECTIONS}, got {correction!r}.")
        if fwer not in FWER_METHODS:
            raise ConfigError(f"fwer must be one of {FWER_METHODS}, got {fwer!r}.")
        subjects = [load_subject(path) for path in subject_folders(paths)]
        check_compatible(subjects)
        space = subjects[0].summary["data"]["space"]
        if fwer in SPATIAL_METHODS and space != "fsaverage5":
            raise ConfigError(f"fwer = {fwer!r} needs subjects on fsaverage5's mesh, but these are on {space!r}; use "
                              "'step-down' or 'max'.")
        graph = fsaverage5_graph() if space == "fsaverage5" else None
        maps, mean_r = group_maps(subjects, n_permutations, random_state, fwer, graph, cluster_threshold)
        config = subjects[0].config
        results = GroupResults(
            subjects=[s.subject for s in subjects], maps=maps, mean_r=mean_r, rois=group_rois(subjects),
            identification=group_identification(subjects), cross_subject=cross_subject,
            settings=dict(alpha=alpha, correction=correction, fwer=fwer, cluster_threshold=cluster_threshold,
                          standardise=False, statistic="mean Fisher-z test r", n_patterns=maps.n_permutations,
                          exact=maps.settings["exact"]),
            space=space, atlas=config.get("statistics", {}).get("atlas",
                                                                                            "desikan_killiany"))
        if folder is not None:
            write_group(results, folder.staging, [s.folder for s in subjects])
            folder.commit()
    finally:
        if folder is not None:
            folder.discard()
    return results


# -- outputs ------------------------------------------------------------------------------

def group_summary(results: GroupResults) -> dict:
    """JSON-ready numbers of the group level."""
    significant = results.significant()
    out = {"subjects": results.subjects, "n_subjects": len(results.subjects), "space": results.space,
           "settings": results.settings, "n_significant": int(significant.sum()),
           "min_p": float(results.maps.p_values.min()),
           "mean_r_significant": float(results.mean_r[significant].mean()) if significant.any() else None,
           "fwer_procedures": {m: int((p <= results.settings["alpha"]).sum())
                               for m, p in fwer_procedures(results.maps).items()}}
    if results.rois is not None:
        out["rois"] = results.rois.replace({np.nan: None}).to_dict(orient="index")
    if results.identification is not None:
        group = results.identification[results.identification["subject"] == "group"]
        out["identification"] = group.replace({np.nan: None}).to_dict(orient="records")
    if results.cross_subject is not None:
        out["cross_subject"] = results.cross_subject.replace({np.nan: None}).to_dict(orient="records")
    return out


def group_figures(results: GroupResults, out: Path, dpi: int = 150) -> dict[str, str]:
    """The significant group correlation on the inflated and flat surface, and the ROI effects."""
    files = {}
    significant = results.significant()
    shown = np.where(significant, results.mean_r, 0.0)
    title = (f"Group test r, {len(results.subjects)} subjects (sign flips, "
             f"{correction_label(results.settings)})")
    if results.space == "fsaverage5":
        from atlases.parcellations import atlas_rois
        from atlases.plotting import plot_flat_map, plot_surface_map

        top = max(float(np.percentile(results.mean_r[significant], 99)) if significant.any() else 0.1, 0.05)
        fig = plot_surface_map(shown, title, vmax=top, label="mean test r")
        files["group_r"] = str(save_figure(fig, out / "figures" / "group_r.png", dpi=dpi).relative_to(out))
        fig = plot_flat_map(np.where(significant, results.mean_r, np.nan), title, vmax=top, label="mean test r",
                            outlines=atlas_rois(results.atlas, roles=("auditory",)))
        files["flat_group_r"] = str(save_figure(fig, out / "figures" / "flat_group_r.png", dpi=dpi).relative_to(out))
    if results.rois is not None:
        files["rois"] = str(save_figure(roi_effects_figure(results.rois), out / "figures" / "group_rois.png",
                                        dpi=dpi).relative_to(out))
    return files


def roi_effects_figure(table: pd.DataFrame):
    """Mixed-model estimate of each ROI's test R^2 with its 95 % interval."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.7 * len(table) + 1.5), 3.4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    err = np.vstack([table["estimate"] - table["ci_low"], table["ci_high"] - table["estimate"]])
    ax.bar(x, table["estimate"], yerr=err, color="#4c72b0", capsize=3)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(x, table.index, rotation=30, ha="right")
    ax.set_ylabel("test R² (mixed model, 95 % CI)")
    ax.set_title(f"ROI effects, {int(table['n_subjects'].max())} subjects", fontsize=11)
    return fig


def group_markdown(results: GroupResults, summary: dict, figures: dict[str, str], folders: list[Path]) -> str:
    """The group report."""
    s = results.settings
    patterns = "every sign pattern" if s["exact"] else f"{s['n_patterns']} random sign patterns"
    lines = [f"# brain2music group level: {len(results.subjects)} subjects", "",
             f"Subjects: {', '.join(results.subjects)} (folders: {', '.join(str(f) for f in folders)}).", "",
             "## Maps", "",
             f"Test correlations Fisher-z transformed and averaged over subjects; tested against zero with "
             f"{patterns} ({s['n_patterns']} besides the identity), {correction_label(s)}"
             + (f" (FWER: {fwer_method_text(s)})" if s["correction"] == "fwer" else "")
             + f": **{summary['n_significant']:,}** vertices significant; smallest p {summary['min_p']:.3g}."]
    lines += procedure_markdown(summary["fwer_procedures"], None, s)
    lines += [f"![{k}]({v})" for k, v in figures.items() if k != "rois"] + [""]
    if results.rois is not None:
        columns = ["estimate", "ci_low", "ci_high", "p", "cohen_d", "d_ci_low", "d_ci_high", "n_subjects"]
        lines += ["## ROIs", "", "Test R² per region: mixed model (fixed effect per region, random intercept per "
                  "subject), 95 % Wald intervals; Cohen's d of the subject means with a bootstrap interval.", "",
                  results.rois[columns].to_markdown(floatfmt=".3g"), ""]
        if "rois" in figures:
            lines += [f"![ROI effects]({figures['rois']})", ""]
    if results.identification is not None:
        lines += ["## Decoding", "", "Pairwise identification per subject (bootstrap interval over test clips) and "
                  "the group mean (t interval over subjects; p: exact sign flips of the subjects' differences from "
                  "chance).", "", results.identification.to_markdown(index=False, floatfmt=".3f"), ""]
    if results.cross_subject is not None:
        lines += ["## Cross-subject decoding", "", "Each subject decoded by a decoder trained on the others: "
                  "anatomical (the same vertices) and functional alignment (responses mapped to a reference "
                  "subject by ridge regression on the training runs).", "",
                  results.cross_subject.to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines)


def write_group(results: GroupResults, out: Path, folders: list[Path]) -> dict:
    """``summary.json``, ``results.npz``, ``rois.*``, ``identification.*``, ``figures/`` and ``report.md`` in ``out``."""
    out = Path(out)
    significant = results.significant()
    s = results.settings
    write_arrays(out / "results.npz", mean_r=results.mean_r.astype(np.float32),
                 mean_z=results.maps.observed.astype(np.float32), p_value=results.maps.p_values.astype(np.float32),
                 p_corrected=results.maps.corrected(s["correction"]).astype(np.float32), significant=significant)
    tables = {}
    if results.rois is not None:
        tables["rois"] = write_table(results.rois, out, "rois")
    if results.identification is not None:
        tables["identification"] = write_table(results.identification, out, "identification")
    if results.cross_subject is not None:
        tables["cross_subject"] = write_table(results.cross_subject, out, "cross_subject")
    figures = group_figures(results, out)
    summary = group_summary(results)
    summary["files"] = {"tables": tables, "figures": figures}
    summary["provenance"] = provenance({"subjects": [str(f) for f in folders], "settings": s})
    write_text(out / "report.md", group_markdown(results, summary, figures, folders))
    write_json(out / "summary.json", summary)
    return summary
