"""Regenerate every figure of the README from a demo's outputs.

    .venv/bin/brain2music demo --quick --out demo-output
    .venv/bin/python figures/make_figures.py demo-output       # writes figures/demo_*.png

The inflated-surface maps and the decoding figures are the demo's own (copied); the flat maps are
drawn here from ``results.npz``: the FWER-significant test R^2 with the Desikan-Killiany auditory
regions outlined, and the unique variance of the three feature spaces as one RGB map (FDR-
significant vertices, opacity by the noise ceiling CC_norm).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

COPIED = {  # demo output -> README figure
    "figures/test_r2.png": "demo_test_r2.png",
    "figures/best_space.png": "demo_best_space.png",
    "figures/significant_r2.png": "demo_significant_r2.png",
    "figures/unique_caption.png": "demo_unique_caption.png",
    "decoding/figures/identification_caption.png": "demo_identification_caption.png",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="output folder of `brain2music demo`")
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args()

    from atlases.parcellations import atlas_rois
    from atlases.plotting import plot_flat_map, plot_flat_rgb
    from encoding.io import save_figure

    for source, target in COPIED.items():
        shutil.copyfile(args.demo / source, HERE / target)
    results = np.load(args.demo / "results.npz")
    rois = atlas_rois(roles=("auditory",))
    significant = np.where(results["significant"], results["test_r2"], np.nan)
    save_figure(plot_flat_map(significant, "Test R^2, FWER-significant vertices (quick demo)", label="test R^2",
                              outlines=rois), HERE / "demo_flat_significant_r2.png", args.dpi)
    spaces = [str(s) for s in results["band_names"]]
    unique = np.stack([np.where(results[f"unique_{s}_p_fdr"] < 0.05, results[f"unique_{s}"], 0.0) for s in spaces])
    opacity = np.clip(np.nan_to_num(results["cc_norm"]), 0, 1) if "cc_norm" in results else None
    save_figure(plot_flat_rgb(unique, spaces,
                              "Unique variance of each feature space (FDR 0.05), opacity: CC_norm", opacity=opacity,
                              outlines=rois), HERE / "demo_flat_unique_rgb.png", args.dpi)
    print(f"Wrote {len(COPIED) + 2} figures to {HERE}/")


if __name__ == "__main__":
    main()
