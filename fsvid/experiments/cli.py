"""The papers' experiments as sweeps: definitions, expansion into runs, running, one results CSV.

``fsvid sweep`` (and ``python -m fsvid.experiments``)::

    fsvid sweep list                                  # the sweeps and their variants
    fsvid sweep show strm_cardinalities --scale full  # the runs it expands to, and their status
    fsvid sweep run strm_components strm_shots        # synthetic scale, CPU
    fsvid sweep run strm_cardinalities --scale full --base strm_kinetics   # Table 2, Kinetics
    fsvid sweep reproduce                             # the committed synthetic results + figures
    fsvid sweep analysis --out results/               # the analysis figures of trained runs
    fsvid sweep plot --csv results/results.csv --out results/
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fsvid.config import ConfigError
from fsvid.experiments.definitions import SCALES, SWEEPS, SYNTHETIC_REPRODUCTION, default_output, plan
from fsvid.experiments.running import SYNTHETIC_REVERSAL_TASKS, run_status, run_sweep, short_path

#: Resolution of the committed figures (small PNGs).
FIGURE_DPI = 80


def _add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=SCALES, default="synthetic",
                        help="synthetic: CPU presets and budget on the synthetic set; full: the paper presets")
    parser.add_argument("--base", default=None, help="a preset replacing the sweeps' base (e.g. strm_kinetics)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder of the run folders (default $FSVID_HOME/sweeps/<scale or base>)")
    parser.add_argument("--train-tasks", type=int, default=None, help="training tasks per run (synthetic default 600)")
    parser.add_argument("--test-tasks", type=int, default=None, help="test tasks per run (synthetic default 300)")


def _plan_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [item for item in args.items if "=" in item or "." in item]
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ConfigError(f"expected key=value overrides (e.g. train.lr=0.01), got {' '.join(bad)}")
    extra = list(overrides)
    if args.train_tasks is not None:
        extra.append(f"train.tasks={args.train_tasks}")
    if args.test_tasks is not None:
        extra.append(f"eval.tasks={args.test_tasks}")
    return extra


def _csv_default(args: argparse.Namespace) -> Path:
    folder = args.output if args.output is not None else default_output(args.scale, args.base)
    return Path(folder).expanduser() / "results.csv"


def main(argv: Sequence[str] | None = None) -> int:
    """``fsvid sweep``: list, show, run and plot the papers' experiments."""
    parser = argparse.ArgumentParser(prog="fsvid sweep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("list", help="the sweeps and their variants")
    p.add_argument("--scale", choices=SCALES, default=None)

    items_help = "sweep names, then section.key=value overrides for every run"
    p = commands.add_parser("show", help="the runs a sweep expands to, with their status")
    p.add_argument("items", nargs="+", metavar="SWEEP [key=value ...]", help=items_help)
    p.add_argument("--variants", nargs="+", default=None)
    _add_plan_arguments(p)

    p = commands.add_parser("run", help="train and evaluate the runs not done yet; rows into results.csv")
    p.add_argument("items", nargs="+", metavar="SWEEP [key=value ...]", help=items_help)
    p.add_argument("--variants", nargs="+", default=None, help="only these variants (names as `list` shows)")
    p.add_argument("--csv", type=Path, default=None, help="results CSV (default <output>/results.csv)")
    p.add_argument("--reversal-tasks", type=int, default=SYNTHETIC_REVERSAL_TASKS,
                   help="time-reversal tasks per reversed pair, synthetic data only (0: none)")
    p.add_argument("--progress", action="store_true", help="progress bars of training and evaluation")
    _add_plan_arguments(p)

    p = commands.add_parser("reproduce", help="the committed synthetic-scale reproduction, then its figures")
    p.add_argument("--csv", type=Path, default=Path("results/results.csv"))
    p.add_argument("--figures", type=Path, default=Path("results"), help="folder for the PNG figures")
    p.add_argument("--reversal-tasks", type=int, default=SYNTHETIC_REVERSAL_TASKS)
    p.add_argument("--progress", action="store_true")
    p.add_argument("items", nargs="*", metavar="key=value", help="overrides for every run")
    _add_plan_arguments(p)

    p = commands.add_parser("analysis", help="attention, tuple-match, angle and projection figures of trained runs")
    p.add_argument("--output", type=Path, default=None,
                   help="the synthetic sweep folder holding the runs (default $FSVID_HOME/sweeps/synthetic)")
    p.add_argument("--strm", default="strm_table1/STRM", help="STRM run folder, relative to --output")
    p.add_argument("--trm", default="strm_components/TRM", help="TRM run folder, relative to --output ('' for none)")
    p.add_argument("--mastaf", default="mastaf_ablations/MASTAF", help="MASTAF run folder ('' for none)")
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--dpi", type=int, default=60)

    p = commands.add_parser("plot", help="draw every figure the results CSV has rows for")
    p.add_argument("--csv", type=Path, default=Path("results/results.csv"))
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--dpi", type=int, default=FIGURE_DPI)

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, KeyError, ValueError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"fsvid sweep: error: {message}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for sweep in SWEEPS.values():
            variants = sweep.variants_at(args.scale) if args.scale else sweep.variants
            print(f"{sweep.name:20s} {sweep.paper}")
            print(f"{'':20s} base: {', '.join(f'{k}={v}' for k, v in sweep.base.items())}")
            print(f"{'':20s} variants: {' | '.join(v.name for v in variants)}")
        return 0
    if args.command == "analysis":
        from fsvid.experiments.analysis import draw_analysis

        folder = Path(args.output).expanduser() if args.output is not None else default_output("synthetic")
        runs = [folder / name if name else None for name in (args.strm, args.trm, args.mastaf)]
        for run in runs:
            if run is not None and not (run / "best.pt").is_file():
                raise FileNotFoundError(f"no trained run in {run} (run `fsvid sweep reproduce` first)")
        for path in draw_analysis(*runs, args.out, dpi=args.dpi):
            print(path)
        return 0
    if args.command == "plot":
        from fsvid.experiments.paper_figures import draw_all

        for path in draw_all(args.csv, args.out, dpi=args.dpi):
            print(path)
        return 0
    if args.command == "reproduce":
        if args.scale != "synthetic":
            raise ValueError("reproduce is the synthetic-scale reproduction; use `run` with --scale full")
        selection: Mapping[str, Any] = SYNTHETIC_REPRODUCTION
    else:
        names = [item for item in args.items if "=" not in item and "." not in item]
        if not names:
            raise ValueError(f"name at least one sweep; sweeps: {', '.join(SWEEPS)}")
        selection = {name: args.variants for name in names}
    planned = plan(selection, args.scale, args.base, _plan_overrides(args), args.output)
    if args.command == "show":
        for run in planned:
            status = run_status(run)
            shared = f" = {run.shared_with}" if run.shared_with else ""
            print(f"{run.label:34s} {status:9s} {short_path(run.run_dir)}{shared}")
            print(f"{'':34s} {run.base} {' '.join(run.overrides)}")
        return 0
    csv_path = args.csv if args.csv is not None else _csv_default(args)
    started = time.time()
    run_sweep(planned, csv_path, args.reversal_tasks, args.progress)
    print(f"results: {csv_path} ({time.time() - started:.0f} s)")
    if args.command == "reproduce":
        from fsvid.experiments.paper_figures import draw_all

        for path in draw_all(csv_path, args.figures, dpi=FIGURE_DPI):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
