"""Statistics at full size: refit-under-permutation cost, null calibration on real noise, Alice group table.

    .venv/bin/python benchmarks/inference.py                       # all three parts
    .venv/bin/python benchmarks/inference.py --parts cost          # one part

- ``cost``: a 10,000-vertex banded ridge fit (6 runs x 210 TRs, 3 bands x 64 features x 4 delays,
  420 test TRs, 20 candidates x 21 alphas); the per-permutation time of the fast refit null
  (hat matrices shared by vertices, one GEMM per batch of permutations) against a naive refit
  (the whole search again on permuted responses), measured in the same run, and the time of
  1,000 permutations with split-R^2 nulls.
- ``calibration``: no planted signal, real noise (brainspace's resting-state run on fsaverage5)
  with the simulation's stimulus features; the share of vertices significant at 0.05 uncorrected
  and the family-wise false-positive rate (any vertex surviving max-T) over repetitions, for each
  null and scheme.
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


def cost(n_permutations: int = 1000) -> None:
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
    for split, k in ((False, n_permutations), (True, n_permutations)):
        start = time.perf_counter()
        permutation_test(model, X, Y, groups, X_test, Y_test, n_permutations=k, split=split, progress=False)
        timings[split] = (time.perf_counter() - start) / k
    print(f"\n## Refit-under-permutation cost ({X.shape[0]} training TRs, {X.shape[1]} features, {Y.shape[1]:,} "
          f"vertices, {len(X_test)} test TRs; model {model.form_}/{model.strategy_}, fit {fit_s:.1f} s)\n")
    print("| null | s / permutation | ratio to naive refit | 1,000 permutations |")
    print("|---|---|---|---|")
    print(f"| naive refit (whole search again) | {np.mean(naive):.2f} | 1 | {1000 * np.mean(naive) / 60:.0f} min |")
    for split, label in ((False, "fast refit, test R2"), (True, "fast refit, test R2 + split R2 per band")):
        print(f"| {label} | {timings[split]:.4f} | {np.mean(naive) / timings[split]:.0f}x | "
              f"{1000 * timings[split]:.0f} s |")


def calibration(n_repetitions: int, n_vertices: int = 300, n_permutations: int = 199) -> None:
    from scipy import stats

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from test_stats import _null_rates, calibration_problem  # the tests' procedure, at a larger size

    problem = calibration_problem()
    if problem is None:
        raise ImportError("brainspace is needed (bash install.sh installs it): its resting-state run is the noise.")
    design, rest, live = problem
    print(f"\n## Calibration on real resting-state noise ({n_repetitions} repetitions x {n_vertices} vertices, "
          f"{n_permutations} permutations, train {len(design.X_train)} / test {len(design.X_test)} TRs, "
          f"metric r)\n")
    print("| null | scheme | uncorrected rate (nominal 0.05) | 95% CI over repetitions | FWER (nominal <= 0.05) | "
          "binomial 95% CI |")
    print("|---|---|---|---|---|---|")
    for null, scheme in (("refit", "blocks"), ("refit", "circular"), ("refit", "trs"), ("test", "blocks"),
                         ("test", "circular"), ("test", "trs")):
        uncorrected, familywise = _null_rates(design, rest, live, null, scheme, n_repetitions, n_vertices,
                                              n_permutations)
        sem = uncorrected.std(ddof=1) / np.sqrt(len(uncorrected))
        low, high = stats.binomtest(int(familywise.sum()), len(familywise)).proportion_ci()
        print(f"| {null} | {scheme} | {uncorrected.mean():.3f} | {uncorrected.mean() - 1.96 * sem:.3f}-"
              f"{uncorrected.mean() + 1.96 * sem:.3f} | {familywise.mean():.3f} | {low:.3f}-{high:.3f} |", flush=True)


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
    parser.add_argument("--parts", nargs="+", default=["cost", "calibration", "alice"],
                        choices=["cost", "calibration", "alice"])
    parser.add_argument("--repetitions", type=int, default=50, help="calibration repetitions (default 50)")
    parser.add_argument("--permutations", type=int, default=1000, help="permutations timed in 'cost'")
    args = parser.parse_args()
    print(machine_info())
    for part in args.parts:
        start = time.perf_counter()
        {"cost": lambda: cost(args.permutations), "calibration": lambda: calibration(args.repetitions),
         "alice": alice_table}[part]()
        print(f"\n({part}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
