"""Outputs of a pipeline run: arrays, summary, figures and a Markdown report.

``write_outputs(run, out)`` writes, each file atomically:

===========================  ==========================================================================
``config.toml``              the configuration used (copy and edit it for ``brain2music fit``)
``results.npz``              per-vertex arrays (see :class:`encoding.pipeline.EncodingResults`);
                             simulations add ``planted_share`` (n_planted, n_vertices) and
                             ``planted_spaces``
``figures/test_r2.png``      test R^2 on the inflated fsaverage5
``figures/split_r2_*.png``   each feature space's share of the test R^2
``figures/best_space.png``   the space with the largest split R^2 where the test R^2 passes the threshold
``figures/planted_share.png``the simulation's planted signal share (simulations only)
``figures/flat_*.png``       flat maps (significant test R^2; ``unique_rgb.png``: three spaces' unique
                             variance as one RGB map), Desikan-Killiany auditory regions outlined
``figures/split_r2_bars.png``ROI-level data (up to 60 targets): split R^2 per target, as bars
``report.md``                numbers and figures for a person to read
``summary.json``             numbers, sizes, timings and provenance; written last
===========================  ==========================================================================
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from encoding.html_report import write_html_report
from encoding.io import provenance, save_figure, write_arrays, write_json, write_text
from encoding.noise_ceiling import reliable_vertices
from encoding.scoring import recovery_metrics
from encoding.stats.report import (MAX_TARGET_ROWS, correction_label, fwer_procedures, methods_paragraph,
                                   procedure_markdown, roi_table, statistics_arrays, statistics_summary, summary_regions,
                                   write_table)

EV_THRESHOLD = 0.1  # "reliable" vertices: explainable variance of one presentation above this


def summarize(run) -> dict:
    """The numbers of a pipeline run, as a JSON-ready dict."""
    res, design, exp, cfg = run.results, run.design, run.experiment, run.config
    thr = cfg.output.map_threshold
    above = res.test_r2 > thr
    best_band = np.nan_to_num(res.split_r2, nan=-np.inf).argmax(axis=0)
    summary = {
        "data": {
            "subject": exp.subject, "source": cfg.data.source, "space": exp.space,
            "n_vertices": exp.n_vertices, "tr_s": exp.tr, "n_clips": len(exp.clips.table),
            "n_train_runs": len(design.train_run_ids), "n_train_trs": int(design.X_train.shape[0]),
            "n_test_runs": len(design.test_run_ids), "n_test_trs": int(design.X_test.shape[0]),
            "n_test_repeats": None if design.Y_test_repeats is None else int(design.Y_test_repeats.shape[0]),
        },
        "features": {name: int(sl.stop - sl.start) // len(design.delays) for name, sl in design.bands.items()},
        "pca": exp.info.get("pca", {}),
        "design": {"delays_tr": list(design.delays), "n_features": int(design.X_train.shape[1])},
        "model": {
            "estimator": f"BandedRidgeEncoder (encoding.ridge, {cfg.model.search} search on the simplex)",
            "screen_r2": cfg.model.screen_r2, "n_searched": int(run.model.searched_.sum()),
            "cv": f"leave-one-run-out over {len(design.train_run_ids)} training runs",
            "n_iter": cfg.model.n_iter, "alphas": [float(a) for a in cfg.model.alphas],
            "form": run.model.form_, "strategy": run.model.strategy_,
            "solver_profile": {k: (round(v, 3) if isinstance(v, float) else v)
                               for k, v in run.model.fit_profile_.items()},
            "shared_fit": run.shared_fit,
        },
        "scores": {
            "map_threshold_r2": thr,
            "test_r2_mean": float(np.nanmean(res.test_r2)),
            "test_r2_max": float(np.nanmax(res.test_r2)),
            "test_r_max": float(np.nanmax(res.test_r)),
            "n_vertices_above_threshold": int(above.sum()),
            "test_r2_mean_above_threshold": float(res.test_r2[above].mean()) if above.any() else None,
            "bands": {
                name: {
                    "split_r2_mean_above_threshold": float(res.split_r2[k, above].mean()) if above.any() else None,
                    "n_vertices_best_above_threshold": int((best_band[above] == k).sum()),
                    "median_alpha_above_threshold": float(np.median(res.best_alphas[k, above])) if above.any() else None,
                }
                for k, name in enumerate(res.band_names)
            },
        },
    }
    if res.explainable_variance is not None:
        reliable = reliable_vertices(res.explainable_variance, EV_THRESHOLD)
        summary["noise_ceiling"] = {
            "ev_threshold": EV_THRESHOLD,
            "n_vertices_reliable": int(reliable.sum()),
            "explainable_variance_max": float(np.nanmax(res.explainable_variance)),
            "cc_norm_median_reliable": float(np.nanmedian(res.cc_norm[reliable])) if reliable.any() else None,
            "test_r_median_reliable": float(np.nanmedian(res.test_r[reliable])) if reliable.any() else None,
        }
    if exp.n_vertices <= MAX_TARGET_ROWS:
        names = exp.info.get("vertex_names") or [str(i) for i in range(exp.n_vertices)]
        summary["targets"] = {
            name: {"test_r2": float(res.test_r2[i]), "test_r": float(res.test_r[i]),
                   "split_r2": {b: float(res.split_r2[k, i]) for k, b in enumerate(res.band_names)}}
            for i, name in enumerate(names)
        }
    if run.truth is not None:
        summary["recovery"] = recovery(run)
    if run.statistics is not None:
        summary["statistics"] = statistics_summary(run.statistics, exp.n_vertices)
        summary["statistics"]["methods"] = methods_paragraph(cfg, design, run.model, run.statistics)
        if run.truth is not None and run.statistics.main is not None:
            summary["statistics"]["power"] = detection(run)
    summary["timings_s"] = dict(run.timings)
    summary["provenance"] = provenance(cfg.to_dict())
    return summary


def detection(run) -> dict:
    """Simulations: sensitivity and false-positive rate of the corrected significance map, and of
    every FWER procedure on the same permutations (``by_procedure``)."""
    planted = run.truth.signal_share.sum(axis=0)
    significant = run.statistics.significant()
    signal, strong = planted > 0, planted >= 0.1
    alpha = run.statistics.settings["alpha"]
    return {"sensitivity": float(significant[signal].mean()) if signal.any() else None,
            "sensitivity_share_above_0.1": float(significant[strong].mean()) if strong.any() else None,
            "false_positive_rate": float(significant[~signal].mean()) if (~signal).any() else None,
            "n_false_positives": int(significant[~signal].sum()),
            "by_procedure": {method: {"sensitivity": float((p[signal] <= alpha).mean()) if signal.any() else None,
                                      "n_false_positives": int((p[~signal] <= alpha).sum())}
                             for method, p in fwer_procedures(run.statistics.main).items()}}


def recovery(run) -> dict:
    """Ground-truth recovery of a simulated run (band accuracy only when every planted space is fitted)."""
    truth, res = run.truth, run.results
    missing = [name for name in truth.band_names if name not in res.band_names]
    split = None if missing else res.split_r2[[res.band_names.index(n) for n in truth.band_names]]
    metrics = recovery_metrics(res.test_r2, split, truth.signal_share)
    metrics.update(noise=truth.noise, snr_peak=truth.snr_peak, planted_spaces=truth.band_names,
                   unfitted_planted_spaces=missing)
    return metrics


def plot_target_bars(run):
    """Stacked bars of each band's split R^2 per target (ROI), with the total test R^2 marked."""
    import matplotlib
    from matplotlib.figure import Figure

    res = run.results
    names = run.experiment.info.get("vertex_names") or [str(i) for i in range(run.experiment.n_vertices)]
    fig = Figure(figsize=(max(5, 0.6 * len(names) + 2), 4))
    ax = fig.subplots()
    bottom_pos = np.zeros(len(names))
    bottom_neg = np.zeros(len(names))
    for k, band in enumerate(res.band_names):
        values = np.nan_to_num(res.split_r2[k])
        base = np.where(values >= 0, bottom_pos, bottom_neg)
        ax.bar(names, values, bottom=base, label=band, color=matplotlib.colormaps["tab10"](k))
        bottom_pos += np.clip(values, 0, None)
        bottom_neg += np.clip(values, None, 0)
    ax.plot(names, res.test_r2, "k_", markersize=18, mew=2, label="test R²")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel("test R² (split by feature space)")
    ax.set_title("Held-out R² per target")
    ax.legend(frameon=False, fontsize=9)
    ax.tick_params(axis="x", labelrotation=45 if len(names) > 8 else 0)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right" if len(names) > 8 else "center")
    fig.tight_layout()
    return fig


