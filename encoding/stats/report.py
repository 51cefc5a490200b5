"""Statistical report: tables as CSV, Markdown and LaTeX, and a methods paragraph.

The methods paragraph is written from the parameters a run actually used (delays, CV scheme,
search grid, permutations, correction), so it can be pasted into a paper and stays true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from encoding.config import FWER_METHODS, SPATIAL_METHODS
from encoding.io import write_text


def write_table(table: pd.DataFrame, folder: Path, name: str, float_format: str = "{:.4g}") -> dict[str, str]:
    """Write ``table`` as ``name.csv``, ``name.md`` and ``name.tex`` in ``folder`` (atomically).

    Returns
    -------
    dict of str to str
        Format to file name, relative to ``folder``.
    """
    folder = Path(folder)
    formatted = table.map(lambda v: float_format.format(v) if isinstance(v, (float, np.floating)) else v)
    files = {"csv": f"{name}.csv", "md": f"{name}.md", "tex": f"{name}.tex"}
    write_text(folder / files["csv"], table.to_csv(float_format="%.6g"))
    write_text(folder / files["md"], formatted.to_markdown() + "\n")
    write_text(folder / files["tex"], formatted.to_latex(escape=True))
    return files


def _search_text(model, model_cfg, n_runs: int) -> str:
    """How the search did less than every candidate on every vertex (empty for the exhaustive search)."""
    searched = getattr(model, "searched_", None)
    parts = []
    if searched is not None and not searched.all():
        parts.append(f"vertices whose cross-validated R\u00b2 with equal band weights (plain ridge) was at most "
                     f"{model_cfg.screen_r2:g} kept that model ({int(searched.sum())} of {searched.size} vertices were "
                     f"searched further)")
    if getattr(model, "search", "random") == "halving" and model.strategy_ == "folds" and len(model.candidates_) > 2:
        parts.append("the other candidates were compared by successive halving: after 2, 4, 8, ... of the "
                     f"{n_runs} folds, each vertex kept the best third of its candidates, and the final choice was made "
                     "among those scored on every fold")
    return "; " + "; ".join(parts) if parts else ""


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def methods_paragraph(cfg, design, model, statistics=None, n_vertices: int | None = None) -> str:
    """A methods paragraph describing the fit and the statistics with the values used.

    Parameters
    ----------
    cfg : PipelineConfig
    design : Design
    model : BandedRidgeEncoder
        Fitted.
    statistics : StatisticsResults or None
    n_vertices : int or None
        Vertices tested (defaults to the design's).
    """
    tr = float(cfg.data.simulation.tr) if cfg.data.source == "simulation" else None
    delays = list(design.delays)
    delay_text = ", ".join(str(d) for d in delays) + " TRs"
    if tr:
        delay_text += f" ({delays[0] * tr:g}-{delays[-1] * tr:g} s)"
    spaces = [f"{name} ({(sl.stop - sl.start) // len(delays)} features)" for name, sl in design.bands.items()]
    alphas = np.asarray(cfg.model.alphas)
    n_runs = len(design.train_run_ids)
    n_vertices = n_vertices or design.Y_train.shape[1]
    repeats = design.Y_test_repeats.shape[0] if design.Y_test_repeats is not None else 1
    repeats = repeats if repeats >= 2 else None  # noise ceilings need at least two presentations
    text = [
        f"Responses were modelled with banded ridge regression (brain2music), one regularisation strength per "
        f"feature space and vertex. The {len(spaces)} feature space{'s' if len(spaces) > 1 else ''}"
        f", {_join(spaces)}, were z-scored within runs and delayed by {delay_text} (a finite impulse response model), "
        f"giving {design.X_train.shape[1]} regressors. Hyperparameters were selected for each vertex by "
        f"leave-one-run-out cross-validation over the {n_runs} training runs ({design.X_train.shape[0]} volumes): "
        f"{len(model.candidates_)} band-weight candidates on the simplex (equal weights, then Dirichlet samples with "
        f"concentration {_join([f'{c:g}' for c in np.atleast_1d(cfg.model.concentration)])}) times "
        f"{len(alphas)} global regularisation strengths log-spaced from {alphas[0]:.3g} to {alphas[-1]:.3g}, "
        f"maximising the mean R\u00b2 over held-out runs"
        + _search_text(model, cfg.model, n_runs)
        + ". The selected model was refitted on all training runs and "
        f"evaluated on {design.X_test.shape[0]} held-out test volumes"
        + (f" (responses averaged over {repeats} repeated presentations)" if repeats else "")
        + " by the coefficient of determination (R\u00b2) and Pearson's r."
    ]
    if repeats:
        text.append(
            "Noise ceilings were estimated from the repeats: the explainable variance of a single presentation "
            "with the correction for the number of repeats, and the maximal achievable correlation CC_max "
            "(Schoppe et al. 2016), giving normalised correlations CC_norm = r / CC_max."
        )
    if statistics is not None and statistics.permutation is not None:
        s = statistics.settings
        scheme = {"blocks": f"in blocks of {s['block_length']} volumes", "circular":
                  f"by circular shifts of at least {s['block_length']} volumes", "trs": "volume by volume"}[s["scheme"]]
        null = {"refit": "the training responses were permuted " + scheme + " within runs and the model refitted "
                         "under each permutation (hyperparameters held at their selected values), then scored on the "
                         "unpermuted test runs",
                "selection": "the training responses were permuted " + scheme + " within runs and the whole "
                             "model, hyperparameter search included, refitted under each permutation (the selection "
                             "is part of the null), then scored on the unpermuted test runs",
                "test": "the test responses were permuted " + scheme + " against the fixed model's predictions",
                }[s["null"]]
        tested = s.get("n_tested", n_vertices)
        family = (f"{n_vertices} vertices" if tested == n_vertices else
                  f"the {tested} vertices whose plain-ridge cross-validated R\u00b2 passed the screen (a family chosen "
                  f"on training data only; the other {n_vertices - tested} vertices were not tested)")
        correction = {"fwer": f"corrected across {family} controlling the family-wise error rate at "
                              f"{s['alpha']:g} with {fwer_method_text(s)}",
                      "fdr_bh": f"corrected across {family} controlling the false discovery rate "
                                f"(Benjamini-Hochberg) at {s['alpha']:g}",
                      "fdr_by": f"corrected across {family} controlling the false discovery rate "
                                f"(Benjamini-Yekutieli) at {s['alpha']:g}",
                      "none": f"thresholded at {s['alpha']:g} without correction for multiple comparisons"
                      }[s["correction"]]
        text.append(
            f"Statistical significance of the test {s['metric'].upper().replace('R2', 'R²')} was assessed with "
            f"{s['n_permutations']} permutations: {null}. p-values were computed as (1 + number of permutations "
            f"reaching the observed score) / (1 + {s['n_permutations']}) and {correction}."
        )
    if statistics is not None and statistics.atoms is not None:
        n_models = 2 ** len(design.bands) - 1
        estimated = int(np.isfinite(next(iter(statistics.atoms.values()))).sum())
        text.append(
            f"Unique and shared variance were estimated by variance partitioning: all {n_models} subset models were "
            f"fitted with their own hyperparameter search (the same alphas; band-weight candidates keeping the full "
            f"search's density per simplex axis)" + (
                f", on the {estimated} vertices of the tested family and of the regions of interest,"
                if estimated < n_vertices else "") + f" and the variance explained by each combination of feature spaces "
            f"was obtained from their test R\u00b2 by set theory (inclusion-exclusion); negative estimates were kept "
            f"in tables and set to zero in maps. Unique variance was tested against zero (one-sided z-test with the "
            f"standard error of a moving-block bootstrap of the test volumes, {statistics.settings['n_bootstrap']} "
            f"resamples, blocks of {statistics.settings['block_length']} volumes) within the vertices where the full "
            f"model was significant" + (" (or all vertices without a permutation test)" if statistics.main is None
                                         else "") + ", FDR-corrected (Benjamini-Hochberg)."
        )
    if statistics is not None and statistics.rois is not None and len(statistics.rois):
        from atlases.parcellations import PARCELLATIONS, REGIONS

        atlas = statistics.settings["atlas"]
        where = (f"regions of the {PARCELLATIONS[atlas]().name} atlas on fsaverage5"
                 if set(statistics.rois.index) <= set(REGIONS[atlas]) else "the targets")
        text.append(
            f"Region-of-interest means ({where}) are reported with 95% percentile intervals from a moving-block "
            f"bootstrap of the test volumes ({statistics.settings['n_bootstrap']} resamples, blocks of "
            f"{statistics.settings['block_length']} volumes, all vertices resampled together and the predictions "
            f"held fixed)."
        )
    return " ".join(text)


FWER_LABELS = {"max": "max-T", "step-down": "step-down max-T", "tfce": "TFCE", "cluster-mass": "cluster mass",
               "cluster-extent": "cluster extent"}


def correction_label(settings: dict) -> str:
    """Short name of the correction for titles and tables, e.g. ``FWER (TFCE) p ≤ 0.05``."""
    name = settings["correction"].upper().replace("_", " ")
    if settings["correction"] == "fwer":
        name += f" ({FWER_LABELS[settings['fwer']]})"
    return f"{name} p \u2264 {settings['alpha']:g}"


def fwer_method_text(settings: dict) -> str:
    """The FWER procedure in a sentence of the methods paragraph."""
    scale = ("each vertex's statistic standardised by the mean and standard deviation of its permutation "
             "distribution" if settings["standardise"] else "the statistic in units of the null standard deviation "
             "pooled over vertices")
    return {
        "max": "the single-step maximum statistic over vertices (Nichols & Holmes 2002)",
        "step-down": "the step-down maximum statistic over vertices (Westfall & Young 1993)"
                     + (" on " + scale if settings["standardise"] else ""),
        "tfce": "threshold-free cluster enhancement (Smith & Nichols 2009; E = 1, H = 2, steps of 0.1) of "
                + scale + " on the fsaverage5 mesh (hemispheres separate, medial wall excluded), each vertex "
                "compared with the maximum enhanced value of every permutation",
        "cluster-mass": f"cluster-mass inference on the fsaverage5 mesh (clusters of {scale} above "
                        f"{settings['cluster_threshold']:g}, each compared with the largest cluster mass of every "
                        "permutation)",
        "cluster-extent": f"cluster-extent inference on the fsaverage5 mesh (clusters of {scale} above "
                          f"{settings['cluster_threshold']:g}, each compared with the largest cluster extent of every "
                          "permutation)",
    }[settings["fwer"]]


def fwer_procedures(result) -> dict[str, np.ndarray]:
    """FWER p-values of every procedure that applies to ``result`` (the spatial ones with a mesh),
    all from its one set of null maps: method -> ndarray, shape (n_vertices,)."""
    methods = [m for m in FWER_METHODS if result.graph is not None or m not in SPATIAL_METHODS]
    return {method: result.fwer_p_values(method) for method in methods}


def procedure_markdown(counts: dict, power: dict | None, settings: dict) -> list[str]:
    """Every FWER procedure's significant vertices from the same permutations (and, in simulations,
    its sensitivity and false positives); the procedure of the maps in bold."""
    header = "| FWER procedure | significant vertices |" + (" sensitivity | false positives |" if power else "")
    lines = ["", f"FWER procedures at {settings['alpha']:g}, all from the same permutations (the maps use the one in "
                 "bold; `statistics.fwer` chooses):", "", header, "|---|---|" + ("---|---|" if power else "")]
    for method, count in counts.items():
        name = FWER_LABELS[method] + (f" (cluster-forming threshold {settings['cluster_threshold']:g})"
                                      if method.startswith("cluster") else "")
        name = f"**{name}**" if method == settings["fwer"] else name
        row = f"| {name} | {count:,} |"
        if power:
            row += f" {power[method]['sensitivity']:.3f} | {power[method]['n_false_positives']:,} |"
        lines.append(row)
    return lines + [""]


def statistics_arrays(statistics) -> dict[str, np.ndarray]:
    """Per-vertex arrays for ``results.npz``: p-values, significance, unique and shared variance."""
    arrays = {}
    main = statistics.main
    if main is not None:
        s = statistics.settings
        arrays.update(p_value=main.p_values.astype(np.float32),
                      p_corrected=main.corrected(s["correction"]).astype(np.float32),
                      significant=main.significant(s["alpha"], s["correction"]))
        for name, result in statistics.permutation.items():
            if name.startswith("split_r2:"):
                arrays[f"p_split_r2_{name.split(':', 1)[1]}"] = result.p_values.astype(np.float32)
    if statistics.atoms is not None:
        from encoding.stats.partition import atom_name

        for atom, values in statistics.atoms.items():
            arrays[atom_name(atom).replace(":", "_").replace("&", "_")] = values.astype(np.float32)
        for space, test in statistics.unique_tests.items():
            arrays[f"unique_{space}_p_fdr"] = test["p_fdr"].astype(np.float32)
    return arrays


def statistics_summary(statistics, n_vertices: int) -> dict:
    """JSON-ready numbers of the statistics step."""
    s = statistics.settings
    out: dict = {"settings": dict(s), "notes": list(statistics.notes), "timings_s": dict(statistics.timings),
                 "null_profile": {k: float(v) for k, v in statistics.profile.items()}}
    main = statistics.main
    if main is not None:
        significant = main.significant(s["alpha"], s["correction"])
        out["test"] = {
            "statistic": main.statistic, "n_permutations": main.n_permutations,
            "n_significant": int(significant.sum()), "fraction_significant": float(significant.mean()),
            "n_significant_uncorrected": int((main.p_values <= s["alpha"]).sum()),
            "min_p": float(main.p_values.min()), "min_p_corrected": float(main.corrected(s["correction"]).min()),
            "split": {name.split(":", 1)[1]: int(r.significant(s["alpha"], s["correction"]).sum())
                      for name, r in statistics.permutation.items() if name.startswith("split_r2:")},
            "fwer_procedures": {m: int((p <= s["alpha"]).sum()) for m, p in fwer_procedures(main).items()},
        }
    if statistics.atoms is not None:
        from encoding.stats.partition import atom_name

        mask = statistics.significant() if main is not None else np.ones(n_vertices, bool)
        out["partition"] = {
            atom_name(atom): {"mean_in_significant": float(values[mask].mean()) if mask.any() else None,
                              "fraction_negative": float((values[np.isfinite(values)] < 0).mean())
                              if np.isfinite(values).any() else None,
                              "n_estimated": int(np.isfinite(values).sum())}
            for atom, values in statistics.atoms.items()
        }
        out["unique_significant_fdr"] = {space: int((t["p_fdr"] <= s["alpha"]).sum())
                                         for space, t in statistics.unique_tests.items()}
    if statistics.rois is not None and len(statistics.rois):
        out["rois"] = {name: {k: float(v) for k, v in row.items()} for name, row in statistics.rois.iterrows()}
    return out


MAX_TARGET_ROWS = 60  # data with this many targets or fewer (ROI-level data) get one row per target


def summary_regions(experiment, atlas: str = "desikan_killiany") -> dict[str, np.ndarray]:
    """The vertex masks ROI summaries use: the atlas's regions on fsaverage5, else one per target.

    Parameters
    ----------
    experiment : Experiment
    atlas : str
        A key of :data:`atlases.parcellations.PARCELLATIONS` (fsaverage5 data only).

    Returns
    -------
    dict of str to ndarray of bool, shape (n_vertices,)
        Auditory regions first, then comparison regions (fsaverage5); each target (at most
        ``MAX_TARGET_ROWS`` of them); or all vertices.
    """
    if experiment.space == "fsaverage5":
        from atlases.parcellations import atlas_rois

        return atlas_rois(atlas)
    if experiment.n_vertices <= MAX_TARGET_ROWS:
        names = experiment.info.get("vertex_names") or [str(i) for i in range(experiment.n_vertices)]
        return {name: np.arange(experiment.n_vertices) == i for i, name in enumerate(names)}
    return {"all vertices": np.ones(experiment.n_vertices, bool)}


def roi_table(statistics, results, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per ROI (boolean vertex masks) or target: scores, noise ceiling, significance, unique variance."""
    s = statistics.settings
    main = statistics.main
    rows = {}
    for name, mask in masks.items():
        if not mask.any():
            continue
        row = {"n_vertices": int(mask.sum()), "test_r2": float(np.nanmean(results.test_r2[mask])),
               "test_r": float(np.nanmean(results.test_r[mask]))}
        if results.cc_norm is not None:
            row["cc_norm_median"] = float(np.nanmedian(results.cc_norm[mask])) if np.isfinite(
                results.cc_norm[mask]).any() else np.nan
        if main is not None:
            row["p_min_corrected"] = float(main.corrected(s["correction"])[mask].min())
            row["fraction_significant"] = float(main.significant(s["alpha"], s["correction"])[mask].mean())
        if statistics.atoms is not None:
            for space, test in statistics.unique_tests.items():
                values = statistics.atoms[(space,)][mask]
                row[f"unique_{space}"] = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
                row[f"unique_{space}_fraction_fdr"] = float((test["p_fdr"][mask] <= s["alpha"]).mean())
        if statistics.rois is not None and name in statistics.rois.index:
            row |= {k: float(v) for k, v in statistics.rois.loc[name].items() if k.endswith(("_ci_low", "_ci_high"))}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    order = [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high"))]
    for column in list(order):  # each interval right after its estimate
        order[order.index(column) + 1:order.index(column) + 1] = [c for c in (f"{column}_ci_low", f"{column}_ci_high")
                                                                  if c in table.columns]
    return table[order]
