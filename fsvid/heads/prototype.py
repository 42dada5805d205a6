"""Baseline: prototypes on frame means (a ProtoNet on averaged frame features).

A video's features are averaged over every axis between the video axis and the channel axis
(frames, and patches if present) into one D-vector; a class prototype is the mean of its K
support vectors; the logit of a query for a class is the negative squared Euclidean distance
to the prototype, or a scaled cosine similarity. Frame order is averaged away, so a query and
its time-reversed copy get the same logits (the point of the baseline).

:class:`PrecomputedPrototypes` is the same head for fast evaluation: each video's mean vector
is computed once, and a task costs only its prototype means and the logits.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import FeatureSource, HeadOutput, as_index, feature_chunks, group_support, module_device


def video_vectors(x: Tensor) -> Tensor:
    """(videos, ..., D) -> (videos, D): the mean over all middle axes (frames, patches)."""
    if x.dim() < 2:
        raise ValueError(f"expected features (videos, ..., D), got shape {tuple(x.shape)}")
    return x.flatten(1, -2).mean(dim=1) if x.dim() > 2 else x


class PrototypeHead(nn.Module):
    """Frame-mean prototypes; ``distance`` is "euclidean" (logit = -||q - p||^2) or "cosine"
    (logit = scale * cos(q, p), the scale a learnable scalar unless ``learnable_scale=False``).

    Input: support (support videos, L, D) or (videos, L, P, D) or (videos, D), in any class order.
    ``extras``: ``prototypes`` (way, D) and ``classes``.
    """

    def __init__(
        self,
        distance: Literal["euclidean", "cosine"] = "euclidean",
        cosine_scale: float = 10.0,
        learnable_scale: bool = True,
    ) -> None:
        super().__init__()
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
        self.distance = distance
        if distance == "cosine" and learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(cosine_scale)))
        else:
            self.register_buffer("scale", torch.tensor(float(cosine_scale)))

    def logits(self, queries: Tensor, prototypes: Tensor) -> Tensor:
        """Query vectors (..., queries, D) against prototypes (..., way, D) -> (..., queries, way):
        ``-||q - p||^2`` or ``scale * cos(q, p)``; the leading axes (e.g. tasks) are batched."""
        if self.distance == "euclidean":
            return -(queries.unsqueeze(-2) - prototypes.unsqueeze(-3)).pow(2).sum(dim=-1)
        return self.scale * F.normalize(queries, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(-1, -2)

    def forward(
        self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor | None = None
    ) -> HeadOutput:
        if support.shape[1:] != query.shape[1:]:
            raise ValueError(
                f"PrototypeHead: support {tuple(support.shape)} and query {tuple(query.shape)} differ after the video axis"
            )
        groups = group_support(video_vectors(support), support_labels)  # features (way, shots, D)
        prototypes = groups.features.mean(dim=1)  # (way, D)
        logits = self.logits(video_vectors(query), prototypes)  # (queries, way)
        return HeadOutput(logits=logits, extras={"prototypes": prototypes, "classes": groups.classes})


# ---------------------------------------------------------------------------------------------
# Fast evaluation: per-video mean vectors, then tasks from video indices
# ---------------------------------------------------------------------------------------------


class PrecomputedPrototypes:
    """:class:`PrototypeHead` from per-video mean vectors.

    ``features``: the test-view features (videos, ..., D), a tensor or a feature store
    (:class:`fsvid.features.FeatureCache`), reduced to one vector per video
    (:func:`video_vectors`) in pieces of ``chunk_size`` videos.

    ``scorer(support, query)``: support (tasks, way, shots) and query (tasks, queries) video
    indices -> ``HeadOutput`` with logits (tasks, queries, way), column ``c`` = row ``c`` of
    ``support``. Equal to the head on each task.
    """

    def __init__(self, head: PrototypeHead, features: FeatureSource, chunk_size: int = 256) -> None:
        device = module_device(head)
        self.head = head
        with torch.inference_mode():
            chunks = feature_chunks(features, chunk_size, device)
            self.vectors = torch.cat([video_vectors(chunk) for chunk in chunks])  # (videos, D)

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        support, query = as_index(support, self.vectors.device), as_index(query, self.vectors.device)
        prototypes = self.vectors[support].mean(dim=2)  # (tasks, way, D)
        queries = self.vectors[query]  # (tasks, queries, D)
        return HeadOutput(logits=self.head.logits(queries, prototypes))  # (tasks, queries, way)
