"""Tests for the TRX head (fsvid/heads/trx.py). Fixture equivalence is in test_convert.py."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from fsvid.heads import TRXHead
from fsvid.heads.trx import TemporalCrossTransformer, frame_tuples, project_tuples
from head_helpers import make_task, parameters_without_gradient

L, D, DOUT = 8, 12, 10


def small_head(cardinalities=(2, 3), **kwargs) -> TRXHead:
    torch.manual_seed(0)
    return TRXHead(dim=D, out_dim=DOUT, seq_len=L, cardinalities=cardinalities, **kwargs)


@pytest.mark.parametrize("cardinality, count", [(1, 8), (2, 28), (3, 56), (4, 70)])
def test_frame_tuples_are_itertools_combinations(cardinality: int, count: int) -> None:
    tuples = frame_tuples(L, cardinality)
    assert tuples.shape == (count, cardinality)
    assert [tuple(t) for t in tuples.tolist()] == list(itertools.combinations(range(L), cardinality))


def test_frame_tuples_rejects_bad_cardinality() -> None:
    with pytest.raises(ValueError, match="cardinality"):
        frame_tuples(4, 5)


@pytest.mark.parametrize("cardinality", [1, 2, 3, 4])
def test_factorised_projection_equals_projecting_concatenations(cardinality: int) -> None:
    torch.manual_seed(1)
    frames = torch.randn(3, L, D)
    linear = nn.Linear(cardinality * D, DOUT)
    tuples = frame_tuples(L, cardinality)
    concatenated = torch.stack([frames[:, t].reshape(3, -1) for t in tuples], dim=1)  # (3, T, w*D)
    torch.testing.assert_close(project_tuples(frames, linear, tuples), linear(concatenated), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("way, shots, per_class", [(3, 1, 2), (5, 1, 1), (3, 5, 3), (5, 5, 2), (5, 10, 1)])
def test_output_shapes(way: int, shots: int, per_class: int) -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(way, shots, per_class, (L, D))
    out = head(support, support_labels, query)
    assert out.logits.shape == (way * per_class, way)
    assert out.extras["logits_per_cardinality"].shape == (way * per_class, way, 2)
    torch.testing.assert_close(out.logits, out.extras["logits_per_cardinality"].mean(-1))
    assert bool((out.logits <= 0).all())  # negative distances
    assert out.qc_logits is None and out.dense_logits is None


@pytest.mark.parametrize("cardinalities", [(1,), (2,), (4,), (2, 4), (2, 3, 4)])
def test_any_set_of_cardinalities(cardinalities) -> None:
    head = small_head(cardinalities).eval()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, D))
    out = head(support, support_labels, query)
    assert out.logits.shape == (3, 3)
    assert [t.shape[1] for t in out.extras["tuples"]] == list(cardinalities)


def test_attention_is_a_softmax_over_all_support_tuples_of_a_class() -> None:
    head = small_head((2,)).eval()
    head.keep_attention = True
    support, support_labels, query, _ = make_task(3, 2, 2, (L, D))
    attention = head(support, support_labels, query).extras["attention"][0]
    assert attention.shape == (6, 3, 28, 2, 28)  # (queries, way, T, shots, T)
    torch.testing.assert_close(attention.sum(dim=(-2, -1)), torch.ones(6, 3, 28))


def test_every_parameter_gets_a_gradient() -> None:
    head = small_head((2, 3)).train()
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, D))
    support.requires_grad_(True)
    out = head(support, support_labels, query)
    nn.functional.cross_entropy(out.logits, query_labels).backward()
    # The value bias shifts a query's values and its prototypes alike (the attention sums to 1),
    # so its gradient would be exactly zero: the head freezes it (see the next test), and every
    # parameter left trainable gets a gradient.
    frozen = [name for name, p in head.named_parameters() if not p.requires_grad]
    assert frozen == [f"cross_transformers.{i}.value_map.bias" for i in range(2)]
    assert parameters_without_gradient(head) == []
    assert support.grad is not None and bool(support.grad.abs().sum() > 0)


def test_logits_do_not_depend_on_the_value_bias() -> None:
    head = small_head((2, 3)).eval()
    support, support_labels, query, _ = make_task(3, 2, 2, (L, D))
    before = head(support, support_labels, query).logits
    with torch.no_grad():
        for transformer in head.cross_transformers:
            transformer.value_map.bias.add_(torch.randn(DOUT))
    torch.testing.assert_close(head(support, support_labels, query).logits, before)


def test_permuting_the_support_set_leaves_logits_unchanged() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(5, 3, 1, (L, D))
    perm = torch.randperm(len(support_labels), generator=torch.Generator().manual_seed(3))
    a = head(support, support_labels, query).logits
    b = head(support[perm], support_labels[perm], query).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_reversing_a_query_changes_its_logits() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, D))
    a = head(support, support_labels, query).logits
    b = head(support, support_labels, query.flip(1)).logits
    assert not torch.allclose(a, b, atol=1e-4)


def test_columns_follow_sorted_label_values() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, D))
    relabel = torch.tensor([40, 7, 12])  # label 0 -> 40, 1 -> 7, 2 -> 12; sorted: 7, 12, 40
    out = head(support, relabel[support_labels], query)
    reference = head(support, support_labels, query).logits
    torch.testing.assert_close(out.logits, reference[:, [1, 2, 0]])
    assert out.extras["classes"].tolist() == [7, 12, 40]


def test_batch_of_queries_scored_independently() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(3, 2, 2, (L, D))
    together = head(support, support_labels, query).logits
    alone = torch.cat([head(support, support_labels, query[i : i + 1]).logits for i in range(len(query))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_tuple_fraction_training_draws_random_subsets() -> None:
    head = small_head((2,), tuple_fraction=0.25).train()
    support, support_labels, query, _ = make_task(3, 1, 1, (L, D))
    torch.manual_seed(1)
    first = head(support, support_labels, query).extras["tuples"][0]
    torch.manual_seed(2)
    second = head(support, support_labels, query).extras["tuples"][0]
    assert first.shape == second.shape == (7, 2)  # round(0.25 * 28)
    assert not torch.equal(first, second)


def test_tuple_fraction_eval_all_uses_every_tuple() -> None:
    subset = small_head((2,), tuple_fraction=0.25).eval()
    full = small_head((2,)).eval()
    full.load_state_dict(subset.state_dict())
    support, support_labels, query, _ = make_task(3, 1, 2, (L, D))
    out = subset(support, support_labels, query)
    assert out.extras["tuples"][0].shape == (28, 2)
    torch.testing.assert_close(out.logits, full(support, support_labels, query).logits)


def test_tuple_fraction_eval_fixed_is_deterministic_and_uses_only_the_subset() -> None:
    head = small_head((2,), tuple_fraction=0.5, eval_tuples="fixed").eval()
    support, support_labels, query, _ = make_task(3, 1, 2, (L, D))
    a = head(support, support_labels, query)
    b = head(support, support_labels, query)
    torch.testing.assert_close(a.logits, b.logits)
    kept = a.extras["tuples"][0]
    assert kept.shape == (14, 2)
    # Same weights, all tuples, but the tuple list replaced by the subset: same logits.
    restricted = small_head((2,)).eval()
    restricted.load_state_dict(head.state_dict())
    restricted.cross_transformers[0].tuples = kept.clone()
    restricted.cross_transformers[0].num_kept = len(kept)
    torch.testing.assert_close(a.logits, restricted(support, support_labels, query).logits)
    other_seed = small_head((2,), tuple_fraction=0.5, eval_tuples="fixed", tuple_seed=5)
    assert not torch.equal(other_seed.cross_transformers[0].fixed_subset, head.cross_transformers[0].fixed_subset)


def test_tuples_buffer_is_not_saved_but_the_encoding_is() -> None:
    keys = small_head((2,)).state_dict().keys()
    assert "cross_transformers.0.positional_encoding.pe" in keys
    assert not any(k.endswith("tuples") or k.endswith("fixed_subset") for k in keys)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(tuple_fraction=0.0), "tuple_fraction"), (dict(eval_tuples="some"), "eval_tuples"), (dict(cardinalities=()), "cardinality")],
)
def test_bad_constructor_arguments(kwargs, message) -> None:
    args = dict(dim=D, out_dim=DOUT, seq_len=L) | kwargs
    with pytest.raises(ValueError, match=message):
        TRXHead(**args)


def test_bad_inputs_raise_clear_errors() -> None:
    head = small_head()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, D))
    with pytest.raises(ValueError, match="TRXHead query.*L=8, D=12"):
        head(support, support_labels, query[:, :5])
    with pytest.raises(ValueError, match="TRXHead support"):
        head(support[..., :4], support_labels, query)
    with pytest.raises(ValueError, match="same number of support videos"):
        head(support[:-1], support_labels[:-1], query)


def test_single_cardinality_module_direct_call() -> None:
    torch.manual_seed(0)
    transformer = TemporalCrossTransformer(D, DOUT, L, 2).eval()
    support = torch.randn(3, 2, L, D)  # (way, shots, L, D)
    logits, attention, tuples = transformer(support, torch.randn(4, L, D))
    assert logits.shape == (4, 3) and attention.shape == (4, 3, 28, 2, 28) and tuples.shape == (28, 2)
