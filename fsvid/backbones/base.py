"""What every backbone shares: input checks, output forms, weights and trainable parts.

A backbone turns a batch of clips `(videos, L, 3, H, W)` (floats in [0, 1], the project's
convention) into one spatio-temporal feature map per video, `(videos, C, T, h, w)`:
a 2D network maps each frame (T = L), a 3D network maps the clip as a whole (T = its
temporal output size). `shape_output` then gives the form a head asks for:

| output      | shape                      | used by                                  |
|-------------|----------------------------|------------------------------------------|
| `frames`    | (videos, T, C)             | TRX, prototypes (mean over h, w)         |
| `patches`   | (videos, T, P*P, C)        | STRM (adaptive max-pool to P x P)        |
| `maps`      | (videos, C, T, h, w)       | MASTAF (the released code's layout)      |
| `positions` | (videos, T*h*w, C)         | MASTAF, flattened maps ("N positions")   |
| `pooled`    | (videos, C)                | one vector per video (mean over T)       |

Patches are the `P x P` cells of the map in row-major order, as in STRM's
`AdaptiveMaxPool2d(4)` followed by `reshape(..., C, 16).permute(0, 2, 1)`;
`patch_grid=None` keeps the native `h x w` grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsvid.backbones.chunks import chunked_maps
from fsvid.backbones.weights import (
    WeightsSource,
    drop_prefixes,
    load_checked_state_dict,
    read_state_dict,
    resolve_torchvision_weights,
    select_prefix,
)

OUTPUT_MODES = ("frames", "patches", "maps", "positions", "pooled")
TRAINABLE_MODES = ("none", "all", "last")
PATCH_POOLS = ("max", "avg")
NAMED_WEIGHT_ALIASES = ("imagenet", "kinetics", "kinetics400", "default")

# Channel statistics for `normalize=`. The released TRX/STRM code feeds [0, 1] pixels
# without normalising (docs/methods.md), which is the default here (`normalize=None`).
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KINETICS_MEAN_STD = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))  # torchvision video models
NORMALIZATIONS = {"imagenet": IMAGENET_MEAN_STD, "kinetics": KINETICS_MEAN_STD}

Normalization = str | tuple[Sequence[float], Sequence[float]] | None


def check_clips(clips: Tensor, owner: str) -> None:
    """Raise ValueError unless `clips` is (videos, L, 3, H, W)."""
    if clips.dim() != 5 or clips.shape[2] != 3:
        raise ValueError(
            f"{owner} expects clips of shape (videos, L, 3, H, W), got {tuple(clips.shape)}"
        )


def flatten_positions(maps: Tensor) -> Tensor:
    """(videos, C, T, h, w) maps -> (videos, T*h*w, C) positions (time-major, then rows)."""
    return maps.flatten(2).transpose(1, 2)


def shape_output(
    maps: Tensor,
    output: str,
    patch_grid: int | None = 4,
    patch_pool: str = "max",
    frame_vectors: Tensor | None = None,
) -> Tensor:
    """Give a (videos, C, T, h, w) feature map the requested form (table in the module docstring).

    Args:
        maps: (videos, C, T, h, w).
        output: one of OUTPUT_MODES.
        patch_grid: P for `patches` (adaptive pooling to P x P per time step), None to keep h x w.
        patch_pool: `max` (STRM) or `avg`.
        frame_vectors: (videos, T, C) to use for `frames`/`pooled` instead of the spatial
            mean (a ViT's class tokens).
    """
    if output == "maps":
        return maps  # (videos, C, T, h, w)
    if output == "positions":
        return flatten_positions(maps)  # (videos, T*h*w, C)
    if output in ("frames", "pooled"):
        if frame_vectors is None:
            frame_vectors = maps.mean(dim=(3, 4)).transpose(1, 2)  # (videos, T, C)
        return frame_vectors if output == "frames" else frame_vectors.mean(dim=1)  # (videos, T, C) | (videos, C)
    if output == "patches":
        if patch_grid is not None:
            grid = (maps.shape[2], patch_grid, patch_grid)  # pool space only, never time
            pool = F.adaptive_max_pool3d if patch_pool == "max" else F.adaptive_avg_pool3d
            maps = pool(maps, grid)  # (videos, C, T, P, P)
        return maps.flatten(3).permute(0, 2, 3, 1)  # (videos, T, P*P, C)
    raise ValueError(f"unknown output '{output}': choose one of {OUTPUT_MODES}")


class VideoBackbone(nn.Module):
    """Base class: clips (videos, L, 3, H, W) in, the `output` form out.

    Subclasses build their layers, then call `self._finish(weights, trainable)`, and
    implement `forward_maps` and `last_stage`. Attributes:

    - `feature_dim`: C, the channels of every output form.
    - `output`, `patch_grid`, `patch_pool`: the output form (may be changed after building).
    - `trainable`: `all` (fine-tune everything), `last` (only the last stage, see
      `last_stage`), `none` (frozen). Frozen parts have `requires_grad=False` and stay in
      eval mode when `.train()` is called, so their BatchNorm statistics never move.
    """

    feature_dim: int
    torchvision_arch: str | None = None  # a torchvision model name when named weights exist
    head_prefixes: tuple[str, ...] = ()  # classifier parameters in weight files, ignored
    missing_file_help: str = ""  # how to get a weight file, for FileNotFoundError
    frame_wise: bool = False  # True when each frame is mapped on its own (2D networks)

    def __init__(
        self,
        output: str = "frames",
        patch_grid: int | None = 4,
        patch_pool: str = "max",
        normalize: Normalization = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if output not in OUTPUT_MODES:
            raise ValueError(f"{name}: unknown output '{output}', choose one of {OUTPUT_MODES}")
        if patch_grid is not None and (not isinstance(patch_grid, int) or patch_grid < 1):
            raise ValueError(f"{name}: patch_grid must be a positive int or None, got {patch_grid!r}")
        if patch_pool not in PATCH_POOLS:
            raise ValueError(f"{name}: patch_pool must be one of {PATCH_POOLS}, got '{patch_pool}'")
        self.output = output
        self.patch_grid = patch_grid
        self.patch_pool = patch_pool
        self.trainable = "all"

        if isinstance(normalize, str):
            if normalize not in NORMALIZATIONS:
                raise ValueError(f"{name}: normalize must be one of {list(NORMALIZATIONS)}, (mean, std) or None")
            normalize = NORMALIZATIONS[normalize]
        self.normalize = normalize is not None
        mean, std = normalize if normalize is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        # (1, 1, 3, 1, 1) to broadcast over (videos, L, 3, H, W); not saved in state dicts.
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)

    # ----- to implement -------------------------------------------------------------------
    def forward_maps(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        """(videos, L, 3, H, W) -> maps (videos, C, T, h, w) and optional frame vectors (videos, T, C)."""
        raise NotImplementedError

    def last_stage(self) -> list[nn.Module]:
        """The modules trained when `trainable="last"`."""
        raise NotImplementedError

    def translate_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rename keys of other layouts into this module's names (default: unchanged)."""
        return state

    # ----- forward ------------------------------------------------------------------------
    def forward(self, clips: Tensor, chunks: int = 1, checkpoint: bool = False) -> Tensor:
        """clips (videos, L, 3, H, W) in [0, 1] -> the `output` form (see the module docstring).

        `chunks` > 1 runs the network on that many pieces of the batch, `checkpoint=True`
        recomputes each piece's activations in backward (:mod:`fsvid.backbones.chunks`).
        """
        check_clips(clips, type(self).__name__)
        if self.normalize:
            clips = (clips - self.input_mean.to(clips.dtype)) / self.input_std.to(clips.dtype)
        if chunks == 1 and not checkpoint:
            maps, frame_vectors = self.forward_maps(clips)  # (videos, C, T, h, w), (videos, T, C) | None
        else:
            maps, frame_vectors = chunked_maps(self.forward_maps, clips, self, chunks, self.frame_wise, checkpoint)
        return shape_output(maps, self.output, self.patch_grid, self.patch_pool, frame_vectors)

    # ----- weights ------------------------------------------------------------------------
    def load_weights(self, source: WeightsSource, prefix: str | None = None) -> "VideoBackbone":
        """Load weights from a local file or a state dict, checking every name and shape.

        Accepts this backbone's own state dicts and the layouts listed in its class
        docstring (torchvision names, TRX/STRM `resnet.<i>.*`, 3D-ResNets-PyTorch), with
        `module.` parts and `{"state_dict": ...}` wrappers removed; classifier heads
        (`fc.*`, `heads.*`) are ignored. `prefix` keeps only the entries starting with it
        (e.g. `"backbone."` to take a backbone out of a whole-model checkpoint).

        Raises:
            FileNotFoundError: the file does not exist (the message says how to get it).
            ValueError: missing, unexpected or shape-mismatched keys, all listed.
        """
        state, label = read_state_dict(source, self.missing_file_help)
        if prefix:
            state = select_prefix(state, prefix, label)
        self._load_state(state, label)
        return self

    def _load_state(self, state: dict[str, Tensor], label: str) -> None:
        state = drop_prefixes(self.translate_state_dict(state), self.head_prefixes)
        load_checked_state_dict(self, state, label)

    def _load_initial_weights(self, weights: Any) -> None:
        """`weights`: None (random init), a torchvision weights name (download), or a file / state dict."""
        if weights is None:
            return
        named = resolve_torchvision_weights(self.torchvision_arch, weights) if self.torchvision_arch else None
        if named is None and isinstance(weights, str) and weights.lower() in NAMED_WEIGHT_ALIASES:
            raise ValueError(
                f"{type(self).__name__} has no named torchvision weights ('{weights}'): give a local file. "
                + self.missing_file_help
            )
        if named is not None:
            # The only place anything is downloaded: torchvision's own cache and hash check.
            state = named.get_state_dict(progress=True, check_hash=True)
            state, _ = read_state_dict(state)
            self._load_state(state, f"torchvision weights {named}")
        else:
            self.load_weights(weights)

    # ----- trainable parts ----------------------------------------------------------------
    def set_trainable(self, trainable: str) -> "VideoBackbone":
        """Choose what is trained: `all`, `last` (the last stage) or `none`; sets requires_grad."""
        if trainable not in TRAINABLE_MODES:
            raise ValueError(f"{type(self).__name__}: trainable must be one of {TRAINABLE_MODES}, got '{trainable}'")
        self.trainable = trainable
        trained = {id(p) for p in self._trained_parameters()}
        for parameter in self.parameters():
            parameter.requires_grad_(id(parameter) in trained)
        return self.train(self.training)

    def _trained_modules(self) -> list[nn.Module]:
        if self.trainable == "all":
            return [self]
        if self.trainable == "last":
            return self.last_stage()
        return []

    def _trained_parameters(self) -> list[nn.Parameter]:
        return [p for module in self._trained_modules() for p in module.parameters()]

    def train(self, mode: bool = True) -> "VideoBackbone":
        """Set train/eval mode; frozen parts always stay in eval (BatchNorm statistics fixed)."""
        super().train(mode)
        if mode and self.trainable != "all":
            trained = {id(m) for module in self._trained_modules() for m in module.modules()}
            for module in self.modules():
                if module is not self and id(module) not in trained:
                    module.training = False  # this module only; trained children keep theirs
        return self

    def _finish(self, weights: Any, trainable: str) -> None:
        """Load the initial weights and apply the trainable mode (end of every __init__)."""
        self._load_initial_weights(weights)
        self.set_trainable(trainable)
