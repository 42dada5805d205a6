"""Whole models: every backbone x head pairing gives (queries, way) logits, built from one config."""

import pytest
import torch

from fsvid.config import load_config
from fsvid.models import (
    HEAD_INPUT,
    FewShotModel,
    _backbone_output_shape,
    build_head,
    build_model,
    prediction_scores,
)

# (backbone, frames, crop, cardinalities): tiny inputs each backbone accepts. The 3D backbones
# halve time in every stage (4 frames -> 1 time step), so their tuples have one element.
BACKBONES = [
    ("small_cnn", 4, 32, "[2]"),
    ("resnet18", 4, 64, "[2]"),
    ("r3d_18", 4, 64, "[1]"),
    ("r2plus1d_18", 4, 64, "[1]"),
    ("r3d50", 4, 64, "[1]"),
    ("vit_b_16", 2, 224, "[1, 2]"),
    ("efficientnet_lite0", 4, 64, "[2]"),
]
METHODS = list(HEAD_INPUT)


@pytest.mark.parametrize("backbone, frames, crop, cardinalities", BACKBONES)
def test_every_backbone_feeds_every_head(backbone, frames, crop, cardinalities):
    way, shot, queries = 2, 1, 1
    torch.manual_seed(0)
    support = torch.rand(way * shot, frames, 3, crop, crop)
    query = torch.rand(way * queries, frames, 3, crop, crop)
    labels = torch.arange(way).repeat_interleave(shot)
    query_labels = torch.arange(way)
    backbone_model = None
    for method in METHODS:
        overrides = [
            f"model.method={method}",
            f"model.backbone={backbone}",
            f"data.frames={frames}",
            f"data.crop={crop}",
            f"data.resize={crop}",
            "model.projection_dim=16",
            f"model.cardinalities={cardinalities}",
        ]
        if backbone != "small_cnn":
            overrides += ["model.widths=null", "model.coordinates=false", "model.feature_dim=null"]
        config = load_config("demo_base", overrides)
        if backbone_model is None:  # build each (large) backbone once, then swap heads
            model = backbone_model = build_model(config, n_global=7)
        else:
            backbone_model.backbone.output = HEAD_INPUT[method]
            shape = _backbone_output_shape(backbone_model.backbone, frames, crop)
            model = FewShotModel(backbone_model.backbone, build_head(config.model, shape, frames, 7), method)
        model.train(method == "mastaf")  # MASTAF's global head is exercised in training mode
        with torch.no_grad():
            output = model(support, labels, query, query_labels)
        assert output.logits.shape == (way * queries, way), (backbone, method)
        assert prediction_scores(output).shape == (way * queries, way)
        assert torch.isfinite(output.logits).all(), (backbone, method)
        if method == "mastaf":
            assert output.global_logits.shape[:2] == (way * queries, 7)


def test_small_cnn_options_are_refused_for_other_backbones():
    with pytest.raises(ValueError, match="small_cnn backbone only"):  # at config validation now
        load_config("demo_base", ["model.backbone=resnet18", "model.feature_dim=null"])
    config = load_config("demo_base", ["model.backbone=resnet18", "model.feature_dim=null", "model.widths=null",
                                       "model.coordinates=false"])
    config.model.coordinates = True  # a config changed in code after validation: build_model checks too
    with pytest.raises(ValueError, match="small_cnn backbone only"):
        build_model(config)


def test_tuples_longer_than_the_backbones_time_axis_are_refused():
    config = load_config("demo_base", ["model.backbone=r3d_18", "model.widths=null", "model.coordinates=false",
                                       "model.feature_dim=null", "data.frames=4", "data.crop=64", "data.resize=64",
                                       "model.cardinalities=[2]"])
    with pytest.raises(ValueError, match="cardinality must be between 1 and seq_len=1"):
        build_model(config)


class _Features(torch.nn.Module):
    """A head that returns what the backbone gave it."""

    def forward(self, support, support_labels, query, query_labels=None):
        return support, query


def _released_pass_model(chunks: int) -> FewShotModel:
    config = load_config("synthetic_trx", ["data.frames=3", "data.crop=32", "data.resize=32"])
    backbone = build_model(config).backbone
    return FewShotModel(backbone, _Features(), "trx", passes="released", chunks=chunks)


