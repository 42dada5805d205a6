"""Episodic training, resumable, on one device or several (``torchrun`` + DDP).

One optimiser step = ``train.tasks_per_step`` tasks (16 in the papers) with accumulated
gradients; each task's loss is divided by ``tasks_per_step`` (released code). What makes a
run reproducible, resumable and shareable among processes is that **every random choice is
a function of the task number** ``i``:

- the task's videos, frames, crops and flips come from ``(train.seed, i)``
  (:mod:`fsvid.data.episodes`);
- the model's own randomness (dropout, random tuple subsets) is seeded from
  ``(train.seed, i)`` right before the task's forward pass (:func:`seed_task`).

Hence:

- resuming at task ``i`` continues exactly as the uninterrupted run would, bit for bit on
  the same machine (``last.pt`` also restores model, optimiser, scheduler, loss scaler and
  random states);
- with G processes (``torchrun --nproc_per_node=G``), rank ``r`` takes tasks ``s+r, s+r+G,
  ...`` of the step starting at task ``s``; its loss is multiplied by G and DDP averages the
  gradients, so the update equals the single-process one (up to float rounding). A rank
  left without a task in a short step runs the step's first task with weight 0, so that
  every rank joins the gradient averaging.

Every ``train.checkpoint_every`` tasks (and at the end) ``last.pt`` is written atomically;
every ``train.val_every`` tasks (and at the end) the model is scored on a fixed list of
``train.val_tasks`` validation tasks (seed ``eval.seed``) and ``best.pt`` keeps the best:
the best checkpoint is chosen on validation, never on test. A loss that becomes NaN or
infinite stops the run with :class:`TrainingDiverged` before that step is applied; the last
good ``last.pt`` is left as it was.

Files, metrics (CSV, JSON, TensorBoard when installed), the progress bar and checkpoints
are written by rank 0 only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fsvid import losses
from fsvid.config import ConfigError, RunConfig, from_dict, save_config, to_dict, validate
from fsvid.data import Episode
from fsvid.engine.checkpoint import (
    MODEL_FORMAT,
    TRAINING_FORMAT,
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    random_states,
    remove_stale_temporaries,
    restore_random_states,
)
from fsvid.engine.data import DataLocation, episode_dataset, global_class_count, locate_data
from fsvid.engine.distributed import Distributed, autocast_context, grad_scaler, resolve_device, unwrap
from fsvid.engine.evaluate import evaluate_model
from fsvid.engine.runs import run_dir
from fsvid.heads import HeadOutput
from fsvid.models import build_model, prediction_scores

#: Columns of ``metrics.csv``. Accuracies and intervals are in percentage points; ``loss`` is
#: the mean task loss of the step; ``lr`` the learning rate the step used.
METRIC_FIELDS = ("task", "step", "split", "loss", "accuracy", "ci95", "lr", "seconds")

#: Configuration fields that may change when a run is resumed (everything else must match).
RESUMABLE_CHANGES = (
    "name",
    "output_dir",
    "data.root",
    "data.split_dir",
    "data.workers",
    "train.tasks",
    "train.val_every",
    "train.checkpoint_every",
    "train.device",
    "train.amp",
    "eval.",
)

#: Files of a finished or interrupted run, removed when a run starts again with ``resume=False``.
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "summary.json", "tensorboard")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the step was not applied and ``last.pt`` is intact."""


