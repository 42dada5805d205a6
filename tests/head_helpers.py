"""Shared helpers for the head tests: random few-shot tasks, gradient checks, LayerNorm settings."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


def make_task(
    way: int,
    shots: int,
    queries_per_class: int,
    feature_shape: tuple[int, ...],
    seed: int = 0,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A random task: support (way*shots, *feature_shape) in shuffled class order, its labels,
    query (way*queries_per_class, *feature_shape) and its labels. ``labels`` (way,) gives the
    label values (default 0..way-1)."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(way) if labels is None else labels
    support_labels = classes.repeat_interleave(shots)[torch.randperm(way * shots, generator=g)]
    query_labels = classes.repeat_interleave(queries_per_class)
    support = torch.randn(way * shots, *feature_shape, generator=g)
    query = torch.randn(way * queries_per_class, *feature_shape, generator=g)
    return support, support_labels, query, query_labels


def parameters_without_gradient(module: nn.Module) -> list[str]:
    """Names of trainable parameters whose gradient is missing or exactly zero."""
    return [
        name
        for name, parameter in module.named_parameters()
        if parameter.requires_grad and (parameter.grad is None or not bool(parameter.grad.abs().sum() > 0))
    ]


def randomise_norms(module: torch.nn.Module) -> None:
    """LayerNorm gains and shifts away from 1 and 0, so the LayerNorm algebra is really tested."""
    for norm in module.modules():
        if isinstance(norm, torch.nn.LayerNorm):
            torch.nn.init.normal_(norm.weight, 1.0, 0.3)
            torch.nn.init.normal_(norm.bias, 0.0, 0.3)