def make_figures(run, out: Path) -> dict[str, str]:
    """Surface maps of the test R^2, each band's split R^2 and (simulations) the planted shares."""
    from atlases.plotting import plot_surface_labels, plot_surface_map

    res, cfg = run.results, run.config.output
    thr = cfg.map_threshold
    vmax = max(float(np.nanpercentile(res.test_r2, 99.9)), thr * 2)
    maps = {"test_r2": (res.test_r2, "Test R² (held-out runs, repeats averaged)", "R²", "inferno")}
    for k, name in enumerate(res.band_names):
        maps[f"split_r2_{name}"] = (res.split_r2[k], f"Split R²: {name}", "R² share", "viridis")
    if run.truth is not None:
        maps["planted_share"] = (run.truth.signal_share.sum(axis=0), "Planted signal share (ground truth)",
                                 "share of variance", "magma")
    files = {}
    statistics = run.statistics
    best = np.nan_to_num(res.split_r2, nan=-np.inf).argmax(axis=0) + 1
    if statistics is not None and statistics.main is not None:  # only where the model predicts significantly
        s = statistics.settings
        where = statistics.significant()
        where_text = f"significant vertices, {correction_label(s)}"
    else:
        where, where_text = res.test_r2 > thr, f"test R² > {thr:.3g}"
    fig = plot_surface_labels(np.where(where, best, 0), res.band_names,
                              f"Best feature space (largest split R², {where_text})")
    files["best_space"] = str(save_figure(fig, out / "figures" / "best_space.png", dpi=cfg.dpi).relative_to(out))
    if statistics is not None and statistics.main is not None:
        s = statistics.settings
        significant = statistics.significant()
        maps["significant_r2"] = (np.where(significant, res.test_r2, 0.0),
                                  f"Test R², significant vertices ({correction_label(s)}, "
                                  f"{s['n_permutations']} permutations)", "R²", "inferno")
    if statistics is not None and statistics.atoms is not None:
        for space, test in statistics.unique_tests.items():
            unique = np.maximum(statistics.atoms[(space,)], 0.0)
            keep = test["p_fdr"] <= statistics.settings["alpha"]
            maps[f"unique_{space}"] = (np.where(keep, unique, 0.0), f"Unique variance: {space} (FDR p ≤ "
                                       f"{statistics.settings['alpha']:g}; negative estimates not shown)",
                                       "unique R² (ΔR²)", "viridis")
    for key, (values, title, label, cmap) in maps.items():
        top = float(np.nanmax(values)) if key == "planted_share" else vmax
        shown = None if key in ("planted_share", "significant_r2") or key.startswith("unique") else thr
        if key.startswith("unique"):
            top = max(float(np.nanpercentile(values, 99.9)), 1e-3)
        fig = plot_surface_map(values, title, threshold=shown, vmax=top, cmap=cmap, label=label)
        files[key] = str(save_figure(fig, out / "figures" / f"{key}.png", dpi=cfg.dpi).relative_to(out))
    files.update(flat_figures(run, out, maps, vmax))
    return files


