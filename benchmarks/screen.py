"""What the screen and the search cost in recovery on the quick demo's simulation (issue 15).

The quick demo's simulated subject (4 training runs of 16 clips; log-mel, modulation and caption
fitted and planted, so band accuracy is defined), fitted with each ``[model] search`` and
``screen_r2`` given; for each it prints the fit's seconds, the vertices searched, the candidate
evaluations against an exhaustive search, and the recovery: AUC (test R^2 separating planted
vertices from the rest) and band accuracy (the largest split R^2 is the planted dominant space).
No permutations: the recovery does not depend on them.

    .venv/bin/python benchmarks/screen.py
    .venv/bin/python benchmarks/screen.py --variants halving:0.01 halving:0 halving:-inf random:-inf
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["halving:0.01", "halving:0.003", "halving:0", "halving:-inf",
                                                          "random:0.01", "random:-inf"],
                        help="search:screen_r2 pairs (the first is the default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(machine_info())

    from encoding.config import demo_config
    from encoding.pipeline import run_pipeline
    from encoding.report import recovery
    from encoding.simulation import simulate_experiment

    config = demo_config(quick=True, seed=args.seed)
    experiment, truth = simulate_experiment(config.data.simulation, progress=False)
    print(f"problem: the quick demo (seed {args.seed}), {experiment.n_vertices:,} vertices, "
          f"{len(truth.signal_vertices)} planted, {config.model.n_iter} candidates x {config.model.n_alphas} alphas\n")
    print("| search | screen_r2 | fit (s) | vertices searched | evaluations (of exhaustive) | AUC | band accuracy |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        search, screen = variant.split(":")
        config.model.search, config.model.screen_r2 = search, float(screen)
        config.statistics.n_permutations, config.statistics.partition = 0, False
        run = run_pipeline(config, experiment=experiment, truth=truth, progress=False)
        r, profile = recovery(run), run.model.fit_profile_
        share = profile["evaluations"] / (len(run.model.candidates_) * experiment.n_vertices)
        print(f"| {search} | {float(screen):g} | {run.timings['fit']:.1f} | {profile['n_searched']:,} | {share:.3f} | "
              f"{r['auc']:.3f} | {r['band_accuracy']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
