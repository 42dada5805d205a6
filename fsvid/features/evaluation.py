"""Scoring many few-shot tasks with a precomputed head: the task loop behind fast evaluation.

A scorer (``fsvid.heads.prototype.PrecomputedPrototypes``, ``fsvid.heads.trx.PrecomputedTRX``,
``fsvid.heads.strm.PrecomputedSTRM``) maps video indices, support (tasks, way, shots) and query
(tasks, queries), to a :class:`fsvid.heads.HeadOutput` of (tasks, queries, way) logits;
:func:`evaluate_precomputed` feeds it the compositions of a task list and collects the
predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor
from tqdm.auto import tqdm

from fsvid.data.episodes import EpisodeDataset
from fsvid.heads.common import HeadOutput

from .episodes import FeatureEpisodeDataset


@dataclass
class PrecomputedEvaluation:
    """Results of :func:`evaluate_precomputed`, in task order.

    ``task_indices`` (tasks,); ``accuracies`` (tasks,) in [0, 1]; ``predicted`` and
    ``true_classes`` (tasks, queries) split-level class indices (into ``class_names``), for
    confusion matrices and per-class accuracy.
    """

    task_indices: np.ndarray
    accuracies: np.ndarray
    predicted: np.ndarray
    true_classes: np.ndarray
    class_names: list[str]


def evaluate_precomputed(
    scorer: Callable[[Tensor, Tensor], HeadOutput],
    dataset: FeatureEpisodeDataset | EpisodeDataset,
    tasks: Sequence[int] | None = None,
    tasks_per_batch: int = 1,
    progress: bool = True,
) -> PrecomputedEvaluation:
    """Score tasks of ``dataset`` (all by default) with a precomputed head, ``tasks_per_batch``
    at a time (1 suits CPUs, where small intermediate tensors stay in cache; use more on a
    GPU). Only the compositions of the tasks are used (``dataset.task(i)``), so an
    :class:`fsvid.data.EpisodeDataset` of the same videos works as well. The score is
    ``extras["test_logits"]`` when the scorer gives one (STRM's protocol), else ``logits``.
    """
    tasks = list(range(len(dataset))) if tasks is None else list(tasks)
    predicted, true_classes = [], []
    bar = tqdm(total=len(tasks), desc="evaluate (precomputed)", unit="task", disable=not progress)
    for first in range(0, len(tasks), tasks_per_batch):
        compositions = [dataset.task(i) for i in tasks[first : first + tasks_per_batch]]
        support = np.stack([t.support for t in compositions])  # (tasks, way, shots)
        query = np.stack([t.query.reshape(-1) for t in compositions])  # (tasks, queries), class by class
        output = scorer(support, query)
        scores = output.extras.get("test_logits", output.logits)  # (tasks, queries, way)
        columns = scores.float().argmax(-1).cpu().numpy()  # (tasks, queries) task labels
        classes = np.stack([t.classes for t in compositions])  # (tasks, way)
        labels = np.stack([t.query_labels for t in compositions])  # (tasks, queries): all of one class (one_class)
        predicted.append(np.take_along_axis(classes, columns, axis=1))
        true_classes.append(np.take_along_axis(classes, labels, axis=1))
        bar.update(len(compositions))
    bar.close()
    predicted_all, true_all = np.concatenate(predicted), np.concatenate(true_classes)
    return PrecomputedEvaluation(
        task_indices=np.asarray(tasks, dtype=np.int64),
        accuracies=(predicted_all == true_all).mean(axis=1),
        predicted=predicted_all,
        true_classes=true_all,
        class_names=list(dataset.class_names),
    )
