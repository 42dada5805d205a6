"""Accuracy and its 95% confidence interval, paired differences, confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fsvid.engine.metrics import confusion_matrix, mean_and_ci, paired_difference, per_class_accuracy


def test_ci_is_1_96_population_std_over_sqrt_n_in_percent():
    accuracy = mean_and_ci([1.0, 0.6, 0.8, 0.6])
    # mean 0.75; population variance (0.0625 + 0.0225 + 0.0025 + 0.0225) / 4 = 0.0275
    assert accuracy.mean == pytest.approx(75.0)
    assert accuracy.ci95 == pytest.approx(100 * 1.96 * math.sqrt(0.0275) / 2)  # 16.2515 points
    assert accuracy.ci95 != pytest.approx(100 * 1.96 * math.sqrt(0.11 / 3) / 2)  # not the sample std
    assert accuracy.tasks == 4


def test_ci_matches_numpy_on_many_tasks():
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 6, size=10_000) / 5  # 5-way, 1 query per class
    result = mean_and_ci(acc)
    assert result.mean == pytest.approx(100 * acc.mean())
    assert result.ci95 == pytest.approx(100 * 1.96 * acc.std(ddof=0) / 100.0)
    assert mean_and_ci(np.ones(7)).ci95 == 0.0


def test_mean_and_ci_refuses_empty_or_nan():
    with pytest.raises(ValueError, match="non-empty"):
        mean_and_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_and_ci([0.5, float("nan")])


def test_paired_difference_uses_per_task_differences():
    a = np.array([1.0, 0.8, 0.6, 1.0, 0.4])
    b = np.array([0.8, 0.8, 0.4, 0.8, 0.4])
    paired = paired_difference(a, b)
    d = a - b
    assert paired.difference.mean == pytest.approx(100 * d.mean())
    assert paired.difference.ci95 == pytest.approx(100 * 1.96 * d.std() / math.sqrt(5))
    assert (paired.a_better, paired.b_better, paired.ties) == (3, 0, 2)
    assert paired.a.mean == pytest.approx(76.0) and paired.b.mean == pytest.approx(64.0)
    # the paired interval is tighter than either accuracy's own interval
    assert paired.difference.ci95 < min(paired.a.ci95, paired.b.ci95)
    assert paired.significant
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference(a, b[:4])


def test_confusion_matrix_and_per_class_accuracy():
    true = [0, 0, 1, 1, 1, 2]
    predicted = [0, 1, 1, 1, 0, 2]
    matrix = confusion_matrix(true, predicted, num_classes=4)
    assert matrix.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    per_class = per_class_accuracy(matrix)
    assert per_class[:3] == pytest.approx([50.0, 200 / 3, 100.0])
    assert np.isnan(per_class[3])  # never queried
    with pytest.raises(ValueError, match="0..3"):
        confusion_matrix([0, 4], [0, 0], num_classes=4)
