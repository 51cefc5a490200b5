"""Test score reached against candidates evaluated: successive halving beside random search (issue 15).

On the signal vertices of the ds003720-shaped simulated subject (``benchmarks/ridge.py``'s
``ds003720`` problem: 12 training runs x 410 TRs, logmel + caption x 4 delays, the planted
vertices only, so that the search is compared where it has something to find), every search runs
without the screen:

- ``random``: the first ``n`` band-weight candidates (equal weights, then Dirichlet samples), every
  candidate on every fold for every vertex;
- ``halving``: the same first ``n`` candidates by successive halving (with the ``folds`` strategy,
  which halving needs: with ``hat`` one factorization scores every fold, so every candidate sees
  every fold; the ``auto`` strategy takes ``hat`` for these 706 vertices alone).

For each it prints the candidate evaluations per vertex (one candidate scored on every fold for one
vertex counts 1; random search's are ``n``), the fit time and the mean test R^2 over the vertices.

    .venv/bin/python benchmarks/search.py
    .venv/bin/python benchmarks/search.py --random 1 5 10 20 40 --halving 10 20 40 80
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
from ridge import ALPHAS, simulated_problem  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", nargs="+", type=int, default=[1, 3, 5, 10, 20, 40])
    parser.add_argument("--halving", nargs="+", type=int, default=[10, 20, 40, 80])
    args = parser.parse_args()
    print(machine_info())

    from encoding.model import BandedRidgeEncoder
    from encoding.ridge import band_weight_candidates
    from encoding.scoring import r2_score

    X, Y, groups, X_test, Y_test, bands, signal = simulated_problem(None)
    Y, Y_test = Y[:, signal], Y_test[:, signal]
    print(f"problem: {X.shape[0]} training TRs x {X.shape[1]} features, {len(np.unique(groups))} folds, "
          f"{Y.shape[1]} planted vertices, {len(ALPHAS)} alphas")
    pool = band_weight_candidates(len(bands), max(args.random + args.halving), random_state=0)
    rows = []
    for search, sizes in (("random", args.random), ("halving", args.halving)):
        for n in sizes:
            model = BandedRidgeEncoder(bands, alphas=ALPHAS, n_iter=pool[:n], search=search, screen=None,
                                       strategy="folds" if search == "halving" else "auto", progress_bar=False)
            start = time.perf_counter()
            model.fit(X, Y, groups)
            seconds = time.perf_counter() - start
            r2 = float(r2_score(Y_test, model.predict(X_test)).mean())
            rows.append((search, n, model.fit_profile_["evaluations"] / Y.shape[1], seconds, r2))
            print(f"  {search:8s} {n:3d} candidates: {rows[-1][2]:6.2f} evaluations per vertex, {seconds:7.1f} s, "
                  f"test R2 {r2:.4f}", flush=True)
    best = max(r[4] for r in rows)
    print("\n| search | candidates | evaluations per vertex | fit (s) | mean test R^2 (planted vertices) | of the best |")
    print("|---|---|---|---|---|---|")
    for search, n, evaluations, seconds, r2 in rows:
        print(f"| {search} | {n} | {evaluations:.2f} | {seconds:.1f} | {r2:.4f} | {100 * r2 / best:.1f} % |")


if __name__ == "__main__":
    main()
