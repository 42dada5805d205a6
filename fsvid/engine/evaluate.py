"""Evaluation on a fixed list of test tasks: accuracy with its 95% CI, per class, paired.

The task list comes from a seed (:mod:`fsvid.data.episodes`): two models evaluated with the
same ``eval.seed``, split, way, shot and number of tasks see identical tasks, and their
per-task accuracies can be compared pairwise (:func:`fsvid.engine.metrics.paired_difference`).
To make sure of it, every result carries a description of its task list, including a
fingerprint (a SHA-256 over the videos of every task, in order).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fsvid.engine.checkpoint import atomic_write, atomic_write_text
from fsvid.engine.distributed import Distributed, autocast_context
from fsvid.engine.metrics import Accuracy, confusion_matrix, mean_and_ci, per_class_accuracy
from fsvid.models import prediction_scores

#: Fields of a task list that must agree for a paired comparison.
TASK_LIST_FIELDS = ("split", "seed", "way", "shot", "query", "tasks", "fingerprint")


@dataclass
class EvalResult:
    """Per-task accuracies (in task order), their summary, per-class results and the task list.

    - ``task_accuracies``: (tasks,) float64, fraction of the task's queries classified correctly.
    - ``accuracy``: mean and 95% CI in percentage points.
    - ``class_names``: all classes of the split; index k is row/column k of ``confusion``.
    - ``confusion``: (classes, classes) counts over all queries, row = true, column = predicted.
    - ``task_list``: ``split, seed, way, shot, query, tasks, fingerprint`` (see module docstring).
    - ``meta``: free-form facts about what was evaluated (run folder, checkpoint, method).
    """

    task_accuracies: np.ndarray
    accuracy: Accuracy
    class_names: list[str]
    confusion: np.ndarray
    task_list: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def per_class(self) -> dict[str, float]:
        """Accuracy (percent) of each class of the split that was queried at least once."""
        values = per_class_accuracy(self.confusion)
        return {name: float(v) for name, v in zip(self.class_names, values) if not np.isnan(v)}

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy.mean,
            "ci95": self.accuracy.ci95,
            "tasks": self.accuracy.tasks,
            "task_list": self.task_list,
            "per_class_accuracy": self.per_class,
            "class_names": self.class_names,
            "confusion": self.confusion.tolist(),
            **({"meta": self.meta} if self.meta else {}),
        }

    def save(self, directory: str | Path, stem: str) -> Path:
        """``<stem>.json`` (summary) and ``<stem>_tasks.npy`` (per-task accuracies, for pairing),
        both written atomically; returns the JSON path."""
        directory = Path(directory)
        atomic_write(directory / f"{stem}_tasks.npy", lambda handle: np.save(handle, self.task_accuracies))
        return atomic_write_text(directory / f"{stem}.json", json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, directory: str | Path, stem: str) -> EvalResult:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        path, tasks_path = directory / f"{stem}.json", directory / f"{stem}_tasks.npy"
        for p in (path, tasks_path):
            if not p.is_file():
                raise FileNotFoundError(f"no evaluation result {p}; run `fsvid evaluate {directory}` first")
        again = f"evaluate the run again (`fsvid evaluate {directory}`) to rewrite it"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            class_names = list(data["class_names"])
            confusion = np.asarray(data["confusion"], dtype=np.int64)
            task_list, meta = dict(data.get("task_list", {})), dict(data.get("meta", {}))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            what = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
            raise ValueError(f"evaluation result {path} is damaged ({type(error).__name__}: {what}); {again}") from None
        try:
            accuracies = np.load(tasks_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"per-task accuracies {tasks_path} are damaged ({error}); {again}") from None
        expected = data.get("tasks")
        if accuracies.ndim != 1 or not np.issubdtype(accuracies.dtype, np.number) or (
                isinstance(expected, int) and len(accuracies) != expected):
            raise ValueError(f"per-task accuracies {tasks_path} hold a {accuracies.dtype} array of shape "
                             f"{accuracies.shape}, expected {expected} numbers (as {path.name} says); {again}")
        return cls(
            task_accuracies=accuracies,
            accuracy=mean_and_ci(accuracies),
            class_names=class_names,
            confusion=confusion,
            task_list=task_list,
            meta=meta,
        )


def task_digest(support_videos: list[str], query_videos: list[str]) -> int:
    """63-bit digest of one task's videos (support then queries, in order)."""
    text = "\n".join(support_videos) + "\n--\n" + "\n".join(query_videos)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def fingerprint_of(digests: np.ndarray) -> str:
    """The task list's fingerprint: SHA-256 of the per-task digests in task order."""
    return hashlib.sha256(np.asarray(digests, dtype="<i8").tobytes()).hexdigest()


