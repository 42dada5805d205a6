"""Seconds per training task with a frozen backbone: from the feature cache vs end to end.

End to end, every training task decodes its clips and runs them through the frozen backbone
before the head's forward and backward pass; from the cache (``data.cache``), a task reads
the backbone's stored output and only the head runs. The cache itself costs one backbone pass
per video and view, once (reported separately, per video and for the whole training split).

The configuration is the demo's (``fsvid.demo.demo_config``): by default the pretrained
regime (frozen EfficientNet-Lite0 at 112 px, a cache of maps with 1 training view).

    python benchmarks/bench_frozen_training.py                          # the four methods, 6 tasks each
    python benchmarks/bench_frozen_training.py --methods trx --tasks 10
    python benchmarks/bench_frozen_training.py --override model.backbone=small_cnn ...
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from fsvid.demo import METHODS, demo_config
from fsvid.engine.data import episode_dataset, locate_data, split_class_names
from fsvid.engine.features import feature_episodes, split_cache
from fsvid.engine.training import build_optimizer, task_loss
from fsvid.models import build_model


def seconds_per_task(net: torch.nn.Module, config, dataset, tasks: int, warmup: int) -> tuple[float, float]:
    """Mean wall time and process CPU time of ``tasks`` training tasks (forward, loss, backward,
    optimiser step), after ``warmup`` untimed ones; ``net`` is the whole model or its head."""
    optimizer = build_optimizer(config, net)
    net.train()
    began = cpu = 0.0
    for index in range(warmup + tasks):
        if index == warmup:
            began, cpu = time.perf_counter(), time.process_time()
        episode = dataset[index]  # reading the task is part of its cost
        output = net(episode.support, episode.support_labels, episode.query, episode.query_labels)
        task_loss(config, output, episode).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - began) / tasks, (time.process_time() - cpu) / tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--regime", default="pretrained")
    parser.add_argument("--tasks", type=int, default=6, help="timed tasks per method and path")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--override", nargs="*", default=[], help="dotted config overrides")
    args = parser.parse_args(argv)

    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print("| method | end to end: wall, CPU (s/task) | from the cache: wall, CPU (s/task) | speed-up (wall) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "cache"
        cache_seconds = None
        for method in args.methods:
            config = demo_config(method, overrides=[f"data.cache={root}", *args.override], regime=args.regime)
            location = locate_data(config, progress=False)
            tasks = args.warmup + args.tasks
            videos = episode_dataset(config, "train", tasks, config.train.seed, True, location, False)
            torch.manual_seed(config.train.seed)
            model = build_model(config, n_global=len(split_class_names(location, "train")))
            began, cpu = time.perf_counter(), time.process_time()
            cache = split_cache(config, videos, model.backbone, "train", root, config.data.cache_views, False)
            if cache_seconds is None:  # the first method builds it, the others read it
                cache_seconds, cache_cpu = time.perf_counter() - began, time.process_time() - cpu
                print(f"(cache of {len(videos.videos)} training videos x {1 + config.data.cache_views} views: "
                      f"{cache_seconds:.0f} s wall, {cache_cpu:.0f} s CPU; {cache_seconds / len(videos.videos):.2f} s "
                      "wall per video)")
            if not any(p.requires_grad for p in model.parameters()):
                print(f"| {method} | nothing to train | nothing to train | - |")
                continue
            from_cache = seconds_per_task(model.head, config, feature_episodes(videos, cache, True), args.tasks,
                                          args.warmup)
            end_to_end = seconds_per_task(model, config, videos, args.tasks, args.warmup)
            print(f"| {method} | {end_to_end[0]:.3f}, {end_to_end[1]:.3f} | {from_cache[0]:.4f}, {from_cache[1]:.4f} "
                  f"| {end_to_end[0] / from_cache[0]:.0f}x |")
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
