"""Per-frame 2D ResNet-18/34/50 (torchvision), the backbone of TRX and STRM.

Every frame goes through the ResNet up to layer4 (no avgpool, no fc): a 224 x 224 frame
gives a 7 x 7 map with 512 (ResNet-18/34) or 2048 (ResNet-50) channels. From it:
TRX's frame features are the spatial mean (torchvision's avgpool), STRM's 16 patches the
`AdaptiveMaxPool2d(4)` cells, MASTAF's maps the whole (C, L, 7, 7) volume.

The module's children carry torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, ...),
so its state dict is torchvision's without `fc.*`. `load_weights` also accepts the
released TRX/STRM layout (`resnet.0.weight` ... an `nn.Sequential` of the ResNet's
children: 0 conv1, 1 bn1, 4-7 layer1-4) and `module.` parts from DataParallel.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import Tensor, nn

from fsvid.backbones.base import Normalization, VideoBackbone
from fsvid.backbones.weights import resnet_names_from_sequential

RESNET2D_DEPTHS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


class ResNet2d(VideoBackbone):
    """torchvision ResNet-18/34/50 applied to every frame of the clips.

    Args:
        depth: 18, 34 or 50.
        output: `frames` (videos, L, C), `patches` (videos, L, P*P, C), `maps`
            (videos, C, L, h, w), `positions` (videos, L*h*w, C) or `pooled` (videos, C).
        weights: None (random init), a local file / state dict (torchvision or TRX/STRM
            layout), or a torchvision name: `"IMAGENET1K_V1"` (the released TRX/STRM code's),
            `"DEFAULT"`, `"ResNet50_Weights.IMAGENET1K_V2"` (downloads once into torchvision's
            cache); `"imagenet"` only for depths 18 and 34 (ResNet-50 has V1 and V2: name one).
        trainable: `all`, `last` (layer4 only) or `none`.
        patch_grid, patch_pool: P and the pooling for `patches` (STRM: 4, max).
        normalize: None (released TRX/STRM: raw [0, 1] pixels), `"imagenet"` or (mean, std).
    """

    head_prefixes = ("fc.",)

    def __init__(
        self,
        depth: int = 50,
        output: str = "frames",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, normalize)
        if depth not in RESNET2D_DEPTHS:
            raise ValueError(f"ResNet2d: depth must be one of {list(RESNET2D_DEPTHS)}, got {depth}")
        self.depth = depth
        self.torchvision_arch = f"resnet{depth}"
        self.missing_file_help = (
            f"Save torchvision's ImageNet weights once with "
            f"`torch.save(torchvision.models.resnet{depth}(weights='IMAGENET1K_V1').state_dict(), path)` "
            f"(a download; V1 is the released TRX/STRM code's), pass weights='IMAGENET1K_V1' to let "
            f"torchvision download them, or give a "
            f"released TRX/STRM backbone state dict (resnet.0.weight ...)."
        )
        resnet = RESNET2D_DEPTHS[depth](weights=None)
        # The torchvision children under their own names; avgpool and fc are not used.
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.feature_dim = resnet.fc.in_features  # 512 or 2048
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, None]:
        videos, frames = clips.shape[:2]
        x = clips.flatten(0, 1)  # (videos*L, 3, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (videos*L, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (videos*L, C, H/32, W/32)
        x = x.unflatten(0, (videos, frames))  # (videos, L, C, h, w)
        return x.transpose(1, 2), None  # (videos, C, L, h, w)

    def last_stage(self) -> list[nn.Module]:
        return [self.layer4]

    def translate_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return resnet_names_from_sequential(state)  # resnet.4.0.conv1.weight -> layer1.0.conv1.weight
