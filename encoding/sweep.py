"""Layer sweeps: one encoding fit per value of a feature-space parameter (a network's layers).

Which model component corresponds to which brain region: each layer of a network (musicnn,
MusicGen, a self-supervised audio model) is fitted alone, and every vertex gets the layer that
predicts it best on the held-out runs, with that score. ``brain2music sweep CONFIG`` runs it on the
``[sweep]`` section of a config.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoding.config import FeaturesConfig, PipelineConfig
from encoding.io import RunFolder, provenance, save_figure, write_arrays, write_json, write_text
from encoding.pipeline import (
    build_design,
    check_against_data,
    extract_features,
    fit_model,
    load_data,
    preflight,
    score_model,
)


@dataclass
class SweepResults:
    """Held-out scores of every swept value.

    Attributes
    ----------
    space, parameter : str
    values : list
        Swept values (e.g. layer names or indices), in order.
    test_r2 : ndarray, shape (n_values, n_vertices)
    """

    space: str
    parameter: str
    values: list
    test_r2: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def best_index(self) -> np.ndarray:
        """Index of the best value per vertex, shape (n_vertices,)."""
        return np.nan_to_num(self.test_r2, nan=-np.inf).argmax(axis=0)

    @property
    def best_r2(self) -> np.ndarray:
        """Test R^2 of the best value per vertex, shape (n_vertices,)."""
        return np.nanmax(self.test_r2, axis=0)


def run_sweep(config: PipelineConfig, out_dir: str | Path | None = None, progress: bool = True):
    """Fit ``config.sweep.space`` alone once per value of ``config.sweep.parameter``.

    With ``out_dir``, the outputs (:func:`write_sweep`) appear there whole when the sweep completes
    (:class:`encoding.io.RunFolder`).

    Returns
    -------
    SweepResults, Experiment
    """
    folder = RunFolder(out_dir) if out_dir is not None else None
    try:
        results, experiment = _sweep(config, progress)
        if folder is not None:
            write_sweep(results, experiment, config, folder.staging)
            folder.commit()
    finally:
        if folder is not None:
            folder.discard()
    return results, experiment


def _sweep(config: PipelineConfig, progress: bool):
    sweep = config.sweep
    base = config.features.params.get(sweep.space, {})
    for value in sweep.values:
        preflight(dataclasses.replace(config, features=FeaturesConfig(
            spaces=[sweep.space], params={sweep.space: {**base, sweep.parameter: value}})))
    experiment, _ = load_data(config.data, config.features.params, progress)
    check_against_data(config, experiment)
    scores, timings = [], {}
    for value in tqdm(sweep.values, desc=f"sweep {sweep.space}.{sweep.parameter}", disable=not progress):
        start = time.perf_counter()
        features_cfg = FeaturesConfig(spaces=[sweep.space], params={sweep.space: {**base, sweep.parameter: value}},
                                      cache=config.features.cache,
                                      pca={k: v for k, v in config.features.pca.items() if k == sweep.space})
        features = extract_features(experiment, features_cfg, progress)
        design = build_design(experiment, features, [sweep.space], config.design)
        scores.append(score_model(fit_model(design, config.model, progress), design).test_r2)
        timings[str(value)] = round(time.perf_counter() - start, 3)
    return SweepResults(sweep.space, sweep.parameter, list(sweep.values), np.stack(scores), timings), experiment


def write_sweep(results: SweepResults, experiment, config: PipelineConfig, out: Path) -> dict:
    """``sweep.npz`` (values, test_r2), ``sweep.json``, ``sweep.md`` and, on fsaverage5, the best-value maps."""
    out = Path(out)
    thr = config.output.map_threshold
    write_text(out / "config.toml", config.to_toml())
    write_arrays(out / "sweep.npz", values=np.array([str(v) for v in results.values]), test_r2=results.test_r2)
    above = results.best_r2 > thr
    table = {
        str(v): {"mean_test_r2_above_threshold": float(np.nanmean(results.test_r2[i, above])) if above.any() else None,
                 "n_vertices_best": int((results.best_index[above] == i).sum())}
        for i, v in enumerate(results.values)
    }
    figures = {}
    if config.output.figures and experiment.space == "fsaverage5":
        from atlases.plotting import plot_surface_labels, plot_surface_map

        labels = np.where(above, results.best_index + 1, 0)
        fig = plot_surface_labels(labels, [f"{results.parameter}={v}" for v in results.values],
                                  f"Best {results.space} {results.parameter} (where its test R² > {thr:.3g})")
        figures["best_value"] = str(save_figure(fig, out / "figures" / "sweep_best.png", dpi=config.output.dpi).relative_to(out))
        fig = plot_surface_map(results.best_r2, f"Test R² of the best {results.parameter}", threshold=thr, label="R²")
        figures["best_r2"] = str(save_figure(fig, out / "figures" / "sweep_best_r2.png", dpi=config.output.dpi).relative_to(out))
    summary = {"space": results.space, "parameter": results.parameter, "map_threshold_r2": thr,
               "n_vertices_above_threshold": int(above.sum()), "values": table, "timings_s": results.timings,
               "files": {"arrays": "sweep.npz", "figures": figures}, "provenance": provenance(config.to_dict())}
    lines = [f"# Sweep of {results.space}.{results.parameter} ({experiment.subject})", "",
             f"One fit per value; {int(above.sum()):,} vertices have a best test R² > {thr}.", "",
             f"| {results.parameter} | mean test R² (those vertices) | vertices where it is best |", "|---|---|---|"]
    for value, row in table.items():
        mean = "n/a" if row["mean_test_r2_above_threshold"] is None else f"{row['mean_test_r2_above_threshold']:.4f}"
        lines.append(f"| {value} | {mean} | {row['n_vertices_best']:,} |")
    lines += [""] + [f"![{k}]({v})\n" for k, v in figures.items()]
    write_text(out / "sweep.md", "\n".join(lines))
    write_json(out / "sweep.json", summary)
    return summary
