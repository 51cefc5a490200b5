"""Subjects with the same design fitted together against one after another, at ds003720 size (issue 15).

A simulated study of ``--subjects`` subjects with ds003720's design (12 training runs of 40 15-s
clips and 6 test runs repeating 40 held-out clips, 410 TRs, fsaverage5's 20,484 vertices; every
subject hears the same clips in the same runs, with its own noise, weights and territories),
fitted with ``logmel`` and ``caption`` (4 delays, 1,664 features) and the default model, then the
variance-partitioning subset models (on the tested family and the ROIs, as the pipeline fits them),
two ways on the same designs in one run:

- ``alone``: each subject's fit and subset models on its own (``[study] share_fits = false``);
- ``together``: :func:`encoding.study.fit_shared`, the subjects' responses side by side.

It prints the machine, the seconds of both, their ratio, and how far apart the two ways' test R^2
maps are (each vertex's model is the same up to float32 rounding and candidate ties).

    .venv/bin/python benchmarks/study.py                 # 2 subjects
    .venv/bin/python benchmarks/study.py --subjects 5    # ds003720's five
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=2)
    args = parser.parse_args()
    print(machine_info())

    from encoding.config import PipelineConfig
    from encoding.pipeline import (build_design, extract_features, fit_model, fit_subset_models,
                                   partition_targets)
    from encoding.stats.report import summary_regions
    from encoding.scoring import r2_score
    from encoding.simulation import simulate_experiment
    from encoding.study import fit_shared, subject_config

    config = PipelineConfig()
    sim = config.data.simulation
    sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats, sim.extra_trs = 12, 40, 40, 6, 10
    sim.n_subjects = args.subjects
    config.features.spaces = ["logmel", "caption"]
    config.study.subjects = ["all"]
    labels = sim.subject_labels()
    configs = {label: subject_config(config, label) for label in labels}
    loaded, heard = {}, None
    for label in labels:
        loaded[label] = heard = simulate_experiment(configs[label].data.simulation, progress=False, heard=heard)
    print(f"problem: {args.subjects} subjects x 18 runs x 410 TRs x 20,484 vertices; logmel + caption, "
          f"{config.model.n_iter} candidates, search {config.model.search}, screen_r2 {config.model.screen_r2:g}")

    seconds, alone = {"alone": 0.0}, {}
    for label, (experiment, truth) in loaded.items():
        cfg = configs[label]
        design = build_design(experiment, extract_features(experiment, cfg.features, False, truth.features),
                              cfg.features.spaces, cfg.design)
        start = time.perf_counter()
        model = fit_model(design, cfg.model, False)
        targets = partition_targets(model, cfg.statistics, summary_regions(experiment, cfg.statistics.atlas))
        fit_subset_models(design, cfg.model, False, full_model=model, targets=targets)
        seconds["alone"] += time.perf_counter() - start
        alone[label] = (r2_score(design.Y_test, model.predict(design.X_test)), design)
        print(f"  alone: sub-{label} {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    shared = fit_shared(configs, loaded, progress=False)
    seconds["together"] = time.perf_counter() - start
    timings = next(iter(shared.values())).timings
    gaps = []
    for label, (r2, design) in alone.items():
        together = r2_score(design.Y_test, shared[label].model.predict(design.X_test))
        gaps.append(np.abs(together - r2))
    gaps = np.concatenate(gaps)
    print("\n| way | seconds (fit + subset models, all subjects) |\n|---|---|")
    print(f"| one after another | {seconds['alone']:.1f} |")
    print(f"| together (`fit_shared`; designs built inside: {seconds['together'] - sum(timings.values()):.1f} s) | "
          f"{sum(timings.values()):.1f} (fit {timings['fit']:.1f}, subset models {timings.get('subset_models', 0):.1f}) |")
    print(f"\nspeed-up {seconds['alone'] / sum(timings.values()):.2f}x; |test R2 together - alone|: "
          f"{np.mean(gaps < 1e-4):.4f} of vertices under 1e-4, largest {gaps.max():.2g}")


if __name__ == "__main__":
    main()
