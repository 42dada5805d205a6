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
infinite stops the run with :class:`TrainingDiverged` before that step is applied, and so do
weights that an update made non-finite (an overflowing learning rate); no checkpoint is ever
written with non-finite weights, so the ``last.pt`` the message names is a good one.

A run folder belongs to one training at a time (``train.lock``, :mod:`fsvid.engine.lock`).
Nothing in it is deleted or overwritten before the run is known to start: the configuration,
the checkpoint to resume, the data, the model and the optimiser are all checked first; only
then does ``resume=False`` move the previous run's files into ``previous/``.

Files, metrics (CSV, JSON, TensorBoard when installed), the progress bar and checkpoints
are written by rank 0 only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fsvid import losses
from fsvid.config import ConfigError, RunConfig, from_dict, save_config, to_dict, validate
from fsvid.data import Episode
from fsvid.engine.checkpoint import (
    MODEL_FORMAT,
    TRAINING_FORMAT,
    CheckpointError,
    WriteError,
    atomic_save,
    atomic_write_text,
    check_resumable,
    check_state_dict_matches,
    load_checkpoint,
    non_finite_tensors,
    random_states,
    remove_stale_temporaries,
    restore_random_states,
)
from fsvid.engine.data import DataLocation, episode_dataset, global_class_count, locate_data
from fsvid.engine.distributed import Distributed, autocast_context, grad_scaler, resolve_device, unwrap
from fsvid.engine.evaluate import evaluate_model
from fsvid.engine.lock import RunFolderBusy, RunFolderLock
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

#: Files of a finished or interrupted run (and its evaluations), moved into :data:`PREVIOUS` when a
#: run starts again with ``resume=False``.
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.csv", "summary.json", "tensorboard",
             "eval_*.json", "eval_*_tasks.npy")
#: The run folder's subfolder holding the previous run's files after ``resume=False`` (one
#: generation: an older one is deleted then).
PREVIOUS = "previous"


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the ``last.pt`` on disk is a good one."""


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
        self.tensorboard = None  # opened with the first row: nothing is written before the run starts

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
        try:
            with open(self.metrics, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=METRIC_FIELDS, lineterminator="\n").writerow(
                    {k: row.get(k, "") for k in METRIC_FIELDS}
                )
        except OSError as error:
            raise WriteError(f"could not add the row of task {row['task']} to {self.metrics}: {error}") from error
        if self.tensorboard is None:
            self.tensorboard = _tensorboard(self.directory) or False
        if self.tensorboard:
            for name in ("loss", "accuracy", "lr"):
                if row.get(name, "") != "":
                    self.tensorboard.add_scalar(f"{row['split']}/{name}", row[name], row["task"])

    def save(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """Write ``checkpoint`` atomically; never one with non-finite weights."""
        if not self.enabled:
            return
        bad = non_finite_tensors(checkpoint["model"])
        if bad:
            raise TrainingDiverged(
                f"refusing to write {path}: its weights are not finite ({', '.join(bad[:5])}); "
                f"{path.name} keeps its previous content"
            )
        atomic_save(checkpoint, path)

    def summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.directory / "summary.json", json.dumps(summary, indent=2))

    def close(self) -> None:
        if self.tensorboard:
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
    configuration changed in a way that matters); ``resume=False`` starts again, moving the
    folder's previous files into ``previous/`` once the new run is ready to start. Under
    ``torchrun`` every process calls this.

    The run: :func:`hold_run_folder` (one training per folder), :func:`open_run` (resume
    point, tasks, model, optimiser, then the folder's files), :func:`run_steps` (per optimiser
    step :func:`train_step`, :func:`record_step`, :func:`validate_and_keep_best` and
    :func:`save_last` when they are due), :func:`finish_run`.
    """
    config = validate(config)
    device = resolve_device(config.train.device)
    ddp = Distributed.from_environment(device)
    with hold_run_folder(run_dir(config), ddp, device):
        run = open_run(config, device, ddp, resume, progress, location)
        run_steps(run)
        return finish_run(run)