def flat_figures(run, out: Path, maps: dict, vmax: float) -> dict[str, str]:
    """Flat maps with the atlas's auditory regions outlined: the significant test R^2 (also drawn by
    pycortex's quickflat when the ``pycortex`` extra is installed) and, with three feature spaces,
    their FDR-significant unique variance as one RGB map (opacity: CC_norm). ``vmax`` tops the
    R^2 colour scale, the same as on the inflated maps."""
    from atlases.parcellations import atlas_rois
    from atlases.plotting import plot_flat_map, plot_flat_rgb

    outlines = atlas_rois(run.config.statistics.atlas, roles=("auditory",))
    files = {}
    dpi = run.config.output.dpi
    if "significant_r2" in maps:
        values, title, label, _ = maps["significant_r2"]
        fig = plot_flat_map(np.where(values > 0, values, np.nan), title, vmax=vmax, label=label, outlines=outlines)
        files["flat_significant_r2"] = str(save_figure(fig, out / "figures" / "flat_significant_r2.png",
                                                       dpi=dpi).relative_to(out))
        if importlib.util.find_spec("cortex") is not None:  # the pycortex extra: the same map by quickflat
            from atlases.pycortex import quickflat_figure

            fig = quickflat_figure(np.where(values > 0, values, np.nan), title, vmax=vmax, label=label)
            files["pycortex_significant_r2"] = str(save_figure(fig, out / "figures" / "pycortex_significant_r2.png",
                                                               dpi=dpi).relative_to(out))
    unique = [key for key in maps if key.startswith("unique_")]
    if len(unique) == 3:
        names = [key.removeprefix("unique_") for key in unique]
        opacity = None if run.results.cc_norm is None else np.clip(np.nan_to_num(run.results.cc_norm), 0, 1)
        fig = plot_flat_rgb(np.stack([maps[key][0] for key in unique]), names,
                            f"Unique variance (FDR p ≤ {run.statistics.settings['alpha']:g}), one colour per space"
                            + (", faded by CC_norm" if opacity is not None else ""), opacity=opacity,
                            label="unique R²", opacity_label="CC_norm" if opacity is not None else "",
                            outlines=outlines)
        files["unique_rgb"] = str(save_figure(fig, out / "figures" / "unique_rgb.png", dpi=dpi).relative_to(out))
    return files