def task_list_of(dataset: Any, split: str, fingerprint: str | None = None) -> dict[str, Any]:
    """The description of ``dataset``'s task list (an :class:`~fsvid.data.EpisodeDataset` or
    any dataset with ``way, shot, query, seed`` attributes)."""
    return {
        "split": split,
        "seed": int(getattr(dataset, "seed", -1)),
        "way": int(getattr(dataset, "way", -1)),
        "shot": int(getattr(dataset, "shot", -1)),
        "query": int(getattr(dataset, "query", -1)),
        "tasks": len(dataset),
        "fingerprint": fingerprint,
    }


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str = "cpu",
    amp: str = "none",
    progress: bool = True,
    distributed: Distributed | None = None,
    workers: int = 0,
    features: bool = False,
    split: str = "test",
) -> EvalResult:
    """Score ``model`` on every task of ``dataset`` (an episode dataset) and summarise.

    Each query is classified by the highest of :func:`fsvid.models.prediction_scores` (STRM:
    ``logits + 0.1 * qc_logits``). With ``distributed`` (several ``torchrun`` processes) rank
    ``r`` takes tasks ``r, r + world, ...`` and the results are summed on every rank.
    ``features=True``: the episodes hold backbone features (a feature cache), so only the
    model's head is called. The model is put in eval mode and back in its previous mode.
    """
    device = torch.device(device)
    distributed = distributed or Distributed()
    rank, world = distributed.rank, distributed.world
    was_training = model.training
    model.eval()
    class_names = list(dataset.class_names)
    num_classes = len(class_names)
    tasks = list(range(rank, len(dataset), world))
    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=tasks,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # leave the global random state alone
    )
    correct = np.zeros(len(dataset), dtype=np.int64)  # per task
    queries = np.zeros(len(dataset), dtype=np.int64)
    digests = np.zeros(len(dataset), dtype=np.int64)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    call = model.head if features else model
    bar = tqdm(loader, total=len(tasks), desc="evaluate", disable=not progress, unit="task", dynamic_ncols=True)
    for index, episode in zip(tasks, bar):
        episode = episode.to(device, non_blocking=True)
        with autocast_context(device, amp):
            output = call(episode.support, episode.support_labels, episode.query)
        predicted = prediction_scores(output).float().argmax(-1).cpu().numpy()  # (queries,) task labels
        labels = episode.query_labels.cpu().numpy()
        correct[index] = int((predicted == labels).sum())
        queries[index] = labels.size
        digests[index] = task_digest(list(episode.support_videos), list(episode.query_videos))
        classes = episode.class_indices.cpu().numpy()  # (way,) split-level class of each task label
        confusion += confusion_matrix(classes[labels], classes[predicted], num_classes)
        if progress:
            bar.set_postfix(acc=f"{100.0 * correct.sum() / max(1, queries.sum()):.1f}", refresh=False)
    bar.close()
    if world > 1:  # every task was scored by exactly one rank; the others hold zeros
        stacked = torch.from_numpy(np.stack([correct, queries, digests])).to(device)
        distributed.all_reduce(stacked)
        correct, queries, digests = stacked.cpu().numpy()
        counts = torch.from_numpy(confusion).to(device)
        distributed.all_reduce(counts)
        confusion = counts.cpu().numpy()
    model.train(was_training)
    accuracies = correct / np.maximum(queries, 1)  # (tasks,) float64
    fingerprint = fingerprint_of(digests)
    return EvalResult(
        task_accuracies=accuracies,
        accuracy=mean_and_ci(accuracies),
        class_names=class_names,
        confusion=confusion,
        task_list=task_list_of(dataset, split, fingerprint),
    )