def run_steps(run: TrainingRun) -> None:
    """The optimiser steps from the resume point to the end; ``summary.json`` says
    ``interrupted`` after Ctrl+C (``diverged``: see :func:`stop_diverged`)."""
    tasks = iter(task_loader(run))
    bar = tqdm(total=run.total, initial=run.state.task, desc=f"train {run.config.model.method}", disable=not run.show,
               unit="task", dynamic_ncols=True)
    run.net.train()
    run.optimizer.zero_grad(set_to_none=True)
    try:
        while run.state.task < run.total:
            step = train_step(run, tasks)
            record_step(run, step, bar)
            if run.val_set is not None and step.crossed(run.config.train.val_every):
                validate_and_keep_best(run, step)
            if step.crossed(run.config.train.checkpoint_every):
                save_last(run)
    except KeyboardInterrupt:
        kept = f"{run.files.last} (task {run.saved_task}) resumes the run" if run.saved_task is not None else (
            "no last.pt was written yet")
        run.files.summary(run.summary("interrupted", f"interrupted at task {run.state.task}; {kept}"))
        raise
    finally:
        bar.close()
        run.files.close()


@dataclass
class TrainingRun:
    """What one process of a training run works with, from :func:`open_run` to :func:`finish_run`."""

    config: RunConfig
    device: torch.device
    ddp: Distributed
    show: bool
    """Whether this process shows progress (rank 0, ``progress=True``)."""
    files: RunFiles
    train_set: Dataset
    val_set: Dataset | None
    n_global: int
    """The number of training classes (MASTAF's global classifier)."""
    model: nn.Module
    net: nn.Module
    """What the optimiser trains and DDP wraps: the whole model, or the head on cached features."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    started: float
    """When this process started (``time.time()``)."""
    state: TrainState = field(default_factory=TrainState)
    saved_task: int | None = None
    """The task of the ``last.pt`` on disk (``None`` while there is none)."""

    @property
    def total(self) -> int:
        return self.config.train.tasks

    @property
    def per_step(self) -> int:
        return self.config.train.tasks_per_step

    @property
    def from_cache(self) -> bool:
        return self.config.data.cache is not None

    def elapsed(self) -> float:
        """Training time of the run so far, earlier segments of a resumed run included."""
        return round(self.state.seconds + time.time() - self.started, 3)

    def step_end(self, start: int) -> int:
        """The end (exclusive) of the optimiser step that starts at task ``start``."""
        return min(self.total, (start // self.per_step + 1) * self.per_step)

    def tasks_of_step(self, start: int) -> list[int]:
        """This rank's tasks of the optimiser step that starts at task ``start``."""
        return list(range(start + self.ddp.rank, self.step_end(start), self.ddp.world))

    def _weights(self) -> dict[str, Any]:
        """What every checkpoint holds: the configuration, the number of training classes, the weights."""
        return {"config": to_dict(self.config), "n_global": self.n_global, "model": self.model.state_dict()}

    def training_checkpoint(self) -> dict[str, Any]:
        """``last.pt``: everything needed to resume."""
        return {
            "format": TRAINING_FORMAT,
            **self._weights(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "random_states": random_states(),
            "state": {**self.state.to_dict(), "seconds": self.elapsed()},  # training time so far
            "world_size": self.ddp.world,
        }

    def model_checkpoint(self) -> dict[str, Any]:
        """``best.pt``: the weights, their configuration, when they were taken and how they scored."""
        return {
            "format": MODEL_FORMAT,
            **self._weights(),
            "task": self.state.task,
            "val_accuracy": self.state.best_accuracy,
            "val_ci95": self.state.best_ci95,
        }

    def summary(self, status: str, message: str = "") -> dict[str, Any]:
        """``summary.json``: the run's outcome."""
        state = self.state
        train_rows = [r for r in state.history if r["split"] == "train"]
        return {
            "name": self.config.name,
            "method": self.config.model.method,
            "status": status,
            **({"message": message} if message else {}),
            "tasks": state.task,
            "total_tasks": self.total,
            "steps": len(train_rows),
            "final_train_loss": train_rows[-1]["loss"] if train_rows else None,
            "best_val_accuracy": state.best_accuracy if state.best_task >= 0 else None,
            "best_val_ci95": state.best_ci95 if state.best_task >= 0 else None,
            "best_task": state.best_task,
            "seconds": self.elapsed(),
            "world_size": self.ddp.world,
            "device": str(self.device),
            "directory": str(self.files.directory),
            "config": to_dict(self.config),
        }


# ----------------------------------------------------------------------------- setting up


@contextmanager
def hold_run_folder(directory: Path, ddp: Distributed, device: torch.device):
    """Hold the run folder's ``train.lock`` for the run (rank 0 only: the other ranks are the
    same training); when another training holds it, every rank stops with its description."""
    lock, refused = None, None
    if ddp.main:
        try:
            lock = RunFolderLock(directory).acquire()
        except RunFolderBusy as error:
            refused = error
    agreed = ddp.all_reduce(torch.tensor([0.0 if refused else 1.0], device=device), "min")
    if refused is not None:
        raise refused
    if agreed[0] < 1:
        raise RunFolderBusy(f"run folder {directory} is in use by another training (rank 0 says by whom)")
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def open_run(
    config: RunConfig, device: torch.device, ddp: Distributed, resume: bool, progress: bool,
    location: DataLocation | None,
) -> TrainingRun:
    """The checkpoint to resume (if any), the tasks, the model and its optimiser; only when
    all of them are ready, the run folder's files (see :func:`start_files`)."""
    started = time.time()
    show = progress and ddp.main
    files = RunFiles(run_dir(config), enabled=ddp.main)
    if ddp.main:
        remove_stale_temporaries(files.directory)  # killed saves' (this process holds the folder)
    checkpoint = resume_checkpoint(config, files, resume)
    if config.train.amp != "none" and device.type != "cuda" and show:
        tqdm.write(f"train.amp={config.train.amp} applies on CUDA only; training in float32 on {device}")
    train_set, val_set, n_global = episode_sets(config, ddp, show, location)
    model, net, optimizer, scheduler, scaler = build_training(config, device, n_global)
    run = TrainingRun(config, device, ddp, show, files, train_set, val_set, n_global, model, net, optimizer,
                      scheduler, scaler, started)
    if checkpoint is not None:
        restore(run, checkpoint)
        del checkpoint
    check_extendable(run)
    start_files(run, resume)
    if run.from_cache:
        use_feature_cache(run)
    if ddp.world > 1:
        run.net = nn.parallel.DistributedDataParallel(
            run.net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # MASTAF variants leave parameters out of the loss (the meta-learner of the
            # uniform-kernel and neighbour variants); every other model uses all of its own
            find_unused_parameters=config.model.method == "mastaf",
        )
    return run


def resume_checkpoint(config: RunConfig, files: RunFiles, resume: bool) -> dict[str, Any] | None:
    """``last.pt`` when resuming a run that has one, after checking that it is a complete,
    finite training checkpoint and that ``config`` may continue it."""
    if not (resume and files.last.exists()):
        return None
    try:
        checkpoint = load_checkpoint(files.last)
    except CheckpointError as error:
        error.args = (f"{error}; the run cannot resume from it: put a good {files.last.name} back, or start again "
                      "with `fsvid train --no-resume` (resume=False), which sets the old files aside",)
        raise
    check_resumable(checkpoint, files.last)
    conflicts = resume_conflicts(from_dict(RunConfig, checkpoint["config"]), config)
    if conflicts:
        raise ConfigError(
            f"{files.last} was written with another configuration ({'; '.join(conflicts)}); "
            "resume with the same settings, use another output_dir, or start again with resume=False "
            "(fsvid train --no-resume)"
        )
    return checkpoint


def start_files(run: TrainingRun, resume: bool) -> None:
    """The run starts: with ``resume=False`` the previous run's files move into ``previous/``;
    then ``config.yaml`` and ``metrics.csv`` (fresh, or the rows up to the checkpoint) are written."""
    files = run.files
    if files.enabled:
        if not resume:
            set_aside_previous_run(files.directory, run.show)
        save_config(run.config, files.directory / "config.yaml")
        files.rewrite_metrics(run.state.history)
    run.ddp.barrier()


def set_aside_previous_run(directory: Path, show: bool = False) -> Path | None:
    """Move the files of the folder's previous run (:data:`RUN_FILES`) into ``previous/``,
    replacing an older ``previous/``; returns that folder (``None`` when there was nothing)."""
    old = sorted({path for pattern in RUN_FILES for path in directory.glob(pattern)})
    if not old:
        return None
    aside = directory / PREVIOUS
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir()
    for path in old:
        os.replace(path, aside / path.name)
    if show:
        tqdm.write(f"starting again in {directory}: the previous run's files are in {aside}")
    return aside


def episode_sets(
    config: RunConfig, ddp: Distributed, show: bool, location: DataLocation | None
) -> tuple[Dataset, Dataset | None, int]:
    """The run's training tasks, validation tasks (``None`` without validation) and number of
    training classes. Rank 0 generates the synthetic dataset if needed, the others wait."""
    if location is None:
        location = locate_data(config, generate=ddp.main, progress=show)
        ddp.barrier()
        if not ddp.main:
            location = locate_data(config, generate=False, progress=False)
    train_set = episode_dataset(config, "train", config.train.tasks, config.train.seed, True, location, show)
    val_set = (
        episode_dataset(config, "val", config.train.val_tasks, config.eval.seed, False, location, show)
        if config.train.val_every > 0
        else None
    )
    return train_set, val_set, global_class_count(config, location)


def build_training(config: RunConfig, device: torch.device, n_global: int):
    """The model (seeded with ``train.seed``), what the optimiser trains, the optimiser, its
    schedule and the fp16 loss scaler (``None`` without fp16)."""
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    model = build_model(config, n_global=n_global).to(device)
    from_cache = config.data.cache is not None
    if from_cache and any(p.requires_grad for p in model.backbone.parameters()):
        raise ConfigError(
            f"data.cache={config.data.cache} trains the head on cached backbone features, which needs a frozen "
            f"backbone: set model.trainable=none (got model.trainable={config.model.trainable})"
        )
    net: nn.Module = model.head if from_cache else model
    optimizer = build_optimizer(config, net)
    scheduler = build_scheduler(config, optimizer)
    return model, net, optimizer, scheduler, grad_scaler(device, config.train.amp)


def restore(run: TrainingRun, checkpoint: dict[str, Any]) -> None:
    """Put back the model, optimiser, schedule, loss scaler, random states and progress of ``last.pt``."""
    check_state_dict_matches(run.model, checkpoint["model"], str(run.files.last))
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if run.scaler is not None and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    restore_random_states(checkpoint["random_states"])
    run.state = TrainState(**checkpoint["state"])
    run.saved_task = run.state.task
    if run.show:
        tqdm.write(f"resuming {run.files.directory} at task {run.state.task} of {run.total}")


def use_feature_cache(run: TrainingRun) -> None:
    """Replace the video tasks by tasks on the backbone's features of every training and
    validation video, computed once (:mod:`fsvid.engine.features`)."""
    from fsvid.engine.features import cache_root, feature_episodes, split_cache

    config, backbone, show = run.config, run.model.backbone, run.show
    root = cache_root(config, run.files.directory)
    train_cache = split_cache(config, run.train_set, backbone, "train", root, config.data.cache_views, show,
                              distributed=run.ddp)
    run.train_set = feature_episodes(run.train_set, train_cache, train=True)
    if run.val_set is not None:
        val_cache = split_cache(config, run.val_set, backbone, "val", root, 0, show, distributed=run.ddp)
        run.val_set = feature_episodes(run.val_set, val_cache, train=False)


def check_extendable(run: TrainingRun) -> None:
    """Refuse to extend a finished run whose last optimiser step was partial (only a run's last
    step can be)."""
    task, total, per_step = run.state.task, run.total, run.per_step
    if task % per_step != 0 and task < total:
        raise ConfigError(
            f"{run.files.last} is the end of a run of {task} tasks, whose last optimiser step was partial "
            f"({task % per_step} of {per_step} tasks); it cannot be extended to train.tasks={total} exactly. "
            "Start again with resume=False (fsvid train --no-resume) or use another output_dir"
        )


def task_loader(run: TrainingRun) -> DataLoader:
    """This rank's training tasks from the resume point on, in order (see the module docstring)."""
    task, total, per_step = run.state.task, run.total, run.per_step
    mine = [i for start in range(task, total, per_step) for i in run.tasks_of_step(start)]
    return DataLoader(
        run.train_set,
        batch_size=None,
        sampler=mine,
        num_workers=run.config.data.workers,
        pin_memory=run.device.type == "cuda",
        generator=torch.Generator(),  # the loader must not draw from the global random state
    )


# ----------------------------------------------------------------------------- one optimiser step


@dataclass
class Step:
    """One optimiser step: tasks ``start`` to ``end - 1`` (all processes together)."""

    start: int
    end: int
    number: int
    """1-based."""
    lr: float
    """The learning rate the step uses."""
    last: bool
    """Whether it is the run's last step."""
    loss_sum: float = 0.0
    """Sum of the step's finite task losses (all processes)."""
    correct: int = 0
    queries: int = 0

    def crossed(self, every: int) -> bool:
        """Whether something due every ``every`` tasks (0: only at the end) falls in this step."""
        return self.last or (every > 0 and self.end // every > self.start // every)


def train_step(run: TrainingRun, tasks: Iterator[Episode]) -> Step:
    """The tasks of the next optimiser step (this rank's share), their accumulated gradients and
    the update; raises :class:`TrainingDiverged`, without updating, when a loss is not finite."""
    start = run.state.task
    end = run.step_end(start)
    step = Step(start, end, -(-end // run.per_step), run.optimizer.param_groups[0]["lr"], end == run.total)
    loss_sum, correct, queries, bad, first_bad = accumulate_gradients(run, step, tasks)
    # all processes agree on the step's statistics, and on whether it diverged
    stats = run.ddp.all_reduce(torch.tensor([loss_sum, correct, queries, bad], dtype=torch.float64, device=run.device))
    if stats[3] > 0:
        first = int(run.ddp.all_reduce(torch.tensor([first_bad], dtype=torch.float64, device=run.device), "min")[0])
        stop_diverged(run, f"the loss of task {first} (optimiser step {step.number}, learning rate {step.lr:g}) is "
                           "not finite; the run stopped before applying that step")
    step.loss_sum, step.correct, step.queries = float(stats[0]), int(stats[1]), int(stats[2])
    apply_update(run)
    check_weights(run, step)
    run.state.task = end
    return step


def accumulate_gradients(run: TrainingRun, step: Step, tasks: Iterator[Episode]) -> tuple[float, int, int, int, float]:
    """Forward and backward passes of this rank's tasks of ``step``; returns the sum of their
    finite losses, correct predictions, queries, non-finite losses and the first task with one."""
    mine = run.tasks_of_step(step.start)
    work = mine or [step.start]  # without a task of its own, rank r joins DDP with a zero-weight task
    loss_sum, correct, queries, bad, first_bad = 0.0, 0, 0, 0, float(run.total)
    for position, index in enumerate(work):
        episode: Episode = (next(tasks) if mine else run.train_set[index]).to(run.device, non_blocking=True)
        weight = run.ddp.world / run.per_step if mine else 0.0
        output, loss = backward_task(run, episode, index, weight, sync=position == len(work) - 1)
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
    return loss_sum, correct, queries, bad, first_bad


def backward_task(
    run: TrainingRun, episode: Episode, index: int, weight: float, sync: bool
) -> tuple[HeadOutput, torch.Tensor]:
    """Task ``index``'s forward pass and the backward pass of its loss times ``weight``; DDP
    averages the gradients among processes only when ``sync`` (once per step, on its last task)."""
    no_sync = run.net.no_sync() if (run.ddp.world > 1 and not sync) else nullcontext()
    with no_sync:
        seed_task(run.config.train.seed, index)
        with autocast_context(run.device, run.config.train.amp):
            output = run.net(episode.support, episode.support_labels, episode.query, episode.query_labels)
            loss = task_loss(run.config, output, episode)
        scaled = loss * weight
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
    return output, loss


def apply_update(run: TrainingRun) -> None:
    """Clip the accumulated gradients (``train.grad_clip``), step the optimiser and the schedule."""
    optimizer, scaler = run.optimizer, run.scaler
    if run.config.train.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(unwrap(run.net).parameters(), run.config.train.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()


def check_weights(run: TrainingRun, step: Step) -> None:
    """Stop with :class:`TrainingDiverged` when the update made a weight or buffer non-finite
    (an overflowing learning rate): such weights are never checkpointed."""
    bad = non_finite_tensors(run.model.state_dict())
    flag = run.ddp.all_reduce(torch.tensor([1.0 if bad else 0.0], device=run.device), "max")
    if flag[0] > 0:
        names = f" ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})" if bad else ""
        stop_diverged(run, f"optimiser step {step.number} (tasks {step.start}-{step.end - 1}, learning rate "
                           f"{step.lr:g}) made the weights non-finite{names}; the run stopped there")


def stop_diverged(run: TrainingRun, what: str) -> None:
    """Discard the step's gradients, write the ``diverged`` summary and raise
    :class:`TrainingDiverged`: ``what`` happened, and which checkpoints on disk are good."""
    run.optimizer.zero_grad(set_to_none=True)
    last, state = run.files.last, run.state
    kept = f"{last} (task {run.saved_task})" if run.saved_task is not None else "none (no last.pt was written yet)"
    if state.best_task >= 0:
        kept += f"; the best validated weights are {run.files.best} (task {state.best_task})"
    message = (
        f"{what}. The last good checkpoint is {kept}. "
        "Lower train.lr, set train.grad_clip, or use train.amp=none/bf16, then start again "
        "(fsvid train --no-resume)."
    )
    run.files.summary(run.summary("diverged", message))
    raise TrainingDiverged(message)


# ----------------------------------------------------------------------------- after a step


def record_step(run: TrainingRun, step: Step, bar: tqdm) -> None:
    """The step's row of ``metrics.csv`` (mean task loss, training accuracy) and the progress bar."""
    row = {
        "task": step.end,
        "step": step.number,
        "split": "train",
        "loss": step.loss_sum / (step.end - step.start),
        "accuracy": 100.0 * step.correct / max(1, step.queries),
        "ci95": "",
        "lr": step.lr,
        "seconds": run.elapsed(),
    }
    run.state.history.append(row)
    run.files.append(row)
    bar.update(step.end - step.start)
    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.1f}", refresh=False)


def validate_and_keep_best(run: TrainingRun, step: Step) -> None:
    """Score the model on the fixed validation tasks; ``best.pt`` keeps the best (chosen here,
    never on test)."""
    run.ddp.broadcast_buffers(run.model)  # everyone scores rank 0's BatchNorm statistics
    result = evaluate_model(
        run.model, run.val_set, run.device, run.config.train.amp, progress=False, distributed=run.ddp,
        workers=run.config.data.workers, features=run.from_cache, split="val",
    )
    run.net.train()
    row = {
        "task": step.end,
        "step": step.number,
        "split": "val",
        "loss": "",
        "accuracy": result.accuracy.mean,
        "ci95": result.accuracy.ci95,
        "lr": step.lr,
        "seconds": run.elapsed(),
    }
    run.state.history.append(row)
    run.files.append(row)
    if run.show:
        tqdm.write(f"task {step.end}: validation accuracy {result.accuracy}")
    state = run.state
    if result.accuracy.mean > state.best_accuracy:
        state.best_accuracy, state.best_ci95, state.best_task = result.accuracy.mean, result.accuracy.ci95, step.end
        run.files.save(run.files.best, run.model_checkpoint())


def save_last(run: TrainingRun) -> None:
    """Write ``last.pt`` (atomically), from which the run resumes; a failed write (a full disk)
    stops the run, saying which checkpoint is left."""
    try:
        run.files.save(run.files.last, run.training_checkpoint())
    except WriteError as error:
        kept = "" if run.saved_task is None else f": the checkpoint of task {run.saved_task}, from which the run resumes"
        error.args = (f"{error}{kept} (the run stopped at task {run.state.task}; free some space and run the same "
                      "command again)",)
        raise
    run.saved_task = run.state.task


def finish_run(run: TrainingRun) -> TrainResult:
    """``best.pt`` when no validation chose one, the final metrics and summary."""
    if run.val_set is None or not run.files.best.exists():  # no validation: the final weights are the best we know
        run.files.save(run.files.best, run.model_checkpoint())
    run.files.rewrite_metrics(run.state.history)
    run.files.summary(run.summary("finished"))
    run.ddp.close()
    state = run.state
    return TrainResult(run.files.directory, state.task, state.best_accuracy, state.best_task, state.history,
                       run.elapsed())
