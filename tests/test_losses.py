"""Tests for fsvid/losses.py, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from fsvid.heads import HeadOutput
from fsvid.losses import (
    episode_cross_entropy,
    mastaf_fewshot_loss,
    mastaf_global_loss,
    mastaf_loss,
    strm_loss,
)


def hand_cross_entropy(row: list[float], target: int) -> float:
    """-log softmax(row)[target], written out."""
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


LOGITS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
QC = [[0.2, 0.1, -0.4], [1.5, 0.0, 0.3]]
LABELS = torch.tensor([1, 0])


def test_episode_cross_entropy_sum_and_mean() -> None:
    out = HeadOutput(logits=torch.tensor(LOGITS))
    expected = hand_cross_entropy(LOGITS[0], 1) + hand_cross_entropy(LOGITS[1], 0)
    assert episode_cross_entropy(out, LABELS).item() == pytest.approx(expected, rel=1e-6)
    assert episode_cross_entropy(out, LABELS, "mean").item() == pytest.approx(expected / 2, rel=1e-6)


def test_strm_loss_adds_a_tenth_of_the_classifier_loss() -> None:
    out = HeadOutput(logits=torch.tensor(LOGITS), qc_logits=torch.tensor(QC))
    ce = hand_cross_entropy(LOGITS[0], 1) + hand_cross_entropy(LOGITS[1], 0)
    ce_qc = hand_cross_entropy(QC[0], 1) + hand_cross_entropy(QC[1], 0)
    assert strm_loss(out, LABELS).item() == pytest.approx(ce + 0.1 * ce_qc, rel=1e-6)
    assert strm_loss(out, LABELS, qc_weight=0.4, reduction="mean").item() == pytest.approx((ce + 0.4 * ce_qc) / 2, rel=1e-6)
    without_classifier = HeadOutput(logits=torch.tensor(LOGITS))
    assert strm_loss(without_classifier, LABELS).item() == pytest.approx(ce, rel=1e-6)


def test_mastaf_losses_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(2, 3, 1, 2, 2, generator=g)  # (queries, way, T, H, W)
    global_logits = torch.randn(2, 4, 1, 2, 2, generator=g)  # (queries, n_train, T, H, W)
    global_labels = torch.tensor([3, 1])
    out = HeadOutput(logits=dense.mean((2, 3, 4)), dense_logits=dense, global_logits=global_logits)

    def averaged(scores: torch.Tensor, targets: torch.Tensor) -> float:
        terms = [
            hand_cross_entropy(scores[q, :, 0, i, j].tolist(), int(targets[q]))
            for q in range(2)
            for i in range(2)
            for j in range(2)
        ]
        return sum(terms) / len(terms)

    fewshot = averaged(dense, LABELS)
    global_ = averaged(global_logits, global_labels)
    assert mastaf_fewshot_loss(out, LABELS).item() == pytest.approx(fewshot, rel=1e-5)
    assert mastaf_global_loss(out, global_labels).item() == pytest.approx(global_, rel=1e-5)
    assert mastaf_loss(out, LABELS, global_labels).item() == pytest.approx(global_ + 0.5 * fewshot, rel=1e-5)
    assert mastaf_loss(out, LABELS, global_labels, fewshot_weight=2.0).item() == pytest.approx(global_ + 2 * fewshot, rel=1e-5)


def test_losses_backpropagate() -> None:
    logits = torch.tensor(LOGITS, requires_grad=True)
    episode_cross_entropy(HeadOutput(logits=logits), LABELS).backward()
    softmax = torch.tensor(LOGITS).softmax(-1)
    torch.testing.assert_close(logits.grad, softmax - torch.nn.functional.one_hot(LABELS, 3).float())


def test_bad_labels_and_missing_fields() -> None:
    out = HeadOutput(logits=torch.tensor(LOGITS))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        episode_cross_entropy(out, torch.tensor([1, 3]))
    with pytest.raises(ValueError, match=r"expected \(queries,\)"):
        episode_cross_entropy(out, torch.tensor([1, 0, 2]))
    with pytest.raises(ValueError, match="integers"):
        episode_cross_entropy(out, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="reduction"):
        episode_cross_entropy(out, LABELS, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no dense_logits"):
        mastaf_fewshot_loss(out, LABELS)
    with pytest.raises(ValueError, match="no global_logits"):
        mastaf_global_loss(out, LABELS)