def test_released_backbone_passes_give_per_chunk_batch_norm_statistics():
    """``backbone_passes: released`` in training mode: support and query in separate passes,
    each split like DataParallel (torch.chunk over the flattened frames), BatchNorm statistics
    per chunk, running statistics from each pass's first chunk only. Compared with running the
    chunks through a copy of the backbone by hand (chunks of whole videos here: 4 support
    videos x 3 frames = 12 frames, 2 chunks of 6 = 2 videos; 2 queries -> 2 chunks of 1 video)."""
    import copy

    torch.manual_seed(0)
    support, query = torch.rand(4, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    labels = torch.arange(2).repeat_interleave(2)
    model = _released_pass_model(chunks=2).train()
    by_hand = copy.deepcopy(model.backbone).train()
    discard = copy.deepcopy(model.backbone).train()  # chunks whose running statistics are dropped
    support_features, query_features = model(support, labels, query)
    expected_support = torch.cat([by_hand(support[:2]), discard(support[2:])])
    expected_query = torch.cat([by_hand(query[:1]), discard(query[1:])])
    torch.testing.assert_close(support_features, expected_support)
    torch.testing.assert_close(query_features, expected_query)
    bn, bn_by_hand = model.backbone.blocks[0].norm, by_hand.blocks[0].norm
    torch.testing.assert_close(bn.running_mean, bn_by_hand.running_mean)
    torch.testing.assert_close(bn.running_var, bn_by_hand.running_var)
    assert int(bn.num_batches_tracked) == int(bn_by_hand.num_batches_tracked) == 2
    # ... and differ from the joint pass, which normalises over all 18 frames together
    joint = copy.deepcopy(model)
    joint.passes = "joint"
    joint_support, _ = joint(support, labels, query)
    assert (joint_support - support_features).abs().max() > 1e-3
    # the layers are back to their usual forward afterwards
    assert "forward" not in vars(bn)


def test_released_backbone_passes_equal_the_joint_pass_in_eval_mode():
    torch.manual_seed(1)
    support, query = torch.rand(4, 3, 3, 32, 32), torch.rand(3, 3, 3, 32, 32)
    labels = torch.arange(2).repeat_interleave(2)
    model = _released_pass_model(chunks=4)
    for block in model.backbone.blocks:  # running statistics away from their initial 0 / 1
        block.norm.running_mean.uniform_(-0.5, 0.5)
        block.norm.running_var.uniform_(0.5, 2.0)
    model.eval()
    released = model(support, labels, query)
    model.passes = "joint"
    joint = model(support, labels, query)
    torch.testing.assert_close(released[0], joint[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(released[1], joint[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="passes must be one of joint, released"):
        FewShotModel(model.backbone, _Features(), "trx", passes="split")


def test_chunked_batch_norm_splits_like_torch_chunk():
    """10 frames in 4 chunks: torch.chunk (DataParallel's scatter) gives 3, 3, 3, 1 frames."""
    from fsvid.backbones.batchnorm import chunked_batch_norm

    torch.manual_seed(2)
    x = torch.randn(10, 3, 5, 5) * 2 + 1
    layer = torch.nn.BatchNorm2d(3).train()
    with chunked_batch_norm(layer, 4):
        out = layer(x)
    for part, expected_part in zip(out.split([3, 3, 3, 1]), x.split([3, 3, 3, 1])):
        mean = expected_part.mean(dim=(0, 2, 3), keepdim=True)
        var = expected_part.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        torch.testing.assert_close(part, (expected_part - mean) / torch.sqrt(var + layer.eps))
    first = x[:3]
    torch.testing.assert_close(layer.running_mean, 0.1 * first.mean(dim=(0, 2, 3)))
    with pytest.raises(ValueError, match="chunks must be at least 1"):
        with chunked_batch_norm(layer, 0):
            pass


def test_qc_mode_reaches_the_strm_head():
    released = build_model(load_config("synthetic_strm", ["model.qc_mode=released", "model.qc_seed=3"]))
    assert released.head.query_class.frozen
    assert not any("query_class" in name for name, _ in released.named_parameters())
    trained = build_model(load_config("synthetic_strm"))
    assert not trained.head.query_class.frozen
    assert any("query_class" in name for name, _ in trained.named_parameters())
