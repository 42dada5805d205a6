"""``make demo``: the main job, on a laptop's CPU.

1. generate the synthetic action dataset (48 motion classes, 20 of them time-reversed pairs);
2. train the prototype baseline, TRX, STRM and MASTAF on it;
3. evaluate all four on the same test tasks: 5-way 5-shot tasks of the 12 unseen test
   classes, and 2-way "time-reversal" tasks made of a test class and its time-reversed twin
   (approach / recede, clockwise / anticlockwise, ...), where chance is 50% and a method blind
   to frame order, such as the prototype baseline, stays at chance;
4. print a results table (accuracy with its 95% confidence interval, and the paired
   difference to the baseline on the same tasks), the wall time of every phase, and draw it.

Two regimes (``--regime``):

- ``scratch``: a small CNN trained end to end with each head, 8 frames of 32x32
  (presets ``demo_<method>.yaml``);
- ``pretrained``: a frozen EfficientNet-Lite0 with ImageNet weights, 8 frames of 112x112
  (overlay ``demo_pretrained.yaml``); its feature maps are computed once per video into a
  cache shared by the four methods, and only the heads are trained, from the cache. The
  prototype baseline has nothing to train there (a frozen backbone, a parameter-free head):
  it is evaluated as built.

    python -m fsvid.demo                       # what `make demo` runs
    python -m fsvid.demo --regime pretrained   # the other regime
    python -m fsvid.demo --quick               # a smoke run (few tasks; numbers not meaningful)

Runs are resumable: running it again reuses finished training runs (``$FSVID_HOME/runs/demo_*``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import yaml

from fsvid.config import RunConfig, load_config
from fsvid.data import ClipTransform, EpisodeDataset, read_split, resolve_split
from fsvid.engine import evaluate_model, locate_data, train
from fsvid.engine.data import episode_dataset, split_class_names, time_reversed_pairs
from fsvid.engine.distributed import resolve_device
from fsvid.engine.evaluate import EvalResult
from fsvid.engine.features import (
    EvaluationFeatures,
    discard_features,
    evaluate_from_cache,
    evaluation_features,
    feature_episodes,
    split_cache,
)
from fsvid.engine.metrics import Accuracy, mean_and_ci, paired_difference
from fsvid.engine.runs import build_run_cache, load_trained_model, run_dir
from fsvid.features import CacheView, FeatureCache
from fsvid.models import FewShotModel, build_model
from fsvid.paths import fsvid_home

METHODS = ("prototype", "trx", "strm", "mastaf")
LABELS = {"prototype": "Prototypes (frame mean)", "trx": "TRX", "strm": "STRM", "mastaf": "MASTAF"}
REGIMES = ("scratch", "pretrained")
DEFAULT_REGIME = "scratch"


@dataclass
class MethodResult:
    method: str
    test: Accuracy
    reversal: Accuracy
    reversal_tasks: np.ndarray
    test_tasks: np.ndarray
    train_seconds: float
    eval_seconds: float = 0.0


def regime_overrides(regime: str) -> list[str]:
    """The dotted overrides of ``regime`` on top of the ``demo_<method>`` presets: none for
    ``scratch``; ``demo_pretrained.yaml`` for ``pretrained``, with its own synthetic dataset
    folder (rendered at another size, so the two regimes do not regenerate each other's)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown demo regime {regime!r}: choose one of {REGIMES}")
    if regime == "scratch":
        return []
    text = (resources.files("fsvid") / "presets" / f"demo_{regime}.yaml").read_text()
    return [*_dotted(yaml.safe_load(text)), f"data.root={fsvid_home() / f'synthetic_demo_{regime}'}"]


def _dotted(data: dict, prefix: str = "") -> list[str]:
    """{"data": {"crop": 112}} -> ["data.crop=112"] (values written as YAML)."""
    items = []
    for key, value in data.items():
        if isinstance(value, dict):
            items += _dotted(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return items


def demo_config(
    method: str, quick: bool = False, overrides: list[str] | tuple[str, ...] = (), regime: str = DEFAULT_REGIME
) -> RunConfig:
    """The demo's configuration of ``method`` (preset ``demo_<method>``) in ``regime``."""
    extra = ["train.tasks=48", "train.val_every=24", "train.val_tasks=10", "train.checkpoint_every=24"] if quick else []
    name = f"demo_{method}" + ("" if regime == "scratch" else f"_{regime}") + ("_quick" if quick else "")
    return load_config(f"demo_{method}", [f"name={name}", *regime_overrides(regime), *extra, *overrides])


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


def test_features(
    model: FewShotModel, config: RunConfig, progress: bool = True
) -> tuple[FeatureCache | CacheView | None, EvaluationFeatures | None]:
    """The test split's features from ``model``'s backbone, computed once, where
    :func:`fsvid.engine.features.evaluation_features` puts an evaluation's features (the
    pretrained regime's shared ``data.cache``; for the scratch regime's trained backbone the run
    folder's ``eval_features/``, float32, to be removed after use), and that plan; ``(None,
    None)`` when the test clips change from task to task (then each task runs the backbone)."""
    plan = evaluation_features(config, run_dir(config))
    if plan is None:
        return None, None
    dataset = episode_dataset(config, "test", 1, config.eval.seed, False, locate_data(config, generate=False), progress)
    return split_cache(config, dataset, model.backbone, "test", plan.root, 0, progress, dtype=plan.dtype), plan


def evaluate_tasks(
    model: FewShotModel, dataset: EpisodeDataset, features: FeatureCache | CacheView | None, progress: bool = True
) -> EvalResult:
    """``model`` on ``dataset``'s tasks: from the videos, or from ``features`` (a cache holding
    at least the dataset's videos) when given: the same tasks either way."""
    device = next(model.parameters()).device
    if features is None:
        return evaluate_model(model, dataset, device, progress=progress)
    view = CacheView(features, video_keys=[video.key for video in dataset.videos])
    return evaluate_from_cache(model, feature_episodes(dataset, view, train=False), device, progress=progress)


def reversal_accuracies(
    model: FewShotModel, config: RunConfig, tasks_per_pair: int, features: FeatureCache | CacheView | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Per-task accuracies on the time-reversal tasks of every test pair, pair after pair."""
    accuracies = []
    for pair in time_reversed_pairs(config, "test"):
        dataset = reversal_dataset(config, pair, tasks_per_pair, config.eval.seed)
        accuracies.append(evaluate_tasks(model, dataset, features, progress).task_accuracies)
    return np.concatenate(accuracies)


def evaluate_reversal(run: Path, tasks_per_pair: int, progress: bool = True) -> np.ndarray:
    """:func:`reversal_accuracies` of a trained run folder (from its videos)."""
    model, config = load_trained_model(run)
    return reversal_accuracies(model, config, tasks_per_pair, None, progress)


def has_trainable_parameters(config: RunConfig) -> bool:
    """Whether ``config``'s model has anything to train (not a frozen backbone with the
    parameter-free prototype head)."""
    return any(p.requires_grad for p in build_model(config, n_global=2).parameters())


def trained_model(config: RunConfig, progress: bool = True) -> tuple[FewShotModel, str]:
    """Train ``config`` (or reuse its finished run) and load its best weights; a model with
    nothing to train is built as ``train`` would start it. Returns the model and a sentence."""
    if not has_trainable_parameters(config):
        location = locate_data(config, generate=False)
        torch.manual_seed(config.train.seed)
        model = build_model(config, n_global=len(split_class_names(location, "train")))
        return model.to(resolve_device(config.train.device)).eval(), "nothing to train (frozen backbone, parameter-free head)"
    trained = train(config, progress=progress)
    model, _ = load_trained_model(trained.directory, device=resolve_device(config.train.device))
    return model, (f"trained {trained.tasks} tasks, best validation accuracy {trained.best_accuracy:.1f}% "
                   f"(task {trained.best_task})")


def run_demo(
    methods: tuple[str, ...] = METHODS,
    quick: bool = False,
    test_tasks: int | None = None,
    reversal_tasks_per_pair: int | None = None,
    output: Path | None = None,
    progress: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
    regime: str = DEFAULT_REGIME,
) -> list[MethodResult]:
    """Train, evaluate and compare ``methods`` on the synthetic dataset (see the module docstring).

    ``overrides``: dotted configuration overrides applied to every method's preset. In the
    pretrained regime the methods share one feature cache, ``<output>/cache``."""
    test_tasks = test_tasks or (20 if quick else 400)
    per_pair = reversal_tasks_per_pair or (4 if quick else 80)
    folder = "demo" + ("" if regime == "scratch" else f"_{regime}") + ("_quick" if quick else "")
    output = output or fsvid_home() / "runs" / folder
    output.mkdir(parents=True, exist_ok=True)
    if regime != "scratch":
        overrides = [f"data.cache={output / 'cache'}", *overrides]

    started = time.time()
    first = demo_config(methods[0], quick, overrides, regime)
    location = locate_data(first, progress=progress)
    print(f"[{_clock(started)}] synthetic dataset: {location.video_root.parent} ({time.time() - started:.0f} s)")
    if first.data.cache is not None:
        began = time.time()
        for split in ("train", "val", "test"):
            build_run_cache(first, split, progress=progress)
        print(f"[{_clock(started)}] feature cache of the train, val and test videos: {time.time() - began:.0f} s")

    results = []
    for method in methods:
        config = demo_config(method, quick, overrides, regime)
        began = time.time()
        model, what = trained_model(config, progress)
        seconds = time.time() - began
        print(f"[{_clock(started)}] {method}: {what}, {seconds:.0f} s")
        began = time.time()
        features, plan = test_features(model, config, progress)
        try:
            test_set = episode_dataset(config, "test", test_tasks, config.eval.seed, False, location, progress)
            test = evaluate_tasks(model, test_set, features, progress)
            reversal = reversal_accuracies(model, config, per_pair, features, progress)
        finally:
            if plan is not None and not plan.kept:  # a trained backbone's features serve this evaluation only
                discard_features(features, plan)
        evaluated = time.time() - began
        print(f"[{_clock(started)}] {method}: evaluated {test_tasks} test and {reversal.size} time-reversal tasks, "
              f"{evaluated:.0f} s")
        results.append(MethodResult(method, test.accuracy, mean_and_ci(reversal), reversal, test.task_accuracies,
                                    seconds, evaluated))

    table = format_table(results)
    print("\n" + table)
    (output / "results.md").write_text(table + "\n")
    (output / "results.json").write_text(json.dumps(results_json(results, regime), indent=2))
    plot_path = plot_results(results, output / "results.png")
    print(f"\nwritten: {output / 'results.md'}, {output / 'results.json'}, {plot_path}")
    print(f"total time {time.time() - started:.0f} s wall, {time.process_time():.0f} s CPU ({regime} regime, "
          f"{torch.get_num_threads()} threads)")
    return results


def _clock(started: float) -> str:
    """Wall time since ``started`` as m:ss, and this process's CPU time so far (all threads;
    on a busy machine the wall time is an upper bound, the CPU time what the work needed)."""
    seconds = int(time.time() - started)
    return f"{seconds // 60}:{seconds % 60:02d} wall, {time.process_time():.0f} s CPU"


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


def results_json(results: list[MethodResult], regime: str = DEFAULT_REGIME) -> list[dict]:
    return [
        {
            "method": r.method,
            "regime": regime,
            "test_accuracy": r.test.mean,
            "test_ci95": r.test.ci95,
            "test_tasks": r.test.tasks,
            "reversal_accuracy": r.reversal.mean,
            "reversal_ci95": r.reversal.ci95,
            "reversal_tasks": r.reversal.tasks,
            "train_seconds": round(r.train_seconds, 1),
            "eval_seconds": round(r.eval_seconds, 1),
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
               color=["#9e9e9e", "#4c72b0", "#dd8452", "#55a868"][: len(values)])
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
    parser.add_argument("--regime", choices=REGIMES, default=DEFAULT_REGIME,
                        help=f"scratch: small CNN trained from scratch at 32 px; pretrained: frozen EfficientNet-Lite0 "
                             f"at 112 px, heads trained from cached features (default {DEFAULT_REGIME})")
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
                 None if args.output is None else args.output.expanduser(), not args.no_progress,
                 regime=args.regime)
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
