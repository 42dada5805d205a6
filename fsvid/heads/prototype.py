"""Baseline: prototypes on frame means (a ProtoNet on averaged frame features).

A video's features are averaged over every axis between the video axis and the channel axis
(frames, and patches if present) into one D-vector; a class prototype is the mean of its K
support vectors; the logit of a query for a class is the negative squared Euclidean distance
to the prototype, or a scaled cosine similarity. Frame order is averaged away, so a query and
its time-reversed copy get the same logits (the point of the baseline).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import HeadOutput, group_support


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

    def forward(
        self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor | None = None
    ) -> HeadOutput:
        if support.shape[1:] != query.shape[1:]:
            raise ValueError(
                f"PrototypeHead: support {tuple(support.shape)} and query {tuple(query.shape)} differ after the video axis"
            )
        groups = group_support(video_vectors(support), support_labels)  # features (way, shots, D)
        prototypes = groups.features.mean(dim=1)  # (way, D)
        queries = video_vectors(query)  # (queries, D)
        if self.distance == "euclidean":
            logits = -(queries.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(dim=-1)  # (queries, way)
        else:
            logits = self.scale * F.normalize(queries, dim=-1) @ F.normalize(prototypes, dim=-1).T  # (queries, way)
        return HeadOutput(logits=logits, extras={"prototypes": prototypes, "classes": groups.classes})
