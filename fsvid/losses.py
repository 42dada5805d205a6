"""Training losses of the heads, as plain functions of a ``HeadOutput`` and labels.

Labels are logit columns: the task labels 0..way-1 (column ``c`` is the ``c``-th smallest
support label; use ``fsvid.heads.labels_to_columns`` for other label values).

- ``episode_cross_entropy``: cross-entropy of ``logits`` over the queries of a task. The
  released TRX/STRM code SUMS it over the queries (``reduction="sum"``, the default) and the
  trainer divides by ``tasks_per_batch`` (16) before accumulating gradients; ``"mean"`` averages.
- ``strm_loss``: STRM Eq. 10, ``CE(logits) + lambda * CE(qc_logits)``, lambda = 0.1 (just
  ``CE(logits)`` when the query-class classifier is switched off).
- ``mastaf_loss``: ``loss_global + lamda * loss_fewshot``, lamda = 0.5, where the few-shot loss is
  the cross-entropy at every position of ``dense_logits`` (queries, way, *positions) against the
  query's column, averaged, and the global loss the cross-entropy at every position of
  ``global_logits`` (queries, n_train_classes, *positions) against the query's class index among
  all training classes, averaged.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from fsvid.heads.common import HeadOutput

Reduction = Literal["sum", "mean"]


def _check_targets(name: str, scores: Tensor | None, targets: Tensor) -> Tensor:
    """Validate (queries,) integer targets against (queries, classes, ...) scores."""
    if scores is None:
        raise ValueError(f"the head output has no {name} (is this the right loss for this head?)")
    if targets.dim() != 1 or targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"{name}: expected (queries,) = ({scores.shape[0]},) labels, got shape {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point:
        raise ValueError(f"{name}: labels must be integers, got {targets.dtype}")
    n_classes = scores.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= n_classes):
        raise ValueError(f"{name}: labels must lie in 0..{n_classes - 1}, got {sorted(set(targets.tolist()))}")
    return targets.long().to(scores.device)


def episode_cross_entropy(output: HeadOutput, query_labels: Tensor, reduction: Reduction = "sum") -> Tensor:
    """Cross-entropy of ``output.logits`` (queries, way) against ``query_labels`` (queries,),
    summed (released code) or averaged over the queries."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    targets = _check_targets("logits", output.logits, query_labels)
    return F.cross_entropy(output.logits, targets, reduction=reduction)


def strm_loss(
    output: HeadOutput, query_labels: Tensor, qc_weight: float = 0.1, reduction: Reduction = "sum"
) -> Tensor:
    """STRM Eq. 10: ``CE(logits) + qc_weight * CE(qc_logits)`` (only the first term without a classifier)."""
    loss = episode_cross_entropy(output, query_labels, reduction)  # Eq. 7
    if output.qc_logits is None:
        return loss
    qc = HeadOutput(logits=output.qc_logits)
    return loss + qc_weight * episode_cross_entropy(qc, query_labels, reduction)  # Eq. 9, 10


def _dense_cross_entropy(name: str, scores: Tensor | None, targets: Tensor) -> Tensor:
    """Cross-entropy at every position of (queries, classes, *positions) scores, averaged."""
    targets = _check_targets(name, scores, targets)
    assert scores is not None
    positions = scores.shape[2:]
    dense_targets = targets.view(-1, *([1] * len(positions))).expand(targets.shape[0], *positions)
    return F.cross_entropy(scores, dense_targets)  # mean over queries and positions


def mastaf_fewshot_loss(output: HeadOutput, query_labels: Tensor) -> Tensor:
    """Cross-entropy at every position of ``dense_logits`` (queries, way, *positions) against
    each query's column, averaged over queries and positions."""
    return _dense_cross_entropy("dense_logits", output.dense_logits, query_labels)


def mastaf_global_loss(output: HeadOutput, global_labels: Tensor) -> Tensor:
    """Cross-entropy at every position of ``global_logits`` (queries, n_train_classes, *positions)
    against each query's index among all training classes, averaged."""
    return _dense_cross_entropy("global_logits", output.global_logits, global_labels)


def mastaf_loss(
    output: HeadOutput, query_labels: Tensor, global_labels: Tensor, fewshot_weight: float = 0.5
) -> Tensor:
    """MASTAF's multi-task loss: ``loss_global + fewshot_weight * loss_fewshot`` (lamda = 0.5)."""
    return mastaf_global_loss(output, global_labels) + fewshot_weight * mastaf_fewshot_loss(output, query_labels)
