"""Tests for the MASTAF head (fsvid/heads/mastaf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fsvid.heads.mastaf import MASTAFHead, convert_official_mastaf

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "mastaf_public.pt"


@pytest.fixture(scope="module")
def official() -> dict:
    if not FIXTURE.exists():
        pytest.skip(f"reference fixture not found: {FIXTURE}")
    return torch.load(FIXTURE, weights_only=True)


def make_task(way: int, shot: int, per_class: int, spatial: tuple[int, ...], channels: int, tokens: bool = False, seed: int = 0):
    """Random non-negative maps (like post-ReLU features) with shuffled, non-0..way-1 labels."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(20, generator=g)[:way] + 3  # arbitrary label values
    support_labels = classes.repeat_interleave(shot)[torch.randperm(way * shot, generator=g)]
    query_labels = classes.repeat_interleave(per_class)[torch.randperm(way * per_class, generator=g)]
    if tokens:
        (n,) = spatial
        support = torch.rand(way * shot, n, channels, generator=g)
        query = torch.rand(way * per_class, n, channels, generator=g)
    else:
        support = torch.rand(way * shot, channels, *spatial, generator=g)
        query = torch.rand(way * per_class, channels, *spatial, generator=g)
    return support, support_labels, query, query_labels


def randomise_batch_norm(head: MASTAFHead, seed: int = 1) -> MASTAFHead:
    """Give BatchNorm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    norm = head.meta_learner.norm
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(norm.num_features, generator=g))
        norm.bias.copy_(0.3 * torch.randn(norm.num_features, generator=g))
        norm.running_mean.copy_(0.2 * torch.randn(norm.num_features, generator=g))
        norm.running_var.copy_(0.5 + torch.rand(norm.num_features, generator=g))
    return head


# ----------------------------------------------------------------------------------------
# Equivalence with the released code
# ----------------------------------------------------------------------------------------
def test_fixture_equivalence(official: dict) -> None:
    head = convert_official_mastaf(official["official_state_dict"], official["config"])
    assert not head.training
    with torch.no_grad():
        out = head(official["support"], official["support_labels"], official["query"], official["query_labels"])
    torch.testing.assert_close(out.logits, official["logits"], rtol=1e-5, atol=1e-5)  # values ~13
    torch.testing.assert_close(out.dense_logits, official["dense_logits"], rtol=1e-5, atol=1e-5)  # ~8
    torch.testing.assert_close(out.global_logits, official["global_logits"], rtol=1e-5, atol=1e-6)  # ~0.2


def test_fixture_needs_batch_norm_on_query_self_attention(official: dict) -> None:
    """The fixture holds 15 queries, so the released rule applies BatchNorm to the query
    self-attention; skipping it ("never") must visibly change the result."""
    sd, cfg = official["official_state_dict"], official["config"]
    head = convert_official_mastaf(sd, cfg)
    head.query_self_norm = "never"
    with torch.no_grad():
        out = head(official["support"], official["support_labels"], official["query"])
    assert (out.logits - official["logits"]).abs().max() > 1e-4


def test_fixture_support_order_and_module_prefix(official: dict) -> None:
    """Shuffling the support set and DataParallel `module.` names change nothing."""
    sd = {k.replace("cam.", "cam.module.").replace("classifier.", "module.classifier."): v
          for k, v in official["official_state_dict"].items()}
    head = convert_official_mastaf(sd, official["config"])
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = head(official["support"][perm], official["support_labels"][perm], official["query"], official["query_labels"])
    torch.testing.assert_close(out.logits, official["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.global_logits, official["global_logits"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Shapes and layouts
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("way,shot,per_class", [(3, 1, 2), (5, 5, 1), (5, 1, 3), (3, 5, 2)])
def test_shapes_5d_with_time(way: int, shot: int, per_class: int) -> None:
    spatial, channels, n_global = (2, 3, 3), 8, 7
    support, s_labels, query, q_labels = make_task(way, shot, per_class, spatial, channels)
    head = MASTAFHead(positions=18, channels=channels, n_global=n_global).eval()
    out = head(support, s_labels, query, q_labels)
    nq = way * per_class
    assert out.logits.shape == (nq, way)
    assert out.dense_logits.shape == (nq, way, *spatial)
    assert out.global_logits.shape == (nq, n_global, *spatial)
    assert out.extras["self_attention_prototype"].shape == (way, *spatial)
    assert out.extras["self_attention_query"].shape == (nq, *spatial)
    assert out.extras["cross_attention_prototype"].shape == (nq, way, *spatial)
    assert out.extras["cross_attention_query"].shape == (nq, way, *spatial)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.dense_logits).all()
    # Each term is scale * cosine, so the fused score lies in [-(1 + alpha) * 7, (1 + alpha) * 7].
    assert out.logits.abs().max() <= 14 + 1e-4


def test_shapes_tokens() -> None:
    way, shot, per_class, n, channels = 3, 2, 2, 10, 8
    support, s_labels, query, q_labels = make_task(way, shot, per_class, (n,), channels, tokens=True)
    head = MASTAFHead(positions=n, channels=channels, n_global=4).eval()
    out = head(support, s_labels, query, q_labels)
    assert out.logits.shape == (way * per_class, way)
    assert out.dense_logits.shape == (way * per_class, way, n)
    assert out.global_logits.shape == (way * per_class, 4, n)


def test_token_and_channels_first_inputs_agree() -> None:
    """(videos, N, D) tokens are the same maps as (videos, D, N) channels-first input."""
    support, s_labels, query, q_labels = make_task(3, 2, 2, (12,), 8, tokens=True)
    head = MASTAFHead(positions=12, channels=8, n_global=4).eval()
    a = head(support, s_labels, query, q_labels)
    b = head(support.transpose(1, 2).reshape(6, 8, 3, 4), s_labels, query.transpose(1, 2).reshape(6, 8, 3, 4), q_labels)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.dense_logits, b.dense_logits.flatten(2))
    torch.testing.assert_close(a.global_logits, b.global_logits.flatten(2))


def test_columns_follow_sorted_labels_and_support_order_is_irrelevant() -> None:
    support, s_labels, query, q_labels = make_task(4, 3, 2, (2, 2, 2), 6)
    head = randomise_batch_norm(MASTAFHead(positions=8, channels=6, n_global=5)).eval()
    out = head(support, s_labels, query, q_labels)
    perm = torch.randperm(support.shape[0], generator=torch.Generator().manual_seed(5))
    out_perm = head(support[perm], s_labels[perm], query, q_labels)
    torch.testing.assert_close(out.logits, out_perm.logits)
    torch.testing.assert_close(out.dense_logits, out_perm.dense_logits)
    torch.testing.assert_close(out.global_logits, out_perm.global_logits)
    assert out.extras["classes"].tolist() == sorted(set(s_labels.tolist()))
    # Relabelling class values (keeping their order) changes nothing either.
    out_relabel = head(support, s_labels * 10, query, q_labels * 10)
    torch.testing.assert_close(out.logits, out_relabel.logits)


# ----------------------------------------------------------------------------------------
# Training: gradients, BatchNorm behaviour
# ----------------------------------------------------------------------------------------
def test_every_parameter_gets_a_gradient() -> None:
    support, s_labels, query, q_labels = make_task(3, 2, 2, (2, 2, 2), 6)
    head = MASTAFHead(positions=8, channels=6, n_global=5).train()
    support.requires_grad_(True)
    out = head(support, s_labels, query, q_labels)
    columns = torch.searchsorted(out.extras["classes"], q_labels)
    global_targets = torch.tensor([4, 0, 2, 2, 1, 3])
    dense_targets = columns[:, None, None, None].expand(-1, 2, 2, 2)
    loss = (
        F.cross_entropy(out.logits, columns)
        + F.cross_entropy(out.dense_logits, dense_targets)
        + F.cross_entropy(out.global_logits, global_targets[:, None, None, None].expand(-1, 2, 2, 2))
    )
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
    assert support.grad is not None and support.grad.abs().sum() > 0
    # In training mode BatchNorm updated its running statistics (four calls).
    assert int(head.meta_learner.norm.num_batches_tracked) == 4


def test_single_query_skips_batch_norm_in_query_self_attention() -> None:
    """Released rule: one query in the call -> no BatchNorm in the query self-attention,
    so a lone query scores as with query_self_norm="never"; batched queries differ."""
    support, s_labels, query, q_labels = make_task(3, 1, 2, (2, 2, 2), 6)
    head = randomise_batch_norm(MASTAFHead(positions=8, channels=6)).eval()
    never = randomise_batch_norm(MASTAFHead(positions=8, channels=6, query_self_norm="never")).eval()
    never.load_state_dict(head.state_dict())
    batched = head(support, s_labels, query).logits
    alone = torch.cat([head(support, s_labels, query[i : i + 1]).logits for i in range(query.shape[0])])
    torch.testing.assert_close(alone, never(support, s_labels, query).logits)
    assert (batched - alone).abs().max() > 1e-4
    # Training mode with a single query must not hit BatchNorm's one-value error.
    head.train()(support, s_labels, query[:1])


# ----------------------------------------------------------------------------------------
# Ablation switches
# ----------------------------------------------------------------------------------------
def test_neighbor_is_scaled_cosine_of_gap_features() -> None:
    support, s_labels, query, q_labels = make_task(3, 2, 2, (2, 3, 3), 5)
    head = MASTAFHead(positions=18, scores="neighbor", scale=5.0).eval()
    out = head(support, s_labels, query)
    order = torch.argsort(s_labels, stable=True)
    protos = support[order].reshape(3, 2, 5, 18).mean(1).mean(-1)  # (way, D)
    expected = 5.0 * F.cosine_similarity(query.flatten(2).mean(-1)[:, None], protos[None], dim=-1)
    torch.testing.assert_close(out.logits, expected)
    dense_expected = 5.0 * F.cosine_similarity(query.flatten(2)[:, None], protos[None, :, :, None], dim=2)
    torch.testing.assert_close(out.dense_logits, dense_expected.reshape(6, 3, 2, 3, 3))
    assert "cross_attention_query" not in out.extras


def test_fusion_is_cross_plus_alpha_self() -> None:
    support, s_labels, query, q_labels = make_task(3, 2, 2, (2, 2, 2), 6)
    fused = randomise_batch_norm(MASTAFHead(positions=8, alpha=0.7)).eval()
    state = fused.state_dict()
    cross = MASTAFHead(positions=8, scores="cross").eval()
    self_only = MASTAFHead(positions=8, scores="self").eval()
    cross.load_state_dict(state)
    self_only.load_state_dict(state)
    f, c, s = (h(support, s_labels, query) for h in (fused, cross, self_only))
    torch.testing.assert_close(f.logits, c.logits + 0.7 * s.logits)
    torch.testing.assert_close(f.dense_logits, c.dense_logits + 0.7 * s.dense_logits)
    # The self term does not depend on the class through attention; the cross term does.
    assert (c.logits - s.logits).abs().max() > 1e-4
    assert "cross_attention_query" not in s.extras and "self_attention_query" not in c.extras


def test_residual_switch() -> None:
    support, s_labels, query, _ = make_task(3, 1, 2, (2, 2, 2), 6)
    with_res = MASTAFHead(positions=8).eval()
    no_res = MASTAFHead(positions=8, residual=False).eval()
    no_res.load_state_dict(with_res.state_dict())
    a, b = with_res(support, s_labels, query), no_res(support, s_labels, query)
    # A = softmax + 1 sums to 1 + N over positions; without the residual it sums to 1.
    torch.testing.assert_close(a.extras["cross_attention_query"].flatten(2).sum(-1), torch.full((6, 3), 9.0))
    torch.testing.assert_close(b.extras["cross_attention_query"].flatten(2).sum(-1), torch.ones(6, 3))
    torch.testing.assert_close(
        a.extras["cross_attention_query"], b.extras["cross_attention_query"] + 1
    )
    assert (a.logits - b.logits).abs().max() > 1e-4


@pytest.mark.parametrize("kernel", ["uniform", "mean"])
def test_kernels_without_meta_learner_ignore_its_weights(kernel: str) -> None:
    support, s_labels, query, _ = make_task(3, 1, 2, (2, 2, 2), 6)
    head = MASTAFHead(positions=8, kernel=kernel).eval()
    before = head(support, s_labels, query)
    with torch.no_grad():
        for p in head.meta_learner.parameters():
            p.normal_()
    after = head(support, s_labels, query)
    torch.testing.assert_close(before.logits, after.logits)
    meta = MASTAFHead(positions=8).eval()
    assert (meta(support, s_labels, query).logits - before.logits).abs().max() > 1e-4
    if kernel == "uniform":
        # a[p] = mean_q R[p, q]: for self-attention R is the query map with itself.
        q = F.normalize(query.flatten(2), dim=1)
        r = q.transpose(1, 2) @ q  # (queries, N, N)
        expected = torch.softmax(r.mean(-1) / 0.025, -1) + 1
        torch.testing.assert_close(before.extras["self_attention_query"].flatten(1), expected)


def test_meta_learner_weights_matter() -> None:
    support, s_labels, query, _ = make_task(3, 1, 2, (2, 2, 2), 6)
    head = MASTAFHead(positions=8).eval()
    before = head(support, s_labels, query).logits
    with torch.no_grad():
        head.meta_learner.expand.weight.mul_(3.0)
    assert (head(support, s_labels, query).logits - before).abs().max() > 1e-5


def test_no_global_task() -> None:
    support, s_labels, query, q_labels = make_task(3, 1, 2, (2, 2, 2), 6)
    head = MASTAFHead(positions=8, channels=6, n_global=0).train()
    out = head(support, s_labels, query, q_labels)
    assert out.global_logits is None and head.global_classifier is None
    with pytest.raises(ValueError, match="no global task"):
        head(support, s_labels, query, q_labels, return_global=True)


def test_temperature_and_scale_are_used() -> None:
    support, s_labels, query, _ = make_task(3, 1, 2, (2, 2, 2), 6)
    base = MASTAFHead(positions=8).eval()
    hot = MASTAFHead(positions=8, temperature=10.0).eval()
    big = MASTAFHead(positions=8, scale=14.0).eval()
    hot.load_state_dict(base.state_dict())
    big.load_state_dict(base.state_dict())
    out = base(support, s_labels, query)
    # A very high temperature makes the attention nearly uniform: A ~ 1/N + 1.
    flat = hot(support, s_labels, query).extras["cross_attention_query"]
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 8 + 1), rtol=0, atol=5e-3)
    torch.testing.assert_close(big(support, s_labels, query).logits, 2 * out.logits)


def test_global_logits_pick_the_own_class_cross_attended_map() -> None:
    support, s_labels, query, q_labels = make_task(3, 1, 2, (2, 2, 2), 6)
    head = MASTAFHead(positions=8, channels=6, n_global=4).eval()
    out = head(support, s_labels, query, q_labels)
    columns = torch.searchsorted(out.extras["classes"], q_labels)
    a = out.extras["cross_attention_query"].flatten(2)[torch.arange(6), columns]  # (queries, N)
    attended = query.flatten(2) * a[:, None]  # (queries, D, N)
    w, b = head.global_classifier.weight, head.global_classifier.bias
    expected = torch.einsum("kd,qdn->qkn", w, attended) + b[None, :, None]
    torch.testing.assert_close(out.global_logits.flatten(2), expected)
    # Eval mode without query labels: no global logits, no error.
    assert head(support, s_labels, query).global_logits is None


# ----------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------
def test_error_on_position_mismatch() -> None:
    support, s_labels, query, _ = make_task(3, 1, 1, (2, 2, 2), 6)
    head = MASTAFHead(positions=49)
    with pytest.raises(ValueError, match=r"N=8 positions.*positions=49"):
        head(support, s_labels, query)


def test_error_on_layout_and_channel_mismatch() -> None:
    support, s_labels, query, _ = make_task(3, 1, 1, (2, 2, 2), 6)
    with pytest.raises(ValueError, match="share a layout"):
        MASTAFHead(positions=8)(support, s_labels, query.reshape(3, 6, 8))
    with pytest.raises(ValueError, match="channels=5"):
        MASTAFHead(positions=8, channels=5)(support, s_labels, query)
    with pytest.raises(ValueError, match="token features"):
        MASTAFHead(positions=8)(support.flatten(1), s_labels, query.flatten(1))


def test_error_on_missing_query_labels_for_global_logits() -> None:
    support, s_labels, query, _ = make_task(3, 1, 1, (2, 2, 2), 6)
    head = MASTAFHead(positions=8, channels=6, n_global=4)
    with pytest.raises(ValueError, match="query_labels"):
        head.eval()(support, s_labels, query, return_global=True)
    with pytest.raises(ValueError, match="query_labels"):
        head.train()(support, s_labels, query)  # training needs the global task's labels
    with pytest.raises(ValueError, match="not among the support classes"):
        head.eval()(support, s_labels, query, torch.tensor([100, 101, 102]))


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="needs channels"):
        MASTAFHead(positions=8, n_global=3)
    with pytest.raises(ValueError, match="kernel"):
        MASTAFHead(positions=8, kernel="learned")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores"):
        MASTAFHead(positions=8, scores="both")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# Converter
# ----------------------------------------------------------------------------------------
def official_like_state_dict(positions: int = 8, channels: int = 6, n_global: int = 4) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    sd = {
        "cam.conv1.conv.weight": torch.randn(6, positions, 1, 1, generator=g),
        "cam.conv1.conv.bias": torch.randn(6, generator=g),
        "cam.conv1.bn.weight": torch.rand(6, generator=g) + 0.5,
        "cam.conv1.bn.bias": torch.randn(6, generator=g),
        "cam.conv1.bn.running_mean": torch.randn(6, generator=g),
        "cam.conv1.bn.running_var": torch.rand(6, generator=g) + 0.5,
        "cam.conv1.bn.num_batches_tracked": torch.tensor(3),
        "cam.conv2.weight": torch.randn(positions, 6, 1, 1, generator=g),
        "cam.conv2.bias": torch.randn(positions, generator=g),
        "classifier.weight": torch.randn(n_global, channels, 1, 1, 1, generator=g),
        "classifier.bias": torch.randn(n_global, generator=g),
    }
    cfg = {"way": 3, "shot": 1, "nq": 1, "C": channels, "T": 2, "H": 2, "W": 2, "alpha": 0.5, "scale_cls": 7.0, "n_global": n_global}
    return sd, cfg


def test_converter_copies_everything() -> None:
    sd, cfg = official_like_state_dict()
    head = convert_official_mastaf({**sd, "base.layer1.0.conv1.weight": torch.zeros(1)}, cfg)  # backbone ignored
    assert not head.training and head.alpha == 0.5 and head.positions == 8
    torch.testing.assert_close(head.meta_learner.reduce.weight, sd["cam.conv1.conv.weight"][:, :, 0, 0])
    torch.testing.assert_close(head.meta_learner.norm.running_var, sd["cam.conv1.bn.running_var"])
    torch.testing.assert_close(head.meta_learner.expand.weight, sd["cam.conv2.weight"][:, :, 0, 0])
    torch.testing.assert_close(head.global_classifier.weight, sd["classifier.weight"].flatten(1))
    assert int(head.meta_learner.norm.num_batches_tracked) == 3


def test_converter_errors() -> None:
    sd, cfg = official_like_state_dict()
    missing = {k: v for k, v in sd.items() if k != "cam.conv2.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['cam.conv2.bias'\]"):
        convert_official_mastaf(missing, cfg)
    with pytest.raises(ValueError, match=r"unexpected keys \['cam.extra.weight'\]"):
        convert_official_mastaf({**sd, "cam.extra.weight": torch.zeros(1)}, cfg)
    with pytest.raises(ValueError, match="unexpected keys.*classifier.weight"):
        convert_official_mastaf(sd, {**cfg, "n_global": 0})
    with pytest.raises(ValueError, match="cam.conv2.weight|meta_learner.expand.weight"):
        convert_official_mastaf({**sd, "cam.conv2.weight": torch.randn(9, 6, 1, 1)}, cfg)
    with pytest.raises(ValueError, match="'T'"):
        convert_official_mastaf(sd, {k: v for k, v in cfg.items() if k != "T"})


def test_scores_under_bfloat16_autocast_equal_float32() -> None:
    """The head turns autocast off: its logits under CPU bfloat16 autocast equal the float32
    ones (without that guard the x7 cosines and /0.025 softmax of bfloat16 products moved the
    logits by up to ~0.03 and changed 40-50% of predictions, benchmarks/mastaf_autocast.py)."""
    torch.manual_seed(0)
    head = MASTAFHead(positions=49, channels=256, n_global=6).train()
    randomise_batch_norm(head)
    head.eval()
    support, support_labels, query, query_labels = make_task(5, 1, 3, (7, 7), 256)
    reference = head(support, support_labels, query, query_labels, return_global=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(support, support_labels, query, query_labels, return_global=True)
        unguarded = head._scores(support, support_labels, query, query_labels, True)
    assert mixed.logits.dtype == mixed.dense_logits.dtype == mixed.global_logits.dtype == torch.float32
    torch.testing.assert_close(mixed.logits, reference.logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mixed.dense_logits, reference.dense_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mixed.global_logits, reference.global_logits, rtol=1e-6, atol=1e-6)
    assert torch.equal(mixed.logits.argmax(1), reference.logits.argmax(1))
    # the unguarded arithmetic really is affected by autocast (what the guard prevents)
    assert (unguarded.logits.float() - reference.logits).abs().max() > 1e-4
    # a bfloat16 backbone output is accepted and scored in float32
    low = head(support.bfloat16(), support_labels, query.bfloat16())
    assert low.logits.dtype == torch.float32
