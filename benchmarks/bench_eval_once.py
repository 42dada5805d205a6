"""Evaluation wall time: every task's videos through the whole model (the per-task path,
``fsvid evaluate --no-cache``) against each video's features computed once (the default).

    python benchmarks/bench_eval_once.py                             # small_cnn, 200 tasks, 4 methods
    python benchmarks/bench_eval_once.py --backbone resnet18 --tasks 100 --methods trx strm

Each method's synthetic preset (``synthetic_<method>``: 5-way 5-shot, 1 query per class, 8
frames) is evaluated untrained (random weights: the time does not depend on them) on the
synthetic dataset's test split (generated on first use in ``$FSVID_HOME``), on the CPU,
both ways, on the same task list. Printed per method: seconds of each path, the factor, and
whether the per-task accuracies agree on every task. ``--backbone resnet18`` runs the
torchvision ResNet-18 on 64 x 64 crops (``data.resize=72 data.crop=64``).

The factor grows with the number of tasks: the per-task path costs (tasks x 30 clips)
backbone passes, the default path (videos of the split) passes plus the heads' task loop.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsvid.config import load_config
from fsvid.engine import evaluate_config, locate_data


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["prototype", "trx", "strm", "mastaf"])
    parser.add_argument("--backbone", choices=("small_cnn", "resnet18"), default="small_cnn")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = ["model.backbone=resnet18", "model.widths=null", "model.feature_dim=null", "model.coordinates=false",
             "data.resize=72", "data.crop=64"] if args.backbone == "resnet18" else []
    print(f"{args.backbone}, {args.tasks} tasks, {args.threads} thread(s); {load()}")
    with tempfile.TemporaryDirectory() as folder:
        for method in args.methods:
            config = load_config(f"synthetic_{method}", [*extra, "train.device=cpu", "data.workers=0",
                                                         f"output_dir={Path(folder) / method}"])
            locate_data(config, progress=False)  # generate the synthetic set before timing
            started = time.perf_counter()
            per_task = evaluate_config(config, tasks=args.tasks, untrained=True, progress=False, save=False, cache=False)
            middle = time.perf_counter()
            once = evaluate_config(config, tasks=args.tasks, untrained=True, progress=False, save=False)
            ended = time.perf_counter()
            same = np.array_equal(per_task.task_accuracies, once.task_accuracies)
            print(f"{method:9s} per task {middle - started:7.1f} s   features once {ended - middle:6.1f} s   "
                  f"factor {(middle - started) / (ended - middle):5.1f}   accuracy {per_task.accuracy.mean:.2f} / "
                  f"{once.accuracy.mean:.2f}, {'equal on every task' if same else 'DIFFERENT'}")
    print(load())


if __name__ == "__main__":
    main()
