"""``make demo``: the main job, on a laptop's CPU in about ten minutes.

1. generate the synthetic action dataset (48 motion classes, 20 of them time-reversed pairs);
2. train the prototype baseline, TRX and STRM on it (small CNN backbone, 8 frames of 32x32);
3. evaluate all three on the same test tasks: 5-way 5-shot tasks of the 12 unseen test
   classes, and 2-way "time-reversal" tasks made of a test class and its time-reversed twin
   (approach / recede, clockwise / anticlockwise, ...), where chance is 50% and a method blind
   to frame order, such as the prototype baseline, stays at chance;
4. print a results table (accuracy with its 95% confidence interval, and the paired
   difference to the baseline on the same tasks) and draw it.

    python -m fsvid.demo                   # what `make demo` runs
    python -m fsvid.demo --quick           # a 2-minute smoke run (few tasks; numbers not meaningful)

Runs are resumable: running it again reuses finished training runs (``$FSVID_HOME/runs/demo_*``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsvid.config import RunConfig, load_config
from fsvid.data import ClipTransform, EpisodeDataset, read_split, resolve_split
from fsvid.engine import evaluate_model, evaluate_run, locate_data, train
from fsvid.engine.data import time_reversed_pairs
from fsvid.engine.metrics import Accuracy, mean_and_ci, paired_difference
from fsvid.engine.runs import load_trained_model, run_dir
from fsvid.paths import fsvid_home

METHODS = ("prototype", "trx", "strm")
LABELS = {"prototype": "Prototypes (frame mean)", "trx": "TRX", "strm": "STRM"}


@dataclass
class MethodResult:
    method: str
    test: Accuracy
    reversal: Accuracy
    reversal_tasks: np.ndarray
    test_tasks: np.ndarray
    train_seconds: float


def demo_config(method: str, quick: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The demo's configuration of ``method`` (preset ``demo_<method>``)."""
    extra = ["train.tasks=48", "train.val_every=24", "train.val_tasks=10", "train.checkpoint_every=24"] if quick else []
    name = f"demo_{method}" + ("_quick" if quick else "")
    return load_config(f"demo_{method}", [f"name={name}", *extra, *overrides])


def reversal_dataset(config: RunConfig, pair: tuple[str, str], tasks: int, seed: int) -> EpisodeDataset:
    """2-way test tasks made of one time-reversed pair of classes (``task.shot`` shots, 1 query)."""
    location = locate_data(config, generate=False)
    entries = [e for e in read_split(location.split_file("test")) if e.class_name in pair]
    videos = resolve_split(entries, location.video_root, on_missing=config.data.on_missing)
    data = config.data
    return EpisodeDataset(
        videos,
        way=2,
        shot=config.task.shot,
        query=config.task.test_query,
        frames=data.frames,
        train=False,
        num_tasks=tasks,
        seed=seed,
        transform=ClipTransform(train=False, resize=data.resize, crop=data.crop, normalize=data.normalize),
        sampling=data.sampling,
        short_videos=data.short_videos,
        progress=False,
        memory_bytes=data.memory_mb * 1024**2,
    )


def evaluate_reversal(run: Path, tasks_per_pair: int, progress: bool = True) -> np.ndarray:
    """Per-task accuracies on the time-reversal tasks of every test pair, pair after pair."""
    model, config = load_trained_model(run)
    accuracies = []
    for pair in time_reversed_pairs(config, "test"):
        dataset = reversal_dataset(config, pair, tasks_per_pair, config.eval.seed)
        result = evaluate_model(model, dataset, progress=progress)
        accuracies.append(result.task_accuracies)
    return np.concatenate(accuracies)


