"""The image pipeline of a clip: one spatial decision for all of its frames.

``uint8 (L, 3, H, W)  ->  float32 (L, 3, crop, crop)`` in [0, 1] (or ImageNet-normalised):

1. resize so that the shorter side is ``resize`` (bilinear, antialiased), aspect kept;
2. training: one random ``crop x crop`` window (or the centre window, ``train_crop="center"``,
   as the released MASTAF loader) and one horizontal-flip decision (probability ``flip_p``),
   shared by every frame of the clip so that motion stays coherent;
   testing: the centre ``crop x crop`` window, no flip;
3. scale to float in [0, 1]; optionally normalise by the ImageNet mean and std.

The released TRX/STRM pipeline is resize 256, crop 224, flip in training and no
normalisation (ToTensor only), the defaults here. The synthetic dataset uses small sizes
(e.g. resize 72, crop 64).

The operations are ``torchvision.transforms.v2.functional`` calls, which treat the leading L
axis as a batch. The random decisions are drawn from an explicit ``numpy.random.Generator``
instead of v2's random transforms (which draw from torch's global generator), so that a
clip is a pure function of the episode seed, identical in every DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class ClipTransform:
    """Resize, crop, flip and scale a clip: ``transform(clip, rng) -> (L, 3, crop, crop)``.

    Args:
        train: random crop and flip (True) or centre crop (False).
        resize: target shorter side in pixels; ``None`` keeps the frames as they are.
        crop: side of the square crop.
        flip: allow horizontal flips in training. Flipping swaps left and right, which
            changes the meaning of direction classes such as SSv2's "Pushing something from
            left to right"; the released TRX/STRM code flips anyway (the default here), pass
            ``flip=False`` for direction-sensitive datasets.
        flip_p: probability of a flip when ``flip`` is on.
        train_crop: ``"random"`` (TRX/STRM) or ``"center"`` (MASTAF: ``staf/video_reader.py``
            lines 88-93, Resize(256), RandomHorizontalFlip, CenterCrop) training window.
        normalize: subtract the ImageNet mean and divide by its std after scaling to [0, 1]
            (the released code does not).
        mean, std: the normalisation constants.
    """

    def __init__(
        self,
        train: bool,
        resize: int | None = 256,
        crop: int = 224,
        flip: bool = True,
        flip_p: float = 0.5,
        normalize: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train_crop: str = "random",
    ) -> None:
        if crop < 1:
            raise ValueError(f"crop must be positive, got {crop}")
        if resize is not None and resize < crop:
            raise ValueError(f"resize (shorter side {resize}) must be at least the crop size {crop}")
        if train_crop not in ("random", "center"):
            raise ValueError(f"train_crop must be 'random' or 'center', got {train_crop!r}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.train = train
        self.resize = resize
        self.crop = crop
        self.flip = flip
        self.flip_p = flip_p
        self.train_crop = train_crop
        self.normalize = normalize
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, clip: Tensor, rng: np.random.Generator | None = None) -> Tensor:
        """``clip``: (L, 3, H, W) uint8; ``rng`` is needed in training only."""
        if clip.dim() != 4 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip of shape (L, 3, H, W), got {tuple(clip.shape)}")
        if clip.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 clip, got {clip.dtype}")
        if self.resize is not None:
            clip = TF.resize(clip, [self.resize], antialias=True)  # (L, 3, H', W'), min(H', W') = resize
        height, width = clip.shape[-2:]
        if height < self.crop or width < self.crop:
            raise ValueError(f"frames of {height}x{width} are smaller than the crop {self.crop}")

        if self.train:
            if rng is None:
                raise ValueError("a training transform needs a numpy Generator (rng)")
            # drawn for a centre crop too: the flip coin comes from the same stream either way
            top = int(rng.integers(0, height - self.crop, endpoint=True))
            left = int(rng.integers(0, width - self.crop, endpoint=True))
            if self.train_crop == "center":  # torchvision's centre: round((size - crop) / 2)
                top, left = int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))
            coin = float(rng.random())  # drawn even when flips are off: same stream either way
            flip = self.flip and coin < self.flip_p
            clip = TF.crop(clip, top, left, self.crop, self.crop)  # (L, 3, crop, crop)
            if flip:
                clip = TF.horizontal_flip(clip)
        else:
            clip = TF.center_crop(clip, [self.crop, self.crop])  # (L, 3, crop, crop)

        clip = TF.to_dtype(clip, torch.float32, scale=True)  # [0, 1]
        if self.normalize:
            clip = TF.normalize(clip, self.mean, self.std)
        return clip

    def __repr__(self) -> str:
        mode = "train" if self.train else "test"
        crop = f"{self.train_crop} " if self.train else ""
        return (f"ClipTransform({mode}, resize={self.resize}, crop={crop}{self.crop}, "
                f"flip={self.flip and self.train}, normalize={self.normalize})")
