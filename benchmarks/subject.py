"""One ds003720-sized subject end to end, with the default pipeline, step by step (issue 15).

Builds the problem itself: the simulated music-listening experiment with ds003720's design (12
training runs of 40 15-s clips and 6 test runs repeating 40 held-out clips, 410 TRs of 1.5 s each,
fsaverage5's 20,484 vertices) and the simulation's planted territories (log-mel, modulation and
caption), fitted with two feature spaces, ``logmel`` (32) and ``caption`` (384), with 4 delays (1,664
features). Then, as a user's ``brain2music fit``:

1. **data**: the simulated runs are written as fMRIPrep-style GIFTIs (one per hemisphere and run)
   and read back with the BIDS loader's reader, then detrended by the 240-s running median and
   z-scored; the running median of scipy (the previous implementation) is timed beside it;
2. **features, design, fit, scores, statistics** (1,000 refit permutations with split R^2,
   variance partitioning, bootstrap): :func:`encoding.pipeline.run_pipeline` with the defaults.

It prints the machine, the seconds of each step (and of the statistics' parts), peak memory,
the fit's search profile (vertices searched, candidate evaluations against an exhaustive search)
the recovery of the planted truth (AUC, FWER-significant vertices, false positives) and the refit
null's cost: its GEMM flops per second against this machine's float32 GEMM peak, measured in the same
run.

    .venv/bin/python benchmarks/subject.py                       # the defaults
    .venv/bin/python benchmarks/subject.py --search random --screen=-inf --family all   # as before issue 15
    .venv/bin/python benchmarks/subject.py --permutations 100    # a shorter statistics step
    .venv/bin/python benchmarks/subject.py --spaces logmel modulation caption   # 3 spaces, 7 models
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info  # noqa: E402
from ridge import gemm_peak  # noqa: E402


def subject_config(args):
    from encoding.config import PipelineConfig

    config = PipelineConfig()
    sim = config.data.simulation
    sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats, sim.extra_trs = 12, 40, 40, 6, 10
    sim.seed = args.seed
    config.features.spaces = list(args.spaces)
    config.model.search, config.model.screen_r2 = args.search, args.screen
    config.statistics.n_permutations = args.permutations
    config.statistics.family = args.family
    return config


def time_loading(experiment, tr: float, window: float, folder: Path) -> dict:
    """Write every run as two GIFTIs, then time reading them back and the preprocessing."""
    import nibabel as nib
    from scipy.ndimage import median_filter

    from encoding.config import PreprocessingConfig
    from encoding.datasets.bids import load_bold
    from encoding.design import zscore
    from encoding.preprocessing import detrend

    paths = []
    for run in experiment.runs:
        pair = []
        for hemi, part in (("L", run.responses[:, :10242]), ("R", run.responses[:, 10242:])):
            image = nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(row.astype(np.float32)) for row in part])
            path = folder / f"sub-01_{run.run_id}_hemi-{hemi}_space-fsaverage5_bold.func.gii"
            nib.save(image, path)
            pair.append(path)
        paths.append(pair)
    cfg, preprocessing = SimpleNamespace(bold="fsaverage5"), PreprocessingConfig(median_window=window)
    seconds = {"read GIFTIs": 0.0, "median detrend (bottleneck)": 0.0, "median detrend (scipy, before)": 0.0,
               "z-score": 0.0}
    size = max(1, int(round(window / tr)) // 2 * 2 + 1)
    for pair in paths:
        start = time.perf_counter()
        Y = load_bold(SimpleNamespace(bold=pair), cfg, tr)
        seconds["read GIFTIs"] += time.perf_counter() - start
        start = time.perf_counter()
        clean = detrend(Y, tr, preprocessing)
        seconds["median detrend (bottleneck)"] += time.perf_counter() - start
        start = time.perf_counter()
        reference = Y - median_filter(Y, size=(min(size, len(Y) // 2 * 2 - 1), 1), mode="reflect")
        seconds["median detrend (scipy, before)"] += time.perf_counter() - start
        assert np.array_equal(clean, reference.astype(np.float32))
        start = time.perf_counter()
        zscore(clean)
        seconds["z-score"] += time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", default="halving", choices=["halving", "random"])
    parser.add_argument("--screen", type=float, default=0.01, help="model.screen_r2 (-inf: search every vertex)")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--spaces", nargs="+", default=["logmel", "caption"],
                        help="feature spaces fitted (logmel modulation caption: 3 spaces, 7 partition models)")
    parser.add_argument("--family", default="searched", choices=["searched", "all"], help="statistics.family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(machine_info())

    from encoding.pipeline import extract_features, run_pipeline
    from encoding.report import detection, recovery
    from encoding.simulation import simulate_experiment

    config = subject_config(args)
    start = time.perf_counter()
    experiment, truth = simulate_experiment(config.data.simulation, progress=False)
    setup = time.perf_counter() - start
    n_trs = [r.n_trs for r in experiment.runs]
    print(f"problem: {len(n_trs)} runs x {n_trs[0]} TRs, {experiment.n_vertices:,} vertices; "
          f"search {args.search}, screen_r2 {args.screen:g}, {args.permutations} permutations, family {args.family} "
          f"(simulation, not timed as a step: {setup:.0f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        loading = time_loading(experiment, config.data.simulation.tr, config.data.preprocessing.median_window, Path(tmp))
    start = time.perf_counter()  # the pipeline reuses the simulation's features: extract them again, timed
    extract_features(experiment, config.features, False)
    features = time.perf_counter() - start
    run = run_pipeline(config, experiment=experiment, truth=truth, progress=False)

    data = loading["read GIFTIs"] + loading["median detrend (bottleneck)"] + loading["z-score"]
    rows = [("data (read 18 runs x 2 GIFTIs, median detrend, z-score)", data)]
    rows += [(f"  {name}", value) for name, value in loading.items()]
    rows.append((f"features ({', '.join(args.spaces)}: extracted again)", features))
    rows += [(name, run.timings[name]) for name in ("design", "fit", "scores")]
    rows.append(("statistics", run.timings["statistics"]))
    rows += [(f"  {name}", value) for name, value in run.statistics.timings.items()]
    total = data + features + sum(run.timings[name] for name in ("design", "fit", "scores", "statistics"))
    rows.append(("total (data + pipeline, the scipy median not counted)", total))
    width = max(len(name) for name, _ in rows)
    print(f"\n| {'step':<{width}} | seconds |\n|{'-' * (width + 2)}|---------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value:7.1f} |")
    profile = run.model.fit_profile_
    print(f"\nfit: {profile['n_searched']:,} of {experiment.n_vertices:,} vertices searched, "
          f"{profile['evaluations'] / (len(run.model.candidates_) * experiment.n_vertices):.3f} of an exhaustive "
          f"search's candidate evaluations; GEMM {profile.get('gemm_flops', 0) / 1e12:.1f} TFLOP in "
          f"{profile.get('gemm_seconds', 0):.0f} s")
    r, d = recovery(run), detection(run)
    accuracy = "n/a (a planted space is not fitted)" if r["band_accuracy"] is None else f"{r['band_accuracy']:.3f}"
    print(f"recovery: AUC {r['auc']:.3f}, band accuracy {accuracy}; {r['n_signal']} planted vertices, "
          f"{int(run.model.searched_[truth.signal_vertices].sum())} of them searched; FWER 0.05: "
          f"{int(run.statistics.significant().sum()):,} vertices, sensitivity {d['sensitivity']:.3f}, "
          f"false positives {d['n_false_positives']}")
    null = run.statistics.profile
    if null:
        peak = gemm_peak()
        print(f"refit null: {null['seconds']:.1f} s for {args.permutations} permutations of "
              f"{int(run.model.searched_.sum()) if args.family == 'searched' else experiment.n_vertices:,} vertices: "
              f"GEMMs {null['gemm_flops'] / 1e12:.2f} TFLOP in {null['gemm_seconds']:.1f} s "
              f"({null['gemm_flops'] / null['gemm_seconds'] / 1e9:.0f} GFLOP/s), scoring {null['score_seconds']:.1f} s; "
              f"{null['gemm_flops'] / null['seconds'] / 1e9:.0f} GFLOP/s overall = "
              f"{100 * null['gemm_flops'] / null['seconds'] / 1e9 / peak:.0f} % of this machine's float32 GEMM peak "
              f"({peak:.0f} GFLOP/s, 4,000 x 4,000)")
    if "subset_models" in run.statistics.timings:
        print(f"variance partitioning: {2 ** len(args.spaces) - 2} subset models in "
              f"{run.statistics.timings['subset_models']:.1f} s = "
              f"{run.statistics.timings['subset_models'] / run.timings['fit']:.2f}x the full fit "
              f"({2 ** len(args.spaces) - 1} models in {(run.statistics.timings['subset_models'] + run.timings['fit']) / run.timings['fit']:.2f}x)")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