def run_demo(
    methods: tuple[str, ...] = METHODS,
    quick: bool = False,
    test_tasks: int | None = None,
    reversal_tasks_per_pair: int | None = None,
    output: Path | None = None,
    progress: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
) -> list[MethodResult]:
    """Train, evaluate and compare ``methods`` on the synthetic dataset (see the module docstring).

    ``overrides``: dotted configuration overrides applied to every method's preset."""
    test_tasks = test_tasks or (20 if quick else 400)
    per_pair = reversal_tasks_per_pair or (4 if quick else 80)
    output = output or fsvid_home() / "runs" / ("demo_quick" if quick else "demo")
    output.mkdir(parents=True, exist_ok=True)

    first = demo_config(methods[0], quick, overrides)
    started = time.time()
    location = locate_data(first, progress=progress)
    print(f"synthetic dataset: {location.video_root.parent} ({time.time() - started:.0f} s)")

    results = []
    for method in methods:
        config = demo_config(method, quick, overrides)
        began = time.time()
        trained = train(config, progress=progress)
        seconds = time.time() - began
        print(f"{method}: trained {trained.tasks} tasks in {seconds:.0f} s, best validation accuracy "
              f"{trained.best_accuracy:.1f}% (task {trained.best_task})")
        test = evaluate_run(trained.directory, tasks=test_tasks, progress=progress)
        reversal = evaluate_reversal(trained.directory, per_pair, progress=progress)
        results.append(MethodResult(method, test.accuracy, mean_and_ci(reversal), reversal, test.task_accuracies, seconds))

    table = format_table(results)
    print("\n" + table)
    (output / "results.md").write_text(table + "\n")
    (output / "results.json").write_text(json.dumps(results_json(results), indent=2))
    plot_path = plot_results(results, output / "results.png")
    print(f"\nwritten: {output / 'results.md'}, {output / 'results.json'}, {plot_path}")
    print(f"total time {time.time() - started:.0f} s")
    return results


def format_table(results: list[MethodResult]) -> str:
    """A markdown table: test accuracy and time-reversal accuracy, with the paired gain over
    the first method (the baseline) on the same tasks."""
    base = results[0]
    lines = [
        "| method | 5-way 5-shot test accuracy (%) | time-reversed pairs, 2-way (%) | gain on reversed pairs vs baseline (paired) |",
        "|---|---|---|---|",
    ]
    for result in results:
        gain = "-"
        if result is not base:
            d = paired_difference(result.reversal_tasks, base.reversal_tasks).difference
            gain = f"{d.mean:+.2f} ± {d.ci95:.2f}"
        test, reversal = result.test, result.reversal
        lines.append(
            f"| {LABELS.get(result.method, result.method)} | {test.mean:.2f} ± {test.ci95:.2f} "
            f"| {reversal.mean:.2f} ± {reversal.ci95:.2f} | {gain} |"
        )
    lines.append(
        f"\n{base.test.tasks} test tasks and {base.reversal.tasks} time-reversal tasks, the same for every "
        "method; ± is the 95% confidence interval, 1.96 std / sqrt(tasks)."
    )
    return "\n".join(lines)


def results_json(results: list[MethodResult]) -> list[dict]:
    return [
        {
            "method": r.method,
            "test_accuracy": r.test.mean,
            "test_ci95": r.test.ci95,
            "test_tasks": r.test.tasks,
            "reversal_accuracy": r.reversal.mean,
            "reversal_ci95": r.reversal.ci95,
            "reversal_tasks": r.reversal.tasks,
            "train_seconds": round(r.train_seconds, 1),
        }
        for r in results
    ]


def plot_results(results: list[MethodResult], path: Path) -> Path:
    """Bars with 95% CIs: test accuracy and time-reversal accuracy per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names = [LABELS.get(r.method, r.method) for r in results]
    for ax, (title, key, chance) in zip(
        axes, [("5-way 5-shot, unseen classes", "test", 20.0), ("time-reversed pairs, 2-way", "reversal", 50.0)]
    ):
        values = [getattr(r, key) for r in results]
        ax.bar(names, [v.mean for v in values], yerr=[v.ci95 for v in values], capsize=4,
               color=["#9e9e9e", "#4c72b0", "#dd8452"][: len(values)])
        ax.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fsvid demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few tasks only: checks that everything runs")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--test-tasks", type=int, default=None, help="5-way test tasks (default 400)")
    parser.add_argument("--reversal-tasks", type=int, default=None, help="2-way tasks per reversed pair (default 80)")
    parser.add_argument("--output", type=Path, default=None, help="folder for the table and plot")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.output is not None and args.output.expanduser().exists() and not args.output.expanduser().is_dir():
        print(f"fsvid demo: error: --output {args.output} is a file; give the folder for the table and plot",
              file=sys.stderr)
        return 2
    try:
        run_demo(tuple(args.methods), args.quick, args.test_tasks, args.reversal_tasks,
                 None if args.output is None else args.output.expanduser(), not args.no_progress)
    except KeyboardInterrupt:
        print("fsvid demo: interrupted (run it again: finished training runs are reused, others resume)",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as error:
        print(f"fsvid demo: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
