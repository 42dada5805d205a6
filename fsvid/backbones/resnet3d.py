"""3D ResNets that see the clip as a whole: MASTAF's 3D ResNet-50, torchvision r3d_18 / r2plus1d_18.

`ResNet3d` is the 3D ResNet of Hara et al. (3D-ResNets-PyTorch), the embedding network of
MASTAF (docs/methods.md), with the module names of that project's checkpoints
(`r3d50_K_200ep.pth`, `r3d50_KM_200ep.pth`, `r3d50_KMS_200ep.pth`: Kinetics-700, + Moments
in Time, + STAIR-Actions; 700 / 1039 / 1139 classes in `fc`, which is ignored here):

    conv1    Conv3d 3 -> 64, kernel (7, 7, 7), stride (1, 2, 2), padding (3, 3, 3)
    bn1, relu
    maxpool  MaxPool3d kernel 3, stride 2 (time too), padding 1
    layer1   3 Bottlenecks,   64 -> 256 channels, stride 1
    layer2   4 Bottlenecks,  128 -> 512 channels, stride 2 (t, h, w)
    layer3   6 Bottlenecks,  256 -> 1024 channels, stride 2
    layer4   3 Bottlenecks,  512 -> 2048 channels, stride 2

A Bottleneck is `conv1` 1x1x1 -> `bn1` -> ReLU -> `conv2` 3x3x3 (the stride) -> `bn2` ->
ReLU -> `conv3` 1x1x1 (x4 channels) -> `bn3`, plus the shortcut, then ReLU. The first block
of each layer has a 'B' shortcut: `downsample.0` a strided 1x1x1 conv, `downsample.1` a
BatchNorm. Sizes for 16 frames of 224 x 224: conv1 16x112x112, maxpool 8x56x56, layer2
4x28x28, layer3 2x14x14, layer4 1x7x7, so the map is (2048, 1, 7, 7) and N = 49
positions, as docs/methods.md says. In general T' = ceil(L/16), h = ceil(H/32).

`TorchvisionVideoResNet` wraps torchvision's r3d_18 (3D convolutions) and r2plus1d_18
(each 3x3x3 conv split into a spatial 1x3x3 and a temporal 3x1x1 conv): stem stride
(1, 2, 2), no max-pool, stride 2 in layers 2-4; 16 x 112 x 112 gives (512, 2, 7, 7).
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import Tensor, nn

from fsvid.backbones.base import Normalization, VideoBackbone
from fsvid.backbones.weights import resnet_names_from_sequential

# Bottleneck counts per layer for the depths that use Bottleneck blocks.
RESNET3D_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


class Bottleneck3d(nn.Module):
    """1x1x1 reduce -> 3x3x3 (strided) -> 1x1x1 expand (x4), plus a shortcut ('B': conv + BN when shapes change)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (n, 4*planes, t', h', w')
        out = self.relu(self.bn1(self.conv1(x)))  # (n, planes, t, h, w)
        out = self.relu(self.bn2(self.conv2(out)))  # (n, planes, t', h', w')
        out = self.bn3(self.conv3(out))  # (n, 4*planes, t', h', w')
        return self.relu(out + shortcut)


class ResNet3d(VideoBackbone):
    """3D ResNet-50 (or 101/152/200) with the names of the 3D-ResNets-PyTorch checkpoints.

    Args:
        depth: 50 (MASTAF), 101, 152 or 200.
        output: `maps` (videos, 2048, T', h, w) for MASTAF, `positions` (videos, T'*h*w, 2048),
            `frames` (videos, T', 2048), `patches` (videos, T', P*P, 2048), `pooled` (videos, 2048).
        weights: None or a local file / state dict: a 3D-ResNets-PyTorch checkpoint
            (`{"arch": ..., "state_dict": {"module.conv1.weight": ...}}`), a state dict of this
            module, or an `nn.Sequential` of its children (`resnet.0.weight`, as TRX-style code
            keeps it). There are no torchvision names for this network.
        trainable: `all`, `last` (layer4) or `none`.
        conv1_t_size, conv1_t_stride, no_max_pool: the 3D-ResNets-PyTorch options (the released
            checkpoints use 7, 1, False).
        normalize: None, `"kinetics"`, `"imagenet"` or (mean, std).
    """

    head_prefixes = ("fc.",)
    missing_file_help = (
        "Download r3d50_K_200ep.pth (Kinetics-700), r3d50_KM_200ep.pth (+ Moments in Time) or "
        "r3d50_KMS_200ep.pth (+ STAIR-Actions, used by MASTAF) from the 'Pre-trained models' "
        "links in the README of https://github.com/kenshohara/3D-ResNets-PyTorch and give its local path."
    )

    def __init__(
        self,
        depth: int = 50,
        output: str = "maps",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, normalize)
        if depth not in RESNET3D_BLOCKS:
            raise ValueError(f"ResNet3d: depth must be one of {list(RESNET3D_BLOCKS)}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv3d(
            3, 64, kernel_size=(conv1_t_size, 7, 7), stride=(conv1_t_stride, 2, 2),
            padding=(conv1_t_size // 2, 3, 3), bias=False,
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if no_max_pool else nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        layers = []
        for planes, blocks, stride in zip((64, 128, 256, 512), RESNET3D_BLOCKS[depth], (1, 2, 2, 2)):
            layer = [Bottleneck3d(in_channels, planes, stride)]
            in_channels = planes * Bottleneck3d.expansion
            layer += [Bottleneck3d(in_channels, planes) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = in_channels  # 2048

        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, None]:
        x = clips.transpose(1, 2)  # (videos, 3, L, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (videos, 64, L/2, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (videos, 2048, L/16, H/32, W/32)
        return x, None

    def last_stage(self) -> list[nn.Module]:
        return [self.layer4]

    def translate_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return resnet_names_from_sequential(state)


VIDEO_RESNETS = {"r3d_18": torchvision.models.video.r3d_18, "r2plus1d_18": torchvision.models.video.r2plus1d_18}


class TorchvisionVideoResNet(VideoBackbone):
    """torchvision's r3d_18 or r2plus1d_18 up to layer4 (512 channels), names as in torchvision.

    Args:
        arch: `r3d_18` or `r2plus1d_18`.
        output: `maps` (videos, 512, T', h, w), `positions`, `frames`, `patches` or `pooled`.
        weights: None, a local file / state dict (torchvision layout, `fc.*` ignored), or a
            torchvision name (`"kinetics400"`, `"KINETICS400_V1"`, `"DEFAULT"`), a download.
        trainable: `all`, `last` (layer4) or `none`.
        normalize: None, `"kinetics"` (what torchvision's weights expect) or (mean, std).
    """

    head_prefixes = ("fc.",)

    def __init__(
        self,
        arch: str = "r3d_18",
        output: str = "maps",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, normalize)
        if arch not in VIDEO_RESNETS:
            raise ValueError(f"TorchvisionVideoResNet: arch must be one of {list(VIDEO_RESNETS)}, got '{arch}'")
        self.torchvision_arch = arch
        self.missing_file_help = (
            f"Save torchvision's Kinetics-400 weights once with "
            f"`torch.save(torchvision.models.video.{arch}(weights='DEFAULT').state_dict(), path)` "
            f"(a download) or pass weights='kinetics400' to let torchvision download them."
        )
        net = VIDEO_RESNETS[arch](weights=None)
        self.stem = net.stem
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_dim = net.fc.in_features  # 512
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, None]:
        x = self.stem(clips.transpose(1, 2))  # (videos, 64, L, H/2, W/2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (videos, 512, L/8, H/16, W/16)
        return x, None

    def last_stage(self) -> list[nn.Module]:
        return [self.layer4]
