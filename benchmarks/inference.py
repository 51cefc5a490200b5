"""Statistics at full size: the nulls' cost, TFCE's cost, calibration on real noise, the Alice group table.

    .venv/bin/python benchmarks/inference.py                       # every part
    .venv/bin/python benchmarks/inference.py --parts cost tfce     # some parts

- ``cost``: a 10,000-vertex banded ridge fit (6 runs x 210 TRs, 3 bands x 256 features, 420
  test TRs, 20 candidates x 21 alphas); seconds per permutation of the fixed-hyperparameter
  refit null (hat matrices shared by vertices, one GEMM per batch of permutations), of the
  selection-aware null (the whole search again on every permutation, the design's
  factorizations computed once for all of them) and of a naive refit (a new fit per
  permutation), measured in the same run.
- ``tfce``: 1,000 permutations' null maps on fsaverage5's 20,484 vertices (smooth noise on the
  mesh): seconds of the TFCE and cluster FWER from them, and of the step-down.
- ``calibration``: no planted signal, real noise (brainspace's resting-state run on fsaverage5)
  with the simulation's stimulus features, on contiguous cortical patches; the share of
  vertices significant at 0.05 uncorrected, and for every FWER procedure the rate of any
  rejection over repetitions, for each null and scheme.
- ``alice``: Brennan et al. 2016 (11 subjects): held-out correlation per ROI, exact sign-flip
  test with max-T over ROIs, and a mixed model with a random subject intercept.
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


def cost(n_permutations: int = 1000, n_selection: int = 2) -> None:
    from ridge import make_problem

    from encoding.design import zscore
    from encoding.model import BandedRidgeEncoder
    from encoding.scoring import r2_score
    from encoding.stats import permutation_indices, permutation_test

    X, Y, groups, X_test, Y_test, bands = make_problem(n_runs=6, run_trs=210, band_features=(256, 256, 256),
                                                       n_vertices=10000)
    Y = np.concatenate([zscore(Y[groups == g]) for g in np.unique(groups)]).astype(np.float32)
    start = time.perf_counter()
    model = BandedRidgeEncoder(bands, n_iter=20, progress_bar=False).fit(X, Y, groups)
    fit_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    naive = []
    for _ in range(2):
        order = permutation_indices(groups, "blocks", 10, rng)
        start = time.perf_counter()
        refit = BandedRidgeEncoder(bands, n_iter=20, progress_bar=False).fit(X, Y[order], groups)
        r2_score(Y_test, refit.predict(X_test))
        naive.append(time.perf_counter() - start)
    timings = {}
    for label, null, split, k in (("fixed-hyperparameter refit null, test R2", "refit", False, n_permutations),
                                  ("fixed-hyperparameter refit null, test R2 + split R2 per band", "refit", True,
                                   n_permutations),
                                  ("selection-aware null (whole search per permutation), test R2", "selection",
                                   False, n_selection)):
        start = time.perf_counter()
        permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=k, null=null, split=split,
                         progress=False)
        timings[label] = (time.perf_counter() - start) / k
    print(f"\n## Cost per permutation ({X.shape[0]} training TRs, {X.shape[1]} features, {Y.shape[1]:,} "
          f"vertices, {len(X_test)} test TRs; model {model.form_}/{model.strategy_}, 20 candidates x "
          f"{len(model.alphas)} alphas, fit {fit_s:.1f} s; profile {model.fit_profile_})\n")
    print("| null | s / permutation | ratio to naive refit | 1,000 permutations |")
    print("|---|---|---|---|")
    print(f"| naive refit (a new fit per permutation) | {np.mean(naive):.2f} | 1 | {1000 * np.mean(naive) / 60:.0f} min |")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.4f} | {np.mean(naive) / seconds:.1f}x | {1000 * seconds / 60:.1f} min |")


def tfce_cost(n_permutations: int = 1000) -> None:
    from atlases.surface import smooth
    from encoding.stats import PermutationResult
    from encoding.stats.spatial import fsaverage5_graph

    graph = fsaverage5_graph()
    rng = np.random.default_rng(0)
    maps = np.concatenate([smooth(rng.standard_normal((20484, 100)).astype(np.float32), 5).T
                           for _ in range(n_permutations // 100 + 1)])
    maps /= maps.std(axis=0)
    print(f"\n## FWER from {n_permutations:,} permutations on fsaverage5 ({graph.mask.sum():,} cortical vertices, "
          f"{len(graph.edges):,} edges; null maps: noise smoothed 5 times over mesh neighbours)\n")
    print("| procedure | seconds |")
    print("|---|---|")
    result = PermutationResult(maps[0], maps[1:n_permutations + 1], "z", graph=graph)
    for method in ("step-down", "tfce", "cluster-mass", "cluster-extent"):
        start = time.perf_counter()
        result.fwer_p_values(method)
        print(f"| {method} | {time.perf_counter() - start:.1f} |", flush=True)


CALIBRATION_ROWS = (("refit", "blocks", 1000, 99), ("refit", "circular", 1000, 99), ("selection", "blocks", 300, 99),
                    ("test", "blocks", 1000, 99), ("test", "trs", 1000, 99))


def calibration(n_repetitions: int) -> None:
    from scipy import stats

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_stats import FWER_PROCEDURES, calibration_problem, null_rates  # the tests' procedure, larger

    problem = calibration_problem()
    if problem is None:
        raise ImportError("brainspace is needed (bash install.sh installs it): its resting-state run is the noise.")
    design, rest, live = problem
    print(f"\n## Calibration on real resting-state noise ({n_repetitions} repetitions, contiguous cortical patches, "
          f"train {len(design.X_train)} / test {len(design.X_test)} TRs, metric r, cluster-forming threshold 2)\n")
    print("| null | scheme | patch (vertices) | permutations | uncorrected rate (nominal 0.05) [95% CI] | "
          + " | ".join(f"FWER {m} [95% CI]" for m in FWER_PROCEDURES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(FWER_PROCEDURES))
    for null, scheme, n_vertices, n_permutations in CALIBRATION_ROWS:
        uncorrected, familywise = null_rates(design, rest, live, null, scheme, n_repetitions, n_vertices,
                                             n_permutations)
        sem = uncorrected.std(ddof=1) / np.sqrt(len(uncorrected))
        cells = []
        for method in FWER_PROCEDURES:
            low, high = stats.binomtest(int(familywise[method].sum()), n_repetitions).proportion_ci()
            cells.append(f"{familywise[method].mean():.3f} [{low:.2f}-{high:.2f}]")
        print(f"| {null} | {scheme} | {n_vertices} | {n_permutations} | {uncorrected.mean():.3f} "
              f"[{uncorrected.mean() - 1.96 * sem:.3f}-{uncorrected.mean() + 1.96 * sem:.3f}] | "
              + " | ".join(cells) + " |", flush=True)


def alice_table() -> None:
    import pandas as pd

    from encoding.stats import roi_mixed_model, sign_flip_test
    from encoding.studies import alice

    root = Path(__file__).parents[1] / ".." / "shared" / "data" / "alice-brennan2016"
    r = alice.held_out_correlations(root)
    flips = sign_flip_test(r.to_numpy())
    long = r.reset_index(names="subject").melt(id_vars="subject", var_name="roi", value_name="value")
    table = roi_mixed_model(long)
    table["sign_flip_p"] = pd.Series(flips.p_values, index=r.columns)  # align by ROI name
    table["sign_flip_p_fwer"] = pd.Series(flips.p_fwer, index=r.columns)
    print(f"\n## Alice (Brennan et al. 2016): {len(r)} subjects, held-out r per ROI\n")
    columns = ["mean", "estimate", "ci_low", "ci_high", "p", "cohen_d", "d_ci_low", "d_ci_high", "sign_flip_p",
               "sign_flip_p_fwer"]
    print(table[columns].sort_values("mean", ascending=False).to_markdown(floatfmt=".4g"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["cost", "tfce", "calibration", "alice"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--repetitions", type=int, default=50, help="calibration repetitions (default 50)")
    parser.add_argument("--permutations", type=int, default=1000, help="permutations timed in 'cost' and 'tfce'")
    args = parser.parse_args()
    print(machine_info())
    for part in args.parts:
        start = time.perf_counter()
        {"cost": lambda: cost(args.permutations), "tfce": lambda: tfce_cost(args.permutations),
         "calibration": lambda: calibration(args.repetitions), "alice": alice_table}[part]()
        print(f"\n({part}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