# ----------------------------------------------------------------------------- set-up helpers


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (the released code: no momentum, no weight decay by default) or Adam, over the
    trainable parameters."""
    train = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            f"model {config.model.method} with backbone {config.model.backbone} (trainable={config.model.trainable}) "
            "has no trainable parameters; evaluate it directly with `fsvid evaluate --config ... --untrained`"
        )
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)


def optimiser_steps(config: RunConfig) -> int:
    """Number of optimiser steps of the run (the last one may hold fewer tasks)."""
    return max(1, math.ceil(config.train.tasks / config.train.tasks_per_step))


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step learning-rate schedule: ``constant``, ``cosine`` (to 0 at the last step) or
    ``step`` (x0.1 every ``train.step_every`` tasks)."""
    train = config.train
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=optimiser_steps(config))
    if train.schedule == "step":
        if train.step_every < train.tasks_per_step:
            raise ValueError(
                f"train.schedule=step needs train.step_every >= train.tasks_per_step ({train.tasks_per_step}) "
                f"tasks, got {train.step_every}"
            )
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.step_every // train.tasks_per_step, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def task_loss(config: RunConfig, output: HeadOutput, episode: Episode) -> torch.Tensor:
    """The method's training loss on one task (before division by ``tasks_per_step``).

    - prototype, TRX: cross-entropy summed (or averaged) over the queries;
    - STRM: Eq. 10, ``CE(logits) + qc_weight * CE(qc_logits)``;
    - MASTAF: ``loss_global + global_weight * loss_fewshot``; the global classifier's target
      is each query's class index among all TRAINING classes, ``class_indices[query_labels]``.
    """
    method, reduction = config.model.method, config.train.loss_reduction
    labels = episode.query_labels
    if method == "strm":
        return losses.strm_loss(output, labels, config.model.qc_weight, reduction)
    if method == "mastaf":
        if output.global_logits is None:
            return losses.mastaf_fewshot_loss(output, labels)
        global_labels = episode.class_indices.to(labels.device)[labels]  # (queries,) among training classes
        return losses.mastaf_loss(output, labels, global_labels, config.model.global_weight)
    return losses.episode_cross_entropy(output, labels, reduction)


def seed_task(seed: int, index: int) -> None:
    """Seed torch (CPU and every CUDA device) for task ``index``: dropout masks and random tuple
    subsets become a function of ``(seed, index)``, whichever process runs the task and whenever."""
    state = np.random.SeedSequence([seed, index, 2]).generate_state(1, np.uint64)[0]
    torch.manual_seed(int(state >> np.uint64(1)))


def resume_conflicts(saved: RunConfig, current: RunConfig) -> list[str]:
    """Configuration fields that differ between a checkpoint and the run resuming it, other
    than :data:`RESUMABLE_CHANGES`, as ``"key: saved -> current"``."""

    def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        items: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    old, new = flat(to_dict(saved)), flat(to_dict(current))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
        and not any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE_CHANGES)
    ]


# ----------------------------------------------------------------------------- run state and files


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights and the optimiser."""

    task: int = 0
    """Tasks done (the next task to run)."""
    best_accuracy: float = -1.0
    best_ci95: float = 0.0
    best_task: int = -1
    seconds: float = 0.0
    """Training time before this process started (earlier segments of a resumed run)."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "best_accuracy": self.best_accuracy,
            "best_ci95": self.best_ci95,
            "best_task": self.best_task,
            "seconds": self.seconds,
            "history": self.history,
        }


@dataclass
class TrainResult:
    """Where a finished run wrote its files, and its validation record."""

    directory: Path
    tasks: int
    best_accuracy: float
    """Best validation accuracy in percent (-1 when no validation ran)."""
    best_task: int
    history: list[dict[str, Any]]
    seconds: float


class RunFiles:
    """The files rank 0 writes in the run folder: metrics CSV, TensorBoard, summary, checkpoints."""

    def __init__(self, directory: Path, enabled: bool) -> None:
        self.directory, self.enabled = directory, enabled
        self.last, self.best = directory / "last.pt", directory / "best.pt"
        self.metrics = directory / "metrics.csv"
        self.tensorboard = _tensorboard(directory) if enabled else None

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.csv`` with exactly ``history`` (rows after the checkpoint are forgotten)."""
        if self.enabled:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in METRIC_FIELDS} for row in history)
            atomic_write_text(self.metrics, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Add one row to ``metrics.csv`` (and TensorBoard)."""
        if not self.enabled:
            return
        with open(self.metrics, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=METRIC_FIELDS, lineterminator="\n").writerow(
                {k: row.get(k, "") for k in METRIC_FIELDS}
            )
        if self.tensorboard is not None:
            for name in ("loss", "accuracy", "lr"):
                if row.get(name, "") != "":
                    self.tensorboard.add_scalar(f"{row['split']}/{name}", row[name], row["task"])

    def save(self, path: Path, checkpoint: dict[str, Any]) -> None:
        if self.enabled:
            atomic_save(checkpoint, path)

    def summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.directory / "summary.json", json.dumps(summary, indent=2))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is not installed: CSV and JSON only
        return None
    return SummaryWriter(str(directory / "tensorboard"))


