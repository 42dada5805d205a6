"""A small per-frame CNN that trains in minutes on a CPU, for demos and tests.

Four blocks of `Conv 3x3 -> norm -> ReLU -> MaxPool 2x2`, 32, 64, 128 and `feature_dim`
channels: a 64 x 64 frame becomes a 4 x 4 map (16 patches, like STRM's P = 4) of
`feature_dim` (128) channels, about 0.2 M parameters and 50 M multiply-adds per frame.
It offers the same output forms as the ResNets.

``coordinates=True`` appends two channels holding each pixel's x and y position in [-1, 1]
to the frame (CoordConv, Liu et al. 2018): the features then say *where* things are, even
after the spatial mean of the ``frames`` form, which direction-of-motion classes need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fsvid.backbones.base import Normalization, VideoBackbone

NORMS = ("batch", "group")


class ConvBlock(nn.Module):
    """Conv 3x3 (padding 1) -> BatchNorm or GroupNorm -> ReLU -> MaxPool 2x2: halves h and w."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        # GroupNorm with 8 channels per group does not depend on the batch (e.g. 1-shot tasks).
        self.norm = nn.BatchNorm2d(out_channels) if norm == "batch" else nn.GroupNorm(max(1, out_channels // 8), out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.norm(self.conv(x))))  # (n, out, h/2, w/2)


class SmallCNN(VideoBackbone):
    """Four ConvBlocks applied to every frame: (videos, L, 3, 64, 64) -> 4 x 4 maps of feature_dim channels.

    Args:
        feature_dim: channels of the last block, the output D (default 128).
        widths: channels of the first three blocks.
        norm: `batch` or `group`.
        coordinates: append x and y coordinate channels to the input (CoordConv).
        output, patch_grid, patch_pool, normalize: as for every backbone (see `fsvid.backbones`).
        weights: None or a local file / state dict of this module (from your own training).
        trainable: `all`, `last` (the last block) or `none`.
    """

    frame_wise = True  # each frame on its own
    missing_file_help = "Weights for SmallCNN come from your own runs: torch.save(backbone.state_dict(), path)."

    def __init__(
        self,
        feature_dim: int = 128,
        widths: Sequence[int] = (32, 64, 128),
        norm: str = "batch",
        output: str = "frames",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
        coordinates: bool = False,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, normalize)
        if norm not in NORMS:
            raise ValueError(f"SmallCNN: norm must be one of {NORMS}, got '{norm}'")
        self.coordinates = coordinates
        channels = [5 if coordinates else 3, *widths, feature_dim]
        self.blocks = nn.Sequential(*(ConvBlock(c_in, c_out, norm) for c_in, c_out in zip(channels[:-1], channels[1:])))
        self.feature_dim = feature_dim
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, None]:
        videos, frames = clips.shape[:2]
        x = clips.flatten(0, 1)  # (videos*L, 3, H, W)
        if self.coordinates:
            height, width = x.shape[-2:]
            ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
            xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W): x, y
            x = torch.cat([x, grid.expand(x.shape[0], -1, -1, -1)], dim=1)  # (videos*L, 5, H, W)
        x = self.blocks(x)  # (videos*L, D, H/16, W/16)
        return x.unflatten(0, (videos, frames)).transpose(1, 2), None  # (videos, D, L, h, w)

    def last_stage(self) -> list[nn.Module]:
        return [self.blocks[-1]]
