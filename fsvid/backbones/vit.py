"""Per-frame ViT-B/16 (torchvision), the "ViT" backbone of the TRX/STRM tables.

A 224 x 224 frame is cut into 14 x 14 patches of 16 x 16 pixels, each embedded to 768
channels; a class token is prepended, the position embedding added, and 12 transformer
layers and a final LayerNorm applied. From the 197 output tokens:

- `frames`: the class token (`frame_feature="cls"`) or the mean of the 196 patch tokens
  (`frame_feature="mean"`), (videos, L, 768);
- `patches`: the patch tokens as a 14 x 14 grid, pooled to P x P (`patch_grid=P`) or all
  196 of them (`patch_grid=None`), (videos, L, P*P, 768);
- `maps` / `positions`: the patch-token grid (videos, 768, L, 14, 14) / (videos, L*196, 768).

The module keeps torchvision's names (`conv_proj`, `class_token`, `encoder.pos_embedding`,
`encoder.layers.encoder_layer_0...`, `encoder.ln`), so torchvision state dicts load
directly (`heads.*` ignored).
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from fsvid.backbones.base import Normalization, VideoBackbone
from fsvid.backbones.weights import resolve_torchvision_weights

FRAME_FEATURES = ("cls", "mean")


class VisionTransformerB16(VideoBackbone):
    """torchvision ViT-B/16 applied to every frame; patch tokens kept as a spatial grid.

    Args:
        output: `frames`, `patches`, `maps`, `positions` or `pooled` (see the module docstring).
        weights: None, a local file / state dict (torchvision layout), or a torchvision name
            (`"imagenet"`, `"IMAGENET1K_V1"`, `"IMAGENET1K_SWAG_LINEAR_V1"`,
            `"IMAGENET1K_SWAG_E2E_V1"` (384 x 384 frames)).
        trainable: `all`, `last` (the last encoder layer and the final LayerNorm) or `none`.
        patch_grid: P for `patches`; None keeps all (image_size/16)^2 tokens.
        patch_pool: `max` or `avg` pooling of the token grid for `patches`.
        normalize: None, `"imagenet"` (what torchvision's weights expect) or (mean, std).
        frame_feature: `cls` (class token) or `mean` (mean patch token) for `frames`/`pooled`.
        image_size: frame side the position embedding is built for; frames must have it.
            Default 224, or the size the named weights were trained at.
    """

    frame_wise = True  # each frame on its own
    head_prefixes = ("heads.",)
    torchvision_arch = "vit_b_16"

    def __init__(
        self,
        output: str = "frames",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
        frame_feature: str = "cls",
        image_size: int | None = None,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, normalize)
        if frame_feature not in FRAME_FEATURES:
            raise ValueError(f"VisionTransformerB16: frame_feature must be one of {FRAME_FEATURES}, got '{frame_feature}'")
        self.frame_feature = frame_feature
        named = resolve_torchvision_weights(self.torchvision_arch, weights)
        if image_size is None:
            image_size = max(named.meta["min_size"]) if named is not None else 224
        if image_size % 16 != 0:
            raise ValueError(f"VisionTransformerB16: image_size must be a multiple of 16, got {image_size}")
        self.image_size = image_size
        self.missing_file_help = (
            "Save torchvision's ImageNet weights once with "
            "`torch.save(torchvision.models.vit_b_16(weights='DEFAULT').state_dict(), path)` (a download) "
            "or pass weights='imagenet' to let torchvision download them."
        )
        vit = torchvision.models.vit_b_16(weights=None, image_size=image_size)
        self.conv_proj, self.class_token, self.encoder = vit.conv_proj, vit.class_token, vit.encoder
        self.patch_size = vit.patch_size  # 16
        self.feature_dim = vit.hidden_dim  # 768
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        videos, frames, _, height, width = clips.shape
        if height != self.image_size or width != self.image_size:
            raise ValueError(
                f"VisionTransformerB16 was built for {self.image_size} x {self.image_size} frames "
                f"(its position embedding), got {height} x {width}"
            )
        x = self.conv_proj(clips.flatten(0, 1))  # (videos*L, 768, h, w), h = w = image_size/16
        grid = x.shape[-2:]
        tokens = x.flatten(2).transpose(1, 2)  # (videos*L, h*w, 768), row-major patches
        class_token = self.class_token.expand(tokens.shape[0], -1, -1)  # (videos*L, 1, 768)
        tokens = self.encoder(torch.cat([class_token, tokens], dim=1))  # (videos*L, 1 + h*w, 768)
        tokens = tokens.unflatten(0, (videos, frames))  # (videos, L, 1 + h*w, 768)
        patch_tokens = tokens[:, :, 1:]  # (videos, L, h*w, 768)
        maps = patch_tokens.transpose(2, 3).unflatten(3, grid).transpose(1, 2)  # (videos, 768, L, h, w)
        frame_vectors = tokens[:, :, 0] if self.frame_feature == "cls" else None  # (videos, L, 768) | mean of maps
        return maps, frame_vectors

    def last_stage(self) -> list[nn.Module]:
        return [self.encoder.layers[-1], self.encoder.ln]
