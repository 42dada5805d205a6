#!/usr/bin/env python
"""Generate the synthetic motion dataset (see ``fsvid.data.synthetic``).

    python data_scripts/make_synthetic.py ROOT                       # the default set, mp4
    python data_scripts/make_synthetic.py ROOT --format frames --classes 12 --videos-per-class 10
    python data_scripts/make_synthetic.py ROOT --classes approach,recede,appear,disappear
    python data_scripts/make_synthetic.py --list                     # the classes and their twins

Writes ROOT/videos (or ROOT/frames), ROOT/splits/{train,val,test}list01.txt and
ROOT/dataset.json. Running it again with the same options does nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

from fsvid.data.synthetic import SYNTHETIC_CLASSES, SyntheticConfig, generate_synthetic_dataset


def _classes(value: str) -> dict:
    """``--classes``: a number of classes, or comma-separated class names."""
    if value.strip().isdigit():
        return {"num_classes": int(value)}
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    return {"classes": names}


def main(argv: list[str] | None = None) -> int:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", help="output folder")
    parser.add_argument("--format", choices=("mp4", "frames"), default=defaults.format)
    parser.add_argument("--classes", type=_classes, default={},
                        help=f"number of classes (1..{len(SYNTHETIC_CLASSES)}, default {defaults.num_classes}) "
                             "or comma-separated class names")
    parser.add_argument("--videos-per-class", type=int, default=defaults.videos_per_class)
    parser.add_argument("--frames", type=int, default=defaults.frames)
    parser.add_argument("--size", type=int, default=defaults.size, help="height = width in pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--clutter", type=float, default=defaults.clutter,
                        help="background clutter and noise scale (0 = clean)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: number of CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset made with another config")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--list", action="store_true", help="print the classes and exit")
    args = parser.parse_args(argv)

    if args.list:
        for cls in SYNTHETIC_CLASSES:
            print(f"{cls.split:5}  {cls.name:26}  twin={cls.twin or '-':26}  {cls.description}")
        return 0
    if args.root is None:
        parser.error("ROOT is required (or use --list)")
    try:
        config = SyntheticConfig(format=args.format, videos_per_class=args.videos_per_class, frames=args.frames,
                                 size=args.size, seed=args.seed, clutter=args.clutter, **args.classes)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    try:
        root = generate_synthetic_dataset(args.root, config, progress=not args.no_progress, workers=args.workers,
                                          overwrite=args.overwrite)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"synthetic dataset ready in {root} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
