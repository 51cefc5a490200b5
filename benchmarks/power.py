"""Power of the FWER procedures on the demo's planted simulations, all from one set of permutations.

    .venv/bin/python benchmarks/power.py                  # quick and full demo
    .venv/bin/python benchmarks/power.py --modes quick

Each demo is run as ``brain2music demo`` configures it (seed 0; variance partitioning off, it does
not change the test), the permutation test's null maps are computed once, and every FWER
procedure at 0.05 is applied to them: significant vertices, sensitivity over the planted vertices
(and per planted space), false positives outside the planted territories, and the seconds the
procedure itself took. Each procedure also runs on the statistic standardised per vertex
(``statistics.standardise = true``) beside the default pooled scale.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import machine_info  # noqa: E402

PROCEDURES = ("max", "step-down", "tfce", "cluster-mass", "cluster-extent")


def power(mode: str) -> None:
    import dataclasses

    from encoding.config import demo_config
    from encoding.pipeline import run_pipeline

    config = demo_config(quick=mode == "quick")
    config.statistics.partition = False
    start = time.perf_counter()
    run = run_pipeline(config, progress=False)
    pipeline_s = time.perf_counter() - start
    main = run.statistics.main
    share = run.truth.signal_share  # (n_bands, n_vertices)
    planted = share.sum(axis=0) > 0
    spaces = run.truth.band_names
    print(f"\n## {mode} demo: {planted.sum()} planted vertices ({', '.join(f'{s} {(b > 0).sum()}' for s, b in zip(spaces, share))}), "
          f"{main.n_permutations} permutations ({config.statistics.null} null), {pipeline_s:.0f} s to fit and permute\n")
    print("| procedure | scale | significant | sensitivity | " + " | ".join(f"found: {s}" for s in spaces)
          + " | false positives | seconds |")
    print("|---|---|---|---|" + "---|" * len(spaces) + "---|---|")
    for standardise in (False, True):
        result = dataclasses.replace(main, standardise=standardise)
        for method in PROCEDURES:
            if standardise and method == "max":
                continue  # max-T is on the raw statistic
            start = time.perf_counter()
            significant = result.fwer_p_values(method) <= 0.05
            seconds = time.perf_counter() - start
            found = " | ".join(f"{(significant & (b > 0)).sum()} / {(b > 0).sum()}" for b in share)
            print(f"| {method} | {'per vertex' if standardise else 'pooled'} | {significant.sum():,} | "
                  f"{significant[planted].mean():.3f} | {found} | {significant[~planted].sum()} | {seconds:.1f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["quick", "full"], choices=["quick", "full"])
    args = parser.parse_args()
    print(machine_info())
    for mode in args.modes:
        start = time.perf_counter()
        power(mode)
        print(f"\n({mode}: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
