"""The ``brain2music`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from encoding import __version__


def demo_config(quick: bool = False, seed: int = 0):
    """The demo's configuration: the simulated experiment with the default pipeline.

    ``quick`` shrinks the experiment (4 training runs of 16 clips, 12 test clips x 3 repeats), the
    search (10 band-weight candidates, 11 alphas: one per decade) and the permutation test (100
    permutations, 200 bootstrap resamples) so the demo runs in under two minutes on 2 cores, first
    run included; the full demo uses 500
    permutations (a 0.002 p-value resolution) to stay under ten.
    """
    from encoding.config import PipelineConfig

    config = PipelineConfig()
    sim = config.data.simulation
    sim.seed = seed
    config.model.random_state = seed
    if quick:
        sim.n_train_runs, sim.clips_per_run, sim.n_test_clips, sim.n_test_repeats = 4, 16, 12, 3
        config.model.n_iter = 10
        config.model.n_alphas = 11
        config.statistics.n_permutations = 100
        config.statistics.n_bootstrap = 200
    else:
        config.statistics.n_permutations = 500
    return config


def _demo(args: argparse.Namespace) -> int:
    from encoding.pipeline import run_pipeline

    run = run_pipeline(demo_config(args.quick, args.seed), args.out, progress=not args.no_progress)
    _print_done(args.out, run)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from encoding.config import PipelineConfig
    from encoding.pipeline import run_pipeline

    config = PipelineConfig.from_toml(args.config)
    run = run_pipeline(config, args.out, progress=not args.no_progress)
    _print_done(args.out, run)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from encoding.config import PipelineConfig
    from encoding.sweep import run_sweep, write_sweep

    config = PipelineConfig.from_toml(args.config)
    if not config.sweep.space or not config.sweep.values:
        raise ValueError(f"{args.config}: [sweep] needs a space and values to sweep.")
    results, experiment = run_sweep(config, progress=not args.no_progress)
    summary = write_sweep(results, experiment, config, args.out)
    print(f"Wrote {args.out}/: sweep.md, sweep.json, sweep.npz, figures/")
    for value, row in summary["values"].items():
        print(f"{config.sweep.parameter}={value}: best at {row['n_vertices_best']} vertices")
    return 0


def _spaces(args: argparse.Namespace) -> int:
    from encoding.features import available_spaces, get_extractor

    for name in available_spaces():
        params = ", ".join(f"{k}={v!r}" for k, v in get_extractor(name).get_params().items())
        print(f"{name:12s} {params}")
    return 0


def _print_done(out: Path, run) -> None:
    import json

    summary = json.loads((Path(out) / "summary.json").read_text())
    print(f"Wrote {out}/: report.md, summary.json, results.npz, config.toml, figures/")
    if "recovery" in summary:
        r = summary["recovery"]
        accuracy = "n/a" if r["band_accuracy"] is None else f"{r['band_accuracy']:.3f}"
        print(f"recovery: AUC {r['auc']:.3f}, band accuracy {accuracy}")
    print(f"time: {summary['timings_s']['total']:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``brain2music``."""
    parser = argparse.ArgumentParser(
        prog="brain2music",
        description="Voxel-wise encoding and decoding analysis of music-listening fMRI.",
    )
    parser.add_argument("--version", action="version", version=f"brain2music {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the pipeline on the built-in simulated experiment")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default: demo-output)")
    demo.add_argument("--quick", action="store_true", help="a smaller experiment that runs in about a minute")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and the search (default: 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    fit = sub.add_parser("fit", help="run the pipeline described by a TOML config file")
    fit.add_argument("config", type=Path, help="config file (a demo writes one to start from)")
    fit.add_argument("--out", type=Path, default=Path("brain2music-output"), help="output folder")
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit.set_defaults(func=_fit)

    sweep = sub.add_parser("sweep", help="one fit per layer (value) of a feature space: the [sweep] of a config")
    sweep.add_argument("config", type=Path, help="config file with a [sweep] section")
    sweep.add_argument("--out", type=Path, default=Path("brain2music-sweep"), help="output folder")
    sweep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sweep.set_defaults(func=_sweep)

    spaces = sub.add_parser("spaces", help="list the registered feature spaces and their parameters")
    spaces.set_defaults(func=_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brain2music`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError, ImportError) as err:
        print(f"brain2music: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
