"""Time of a 10,000-task evaluation from a feature cache, for the prototype, TRX and STRM heads.

    python benchmarks/bench_cache_eval.py                          # 10,000 tasks, all three heads
    python benchmarks/bench_cache_eval.py --tasks 500 --heads trx
    python benchmarks/bench_cache_eval.py --strm-tasks 500         # STRM on 500 tasks, extrapolated

The papers' sizes: 5-way 5-shot, 1 query per class, L = 8 frames, D = 2048 (ResNet-50
features), D' = 1152, TRX with Omega = {2, 3}, STRM with 16 patches per frame (Omega = {2}).
The cache is synthetic: random float16 features for ``--classes`` x ``--videos-per-class``
test videos (24 x 100 = 2,400 like the SSv2-CMN and Kinetics-CMN test splits), written in the
cache format with ``fsvid.features.write_feature_cache`` into a temporary folder (no backbone,
no videos). The heads have random weights in eval mode; their speed does not depend on the
values.

For each head it prints:

- ``precompute``: the per-video steps done once (``PrecomputedPrototypes`` / ``PrecomputedTRX``
  / ``PrecomputedSTRM``: frame means; TRX key/value pieces; STRM PLE, FLE, classifier tuple
  embeddings and TRM pieces) over all cached videos;
- ``tasks``: ``evaluate_precomputed`` over the task list (compositions from the same
  ``TaskSampler`` as the video episodes);
- ``total``: the two together, the time a 10,000-task evaluation from the cache takes
  (extrapolated linearly from the tasks run when fewer than 10,000 were run, marked so);
- ``plain head``: for comparison, the head called on ``FeatureEpisodeDataset`` episodes
  (``--direct-tasks`` of them), extrapolated to 10,000 tasks;
- a check that the precomputed logits equal the head's on two tasks (max abs difference
  relative to the largest logit).

Threads: ``--threads 1`` by default. On a machine shared with other busy processes, torch's
multi-threaded kernels wait for threads that are not scheduled and run several times slower
than one thread; on an idle machine try ``--threads 2`` (or the core count). The load average
is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fsvid.features import FeatureCache, FeatureEpisodeDataset, evaluate_precomputed, write_feature_cache
from fsvid.heads import PrecomputedPrototypes, PrecomputedSTRM, PrecomputedTRX, PrototypeHead, STRMHead, TRXHead

FRAMES, DIM, OUT_DIM, PATCHES = 8, 2048, 1152, 16
WAY, SHOT, QUERY = 5, 5, 1
HEADS = ("prototype", "trx", "strm")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def synthetic_cache(folder: Path, classes: int, per_class: int, feature_shape: tuple[int, ...], seed: int) -> FeatureCache:
    """Random non-negative float16 features (like post-ReLU ResNet outputs) in the cache format."""
    keys = [f"class{c:03d}/video{v:04d}" for c in range(classes) for v in range(per_class)]

    def batches(start: int, stop: int):
        rng = np.random.default_rng([seed, start])
        yield rng.random((stop - start, 1, *feature_shape), dtype=np.float32)

    return write_feature_cache(folder, keys, batches, settings={"synthetic": True, "seed": seed}, shard_size=256,
                               progress=False)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def check_equal(head: torch.nn.Module, scorer, episodes: FeatureEpisodeDataset) -> float:
    """max |precomputed - head| / max |head| over the scores of two tasks (logits and qc_logits)."""
    worst = 0.0
    for index in (0, 1):
        task, episode = episodes.task(index), episodes[index]
        fast = scorer(task.support[None], task.query.reshape(1, -1))
        with torch.no_grad():
            slow = head(episode.support, episode.support_labels, episode.query)
        for name in ("logits", "qc_logits"):
            if getattr(slow, name) is not None:
                reference = getattr(slow, name)
                error = (getattr(fast, name)[0] - reference).abs().max() / reference.abs().max()
                worst = max(worst, float(error))
    return worst


def plain_head_seconds_per_task(head: torch.nn.Module, episodes: FeatureEpisodeDataset, count: int) -> float:
    """The head called on ``count`` feature episodes (read from the memory-mapped cache)."""
    start = time.perf_counter()
    with torch.no_grad():
        for index in range(count):
            episode = episodes[index]
            head(episode.support, episode.support_labels, episode.query)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to evaluate (default 10000)")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated subset of prototype,trx,strm")
    parser.add_argument("--strm-tasks", type=int, default=None, help="tasks for STRM if fewer (extrapolated to --tasks)")
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--videos-per-class", type=int, default=100)
    parser.add_argument("--tasks-per-batch", type=int, default=1, help="tasks scored together (1 suits a CPU)")
    parser.add_argument("--strm-autocast", choices=("none", "bfloat16"), default="none",
                        help="STRM's per-video steps under bfloat16 autocast (faster, logits ~1e-2 off)")
    parser.add_argument("--direct-tasks", type=int, default=10, help="episodes for the plain-head comparison (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the docstring)")
    parser.add_argument("--folder", default=None, help="where to write the synthetic caches (default: a temp folder, removed)")
    args = parser.parse_args()
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        parser.error(f"unknown heads {unknown}; choose from {HEADS}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="fsvid_bench_cache_"))
    videos = args.classes * args.videos_per_class
    print(f"{WAY}-way {SHOT}-shot, {QUERY} query/class, L={FRAMES}, D={DIM}, D'={OUT_DIM}; {videos} cached test videos "
          f"({args.classes} classes x {args.videos_per_class}); torch {torch.__version__}, {args.threads} thread(s)")
    print(f"start: {load()}")
    try:
        caches: dict[str, FeatureCache] = {}
        if {"prototype", "trx"} & set(heads):
            caches["frames"], seconds = timed(lambda: synthetic_cache(folder / "frames", args.classes, args.videos_per_class, (FRAMES, DIM), 0))
            print(f"synthetic frame cache {caches['frames']}: written in {seconds:.1f} s")
        if "strm" in heads:
            caches["patches"], seconds = timed(
                lambda: synthetic_cache(folder / "patches", args.classes, args.videos_per_class, (FRAMES, PATCHES, DIM), 1))
            print(f"synthetic patch cache {caches['patches']}: written in {seconds:.1f} s")

        rows = []
        for name in heads:
            if name == "prototype":
                head, cache, precompute = PrototypeHead(), caches["frames"], PrecomputedPrototypes
            elif name == "trx":
                head, cache, precompute = TRXHead(DIM, OUT_DIM, FRAMES, (2, 3)), caches["frames"], PrecomputedTRX
            else:
                head, cache = STRMHead(DIM, OUT_DIM, FRAMES, PATCHES), caches["patches"]
                autocast = torch.bfloat16 if args.strm_autocast == "bfloat16" else None
                precompute = lambda head, cache: PrecomputedSTRM(head, cache, autocast_dtype=autocast)  # noqa: E731
            head.eval()
            tasks = min(args.tasks, args.strm_tasks) if name == "strm" and args.strm_tasks else args.tasks
            episodes = FeatureEpisodeDataset(cache, way=WAY, shot=SHOT, query=QUERY, num_tasks=args.tasks, seed=0)
            scorer, prepare = timed(lambda: precompute(head, cache))
            result, evaluate = timed(lambda: evaluate_precomputed(scorer, episodes, range(tasks), args.tasks_per_batch,
                                                                  progress=False))
            per_task = evaluate / tasks
            total = prepare + per_task * args.tasks
            difference = check_equal(head, scorer, episodes)
            plain = plain_head_seconds_per_task(head, episodes, args.direct_tasks) if args.direct_tasks else float("nan")
            rows.append((name, prepare, tasks, evaluate, per_task, total, plain, difference, float(result.accuracies.mean())))
            print(f"{name}: precompute {prepare:.1f} s, {tasks} tasks in {evaluate:.1f} s ({1000 * per_task:.2f} ms/task), "
                  f"{load()}", flush=True)

        print(f"\n{'head':<10} {'precompute':>10} {'tasks run':>9} {'eval s':>8} {'ms/task':>8} "
              f"{'total for ' + str(args.tasks):>16} {'plain head ms/task':>18} {'plain total':>12} {'rel. diff':>10}")
        for name, prepare, tasks, evaluate, per_task, total, plain, difference, _ in rows:
            mark = "" if tasks == args.tasks else " (extrap.)"
            plain_total = f"{plain * args.tasks / 60:.1f} min" if plain == plain else "-"
            print(f"{name:<10} {prepare:>8.1f} s {tasks:>9} {evaluate:>8.1f} {1000 * per_task:>8.2f} "
                  f"{total / 60:>10.2f} min{mark:<10} {1000 * plain:>18.1f} {plain_total:>12} {difference:>10.2e}")
        print(f"end: {load()}")
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
