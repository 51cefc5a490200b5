"""Held-out prediction of real BOLD (Brennan et al. 2016, Alice in Wonderland) by sound power and word rate.

    .venv/bin/python benchmarks/alice.py [../shared/data/alice-brennan2016]

Prints per-ROI group statistics (mean held-out r over 11 subjects, t-test against 0) and the time taken.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

from encoding.studies import alice  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / ".." / "shared" / "data" / "alice-brennan2016")
print(machine_info(), "\n")
start = time.perf_counter()
r = alice.held_out_correlations(root)
print(alice.group_table(r).round(4).to_string())
print(f"\n{len(r)} subjects, 5 held-out blocks each, {time.perf_counter() - start:.1f} s")
