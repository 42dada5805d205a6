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
