"""A whole few-shot model: a backbone that turns clips into features, and a head.

>>> model = build_model(load_config("synthetic_trx"))
>>> output = model(support_clips, support_labels, query_clips)   # HeadOutput
>>> scores = prediction_scores(output)                            # (queries, way)

The backbone's output form is chosen by the head: frame features (videos, L, D) for the
prototype baseline and TRX, patch features (videos, L, P*P, D) for STRM, and maps
(videos, D, T, h, w) flattened by MASTAF to its N positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fsvid.backbones import VideoBackbone, build_backbone
from fsvid.backbones.batchnorm import chunked_batch_norm
from fsvid.config import ModelConfig, RunConfig
from fsvid.heads import HeadOutput, MASTAFHead, PrototypeHead, STRMHead, TRXHead

#: The backbone output each head reads.
HEAD_INPUT = {"prototype": "frames", "trx": "frames", "strm": "patches", "mastaf": "maps"}


#: How the backbone sees a task's clips (``model.backbone_passes``).
BACKBONE_PASSES = ("joint", "released")


class FewShotModel(nn.Module):
    """Backbone + head.

    ``passes="joint"``: ``forward`` runs the backbone once over all clips of a task, so in
    training mode BatchNorm normalises over every frame of the task. ``passes="released"``:
    the support and the queries go through the backbone in separate calls, each with its
    BatchNorm statistics computed per chunk of ``chunks`` (:mod:`fsvid.backbones.batchnorm`),
    which is what the released TRX/STRM code computes with ``nn.DataParallel`` on 4 GPUs.
    In eval mode both give the same features.
    """

    def __init__(
        self, backbone: VideoBackbone, head: nn.Module, method: str, passes: str = "joint", chunks: int = 4
    ) -> None:
        super().__init__()
        if passes not in BACKBONE_PASSES:
            raise ValueError(f"passes must be one of {', '.join(BACKBONE_PASSES)}, got {passes!r}")
        if chunks < 1:
            raise ValueError(f"chunks must be at least 1, got {chunks}")
        self.backbone = backbone
        self.head = head
        self.method = method
        self.passes = passes
        self.chunks = chunks

    def features(self, clips: Tensor) -> Tensor:
        """clips (videos, L, 3, H, W) -> the head's input features."""
        return self.backbone(clips)

    def forward(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor | None = None,
    ) -> HeadOutput:
        """support (support videos, L, 3, H, W), query (queries, L, 3, H, W) -> HeadOutput."""
        if self.passes == "released":
            with chunked_batch_norm(self.backbone, self.chunks):
                support_features = self.features(support)  # (support videos, ...)
                query_features = self.features(query)  # (queries, ...)
            return self.head(support_features, support_labels, query_features, query_labels)
        n_support = support.shape[0]
        features = self.features(torch.cat([support, query]))  # (videos, ...)
        return self.head(features[:n_support], support_labels, features[n_support:], query_labels)


def prediction_scores(output: HeadOutput) -> Tensor:
    """The score used to classify test queries, (queries, way).

    For STRM this is the released protocol, ``logits + qc_weight * qc_logits``
    (``extras["test_logits"]``); for the other heads ``logits``.
    """
    return output.extras.get("test_logits", output.logits)


def _backbone_output_shape(backbone: VideoBackbone, frames: int, crop: int) -> tuple[int, ...]:
    """Shape of the backbone's output for one clip, found with a dry run on a blank clip."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        shape = tuple(backbone(torch.zeros(1, frames, 3, crop, crop)).shape[1:])
    backbone.train(was_training)
    return shape


def build_head(model: ModelConfig, feature_shape: tuple[int, ...], frames: int, n_global: int | None) -> nn.Module:
    """The head named by ``model.method`` for features of ``feature_shape`` (one video)."""
    if model.method == "prototype":
        return PrototypeHead(distance=model.prototype_distance)
    if model.method == "trx":
        seq_len, dim = feature_shape
        return TRXHead(
            dim=dim,
            out_dim=model.projection_dim,
            seq_len=seq_len,
            cardinalities=model.cardinalities,
            tuple_fraction=model.tuple_fraction,
        )
    if model.method == "strm":
        seq_len, patches, dim = feature_shape
        joint = model.joint_layers > 0
        return STRMHead(
            dim=dim,
            out_dim=model.projection_dim,
            seq_len=seq_len,
            patches=patches,
            cardinalities=model.cardinalities,
            patch_enrichment=None if joint or not model.use_ple else _enrichment(model.ple_kind),
            frame_enrichment=None if joint or not model.use_fle else _enrichment(model.fle_kind),
            joint_layers=model.joint_layers,
            query_class=model.use_qc,
            qc_test_weight=model.qc_weight,
            qc_mode=model.qc_mode,
            qc_seed=model.qc_seed,
            attention_scale=model.paper_scaling,
            learnable_gamma=model.use_gamma,
            tuple_fraction=model.tuple_fraction,
        )
    if model.method == "mastaf":
        channels, *spatial = feature_shape
        positions = 1
        for size in spatial:
            positions *= size
        return MASTAFHead(
            positions=positions,
            channels=channels,
            n_global=n_global if model.global_task else None,
            alpha=model.alpha,
            kernel="meta" if model.meta_learner else "uniform",
            residual=model.residual,
            scores=model.mastaf_mode,
            query_self_norm="never",
        )
    raise ValueError(f"unknown method {model.method!r}; methods: prototype, trx, strm, mastaf")


def _enrichment(kind: str) -> str:
    return {"attention": "self_attention", "mlp": "mlp_mixer"}[kind]


def build_model(config: RunConfig, n_global: int | None = None) -> FewShotModel:
    """Backbone + head from one run configuration.

    ``n_global``: outputs of MASTAF's global classifier (the training classes, or all classes
    with ``model.global_classes: all``; :func:`fsvid.engine.data.global_class_count`); ``None``
    or 0 switches the global task off.
    """
    model = config.model
    options = {}
    if model.feature_dim is not None:
        options["feature_dim"] = model.feature_dim
    if model.backbone == "small_cnn":
        if model.widths is not None:
            options["widths"] = tuple(model.widths)
        options["coordinates"] = model.coordinates
    elif model.widths is not None or model.coordinates:
        raise ValueError("model.widths and model.coordinates apply to the small_cnn backbone only")
    backbone = build_backbone(
        model.backbone,
        output=HEAD_INPUT[model.method],
        weights=model.backbone_weights,
        trainable=model.trainable,
        patch_grid=model.patch_grid,
        **options,
    )
    feature_shape = _backbone_output_shape(backbone, config.data.frames, config.data.crop)
    head = build_head(model, feature_shape, config.data.frames, n_global)
    return FewShotModel(backbone, head, model.method, model.backbone_passes, model.backbone_chunks)

