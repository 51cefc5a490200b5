"""Regenerate every figure of the README from a demo's outputs (the demo draws them; this copies).

    .venv/bin/brain2music demo --quick --out demo-output
    .venv/bin/python figures/make_figures.py demo-output       # writes figures/demo_*.png
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HERE = Path(__file__).parent

COPIED = {  # demo output -> README figure
    "figures/test_r2.png": "demo_test_r2.png",
    "figures/best_space.png": "demo_best_space.png",
    "figures/significant_r2.png": "demo_significant_r2.png",
    "figures/unique_caption.png": "demo_unique_caption.png",
    "figures/flat_significant_r2.png": "demo_flat_significant_r2.png",
    "figures/unique_rgb.png": "demo_flat_unique_rgb.png",
    "figures/pycortex_significant_r2.png": "demo_pycortex_significant_r2.png",
    "decoding/figures/identification_caption.png": "demo_identification_caption.png",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="output folder of `brain2music demo`")
    args = parser.parse_args()
    for source, target in COPIED.items():
        shutil.copyfile(args.demo / source, HERE / target)
    print(f"Wrote {len(COPIED)} figures to {HERE}/")


if __name__ == "__main__":
    main()