def roi_markdown(statistics: dict, space: str) -> list[str]:
    """ROI means with their block-bootstrap 95 % intervals, as a Markdown table (empty without ROIs)."""
    rois = statistics.get("rois")
    if not rois:
        return []
    what = f"regions of the {statistics['settings']['atlas']} atlas" if space == "fsaverage5" else "targets"
    quantities = [k for k in next(iter(rois.values())) if not k.endswith(("_ci_low", "_ci_high"))]
    header = ["test R²" if k == "test_r2" else k.replace("unique_", "unique ") for k in quantities]
    lines = ["", f"ROI means ({what}) with block-bootstrap 95 % intervals over test samples ({statistics['settings']['n_bootstrap']} resamples):", "",
             "| ROI | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for name, row in rois.items():
        cells = [f"{row[k]:.3f} [{row[k + '_ci_low']:.3f}, {row[k + '_ci_high']:.3f}]" for k in quantities]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def statistics_markdown(summary: dict) -> list[str]:
    """The report's statistics section: significance, partitioning, ROI table and methods paragraph."""
    st = summary["statistics"]
    s = st["settings"]
    lines = ["", "## Statistics", ""]
    if "test" in st:
        t = st["test"]
        lines.append(f"Test {t['statistic'].upper()} against a {s['null']} null ({t['n_permutations']} permutations, "
                     f"{s['scheme']} of {s['block_length']} TRs): **{t['n_significant']:,}** vertices significant at "
                     f"{correction_label(s)} ({t['n_significant_uncorrected']:,} uncorrected); smallest p "
                     f"{t['min_p']:.4g}.")
        if t["split"]:
            lines.append("Split R² significant per space: " + ", ".join(f"{k} {v:,}" for k, v in t["split"].items())
                         + ".")
        lines += procedure_markdown(t["fwer_procedures"], st.get("power", {}).get("by_procedure"), s)
    if "power" in st:
        p = st["power"]
        fmt = (lambda v, f: "n/a" if v is None else format(v, f))
        lines.append(f"Simulation: sensitivity {fmt(p['sensitivity'], '.3f')} over planted vertices "
                     f"({fmt(p['sensitivity_share_above_0.1'], '.3f')} where the planted share is at least 0.1), "
                     f"false-positive rate {fmt(p['false_positive_rate'], '.4f')} ({p['n_false_positives']} vertices).")
    if "partition" in st:
        lines += ["", "| variance component | mean over significant vertices | vertices estimated | share of them < 0 |",
                  "|---|---|---|---|"]
        for name, v in st["partition"].items():
            mean = "n/a" if v["mean_in_significant"] is None else f"{v['mean_in_significant']:.4f}"
            negative = "n/a" if v["fraction_negative"] is None else f"{v['fraction_negative']:.2f}"
            estimated = "n/a" if v.get("n_estimated") is None else f"{v['n_estimated']:,}"
            lines.append(f"| {name} | {mean} | {estimated} | {negative} |")
        lines.append("")
        lines.append("Vertices with significant unique variance (bootstrap, FDR ≤ " + f"{s['alpha']:g}): "
                     + ", ".join(f"{k} {v:,}" for k, v in st["unique_significant_fdr"].items()) + ".")
    lines += [""] + [f"*{note}*" for note in st["notes"]]
    lines += roi_markdown(st, summary["data"]["space"])
    files = summary.get("files", {}).get("statistics", {})
    if files:
        regions = f"; how each region is made: [{files['regions_md']}]({files['regions_md']})" if "regions_md" in files \
            else ""
        lines += ["", f"Per-ROI table: [{files['rois_md']}]({files['rois_md']}) (also CSV and LaTeX){regions}."]
    lines += ["", "### Methods (generated from the parameters used)", "", "> " + st["methods"], ""]
    return lines


def write_statistics_tables(run, out: Path) -> dict[str, str]:
    """``statistics/rois.{csv,md,tex}`` (per atlas region, or per target) and ``statistics/methods.md``."""
    folder = out / "statistics"
    atlas = run.config.statistics.atlas
    masks = summary_regions(run.experiment, atlas)
    files = {f"rois_{k}": f"statistics/{v}" for k, v in
             write_table(roi_table(run.statistics, run.results, masks), folder, "rois").items()}
    if run.experiment.space == "fsaverage5":
        from atlases.parcellations import region_table

        files |= {f"regions_{k}": f"statistics/{v}" for k, v in
                  write_table(region_table(atlas), folder, "regions").items()}
    write_text(folder / "methods.md", methods_paragraph(run.config, run.design, run.model, run.statistics) + "\n")
    files["methods"] = "statistics/methods.md"
    return files


def markdown_report(summary: dict, figures: dict[str, str]) -> str:
    """A short human-readable report of a run."""
    d, s, m = summary["data"], summary["scores"], summary["model"]
    lines = [
        f"# brain2music encoding report: {d['subject']} ({d['source']})",
        "",
        f"{d['n_vertices']:,} targets ({d['space']}), TR {d['tr_s']} s, {d['n_clips']} clips. "
        f"Training: {d['n_train_runs']} runs, {d['n_train_trs']} TRs; test: {d['n_test_runs']} run(s), "
        f"{d['n_test_trs']} TRs" + (f" after averaging {d['n_test_repeats']} repeats." if (d['n_test_repeats'] or 1) > 1 else "."),
        "",
        f"Feature spaces (dimensions): {', '.join(f'{k} ({v})' for k, v in summary['features'].items())}; "
        f"FIR delays {summary['design']['delays_tr']} TRs. Model: {m['estimator']}, {m['cv']}, "
        f"{m['n_iter']} band-weight candidates, alphas {m['alphas'][0]:.0e} to {m['alphas'][-1]:.0e}."
        + (f" One fit for {', '.join(f'sub-{s}' for s in m['shared_fit']['subjects'])} (the same design; "
           "each vertex's model is the one its own responses give alone)." if m.get("shared_fit") else ""),
        "",
        "## Scores on held-out test runs",
        "",
        "| measure | value |",
        "|---|---|",
        f"| mean test R² (all vertices) | {s['test_r2_mean']:.4f} |",
        f"| max test R² / max r | {s['test_r2_max']:.3f} / {s['test_r_max']:.3f} |",
        f"| vertices with R² > {s['map_threshold_r2']} | {s['n_vertices_above_threshold']:,} |",
    ]
    if s["test_r2_mean_above_threshold"] is not None:
        lines.append(f"| mean R² of those vertices | {s['test_r2_mean_above_threshold']:.3f} |")
    lines += ["", "| feature space | mean split R² (vertices above threshold) | vertices where it is best | median alpha |",
              "|---|---|---|---|"]
    for name, b in s["bands"].items():
        fmt = (lambda v, f: "n/a" if v is None else format(v, f))
        lines.append(f"| {name} | {fmt(b['split_r2_mean_above_threshold'], '.4f')} | "
                     f"{b['n_vertices_best_above_threshold']:,} | {fmt(b['median_alpha_above_threshold'], '.3g')} |")
    if "recovery" in summary:
        r = summary["recovery"]
        lines += ["", "## Ground-truth recovery (simulation)", "",
                  f"- AUC of test R², signal vs non-signal vertices: **{r['auc']:.3f}** ({r['n_signal']} signal vertices)",
                  "- band accuracy (largest split R² = planted dominant space): " + (
                      f"**{r['band_accuracy']:.3f}**" if r["band_accuracy"] is not None
                      else f"not defined: planted spaces {r['unfitted_planted_spaces']} are not fitted"),
                  f"- noise: {r['noise']}; peak SNR (variance ratio, one presentation): {r['snr_peak']:.2f}"]
    if "noise_ceiling" in summary:
        nc = summary["noise_ceiling"]
        fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
        lines += ["", "## Noise ceiling (from the test repeats)", "",
                  f"{nc['n_vertices_reliable']:,} vertices have an explainable variance above {nc['ev_threshold']} "
                  f"(max {nc['explainable_variance_max']:.3f}); there, median test r {fmt(nc['test_r_median_reliable'])}, "
                  f"median noise-ceiling-normalised CC_norm {fmt(nc['cc_norm_median_reliable'])} (Schoppe et al. 2016)."]
    if "statistics" in summary:
        lines += statistics_markdown(summary)
    if "targets" in summary:
        bands = list(summary["scores"]["bands"])
        lines += ["", "## Per target", "", "| target | test R² | test r | " + " | ".join(f"split R² {b}" for b in bands) + " |",
                  "|---" * (3 + len(bands)) + "|"]
        for name, t in summary["targets"].items():
            lines.append(f"| {name} | {t['test_r2']:.4f} | {t['test_r']:.3f} | "
                         + " | ".join(f"{t['split_r2'][b]:.4f}" for b in bands) + " |")
    lines += ["", "## Figures", "", "Thresholds are display thresholds, not significance tests.", ""]
    lines += [f"![{key}]({path})\n" for key, path in figures.items()]
    t = summary["timings_s"]
    lines += ["## Timings (s)", "", ", ".join(f"{k} {v:.1f}" for k, v in t.items()), "",
              f"Versions: {', '.join(f'{k} {v}' for k, v in summary['provenance']['versions'].items())}.", ""]
    return "\n".join(lines)


def write_outputs(run, out: Path) -> dict:
    """Write every output of a run into ``out`` (see the module docstring); return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_text(out / "config.toml", run.config.to_toml())
    arrays = run.results.arrays()
    if run.truth is not None:
        arrays["planted_share"] = run.truth.signal_share
        arrays["planted_spaces"] = np.array(run.truth.band_names)
    if run.statistics is not None:
        arrays.update(statistics_arrays(run.statistics))
    write_arrays(out / "results.npz", **arrays)
    summary = summarize(run)
    tables = write_statistics_tables(run, out) if run.statistics is not None else {}
    figures = {}
    if run.config.output.figures and run.experiment.space == "fsaverage5":
        figures = make_figures(run, out)
    elif run.config.output.figures and run.experiment.n_vertices <= MAX_TARGET_ROWS:
        figures = {"split_r2_bars": str(save_figure(plot_target_bars(run), out / "figures" / "split_r2_bars.png",
                                                    dpi=run.config.output.dpi).relative_to(out))}
    timings = summary["timings_s"]
    timings["outputs"] = round(time.perf_counter() - start, 3)
    timings["total"] = round(sum(timings.values()), 3)
    summary["files"] = {"config": "config.toml", "results": "results.npz", "report": "report.md",
                        "figures": figures, "statistics": tables}
    write_text(out / "report.md", markdown_report(summary, figures))
    summary["files"]["html"] = "report.html"
    write_html_report(out, summary=summary)  # the self-contained page (encoding.html_report); before the summary
    write_json(out / "summary.json", summary)
    return summary
