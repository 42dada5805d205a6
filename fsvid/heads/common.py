"""What every few-shot head shares: the output object and support-set bookkeeping.

A head is called as ``head(support, support_labels, query, query_labels=None)``:

- ``support``: (support videos, ...) features, in any order of classes;
- ``support_labels``: (support videos,) integer task labels;
- ``query``: (queries, ...) features;
- ``query_labels``: (queries,) task labels, needed only by heads with a training-time
  auxiliary task (MASTAF's global classifier).

Logit column ``c`` always belongs to the ``c``-th smallest support label (for the usual
task labels ``0..way-1`` this is label ``c`` itself), exactly as the released code orders
classes with ``torch.unique``.

The last section holds what the heads' per-video precomputations (``PrecomputedPrototypes``,
``PrecomputedTRX``, ``PrecomputedSTRM``, each in its head's file) share: reading features in
chunks, the head's device, the eval-mode check and task index tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class HeadOutput:
    """The result of a head. ``logits`` is always set; the other fields are method-specific.

    - ``logits``: (queries, way), the score used for classification.
    - ``qc_logits``: (queries, way), STRM's query-class similarity classifier.
    - ``dense_logits``: (queries, way, *positions), MASTAF's per-position training score.
    - ``global_logits``: (queries, n_train_classes, *positions), MASTAF's global classifier.
    - ``extras``: anything a notebook may want to look at (attention maps, tuple matches).
    """

    logits: Tensor
    qc_logits: Tensor | None = None
    dense_logits: Tensor | None = None
    global_logits: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SupportGroups:
    """The support set regrouped by class.

    ``features``: (way, shots, ...) with class ``c`` the ``c``-th smallest label;
    ``classes``: (way,) the label values in column order.
    """

    features: Tensor
    classes: Tensor

    @property
    def way(self) -> int:
        return self.features.shape[0]

    @property
    def shots(self) -> int:
        return self.features.shape[1]


def group_support(support: Tensor, support_labels: Tensor) -> SupportGroups:
    """Sort the support set by label and reshape it to (way, shots, ...).

    Raises ``ValueError`` when the classes do not all have the same number of shots, or when
    labels and videos disagree in number.
    """
    if support_labels.dim() != 1:
        raise ValueError(f"support_labels must be 1-D, got shape {tuple(support_labels.shape)}")
    if support.shape[0] != support_labels.shape[0]:
        raise ValueError(
            f"support has {support.shape[0]} videos but support_labels has {support_labels.shape[0]} labels"
        )
    labels = support_labels.long()
    classes, counts = torch.unique(labels, sorted=True, return_counts=True)
    if not bool((counts == counts[0]).all()):
        per_class = {int(c): int(n) for c, n in zip(classes, counts)}
        raise ValueError(f"every class needs the same number of support videos, got {per_class}")
    order = torch.argsort(labels, stable=True)
    way, shots = classes.numel(), int(counts[0])
    features = support[order].reshape(way, shots, *support.shape[1:])  # (way, shots, ...)
    return SupportGroups(features=features, classes=classes)


def labels_to_columns(labels: Tensor, classes: Tensor) -> Tensor:
    """Map label values to logit columns (position of each label in ``classes``).

    Raises ``ValueError`` for a label that is not one of the support classes.
    """
    labels = labels.long()
    match = labels.unsqueeze(-1) == classes.to(labels.device).unsqueeze(0)  # (n, way)
    if not bool(match.any(-1).all()):
        missing = sorted({int(x) for x in labels[~match.any(-1)]})
        raise ValueError(f"labels {missing} are not among the support classes {classes.tolist()}")
    return match.long().argmax(-1)


# ---------------------------------------------------------------------------------------------
# Per-video precomputation: what the Precomputed* scorers share
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class ViewStore(Protocol):
    """Features kept per view and read shard by shard, e.g. :class:`fsvid.features.FeatureCache`."""

    def iter_view(self, view: int = 0) -> Iterator[tuple[int, Tensor]]:
        """``(start, features)`` per shard, float32 (videos of the shard, *feature_shape)."""
        ...


#: What a precomputed head reads: the test-view features of every video, (videos, ...), as
#: one tensor or from a feature store (its view 0).
FeatureSource = Tensor | ViewStore


def feature_chunks(features: FeatureSource, size: int, device: torch.device) -> Iterator[Tensor]:
    """Test-view features in pieces of at most ``size`` videos, float32 on ``device``."""
    if isinstance(features, Tensor):
        for piece in features.split(size):
            yield piece.to(device=device, dtype=torch.float32)
    else:
        for _, shard in features.iter_view(0):
            for piece in shard.split(size):
                yield piece.to(device)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def require_eval(module: nn.Module, name: str) -> None:
    """Raise ``ValueError`` when ``module`` is in training mode (dropout would break the
    per-video precomputation)."""
    if module.training:
        raise ValueError(
            f"{name} is in training mode: call .eval() first (the per-video precomputation holds only without dropout)"
        )


def as_index(indices: Tensor | np.ndarray, device: torch.device) -> Tensor:
    """Video indices (any integer array) as a long tensor on ``device``."""
    return torch.as_tensor(np.asarray(indices), dtype=torch.long, device=device)
