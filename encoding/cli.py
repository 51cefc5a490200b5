"""The ``brain2music`` command line.

Exit status: 0 on success; 2 for a mistake in the input (a :class:`~encoding.errors.UserError`:
one line naming the file, key or value and what to do); 130 when interrupted (one line saying
what was kept); 1 for a bug (a traceback and a request to report it).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from encoding import __version__
from encoding.config import FWER_METHODS
from encoding.errors import UserError


def _demo(args: argparse.Namespace):
    from decoding.pipeline import run_decoding
    from encoding.config import demo_config
    from encoding.html_report import write_html_report
    from encoding.pipeline import run_pipeline

    config = demo_config(args.quick, args.seed)

    def work():
        run = run_pipeline(config, args.out, progress=not args.no_progress)
        _print_done(args.out)
        run_decoding(config, args.out / "decoding", progress=not args.no_progress, experiment=run.experiment,
                     truth=run.truth)
        write_html_report(args.out)  # again, now with the decoding section
        _print_decoded(args.out / "decoding")

    return config, work


def _decode(args: argparse.Namespace):
    from decoding.pipeline import run_decoding
    from encoding.config import PipelineConfig

    config = PipelineConfig.from_toml(args.config)
    return config, lambda: (run_decoding(config, args.out, progress=not args.no_progress), _print_decoded(args.out))


def _fit(args: argparse.Namespace):
    from encoding.config import PipelineConfig
    from encoding.pipeline import run_pipeline

    config = PipelineConfig.from_toml(args.config)
    if config.study.subjects:
        from encoding.study import run_study

        return config, lambda: (run_study(config, args.out, progress=not args.no_progress), _print_study(args.out))
    return config, lambda: (run_pipeline(config, args.out, progress=not args.no_progress), _print_done(args.out))


def _group(args: argparse.Namespace):
    from encoding.group import run_group

    out = args.out or (args.folders[0] / "group" if len(args.folders) == 1 else Path("brain2music-group"))
    return None, lambda: (run_group(args.folders, out, alpha=args.alpha, correction=args.correction, fwer=args.fwer),
                          _print_group(out))


def _sweep(args: argparse.Namespace):
    from encoding.config import PipelineConfig
    from encoding.errors import ConfigError
    from encoding.sweep import run_sweep

    config = PipelineConfig.from_toml(args.config)
    if not config.sweep.space or not config.sweep.values:
        raise ConfigError(f"{args.config}: [sweep] needs a space and values to sweep, e.g. space = \"musicnn\", "
                          "parameter = \"layer\", values = [\"cnn1\", \"penultimate\"].")

    def work():
        import json

        run_sweep(config, args.out, progress=not args.no_progress)
        summary = json.loads((args.out / "sweep.json").read_text())
        print(f"Wrote {args.out}/: sweep.md, sweep.json, sweep.npz, figures/")
        for value, row in summary["values"].items():
            print(f"{config.sweep.parameter}={value}: best at {row['n_vertices_best']} vertices")

    return config, work


def _spaces(args: argparse.Namespace):
    from encoding.features import available_spaces, get_extractor

    def work():
        for name in available_spaces():
            params = ", ".join(f"{k}={v!r}" for k, v in get_extractor(name).get_params().items())
            print(f"{name:12s} {params}")

    return None, work


def _print_done(out: Path) -> None:
    import json

    summary = json.loads((Path(out) / "summary.json").read_text())
    print(f"Wrote {out}/: report.md, summary.json, results.npz, config.toml, figures/")
    if "recovery" in summary:
        r = summary["recovery"]
        accuracy = "n/a" if r["band_accuracy"] is None else f"{r['band_accuracy']:.3f}"
        print(f"recovery: AUC {r['auc']:.3f}, band accuracy {accuracy}")
    print(f"time: {summary['timings_s']['total']:.1f} s")


def _print_decoded(out: Path) -> None:
    import json

    summary = json.loads((Path(out) / "summary.json").read_text())
    print(f"Wrote {out}/: report.md, identification.csv, summary.json, figures/"
          + (", audio/, listen.html" if summary["files"]["audio"] else ""))
    for space, target in summary["targets"].items():
        values, ci = target["identification"]["values"], target["identification"]["ci"]["pairwise"]
        interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci[0] is not None else ""
        print(f"decoding {space}: pairwise identification {values['pairwise']:.3f}{interval}, chance 0.5")


def _print_study(out: Path) -> None:
    import json

    study = json.loads((Path(out) / "study.json").read_text())
    print(f"Wrote {out}/: " + ", ".join(f"sub-{s} ({v})" for s, v in study["status"].items()))
    if (Path(out) / "group" / "summary.json").is_file():
        _print_group(Path(out) / "group")


def _print_group(out: Path) -> None:
    import json

    from encoding.stats.report import correction_label

    summary = json.loads((Path(out) / "summary.json").read_text())
    s = summary["settings"]
    print(f"Wrote {out}/: report.md, summary.json, results.npz, figures/; {summary['n_subjects']} subjects, "
          f"{summary['n_significant']:,} vertices significant ({correction_label(s)})")
    for row in summary.get("identification", []):
        print(f"group decoding {row['target']}: pairwise identification {row['value']:.3f} "
              f"(95% CI {row['ci_low']:.3f}-{row['ci_high']:.3f}, {row['n_subjects']} subjects), chance 0.5")


def interrupted_message(config, out: Path | None) -> str:
    """The line printed after Ctrl-C: what was kept and how to resume."""
    parts = []
    if out is not None and config is not None and config.study.subjects:
        parts.append(f"finished subjects are kept in {out}/sub-*: run the same command again to resume")
    elif out is not None:
        kept = " (the earlier run there is untouched)" if (Path(out) / "summary.json").exists() else ""
        parts.append(f"nothing was written to {out}{kept}")
    if config is not None and config.model.cache:
        parts.append(f"finished fit batches are kept in {config.model.cache}: run the same command again to resume")
    if config is not None and config.features.cache:
        parts.append(f"extracted features are kept in {config.features.cache}")
    return "brain2music: interrupted; " + ("; ".join(parts) if parts else "nothing was written") + "."


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
    demo.add_argument("--quick", action="store_true", help="a smaller experiment that runs in about two minutes on 2 cores")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and the search (default: 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    fit = sub.add_parser("fit", help="run the pipeline described by a TOML config file (each subject of its [study])")
    fit.add_argument("config", type=Path, help="config file (a demo writes one to start from)")
    fit.add_argument("--out", type=Path, default=Path("brain2music-output"), help="output folder")
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit.set_defaults(func=_fit)

    decode = sub.add_parser("decode", help="decode feature spaces from responses: the [decoding] of a config")
    decode.add_argument("config", type=Path, help="config file (its [decoding] section names the targets)")
    decode.add_argument("--out", type=Path, default=Path("brain2music-decoding"), help="output folder")
    decode.add_argument("--no-progress", action="store_true", help="hide progress bars")
    decode.set_defaults(func=_decode)

    sweep = sub.add_parser("sweep", help="one fit per layer (value) of a feature space: the [sweep] of a config")
    sweep.add_argument("config", type=Path, help="config file with a [sweep] section")
    sweep.add_argument("--out", type=Path, default=Path("brain2music-sweep"), help="output folder")
    sweep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sweep.set_defaults(func=_sweep)

    group = sub.add_parser("group", help="the group level of subjects' outputs: maps, ROI effects, decoding")
    group.add_argument("folders", type=Path, nargs="+", help="subject output folders, or a study folder (sub-*/)")
    group.add_argument("--out", type=Path, default=None,
                       help="output folder (default: STUDY/group for one study folder, else brain2music-group)")
    group.add_argument("--alpha", type=float, default=0.05, help="significance level of the maps (default: 0.05)")
    group.add_argument("--correction", default="fwer", choices=("fwer", "fdr_bh", "fdr_by", "none"),
                       help="multiple-comparison correction of the maps (default: fwer, max statistic)")
    group.add_argument("--fwer", default="step-down", choices=FWER_METHODS,
                       help="FWER procedure (default: step-down; tfce and cluster-* need fsaverage5 subjects)")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    group.set_defaults(func=_group)

    spaces = sub.add_parser("spaces", help="list the registered feature spaces and their parameters")
    spaces.set_defaults(func=_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brain2music`` console script."""
    args = build_parser().parse_args(argv)
    config = None
    try:
        config, work = args.func(args)
        work()
        return 0
    except UserError as err:
        print(f"brain2music: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(config, getattr(args, "out", None)), file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"brain2music {__version__}: this is a bug, not a mistake in your input. Please report it on the "
              "project's issue tracker with the command, the config and the traceback above.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
