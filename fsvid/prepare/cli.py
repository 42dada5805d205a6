"""Command line of the data preparation: ``python -m fsvid.prepare <command> ...``.

Commands (each also a script in ``data_scripts/``):

- ``splits``   fetch and check the standard split lists (``get_splits.py``);
- ``ssv2``, ``kinetics``, ``hmdb``, ``ucf``   prepare a benchmark from the raw download,
  then verify it (``prepare_ssv2.py``, ...);
- ``verify``   check a prepared folder against its lists, print and write the report
  (``verify_dataset.py``).

:func:`main` returns the exit status: 0 when the command completed (missing or unreadable
videos are reported, they do not fail a run), 1 with ``--strict`` when any listed video is
unusable, 2 for bad arguments or an unusable input (printed as ``error: ...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fsvid.prepare.convert import OutputOptions
from fsvid.prepare.layouts import LAYOUTS
from fsvid.prepare.pipeline import prepare_dataset
from fsvid.prepare.splits import (
    BENCHMARKS,
    SplitChecksumError,
    benchmark_split_files,
    default_splits_root,
    get_splits,
)
from fsvid.prepare.verify import verify_prepared

_DATASET_HELP = {
    "ssv2": "Something-Something-v2: RAW holds 20bn-something-something-v2/<id>.webm (and the label JSONs)",
    "kinetics": "Kinetics-400 clips for Kinetics-100: RAW holds <youtube_id>_<start>_<end>.mp4, flat or in folders",
    "hmdb": "HMDB51: RAW holds <class>/<video>.avi (hmdb51_org.rar and its class archives extracted)",
    "ucf": "UCF101: RAW holds UCF-101/<Class>/v_<Class>_gXX_cXX.avi (UCF101.rar extracted)",
}


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _add_split_source(parser: argparse.ArgumentParser, benchmarks: list[str], default: str | None) -> None:
    parser.add_argument("--benchmark", choices=benchmarks, default=default,
                        help="which standard lists" + (f" (default {default})" if default else
                                                       " (this or --split-file is required)"))
    parser.add_argument("--splits", type=Path, default=None, metavar="DIR",
                        help=f"folder of the standard lists (default {default_splits_root()}); missing lists are "
                             "downloaded there, or copied with --splits-from")
    parser.add_argument("--splits-from", type=Path, default=None, metavar="DIR",
                        help="copy missing standard lists from this folder (the TRX repository's splits/)")
    parser.add_argument("--split-file", type=Path, action="append", default=None, metavar="FILE",
                        help="a custom list of class_folder/video_id lines instead of the standard ones "
                             "(repeat for train, val, test)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=8, metavar="L",
                        help="clip length L: videos with fewer frames are reported as too short (default 8)")
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="worker processes (default: CPUs, at most 8)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any listed video is missing, unreadable or too short")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every command."""
    parser = argparse.ArgumentParser(
        prog="python -m fsvid.prepare",
        description="Prepare the few-shot video benchmarks (SSv2, Kinetics-100, HMDB51, UCF101) from their "
                    "official downloads into the layout fsvid reads: OUT/<class_folder>/<video_id>.mp4 or "
                    "OUT/<class_folder>/<video_id>/000001.jpg. See data_scripts/README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    splits = commands.add_parser(
        "splits", help="fetch and check the standard split lists",
        description="Download the standard split lists from the TRX repository (or copy them with --from) "
                    "and check every file's sha256. Files already present and correct are kept.")
    splits.add_argument("dest", type=Path, nargs="?", default=None,
                        help=f"where to put them (default {default_splits_root()})")
    splits.add_argument("--from", dest="source", type=Path, default=None, metavar="DIR",
                        help="copy from this folder (the TRX repository's splits/, or the repository) "
                             "instead of downloading")
    splits.add_argument("--benchmark", action="append", choices=list(BENCHMARKS), default=None,
                        help="only these benchmarks (repeatable; default all five)")
    splits.add_argument("--overwrite", action="store_true", help="replace files whose sha256 differs")
    splits.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    for dataset, layout in LAYOUTS.items():
        sub = commands.add_parser(
            dataset, help=f"prepare {layout.title} ({', '.join(layout.benchmarks)})",
            description=f"{_DATASET_HELP[dataset]}. Finds every video of the split lists in RAW, resizes it and "
                        f"writes OUT/<class_folder>/<video_id>.mp4 (or JPEG frame folders), then verifies OUT. "
                        "Running it again converts only what is not done.")
        sub.add_argument("raw_root", type=Path, metavar="RAW", help=f"the extracted download: {layout.layout}")
        sub.add_argument("out_root", type=Path, metavar="OUT", help="where to write the prepared dataset")
        _add_split_source(sub, list(layout.benchmarks), layout.benchmarks[0])
        if dataset == "ssv2":
            sub.add_argument("--labels", type=Path, default=None, metavar="DIR",
                             help="folder of something-something-v2-{train,validation}.json (default: "
                                  "looked for in RAW and RAW/labels) to check the lists against the labels")
        out = sub.add_argument_group("output")
        out.add_argument("--format", choices=("mp4", "frames"), default="mp4",
                         help="mp4 (H.264, small, read with decord; default) or frames (folders of JPEGs)")
        out.add_argument("--short-side", type=int, default=256,
                         help="shorter side in pixels after resizing (default 256; 0 keeps the raw size)")
        out.add_argument("--square", action="store_true",
                         help="resize to SHORT_SIDE x SHORT_SIDE like the TRX author's extraction (distorts)")
        out.add_argument("--keep-frames", type=int, default=None, metavar="L",
                         help="write only the L frames test-time sampling reads (saves space; no temporal "
                              "jitter in training)")
        out.add_argument("--crf", type=int, default=23, help="x264 quality for mp4, lower is better (default 23)")
        out.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality for frames (default 90)")
        out.add_argument("--decoder", choices=("pyav", "ffmpeg"), default="pyav",
                         help="pyav (installed with fsvid; default) or ffmpeg (the program, must be on PATH)")
        run = sub.add_argument_group("run")
        _add_common(run)
        run.add_argument("--overwrite", action="store_true", help="convert every video again")
        run.add_argument("--dry-run", action="store_true", help="only find the videos and report, write nothing")
        run.add_argument("--no-verify", action="store_true", help="skip the verification after preparing")

    verify = commands.add_parser(
        "verify", help="check a prepared dataset and describe it",
        description="Look up every video of the split lists under OUT as the loader does, open it, count its "
                    "frames and decode the test-time frames. Prints a per-split table and writes CSV files and "
                    "a PNG plot (videos per class, frames per video).")
    verify.add_argument("out_root", type=Path, metavar="OUT", help="the prepared dataset")
    _add_split_source(verify, list(BENCHMARKS), None)
    _add_common(verify)
    verify.add_argument("--report-dir", type=Path, default=None, help="where to write the reports (default OUT/.fsvid)")
    verify.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    parser.command_parsers = commands.choices  # {command: its parser}, for the data_scripts/ scripts
    return parser


