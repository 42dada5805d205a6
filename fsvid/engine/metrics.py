"""Accuracy, its 95% confidence interval, per-class accuracy and paired comparisons.

docs/methods.md: accuracy over N test tasks, reported as the mean and the 95% confidence interval
``1.96 * std(task_acc) / sqrt(n_tasks)``, in percentage points. ``std`` is the population
standard deviation (numpy's default, ``ddof=0``), as in the released code.

>>> print(mean_and_ci([1.0, 0.6, 0.8, 0.6]))
75.00 ± 16.25 (4 tasks)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Accuracy:
    """Mean accuracy and its 95% confidence interval, in percentage points, over ``tasks`` tasks."""

    mean: float
    ci95: float
    tasks: int

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.ci95:.2f} ({self.tasks} tasks)"


def mean_and_ci(task_accuracies: np.ndarray | list[float]) -> Accuracy:
    """Task accuracies in [0, 1] -> mean and ``1.96 * std / sqrt(n)`` (population std), in percent."""
    acc = np.asarray(task_accuracies, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ValueError(f"need a non-empty 1-D array of task accuracies, got shape {acc.shape}")
    if not np.isfinite(acc).all():
        raise ValueError("task accuracies contain NaN or infinite values")
    return Accuracy(
        mean=float(100.0 * acc.mean()),
        ci95=float(100.0 * 1.96 * acc.std() / np.sqrt(acc.size)),  # std: ddof=0
        tasks=int(acc.size),
    )


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` on the same tasks: mean and 95% CI in percentage points, and task counts."""

    difference: Accuracy
    a: Accuracy
    b: Accuracy
    a_better: int
    """Tasks on which ``a`` scored higher."""
    b_better: int
    ties: int

    @property
    def significant(self) -> bool:
        """Whether the 95% interval of the difference excludes 0."""
        return abs(self.difference.mean) > self.difference.ci95

    def __str__(self) -> str:
        d = self.difference
        return (
            f"a - b = {d.mean:+.2f} ± {d.ci95:.2f} points over {d.tasks} paired tasks "
            f"(a {self.a.mean:.2f}, b {self.b.mean:.2f}; a better on {self.a_better}, "
            f"b better on {self.b_better}, ties {self.ties})"
        )


def paired_difference(acc_a: np.ndarray | list[float], acc_b: np.ndarray | list[float]) -> PairedDifference:
    """Mean and 95% CI of ``a - b`` over the same tasks (a paired comparison), in percent.

    Pairing removes the variance of task difficulty, so the interval is much tighter than
    comparing two independent intervals.
    """
    a, b = np.asarray(acc_a, dtype=np.float64), np.asarray(acc_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs results on the same tasks, got {a.shape} and {b.shape}")
    return PairedDifference(
        difference=mean_and_ci(a - b),
        a=mean_and_ci(a),
        b=mean_and_ci(b),
        a_better=int((a > b).sum()),
        b_better=int((a < b).sum()),
        ties=int((a == b).sum()),
    )


def confusion_matrix(true_classes: np.ndarray, predicted_classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    true_classes = np.asarray(true_classes, dtype=np.int64).reshape(-1)
    predicted_classes = np.asarray(predicted_classes, dtype=np.int64).reshape(-1)
    if true_classes.shape != predicted_classes.shape:
        raise ValueError(f"{true_classes.size} true classes but {predicted_classes.size} predictions")
    for name, values in (("true", true_classes), ("predicted", predicted_classes)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} classes must lie in 0..{num_classes - 1}, got {sorted(set(values.tolist()))}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true_classes, predicted_classes), 1)
    return matrix


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Accuracy of each true class from a confusion matrix, in percent (NaN for a class never queried)."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 100.0 * np.diag(confusion) / np.maximum(totals, 1), np.nan)
