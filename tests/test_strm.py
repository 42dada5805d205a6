"""Tests for the STRM head (fsvid/heads/strm.py). Fixture equivalence is in test_convert.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fsvid.heads import STRM_ABLATIONS, STRMHead
from fsvid.heads.strm import MLPMixerEnrichment, SelfAttentionEnrichment
from fsvid.losses import strm_loss
from head_helpers import make_task, parameters_without_gradient

L, P, D, DOUT = 8, 4, 12, 10


def small_head(**kwargs) -> STRMHead:
    torch.manual_seed(0)
    head = STRMHead(dim=D, out_dim=DOUT, seq_len=L, patches=P, **kwargs)
    for module in head.modules():  # gamma starts at 0 (released code); open the attention path
        if isinstance(module, SelfAttentionEnrichment) and module.gamma is not None:
            nn.init.constant_(module.gamma, 0.7)
    return head


@pytest.mark.parametrize("way, shots, per_class", [(3, 1, 2), (5, 1, 1), (3, 5, 3), (5, 5, 2), (5, 10, 1)])
def test_output_shapes(way: int, shots: int, per_class: int) -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(way, shots, per_class, (L, P, D))
    out = head(support, support_labels, query)
    n = way * per_class
    assert out.logits.shape == out.qc_logits.shape == (n, way)
    assert bool((out.qc_logits <= 0).all())  # negative mean minimum distances
    torch.testing.assert_close(out.extras["test_logits"], out.logits + 0.1 * out.qc_logits)


def test_classifier_is_registered_trained_and_saved() -> None:
    head = small_head()
    names = {name for name, _ in head.named_parameters()}
    assert {"query_class.tuple_embeddings.0.linear.weight", "query_class.tuple_embeddings.0.linear.bias"} <= names
    assert "query_class.tuple_embeddings.0.linear.weight" in head.state_dict()
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, P, D))
    strm_loss(head(support, support_labels, query), query_labels).backward()
    assert head.query_class.tuple_embeddings[0].linear.weight.grad.abs().sum() > 0


def value_biases(head: STRMHead) -> list[str]:
    """The TRM's value-map biases: their gradient would be exactly zero (a shift of every value moves
    the prototypes alike; see test_trx.py), so the TRX head freezes them."""
    return [name for name, _ in head.named_parameters() if name.endswith("value_map.bias")]


def assert_trains_all_but_value_biases(head: STRMHead) -> None:
    assert [name for name, p in head.named_parameters() if not p.requires_grad] == value_biases(head)
    assert parameters_without_gradient(head) == []


@pytest.mark.parametrize("ablation", sorted(STRM_ABLATIONS))
def test_every_ablation_runs_and_trains_all_its_parameters(ablation: str) -> None:
    head = small_head(**STRM_ABLATIONS[ablation]).train()
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, P, D))
    out = head(support, support_labels, query)
    assert out.logits.shape == (6, 3)
    has_classifier = STRM_ABLATIONS[ablation].get("query_class", True)
    assert (out.qc_logits is not None) == has_classifier
    strm_loss(out, query_labels).backward()
    assert_trains_all_but_value_biases(head)


def test_ablation_switches_build_the_pieces() -> None:
    assert isinstance(small_head().patch_enrichment, SelfAttentionEnrichment)
    assert isinstance(small_head().frame_enrichment, MLPMixerEnrichment)
    trm = small_head(**STRM_ABLATIONS["TRM"])
    assert trm.patch_enrichment is None and trm.frame_enrichment is None and trm.query_class is None
    names = {n.split(".")[0] for n, _ in trm.named_parameters()}
    assert names == {"temporal_relation"}
    mixers = small_head(**STRM_ABLATIONS["PLE-MLP/FLE-SA"])
    assert isinstance(mixers.patch_enrichment, MLPMixerEnrichment)
    assert isinstance(mixers.frame_enrichment, SelfAttentionEnrichment)
    assert mixers.patch_enrichment.token_mixing[0].in_features == P
    joint = small_head(**STRM_ABLATIONS["Jnt-ST(2)"])
    assert len(joint.joint_enrichment) == 2 and joint.patch_enrichment is None
    assert joint.joint_enrichment[0].positional_encoding.pe.shape == (1, int(1.5 * L * P), D)
    assert joint.joint_enrichment[1].positional_encoding is None


def test_gamma_zero_at_initialisation_blocks_attention_gradients() -> None:
    torch.manual_seed(0)
    head = STRMHead(dim=D, out_dim=DOUT, seq_len=L, patches=P).train()
    support, support_labels, query, query_labels = make_task(3, 1, 1, (L, P, D))
    strm_loss(head(support, support_labels, query), query_labels).backward()
    ple = head.patch_enrichment
    assert float(ple.gamma.detach()) == 0.0 and float(ple.gamma.grad.abs()) > 0
    assert float(ple.query_proj.weight.grad.abs().sum()) == 0.0  # released behaviour, documented


def test_paper_variant_options() -> None:
    released = small_head().eval()
    paper = small_head(attention_scale=True, learnable_gamma=False).eval()
    assert paper.patch_enrichment.gamma is None and "patch_enrichment.gamma" not in paper.state_dict()
    state = {k: v for k, v in released.state_dict().items() if k != "patch_enrichment.gamma"}
    paper.load_state_dict(state)
    support, support_labels, query, _ = make_task(3, 1, 1, (L, P, D))
    assert not torch.allclose(released(support, support_labels, query).logits, paper(support, support_labels, query).logits)
    # The scaled attention is softmax(q k^T / sqrt(D)).
    paper.keep_attention = True
    attention = paper(support, support_labels, query).extras["patch_attention"]
    x = paper.patch_enrichment.positional_encoding(query[:1, 0])  # (1, P, D), dropout off
    scores = paper.patch_enrichment.query_proj(x) @ paper.patch_enrichment.key_proj(x).transpose(1, 2)
    torch.testing.assert_close(attention[3, 0], (scores / D**0.5).softmax(-1)[0])


def test_keep_attention_gives_row_stochastic_maps() -> None:
    head = small_head(frame_enrichment="self_attention").eval()
    head.keep_attention = True
    support, support_labels, query, _ = make_task(3, 2, 1, (L, P, D))
    out = head(support, support_labels, query)
    patch = out.extras["patch_attention"]
    assert patch.shape == (9, L, P, P)  # (videos, L, P, P)
    torch.testing.assert_close(patch.sum(-1), torch.ones(9, L, P))
    assert out.extras["frame_attention"].shape == (9, L, L)
    assert out.extras["attention"][0].shape == (3, 3, 28, 2, 28)


def test_every_parameter_gets_a_gradient_full_model() -> None:
    head = small_head().train()
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, P, D))
    support.requires_grad_(True)
    strm_loss(head(support, support_labels, query), query_labels).backward()
    assert_trains_all_but_value_biases(head)
    assert bool(support.grad.abs().sum() > 0)


def test_permuting_the_support_set_leaves_logits_unchanged() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(5, 2, 1, (L, P, D))
    perm = torch.randperm(len(support_labels), generator=torch.Generator().manual_seed(3))
    a = head(support, support_labels, query)
    b = head(support[perm], support_labels[perm], query)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.qc_logits, b.qc_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ablation", ["TRM", "STRM"])
def test_reversing_a_query_changes_its_logits(ablation: str) -> None:
    head = small_head(**STRM_ABLATIONS[ablation]).eval()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, P, D))
    a = head(support, support_labels, query).logits
    b = head(support, support_labels, query.flip(1)).logits
    assert not torch.allclose(a, b, atol=1e-4)


def test_query_class_similarity_of_a_copied_support_video_is_zero() -> None:
    head = small_head().eval()
    support, support_labels, query, _ = make_task(3, 2, 1, (L, P, D))
    copy = support[:1]  # the first support video, class support_labels[0]
    qc = head(support, support_labels, copy).qc_logits[0].detach()
    column = int(support_labels[0])
    assert abs(float(qc[column])) < 1e-3  # every tuple finds itself: min distance 0
    assert bool((qc[torch.arange(3) != column] < qc[column] - 1e-3).all())


def test_trm_only_accepts_frame_features() -> None:
    head = small_head(**STRM_ABLATIONS["TRM"]).eval()
    support, support_labels, query, _ = make_task(3, 1, 1, (L, P, D))
    from_patches = head(support, support_labels, query).logits
    from_frames = head(support.mean(2), support_labels, query.mean(2)).logits
    torch.testing.assert_close(from_patches, from_frames)


def test_bad_inputs_and_options_raise_clear_errors() -> None:
    head = small_head()
    support, support_labels, query, _ = make_task(3, 1, 1, (L, P, D))
    with pytest.raises(ValueError, match=r"STRMHead support must be \(videos, L, P, D\)"):
        head(support.mean(2), support_labels, query.mean(2))
    with pytest.raises(ValueError, match="P=4 patches"):
        head(support[:, :, :2], support_labels, query[:, :, :2])
    with pytest.raises(ValueError, match="joint_layers > 0 replaces PLE and FLE"):
        STRMHead(dim=D, out_dim=DOUT, seq_len=L, patches=P, joint_layers=1)
    with pytest.raises(ValueError, match="enrichment must be"):
        STRMHead(dim=D, out_dim=DOUT, seq_len=L, patches=P, frame_enrichment="conv")


def test_released_qc_mode_keeps_the_classifier_fixed_and_its_dropout_on() -> None:
    """``qc_mode="released"``: seeded random classifier weights that an optimiser step leaves
    unchanged and checkpoints do not hold (rebuilt from the seed), dropout on in eval mode,
    while the classifier's loss term still reaches the rest of the head."""
    head = small_head(qc_mode="released", qc_seed=5)
    linear = head.query_class.tuple_embeddings[0].linear
    assert not any(name.startswith("query_class.") for name, _ in head.named_parameters())
    assert not any(key.startswith("query_class.") for key in head.state_dict())
    before = linear.weight.clone()
    support, support_labels, query, query_labels = make_task(3, 2, 2, (L, P, D))
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    out = head(support, support_labels, query)
    out.qc_logits.sum().backward()  # the classifier's term alone
    enrichment_grads = [p.grad for p in head.patch_enrichment.parameters() if p.grad is not None]
    assert enrichment_grads and any(g.abs().sum() > 0 for g in enrichment_grads)
    optimizer.step()
    assert torch.equal(linear.weight, before) and not linear.weight.requires_grad
    # the same seed rebuilds the same weights (what loading a checkpoint relies on); another seed does not
    rebuilt = small_head(qc_mode="released", qc_seed=5)
    rebuilt.load_state_dict(head.state_dict())
    assert torch.equal(rebuilt.query_class.tuple_embeddings[0].linear.weight, before)
    other = small_head(qc_mode="released", qc_seed=6).query_class.tuple_embeddings[0].linear.weight
    assert not torch.equal(other, before)
    # eval mode: the classifier's scores stay stochastic (dropout), the TRM's do not
    head.eval()
    with torch.no_grad():
        first, second = head(support, support_labels, query), head(support, support_labels, query)
    assert not torch.equal(first.qc_logits, second.qc_logits)
    torch.testing.assert_close(first.logits, second.logits)
    trained = small_head().eval()
    with torch.no_grad():
        torch.testing.assert_close(trained(support, support_labels, query).qc_logits,
                                   trained(support, support_labels, query).qc_logits)
    with pytest.raises(ValueError, match="qc_mode"):
        small_head(qc_mode="frozen")
