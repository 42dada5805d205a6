"""Run folders: where a run writes, loading its model, evaluating it, comparing two runs,
building its feature caches ahead of time.

A run folder (``output_dir``, default ``$FSVID_HOME/runs/<name>``) holds::

    config.yaml            the resolved configuration
    last.pt                everything needed to resume (model, optimiser, scheduler, ...)
    best.pt                the weights with the best validation accuracy (never chosen on test)
    metrics.csv            one row per optimiser step (split=train) and per validation (split=val)
    summary.json           the run's outcome
    eval_test.json         test accuracy, 95% CI, per-class accuracy, confusion, task list
    eval_test_tasks.npy    per-task accuracies in task order, for paired comparisons
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from fsvid.config import RunConfig, from_dict, load_config, save_config
from fsvid.engine.checkpoint import CheckpointError, check_finite_weights, check_state_dict_matches, load_checkpoint
from fsvid.features import FeatureCache
from fsvid.engine.data import episode_dataset, global_class_count, locate_data
from fsvid.engine.distributed import Distributed, resolve_device
from fsvid.engine.evaluate import TASK_LIST_FIELDS, EvalResult, evaluate_model
from fsvid.engine.features import cache_root, evaluate_from_cache, feature_episodes, split_cache
from fsvid.engine.metrics import PairedDifference, paired_difference
from fsvid.models import FewShotModel, build_model
from fsvid.paths import default_runs_root


def run_dir(config: RunConfig) -> Path:
    """Where a run writes: ``output_dir`` or ``$FSVID_HOME/runs/<name>``."""
    return Path(config.output_dir).expanduser() if config.output_dir else default_runs_root() / config.name


def _checkpoint_path(run: str | Path, which: str) -> Path:
    path = Path(run).expanduser()
    if path.is_dir():
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        path = path / f"{which}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in run folder {path.parent} (has the run been trained?)")
    elif not path.exists():
        raise FileNotFoundError(f"no run folder or checkpoint file at {path}")
    return path


def _load_model(path: Path, device: str | torch.device) -> tuple[FewShotModel, RunConfig, dict[str, Any]]:
    checkpoint = load_checkpoint(path, map_location="cpu")
    missing = [entry for entry in ("config", "model") if entry not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {' and '.join(missing)}: it is not a checkpoint written by fsvid train")
    check_finite_weights(checkpoint, path, "its scores would mean nothing; use the other checkpoint or train again")
    config = from_dict(RunConfig, checkpoint["config"])
    model = build_model(config, n_global=checkpoint.get("n_global"))
    check_state_dict_matches(model, checkpoint["model"], str(path))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), config, checkpoint


def load_trained_model(
    run: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[FewShotModel, RunConfig]:
    """A trained model (in eval mode) and its configuration, from a run folder (``best.pt`` or
    ``last.pt``) or a checkpoint file."""
    model, config, _ = _load_model(_checkpoint_path(run, which), device)
    return model, config


def evaluate_run(
    run: str | Path,
    tasks: int | None = None,
    split: str = "test",
    progress: bool = True,
    which: str | None = None,
    device: str | None = None,
    workers: int | None = None,
    save: bool = True,
    cache: str | bool | None = None,
) -> EvalResult:
    """Evaluate a run folder on ``tasks`` tasks (default ``eval.tasks``) of ``split`` drawn with
    ``eval.seed``, using ``which`` checkpoint (default ``eval.checkpoint``, normally ``best``).

    ``cache``: ``None`` follows ``data.cache`` (videos when it is not set); ``False`` reads the
    videos; ``"auto"`` (the run folder's ``cache/``) or a folder: the split's features are
    computed once with the model's backbone and the head scores the tasks from them
    (:mod:`fsvid.engine.features`, much faster for TRX, STRM and prototypes).

    Saves ``eval_<split>.json`` and ``eval_<split>_tasks.npy`` in the run folder (rank 0 only
    under ``torchrun``, where the tasks are shared among the processes).
    """
    run = Path(run).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder {run}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    written = load_config(run / "config.yaml") if (run / "config.yaml").is_file() else None
    which = which or (written.eval.checkpoint if written is not None else "best")
    dev = resolve_device(device or (written.train.device if written is not None else "auto"))
    model, config, checkpoint = _load_model(_checkpoint_path(run, which), dev)
    if written is not None:  # evaluation settings may have been edited since training
        config = dataclasses.replace(config, eval=written.eval)
    meta = {
        "run": str(run),
        "name": config.name,
        "method": config.model.method,
        "checkpoint": which,
        "checkpoint_task": int(checkpoint.get("task", -1)),
    }
    root = _cache_root(config, run, cache)
    if root is not None:
        meta["cache"] = str(root)
    return _evaluate(model, config, tasks, split, progress, dev, workers, run if save else None, meta, root)


def _cache_root(config: RunConfig, run: Path, cache: str | bool | None) -> Path | None:
    if cache is False or (cache is None and config.data.cache is None):
        return None
    if cache is None or cache is True:
        return cache_root(config, run) if config.data.cache is not None else run / "cache"
    return run / "cache" if cache == "auto" else Path(cache).expanduser()


def evaluate_config(
    config: RunConfig,
    tasks: int | None = None,
    split: str | None = None,
    progress: bool = True,
    untrained: bool = False,
    save: bool = True,
    cache: str | bool | None = None,
) -> EvalResult:
    """Evaluate the run that ``config`` names (its ``output_dir``), or with ``untrained=True``
    the model exactly as ``config`` builds it (e.g. a prototype baseline on a pretrained
    backbone), saving the results and the configuration in ``run_dir(config)``."""
    split = split or config.eval.split
    tasks = tasks if tasks is not None else config.eval.tasks
    if not untrained:
        return evaluate_run(run_dir(config), tasks, split, progress, config.eval.checkpoint, save=save, cache=cache)
    trained = [name for name in ("last.pt", "best.pt") if (run_dir(config) / name).is_file()]
    if save and trained:
        raise ValueError(
            f"{run_dir(config)} holds a trained run ({', '.join(trained)}): saving an untrained evaluation there would "
            f"overwrite its config.yaml and eval_{split}.json; give the untrained model another name= or output_dir="
        )
    device = resolve_device(config.train.device)
    location = locate_data(config, generate=True, progress=progress)
    torch.manual_seed(config.train.seed)
    model = build_model(config, n_global=global_class_count(config, location)).to(device)
    directory = run_dir(config)
    if save:
        save_config(config, directory / "config.yaml")
    meta = {"run": str(directory), "name": config.name, "method": config.model.method, "checkpoint": "untrained"}
    root = _cache_root(config, directory, cache)
    return _evaluate(model, config, tasks, split, progress, device, None, directory if save else None, meta, root)


def _evaluate(
    model: torch.nn.Module,
    config: RunConfig,
    tasks: int | None,
    split: str,
    progress: bool,
    device: torch.device,
    workers: int | None,
    directory: Path | None,
    meta: dict[str, Any],
    caches_root: Path | None = None,
) -> EvalResult:
    tasks = config.eval.tasks if tasks is None else tasks
    if tasks < 1:
        raise ValueError(f"the number of evaluation tasks must be at least 1, got {tasks}")
    ddp = Distributed.from_environment(device)
    show = progress and ddp.main
    location = locate_data(config, generate=ddp.main, progress=show)
    ddp.barrier()
    dataset = episode_dataset(config, split, tasks, config.eval.seed, False, location, show)
    if caches_root is not None:  # the split's features once, then the head on them
        features = split_cache(config, dataset, model.backbone, split, caches_root, 0, show, distributed=ddp)
        episodes = feature_episodes(dataset, features, train=False)
        result = evaluate_from_cache(model, episodes, device, config.train.amp, show, split, ddp)
    else:
        result = evaluate_model(
            model,
            dataset,
            device,
            config.train.amp,
            progress=show,
            distributed=ddp,
            workers=config.data.workers if workers is None else workers,
            split=split,
        )
    result.meta = meta
    if directory is not None and ddp.main:
        result.save(directory, f"eval_{split}")
    ddp.close()
    return result


def build_run_cache(
    config: RunConfig,
    split: str,
    root: str | Path | None = None,
    run: str | Path | None = None,
    which: str = "best",
    progress: bool = True,
    overwrite: bool = False,
) -> FeatureCache:
    """Build (or finish, or just open) the cache of ``split`` ahead of a run (``fsvid cache``).

    The backbone is the one ``train`` would start from (built from ``config`` with
    ``train.seed``: pretrained weights or the seeded initialisation), or with ``run`` the
    backbone of that run's ``which`` checkpoint. ``root``: default ``data.cache``, else the
    run folder's ``cache/``. The training split gets ``data.cache_views`` augmented views.
    """
    if run is not None:  # the run's own configuration says where its data are (``config`` is not used)
        model, config = load_trained_model(run, which, "cpu")
    device = resolve_device(config.train.device)
    location = locate_data(config, generate=True, progress=progress)
    if run is not None:
        model = model.to(device)
        folder = Path(run)
    else:
        torch.manual_seed(config.train.seed)
        model = build_model(config, n_global=global_class_count(config, location)).to(device)
        folder = run_dir(config)
    if root is None:
        root = cache_root(config, folder) if config.data.cache is not None else folder / "cache"
    train = split == "train"
    dataset = episode_dataset(config, split, 1, config.train.seed, train, location, progress)
    views = config.data.cache_views if train else 0
    return split_cache(config, dataset, model.backbone, split, root, views, progress, overwrite)


def compare_runs(run_a: str | Path, run_b: str | Path, split: str = "test") -> PairedDifference:
    """Paired comparison of two evaluated runs on the same tasks: ``a - b`` with its 95% CI.

    Reads ``eval_<split>.json`` and ``eval_<split>_tasks.npy`` of both runs; refuses (with a
    ``ValueError`` naming what differs) when they were not evaluated on the same task list
    (another eval seed, split, way, shot, number of queries or tasks, or other videos).
    """
    a = EvalResult.load(run_a, f"eval_{split}")
    b = EvalResult.load(run_b, f"eval_{split}")
    differences = [
        f"{key}: {a.task_list.get(key)!r} vs {b.task_list.get(key)!r}"
        for key in TASK_LIST_FIELDS
        if a.task_list.get(key) != b.task_list.get(key)
    ]
    if differences:
        detail = "; ".join(differences)
        if [d for d in differences if not d.startswith("fingerprint")] == []:
            detail += " (same settings but other videos: another dataset, split file or version of it?)"
        raise ValueError(
            f"{run_a} and {run_b} were evaluated on different task lists ({detail}); "
            "evaluate both with the same eval.seed, split, way, shot and number of tasks"
        )
    return paired_difference(a.task_accuracies, b.task_accuracies)
