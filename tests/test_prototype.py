"""Tests for the prototype baseline (fsvid/heads/prototype.py)."""

from __future__ import annotations

import math

import pytest
import torch

from fsvid.heads import PrototypeHead
from head_helpers import make_task, parameters_without_gradient

L, D = 8, 6


def test_euclidean_logits_by_hand() -> None:
    support = torch.tensor(
        [[[1.0, 0.0], [3.0, 0.0]], [[0.0, 2.0], [0.0, 4.0]], [[5.0, 5.0], [5.0, 5.0]], [[0.0, 1.0], [0.0, 5.0]]]
    )
    labels = torch.tensor([1, 0, 1, 0])  # class 0: videos (0, 3), (0, 3) -> (0, 3); class 1: (2, 0), (5, 5) -> (3.5, 2.5)
    query = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])  # mean (1, 1)
    out = PrototypeHead()(support, labels, query)
    expected = torch.tensor([[-(1.0 + 4.0), -(2.5**2 + 1.5**2)]])
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.extras["prototypes"], torch.tensor([[0.0, 3.0], [3.5, 2.5]]))


def test_cosine_logits_by_hand() -> None:
    support = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    query = torch.tensor([[[1.0, 1.0]]])
    head = PrototypeHead("cosine", cosine_scale=4.0)
    out = head(support, torch.tensor([0, 1]), query)
    torch.testing.assert_close(out.logits, torch.full((1, 2), 4.0 / math.sqrt(2.0)))


@pytest.mark.parametrize("way, shots, per_class", [(3, 1, 2), (5, 5, 3), (5, 10, 1)])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_shapes(way, shots, per_class, distance) -> None:
    support, support_labels, query, _ = make_task(way, shots, per_class, (L, D))
    out = PrototypeHead(distance)(support, support_labels, query)
    assert out.logits.shape == (way * per_class, way)


@pytest.mark.parametrize("shape", [(D,), (L, D), (L, 4, D)])
def test_any_number_of_middle_axes(shape) -> None:
    support, support_labels, query, _ = make_task(3, 2, 1, shape)
    out = PrototypeHead()(support, support_labels, query)
    flat_support = support.reshape(6, -1, D).mean(1)
    flat_query = query.reshape(3, -1, D).mean(1)
    torch.testing.assert_close(out.logits, PrototypeHead()(flat_support, support_labels, flat_query).logits)


def test_cosine_scale_is_learned() -> None:
    head = PrototypeHead("cosine")
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, D))
    torch.nn.functional.cross_entropy(head(support, support_labels, query).logits, query_labels).backward()
    assert parameters_without_gradient(head) == []
    assert [n for n, _ in head.named_parameters()] == ["scale"]
    assert list(PrototypeHead("cosine", learnable_scale=False).parameters()) == []


def test_gradient_reaches_the_features() -> None:
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, D))
    support.requires_grad_(True)
    torch.nn.functional.cross_entropy(PrototypeHead()(support, support_labels, query).logits, query_labels).backward()
    assert bool(support.grad.abs().sum() > 0)


def test_reversing_a_query_leaves_its_logits_unchanged() -> None:
    support, support_labels, query, _ = make_task(3, 2, 2, (L, D))
    head = PrototypeHead()
    torch.testing.assert_close(head(support, support_labels, query).logits, head(support, support_labels, query.flip(1)).logits)


def test_permuting_the_support_set_leaves_logits_unchanged() -> None:
    support, support_labels, query, _ = make_task(5, 3, 1, (L, D))
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(1))
    head = PrototypeHead("cosine")
    torch.testing.assert_close(head(support, support_labels, query).logits, head(support[perm], support_labels[perm], query).logits)


def test_bad_inputs() -> None:
    support, support_labels, query, _ = make_task(3, 2, 1, (L, D))
    with pytest.raises(ValueError, match="differ after the video axis"):
        PrototypeHead()(support, support_labels, query[:, :4])
    with pytest.raises(ValueError, match="distance must be"):
        PrototypeHead("manhattan")  # type: ignore[arg-type]
