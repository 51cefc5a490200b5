"""Time the demo and measure its ground-truth recovery over seeds.

Runs ``brain2music demo`` (quick and/or full) in fresh processes, as a user would, and prints a
table of wall time, recovery AUC, band accuracy, FWER-significant vertices and false positives
(significant vertices outside the planted territories) per seed, the decoding's time and pairwise
identification per target, with the machine's description, then each run's per-ROI table
(``statistics/rois.md``) and decoding tables (``decoding/identification.md``, ``reconstructions.md``).

    .venv/bin/python benchmarks/demo.py                 # quick and full, seeds 0-2
    .venv/bin/python benchmarks/demo.py --modes quick --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/demo.py --modes quick --seeds 0 --keep demo-runs   # keep the output folders

Acceptance targets (issue 2): quick < 120 s with AUC >= 0.9 and band accuracy >= 0.7 (default
seed 0); full < 600 s with better recovery.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

CLI = Path(sys.executable).with_name("brain2music")


def run_demo(mode: str, seed: int, out: Path) -> dict:
    args = [str(CLI), "demo", "--out", str(out), "--seed", str(seed), "--no-progress"]
    if mode == "quick":
        args.append("--quick")
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    statistics = summary.get("statistics", {})
    rois = out / "statistics" / "rois.md"
    decoding = json.loads((out / "decoding" / "summary.json").read_text())
    identification = (out / "decoding" / "identification.md").read_text()
    reconstructions = out / "decoding" / "reconstructions.md"
    return {"mode": mode, "seed": seed, "wall_s": wall, **summary["recovery"], "timings": summary["timings_s"],
            "n_significant": statistics.get("test", {}).get("n_significant"),
            "n_false_positives": statistics.get("power", {}).get("n_false_positives"),
            "rois": rois.read_text() if rois.is_file() else None,
            "decoding_s": decoding["timings_s"]["total"],
            "pairwise": {s: t["identification"]["values"]["pairwise"] for s, t in decoding["targets"].items()},
            "decoding": identification + ("\n" + reconstructions.read_text() if reconstructions.is_file() else "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["quick", "full"], choices=["quick", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="write the demo output folders here (default: a temporary folder)")
    args = parser.parse_args()
    print(machine_info())
    print()
    print(f"{'mode':6s} {'seed':>4s} {'wall s':>7s} {'AUC':>6s} {'band acc':>8s} {'signif':>7s} {'false +':>7s}   "
          "steps (s); decoding: seconds, pairwise identification per target")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for mode in args.modes:
            for seed in args.seeds:
                row = run_demo(mode, seed, folder / f"{mode}-{seed}")
                rows.append(row)
                steps = ", ".join(f"{k} {v:.0f}" for k, v in row["timings"].items() if k != "total")
                signif = "" if row["n_significant"] is None else row["n_significant"]
                false = "" if row["n_false_positives"] is None else row["n_false_positives"]
                decoded = ", ".join(f"{k} {v:.3f}" for k, v in row["pairwise"].items())
                print(f"{mode:6s} {seed:4d} {row['wall_s']:7.1f} {row['auc']:6.3f} {row['band_accuracy']:8.3f} "
                      f"{signif:>7} {false:>7}   {steps}; decoding {row['decoding_s']:.0f} s: {decoded}", flush=True)
    for mode in args.modes:
        sel = [r for r in rows if r["mode"] == mode]
        print(f"{mode:6s} mean {statistics.mean(r['wall_s'] for r in sel):7.1f} "
              f"{statistics.mean(r['auc'] for r in sel):6.3f} {statistics.mean(r['band_accuracy'] for r in sel):8.3f}"
              f"   (min AUC {min(r['auc'] for r in sel):.3f}, min band acc {min(r['band_accuracy'] for r in sel):.3f})")
    print("\nsignif: vertices significant after the FWER-corrected permutation test; false +: those outside the "
          "planted territories.")
    for row in rows:
        if row["rois"]:
            print(f"\n### {row['mode']} demo, seed {row['seed']}: statistics/rois.md\n\n{row['rois'].strip()}")
        print(f"\n### {row['mode']} demo, seed {row['seed']}: decoding/identification.md, reconstructions.md\n\n"
              f"{row['decoding'].strip()}")


if __name__ == "__main__":
    main()