# ----------------------------------------------------------------------------- the run


def train(
    config: RunConfig,
    resume: bool = True,
    progress: bool = True,
    location: DataLocation | None = None,
) -> TrainResult:
    """Train ``config`` (see the module docstring) and return where it wrote its results.

    ``resume=True`` continues from ``last.pt`` when the run folder has one (refusing if the
    configuration changed in a way that matters); ``resume=False`` deletes the folder's old
    checkpoints and metrics and starts again. Under ``torchrun`` every process calls this.
    """
    config = validate(config)
    started = time.time()
    device = resolve_device(config.train.device)
    ddp = Distributed.from_environment(device)
    show = progress and ddp.main
    directory = run_dir(config)
    files = RunFiles(directory, enabled=ddp.main)

    # --- the run folder: clean up, decide whether to resume
    if ddp.main:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(directory)
        if not resume:
            for name in RUN_FILES:
                path = directory / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    ddp.barrier()
    checkpoint = load_checkpoint(files.last) if resume and files.last.exists() else None
    if checkpoint is not None:
        conflicts = resume_conflicts(from_dict(RunConfig, checkpoint["config"]), config)
        if conflicts:
            raise ConfigError(
                f"{files.last} was written with another configuration ({'; '.join(conflicts)}); "
                "resume with the same settings, use another output_dir, or start again with resume=False "
                "(fsvid train --no-resume)"
            )
    if ddp.main:
        save_config(config, directory / "config.yaml")
    if config.train.amp != "none" and device.type != "cuda" and show:
        tqdm.write(f"train.amp={config.train.amp} applies on CUDA only; training in float32 on {device}")

    # --- data: rank 0 generates the synthetic dataset if needed, the others wait
    if location is None:
        location = locate_data(config, generate=ddp.main, progress=show)
        ddp.barrier()
        if not ddp.main:
            location = locate_data(config, generate=False, progress=False)
    total, per_step = config.train.tasks, config.train.tasks_per_step
    train_set = episode_dataset(config, "train", total, config.train.seed, True, location, show)
    val_set = (
        episode_dataset(config, "val", config.train.val_tasks, config.eval.seed, False, location, show)
        if config.train.val_every > 0
        else None
    )
    n_global = global_class_count(config, location)

    # --- model, optimiser, schedule; restored from last.pt when resuming
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    model = build_model(config, n_global=n_global).to(device)
    from_cache = config.data.cache is not None
    if from_cache and any(p.requires_grad for p in model.backbone.parameters()):
        raise ConfigError(
            f"data.cache={config.data.cache} trains the head on cached backbone features, which needs a frozen "
            f"backbone: set model.trainable=none (got model.trainable={config.model.trainable})"
        )
    # what the optimiser trains and DDP wraps: the whole model, or the head on cached features
    net: nn.Module = model.head if from_cache else model
    optimizer = build_optimizer(config, net)
    scheduler = build_scheduler(config, optimizer)
    scaler = grad_scaler(device, config.train.amp)
    state = TrainState()
    saved_task: int | None = None  # the task of the last.pt on disk
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        restore_random_states(checkpoint["random_states"])
        state = TrainState(**checkpoint["state"])
        saved_task = state.task
        if show:
            tqdm.write(f"resuming {directory} at task {state.task} of {total}")
        del checkpoint
    files.rewrite_metrics(state.history)  # a fresh file, or the rows up to the checkpoint

    if from_cache:  # the backbone's features of every training and validation video, computed once
        from fsvid.engine.cache import cache_root, feature_episodes, split_cache

        root = cache_root(config, directory)
        train_cache = split_cache(config, train_set, model.backbone, "train", root, config.data.cache_views, show,
                                  distributed=ddp)
        train_set = feature_episodes(train_set, train_cache, train=True)
        if val_set is not None:
            val_set = feature_episodes(val_set, split_cache(config, val_set, model.backbone, "val", root, 0, show,
                                                            distributed=ddp), train=False)

    if ddp.world > 1:
        net = nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # MASTAF variants leave parameters out of the loss (the meta-learner of the
            # uniform-kernel and neighbour variants); every other model uses all of its own
            find_unused_parameters=config.model.method == "mastaf",
        )

    def make_checkpoint() -> dict[str, Any]:
        return {
            "format": TRAINING_FORMAT,
            "config": to_dict(config),
            "n_global": n_global,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "random_states": random_states(),
            "state": {**state.to_dict(), "seconds": elapsed()},  # training time so far, for a resumed run
            "world_size": ddp.world,
        }

    def elapsed() -> float:
        return round(state.seconds + time.time() - started, 3)

    def summary(status: str, message: str = "") -> dict[str, Any]:
        train_rows = [r for r in state.history if r["split"] == "train"]
        return {
            "name": config.name,
            "method": config.model.method,
            "status": status,
            **({"message": message} if message else {}),
            "tasks": state.task,
            "total_tasks": total,
            "steps": len(train_rows),
            "final_train_loss": train_rows[-1]["loss"] if train_rows else None,
            "best_val_accuracy": state.best_accuracy if state.best_task >= 0 else None,
            "best_val_ci95": state.best_ci95 if state.best_task >= 0 else None,
            "best_task": state.best_task,
            "seconds": elapsed(),
            "world_size": ddp.world,
            "device": str(device),
            "directory": str(directory),
            "config": to_dict(config),
        }

    # --- this rank's tasks from the resume point on (see the module docstring)
    def tasks_of_step(start: int) -> list[int]:
        end = min(total, (start // per_step + 1) * per_step)
        return list(range(start + ddp.rank, end, ddp.world))

    if state.task % per_step != 0 and state.task < total:  # only a run's last step can be partial
        raise ConfigError(
            f"{files.last} is the end of a run of {state.task} tasks, whose last optimiser step was partial "
            f"({state.task % per_step} of {per_step} tasks); it cannot be extended to train.tasks={total} exactly. "
            "Start again with resume=False (fsvid train --no-resume) or use another output_dir"
        )
    mine_all = [i for start in range(state.task, total, per_step) for i in tasks_of_step(start)]
    loader = DataLoader(
        train_set,
        batch_size=None,
        sampler=mine_all,
        num_workers=config.data.workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # the loader must not draw from the global random state
    )
    iterator = iter(loader)
    bar = tqdm(total=total, initial=state.task, desc=f"train {config.model.method}", disable=not show, unit="task",
               dynamic_ncols=True)

    net.train()
    optimizer.zero_grad(set_to_none=True)
    task = state.task
    try:
        while task < total:
            step_start, step_end = task, min(total, (task // per_step + 1) * per_step)
            step = -(-step_end // per_step)  # 1-based optimiser step
            mine = tasks_of_step(step_start)
            work = mine or [step_start]  # without a task of its own, rank r joins DDP with a zero-weight task
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, correct, queries, bad, first_bad = 0.0, 0, 0, 0, float(total)
            for position, index in enumerate(work):
                episode: Episode = (next(iterator) if mine else train_set[index]).to(device, non_blocking=True)
                weight = ddp.world / per_step if mine else 0.0
                last_of_step = position == len(work) - 1
                # gradients are averaged among processes once per step, on its last backward
                sync = net.no_sync() if (ddp.world > 1 and not last_of_step) else nullcontext()
                with sync:
                    seed_task(config.train.seed, index)
                    with autocast_context(device, config.train.amp):
                        output = net(episode.support, episode.support_labels, episode.query, episode.query_labels)
                        loss = task_loss(config, output, episode)
                    scaled = loss * weight
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                if not mine:
                    continue
                value = float(loss.detach())
                if math.isfinite(value):
                    loss_sum += value
                else:
                    bad, first_bad = bad + 1, min(first_bad, index)
                predicted = prediction_scores(output).detach().argmax(-1)
                correct += int((predicted == episode.query_labels).sum())
                queries += int(episode.query_labels.numel())

            # --- all processes agree on the step's statistics, and on whether it diverged
            stats = ddp.all_reduce(torch.tensor([loss_sum, correct, queries, bad], dtype=torch.float64, device=device))
            if stats[3] > 0:
                first = int(ddp.all_reduce(torch.tensor([first_bad], dtype=torch.float64, device=device), "min")[0])
                optimizer.zero_grad(set_to_none=True)
                kept = f"{files.last} (task {saved_task})" if saved_task is not None else "none (no last.pt was written yet)"
                message = (
                    f"the loss of task {first} (optimiser step {step}, learning rate {lr:g}) is not finite; "
                    f"the run stopped before applying that step. The last good checkpoint is {kept}. "
                    "Lower train.lr, set train.grad_clip, or use train.amp=none/bf16, then start again "
                    "(fsvid train --no-resume)."
                )
                files.summary(summary("diverged", message))
                raise TrainingDiverged(message)

            # --- the optimiser step
            if config.train.grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(unwrap(net).parameters(), config.train.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()

            task = state.task = step_end
            row = {
                "task": task,
                "step": step,
                "split": "train",
                "loss": float(stats[0]) / (task - step_start),
                "accuracy": 100.0 * float(stats[1]) / max(1.0, float(stats[2])),
                "ci95": "",
                "lr": lr,
                "seconds": elapsed(),
            }
            state.history.append(row)
            files.append(row)
            bar.update(task - step_start)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.1f}", refresh=False)

            def crossed(every: int) -> bool:
                return task == total or (every > 0 and task // every > step_start // every)

            # --- validation on a fixed task list; best.pt is chosen here, never on test
            if val_set is not None and crossed(config.train.val_every):
                ddp.broadcast_buffers(model)  # everyone scores rank 0's BatchNorm statistics
                result = evaluate_model(
                    model, val_set, device, config.train.amp, progress=False, distributed=ddp,
                    workers=config.data.workers, features=from_cache, split="val",
                )
                net.train()
                val_row = {
                    "task": task,
                    "step": step,
                    "split": "val",
                    "loss": "",
                    "accuracy": result.accuracy.mean,
                    "ci95": result.accuracy.ci95,
                    "lr": lr,
                    "seconds": elapsed(),
                }
                state.history.append(val_row)
                files.append(val_row)
                if show:
                    tqdm.write(f"task {task}: validation accuracy {result.accuracy}")
                if result.accuracy.mean > state.best_accuracy:
                    state.best_accuracy, state.best_ci95, state.best_task = (
                        result.accuracy.mean, result.accuracy.ci95, task,
                    )
                    files.save(files.best, _model_checkpoint(config, n_global, model, state))

            if crossed(config.train.checkpoint_every):
                files.save(files.last, make_checkpoint())
                saved_task = task
    except KeyboardInterrupt:
        files.summary(summary("interrupted", f"interrupted at task {task}; {files.last} resumes the run"))
        raise
    finally:
        bar.close()
        files.close()

    if val_set is None or not files.best.exists():  # no validation: the final weights are the best we know
        files.save(files.best, _model_checkpoint(config, n_global, model, state))
    files.rewrite_metrics(state.history)
    files.summary(summary("finished"))
    ddp.close()
    return TrainResult(directory, state.task, state.best_accuracy, state.best_task, state.history, elapsed())


def _model_checkpoint(config: RunConfig, n_global: int, model: nn.Module, state: TrainState) -> dict[str, Any]:
    """``best.pt``: the weights, their configuration, when they were taken and how they scored."""
    return {
        "format": MODEL_FORMAT,
        "config": to_dict(config),
        "n_global": n_global,
        "model": model.state_dict(),
        "task": state.task,
        "val_accuracy": state.best_accuracy,
        "val_ci95": state.best_ci95,
    }
