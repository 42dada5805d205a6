"""The ``fsvid`` command line.

::

    fsvid presets                                     # list the presets
    fsvid presets synthetic_trx                       # show one, resolved
    fsvid synthetic ROOT --classes 24 --size 64       # generate the synthetic dataset
    fsvid train --config synthetic_trx train.lr=0.01 task.shot=1
    torchrun --nproc_per_node=4 -m fsvid.cli train --config PRESET_OR_YAML ...   # several GPUs
    fsvid evaluate RUN_DIR --tasks 10000              # test accuracy with its 95% CI
    fsvid evaluate --config synthetic_trx name=proto model.method=prototype --untrained
    fsvid compare RUN_A RUN_B                         # paired difference on the same tasks
    fsvid convert trx released.pth --config sizes.json --out trx_head.pt
    fsvid cache ...                                   # the feature cache (see ``fsvid cache -h``)

``--config`` takes a preset name or a YAML file; ``key=value`` arguments change single fields
(``section.key=value``, values read as YAML). Configuration errors (unknown keys, bad values)
are printed with the valid choices and exit with status 2; other errors exit with status 1
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fsvid.config import ConfigError, RunConfig, load_config, preset_names, read_yaml_file, to_dict

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def say(*parts: Any) -> None:
    """Print on the main process only (several copies under torchrun would be noise)."""
    if _is_main_process():
        print(*parts, flush=True)


class UsageError(Exception):
    """A bad command line or configuration: printed without a traceback, exit status 2."""


def _load_run_config(source: str | None, overrides: list[str]) -> RunConfig:
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UsageError(f"expected key=value overrides (e.g. train.lr=0.01), got {' '.join(bad)}")
    try:
        return load_config(source, overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from error
    except FileNotFoundError as error:
        raise UsageError(f"{error}; --config takes a preset ({', '.join(preset_names())}) or a YAML file") from error


# ----------------------------------------------------------------------------- commands


def cmd_presets(args: argparse.Namespace) -> int:
    if args.name:
        config = _load_run_config(args.name, [])
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return EXIT_OK
    for name in preset_names():
        text = (resources.files("fsvid") / "presets" / f"{name}.yaml").read_text()
        first = next((line for line in text.splitlines() if line.startswith("#")), "#")
        print(f"{name:28s} {first.lstrip('#').strip()}")
    return EXIT_OK


def cmd_synthetic(args: argparse.Namespace) -> int:
    from fsvid.data.synthetic import SyntheticConfig, generate_synthetic_dataset

    options: dict[str, Any] = {
        "videos_per_class": args.videos_per_class,
        "frames": args.frames,
        "size": args.size,
        "format": args.format,
        "seed": args.seed,
        "clutter": args.clutter,
    }
    if args.classes.isdigit():
        options["num_classes"] = int(args.classes)
    else:
        options["classes"] = tuple(name.strip() for name in args.classes.split(",") if name.strip())
    try:
        config = SyntheticConfig(**options)
    except ValueError as error:
        raise UsageError(str(error)) from error
    root = generate_synthetic_dataset(
        args.root, config, progress=not args.quiet, workers=args.workers, overwrite=args.overwrite
    )
    say(f"synthetic dataset in {root} (splits in {root / 'splits'})")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from fsvid.engine import evaluate_run, train

    config = _load_run_config(args.config, args.overrides)
    result = train(config, resume=not args.no_resume, progress=not args.quiet)
    best = f"{result.best_accuracy:.2f}% at task {result.best_task}" if result.best_task >= 0 else "no validation"
    say(f"trained {result.tasks} tasks in {result.seconds:.0f} s; best validation {best}; run folder {result.directory}")
    if args.evaluate:
        evaluation = evaluate_run(result.directory, progress=not args.quiet)
        say(f"test accuracy {evaluation.accuracy}")
    else:
        say(f"evaluate it with: fsvid evaluate {result.directory}")
    return EXIT_OK


def _print_evaluation(result, per_class: bool) -> None:
    split = result.task_list.get("split", "test")
    say(f"{split} accuracy {result.accuracy.mean:.2f} ± {result.accuracy.ci95:.2f} (95% CI, {result.accuracy.tasks} tasks, "
        f"{result.task_list.get('way')}-way {result.task_list.get('shot')}-shot, seed {result.task_list.get('seed')})")
    if per_class:
        for name, accuracy in sorted(result.per_class.items(), key=lambda item: item[1]):
            say(f"  {accuracy:6.2f}  {name}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fsvid.engine import evaluate_config, evaluate_run

    if args.config is None:
        if len(args.targets) != 1 or "=" in args.targets[0]:
            raise UsageError("give one run folder (fsvid evaluate RUN_DIR) or --config PRESET_OR_YAML [key=value ...]")
        if args.untrained:
            raise UsageError("--untrained needs --config (the model to build)")
        result = evaluate_run(
            args.targets[0], tasks=args.tasks, split=args.split or "test", progress=not args.quiet,
            which=args.checkpoint, device=args.device, cache=_cache_choice(args),
        )
        where = Path(args.targets[0])
    else:
        overrides = list(args.targets)
        if args.checkpoint:
            overrides.append(f"eval.checkpoint={args.checkpoint}")
        if args.device:
            overrides.append(f"train.device={args.device}")
        config = _load_run_config(args.config, overrides)
        result = evaluate_config(config, tasks=args.tasks, split=args.split, progress=not args.quiet,
                                 untrained=args.untrained, cache=_cache_choice(args))
        from fsvid.engine import run_dir

        where = run_dir(config)
    _print_evaluation(result, args.per_class)
    say(f"results: {where / ('eval_' + result.task_list['split'] + '.json')}")
    return EXIT_OK


def _cache_choice(args: argparse.Namespace) -> str | bool | None:
    if args.no_cache and args.cache is not None:
        raise UsageError("--cache and --no-cache exclude each other")
    return False if args.no_cache else args.cache


def cmd_compare(args: argparse.Namespace) -> int:
    from fsvid.engine import compare_runs

    try:
        comparison = compare_runs(args.run_a, args.run_b, split=args.split)
    except ValueError as error:  # different task lists or a damaged result file: a usage problem
        raise UsageError(str(error)) from error
    if args.json:
        print(json.dumps({
            "a": str(args.run_a), "b": str(args.run_b), "split": args.split,
            "difference": comparison.difference.mean, "ci95": comparison.difference.ci95,
            "tasks": comparison.difference.tasks, "a_accuracy": comparison.a.mean, "b_accuracy": comparison.b.mean,
            "a_better": comparison.a_better, "b_better": comparison.b_better, "ties": comparison.ties,
        }, indent=2))
        return EXIT_OK
    d = comparison.difference
    print(f"a = {args.run_a}: {comparison.a.mean:.2f} ± {comparison.a.ci95:.2f}")
    print(f"b = {args.run_b}: {comparison.b.mean:.2f} ± {comparison.b.ci95:.2f}")
    print(f"a - b = {d.mean:+.2f} ± {d.ci95:.2f} points (95% CI, paired over {d.tasks} tasks; "
          f"a better on {comparison.a_better}, b better on {comparison.b_better}, ties {comparison.ties})")
    print("the difference is " + ("significant" if comparison.significant else "not significant") + " at the 95% level")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from fsvid.backbones.weights import load_tensors_file
    from fsvid.convert import load_official_checkpoint, split_official_checkpoint
    from fsvid.engine.checkpoint import atomic_save

    config_path = Path(args.config)
    if not config_path.is_file():
        raise UsageError(f"--config {config_path} does not exist (a JSON or YAML file of the released sizes)")
    sizes = read_yaml_file(config_path, what="--config")  # JSON is YAML
    if not isinstance(sizes, dict):
        raise UsageError(f"{config_path} must hold a mapping of sizes (e.g. L, D, Dout, temp_set), got {sizes!r}")
    head = load_official_checkpoint(args.checkpoint, args.method, sizes)
    out = Path(args.out)
    atomic_save(head.state_dict(), out)
    say(f"{args.method} head ({sum(p.numel() for p in head.parameters()):,} parameters) written to {out}")
    if args.method in ("trx", "strm"):
        _, backbone = split_official_checkpoint(load_tensors_file(args.checkpoint))
        if backbone:
            backbone_out = out.with_name(f"{out.stem}_backbone{out.suffix or '.pt'}")
            atomic_save(backbone, backbone_out)
            say(f"backbone ({len(backbone)} tensors, torchvision ResNet names) written to {backbone_out}; "
                f"use it as model.backbone_weights={backbone_out}")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from fsvid.engine.runs import build_run_cache

    if args.run is None and args.config is None and len(args.overrides) == 1 and Path(args.overrides[0]).is_dir():
        args.run, args.overrides = args.overrides[0], []  # fsvid cache RUN_DIR, like fsvid evaluate RUN_DIR
    if args.run is not None and (args.config is not None or args.overrides):
        raise UsageError("give either --run RUN_DIR (its trained backbone) or --config [key=value ...], not both")
    # with --run, build_run_cache reads the run's own configuration (data, backbone) from its checkpoint
    config = _load_run_config(args.config, args.overrides) if args.run is None else RunConfig()
    for split in args.splits:
        cache = build_run_cache(config, split, root=args.out, run=args.run, which=args.checkpoint,
                                progress=not args.quiet, overwrite=args.overwrite)
        say(f"{split}: {cache!r}")
    return EXIT_OK


# ----------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="fsvid",
        description="Few-shot video classification: TRX, STRM, MASTAF and a prototype baseline.",
        epilog="Several GPUs: torchrun --nproc_per_node=G -m fsvid.cli train --config ...",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arguments(p: argparse.ArgumentParser, positional: str = "overrides") -> None:
        p.add_argument("--config", "-c", default=None, metavar="PRESET_OR_YAML",
                       help="a preset (fsvid presets) or a YAML file; default: the built-in defaults")
        if positional == "overrides":
            p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=0.01")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    p = commands.add_parser("presets", help="list the presets, or show one resolved")
    p.add_argument("name", nargs="?", help="a preset to show in full")
    p.set_defaults(handler=cmd_presets)

    from fsvid.data.synthetic import SyntheticConfig

    defaults = SyntheticConfig()
    p = commands.add_parser("synthetic", help="generate the synthetic motion dataset")
    p.add_argument("root", help="output folder (ROOT/videos, ROOT/splits, ROOT/dataset.json)")
    p.add_argument("--classes", default=str(defaults.num_classes),
                   help=f"number of classes (default {defaults.num_classes}) or comma-separated class names")
    p.add_argument("--videos-per-class", type=int, default=defaults.videos_per_class)
    p.add_argument("--frames", type=int, default=defaults.frames)
    p.add_argument("--size", type=int, default=defaults.size, help="height = width in pixels")
    p.add_argument("--format", choices=("mp4", "frames"), default=defaults.format)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--clutter", type=float, default=defaults.clutter)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPUs, at most 8)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset made with other options")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(handler=cmd_synthetic)

    p = commands.add_parser("train", help="train a model (resumes from the run folder's last.pt)")
    config_arguments(p)
    p.add_argument("--no-resume", action="store_true",
                   help="start again; once the new run starts, the folder's previous files move to previous/")
    p.add_argument("--evaluate", action="store_true", help="evaluate on the test tasks afterwards")
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser("evaluate", help="test accuracy with its 95%% CI, per class, on a fixed task list")
    config_arguments(p, positional="none")
    p.add_argument("targets", nargs="*", metavar="RUN_DIR | key=value",
                   help="a run folder, or with --config dotted overrides")
    p.add_argument("--tasks", type=int, default=None, help="number of tasks (default eval.tasks, 10000)")
    p.add_argument("--split", choices=("test", "val"), default=None, help="default test (eval.split with --config)")
    p.add_argument("--checkpoint", choices=("best", "last"), default=None, help="default eval.checkpoint (best)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default train.device, auto)")
    p.add_argument("--untrained", action="store_true", help="with --config: evaluate the model as built, untrained")
    p.add_argument("--per-class", action="store_true", help="print the accuracy of every class")
    p.add_argument("--cache", nargs="?", const="auto", default=None, metavar="ROOT",
                   help="score the tasks from a feature cache of the split (built if missing) in ROOT "
                        "(default: the run folder's cache/); much faster for TRX, STRM and prototypes")
    p.add_argument("--no-cache", action="store_true", help="read the videos even when data.cache is set")
    p.set_defaults(handler=cmd_evaluate)

    p = commands.add_parser("compare", help="paired comparison of two evaluated runs on the same tasks")
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_compare)

    p = commands.add_parser("convert", help="convert released TRX / STRM / MASTAF weights to fsvid heads")
    p.add_argument("method", choices=("trx", "strm", "mastaf"))
    p.add_argument("checkpoint", type=Path, help="the released checkpoint (.pt / .pth)")
    p.add_argument("--config", required=True, metavar="JSON_OR_YAML",
                   help="the released sizes: TRX L, D, Dout, temp_set; STRM also P; MASTAF C, T, H, W (n_global)")
    p.add_argument("--out", required=True, help="where to write the head's state dict")
    p.set_defaults(handler=cmd_convert)

    p = commands.add_parser("cache", help="compute a backbone's features of whole splits once (feature cache)")
    config_arguments(p)
    p.add_argument("--run", default=None, metavar="RUN_DIR",
                   help="use this trained run's backbone and configuration (also: fsvid cache RUN_DIR)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="with --run (default best)")
    p.add_argument("--splits", nargs="+", default=["test"], choices=("train", "val", "test"))
    p.add_argument("--out", default=None, metavar="ROOT",
                   help="cache root, holding <split>_<weights hash>/ (default: data.cache, else the run folder's cache/)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with other settings")
    p.set_defaults(handler=cmd_cache)

    p = commands.add_parser("demo", help="the main job: train and compare prototypes, TRX and STRM on the synthetic set",
                            add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments of python -m fsvid.demo (--help lists them)")
    p.set_defaults(handler=cmd_demo)

    p = commands.add_parser("prepare", help="prepare a real benchmark (SSv2, Kinetics, HMDB51, UCF101) from its download",
                            add_help=False)
    p.add_argument("prepare_args", nargs=argparse.REMAINDER, help="arguments of python -m fsvid.prepare (--help lists them)")
    p.set_defaults(handler=cmd_prepare)

    p = commands.add_parser("sweep", help="run a paper experiment's sweep (resumable) into one results CSV",
                            add_help=False)
    p.add_argument("sweep_args", nargs=argparse.REMAINDER, help="arguments of python -m fsvid.experiments (--help lists them)")

    p = commands.add_parser("notebook", help="run a notebook as a parameterised papermill job", add_help=False)
    p.add_argument("notebook_args", nargs=argparse.REMAINDER, help="arguments of python -m fsvid.notebooks")
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from fsvid.demo import main as demo_main

    return demo_main(args.demo_args)


def cmd_prepare(args: argparse.Namespace) -> int:
    from fsvid.prepare.cli import main as prepare_main

    return prepare_main(args.prepare_args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from fsvid.experiments.cli import main as sweep_main

    return sweep_main(args.sweep_args)


def cmd_notebook(args: argparse.Namespace) -> int:
    from fsvid.notebooks import main as notebooks_main

    return notebooks_main(args.notebook_args)


FORWARDED = {"demo": cmd_demo, "prepare": cmd_prepare, "sweep": cmd_sweep, "notebook": cmd_notebook}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 bad usage/config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:  # commands with their own argument parser
        return FORWARDED[argv[0]](argparse.Namespace(**{f"{argv[0]}_args": argv[1:]}))
    parser = build_parser()
    args = parser.parse_args(argv)
    from fsvid.engine.training import TrainingDiverged

    try:
        return args.handler(args)
    except UsageError as error:
        print(f"fsvid {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:
        print(f"fsvid {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as error:
        print(f"fsvid {args.command}: training diverged: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"fsvid {args.command}: interrupted (a training run resumes from last.pt with the same command)",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as error:
        if args.debug:
            raise
        print(f"fsvid {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