def _split_files(args: argparse.Namespace) -> dict[str, Path] | list[Path]:
    if args.split_file:
        return list(args.split_file)
    if args.benchmark is None:
        raise ValueError("say which lists to check: --benchmark NAME or --split-file FILE")
    try:
        return benchmark_split_files(args.benchmark, args.splits)
    except FileNotFoundError:
        print(f"fetching the {args.benchmark} split lists", file=sys.stderr)
        try:
            get_splits(args.splits, source=args.splits_from, benchmarks=[args.benchmark], progress=False)
        except ConnectionError as error:
            raise ConnectionError(f"{error} (--splits-from DIR)") from error
        return benchmark_split_files(args.benchmark, args.splits)


def _verify(args: argparse.Namespace, out_root: Path, split_files, report_dir: Path | None = None,
            plot: bool = True) -> int:
    report = verify_prepared(out_root, split_files, frames=args.frames, workers=args.workers,
                             progress=not args.no_progress)
    print(report.format())
    paths = report.write(report_dir, plot=plot)
    print("Reports: " + ", ".join(str(p) for p in paths.values()))
    return 1 if args.strict and not report.ok else 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "splits":
        try:
            paths = get_splits(args.dest, source=args.source, benchmarks=args.benchmark, overwrite=args.overwrite,
                               progress=not args.no_progress)
        except ConnectionError as error:
            raise ConnectionError(f"{error} (--from DIR)") from error
        root = paths[0].parents[1] if paths else args.dest
        print(f"{len(paths)} split lists in {root}, sha256 checked")
        return 0
    split_files = _split_files(args)
    if args.command == "verify":
        return _verify(args, args.out_root, split_files, args.report_dir, plot=not args.no_plot)
    options = OutputOptions(
        format=args.format, short_side=args.short_side or None, square=args.square, keep_frames=args.keep_frames,
        crf=args.crf, jpeg_quality=args.jpeg_quality, decoder=args.decoder,
    )
    summary = prepare_dataset(
        args.command, args.raw_root, args.out_root, split_files, options, min_frames=args.frames,
        workers=args.workers, overwrite=args.overwrite, labels_dir=getattr(args, "labels", None),
        dry_run=args.dry_run, progress=not args.no_progress,
    )
    print(summary.format())
    if args.dry_run or args.no_verify:
        unusable = summary.missing or summary.unreadable or summary.too_short
        return 1 if args.strict and unusable else 0
    return _verify(args, args.out_root, split_files)


def main(argv: list[str] | None = None, script: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit status.

    ``script``: the path of a ``data_scripts/`` script that runs one command (``argv[0]``);
    usage and error messages then name that script rather than ``python -m fsvid.prepare``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if script is not None:
        command = argv[0]
        sub = build_parser().command_parsers[command]
        sub.prog = f"python {script}"  # was "python -m fsvid.prepare COMMAND"
        args = sub.parse_args(argv[1:])
        args.command = command
    else:
        args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, ConnectionError, SplitChecksumError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished videos are kept; run the same command again to resume", file=sys.stderr)
        return 130
