"""The heads' per-video forms for fast evaluation (``PrecomputedPrototypes``, ``PrecomputedTRX``,
``PrecomputedSTRM``) give the heads' logits on every task, and refuse what they cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsvid.data import TaskSampler
from fsvid.heads import PrecomputedPrototypes, PrecomputedSTRM, PrecomputedTRX, PrototypeHead, STRMHead, TRXHead
from head_helpers import randomise_norms


L, D, DOUT = 5, 12, 10


def random_tasks(num_videos: int, classes: int, way: int = 3, shot: int = 2, query: int = 2, count: int = 4):
    sampler = TaskSampler(np.arange(num_videos) % classes, [f"c{c}" for c in range(classes)], way, shot, query, seed=2)
    tasks = [sampler.task(i) for i in range(count)]
    return np.stack([t.support for t in tasks]), np.stack([t.query.reshape(-1) for t in tasks])


def head_on_tasks(head: torch.nn.Module, features: torch.Tensor, support: np.ndarray, query: np.ndarray) -> list:
    way, shot = support.shape[1:]
    labels = torch.arange(way).repeat_interleave(shot)
    with torch.no_grad():
        return [head(features[torch.from_numpy(s).reshape(-1)], labels, features[torch.from_numpy(q)])
                for s, q in zip(support, query)]


@pytest.mark.parametrize("options", [dict(), dict(cardinalities=(1, 2, 4)), dict(tuple_fraction=0.5, eval_tuples="fixed")])
def test_precomputed_trx_equals_the_head(options: dict) -> None:
    torch.manual_seed(3)
    head = TRXHead(D, DOUT, L, **options).eval()
    randomise_norms(head)
    features = torch.randn(24, L, D)
    support, query = random_tasks(24, 6)
    scorer = PrecomputedTRX(head, features, chunk_size=7)
    output = scorer(support, query)
    expected = head_on_tasks(head, features, support, query)
    assert output.logits.shape == (4, 6, 3)
    for logits, reference in zip(output.logits, expected):
        torch.testing.assert_close(logits, reference.logits, rtol=1e-5, atol=1e-5)
    per_cardinality = torch.stack([r.extras["logits_per_cardinality"] for r in expected])
    torch.testing.assert_close(output.extras["logits_per_cardinality"], per_cardinality, rtol=1e-5, atol=1e-5)


def test_precomputed_trx_refuses_training_mode_and_wrong_features() -> None:
    head = TRXHead(D, DOUT, L)
    with pytest.raises(ValueError, match="eval"):
        PrecomputedTRX(head, torch.randn(4, L, D))
    with pytest.raises(ValueError, match=r"L=5, D=12"):
        PrecomputedTRX(head.eval(), torch.randn(4, L + 1, D))


@pytest.mark.parametrize("options", [dict(), dict(patch_enrichment=None, frame_enrichment=None, joint_layers=1),
                                     dict(patch_enrichment="mlp_mixer", frame_enrichment="self_attention", cardinalities=(2, 3))])
def test_precomputed_strm_equals_the_head(options: dict) -> None:
    torch.manual_seed(4)
    head = STRMHead(D, DOUT, L, patches=4, **options).eval()
    randomise_norms(head)
    with torch.no_grad():
        for name, parameter in head.named_parameters():
            if name.endswith("gamma"):
                parameter.fill_(0.7)  # the released initial 0 would hide the attention
    features = torch.randn(24, L, 4, D)
    support, query = random_tasks(24, 6)
    output = PrecomputedSTRM(head, features, chunk_size=5)(support, query)
    for b, reference in enumerate(head_on_tasks(head, features, support, query)):
        torch.testing.assert_close(output.logits[b], reference.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(output.qc_logits[b], reference.qc_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(output.extras["test_logits"][b], reference.extras["test_logits"], rtol=1e-5, atol=1e-5)


def test_precomputed_strm_under_bfloat16_autocast_stays_close() -> None:
    torch.manual_seed(6)
    head = STRMHead(D, DOUT, L, patches=4).eval()
    features = torch.randn(24, L, 4, D)
    support, query = random_tasks(24, 6)
    output = PrecomputedSTRM(head, features, autocast_dtype=torch.bfloat16)(support, query)
    reference = torch.stack([r.extras["test_logits"] for r in head_on_tasks(head, features, support, query)])
    difference = float((output.extras["test_logits"] - reference).abs().max())
    assert 0.0 < difference < 0.05 * float(reference.abs().max())  # bfloat16 was used, and stays close


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_precomputed_prototypes_equal_the_head(distance: str) -> None:
    head = PrototypeHead(distance, cosine_scale=7.0).eval()
    features = torch.randn(24, L, 4, D)
    support, query = random_tasks(24, 6)
    output = PrecomputedPrototypes(head, features)(support, query)
    for logits, reference in zip(output.logits, head_on_tasks(head, features, support, query)):
        torch.testing.assert_close(logits, reference.logits, rtol=1e-5, atol=1e-5)
