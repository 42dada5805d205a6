"""ClipTransform: shapes, shorter-side resize, one crop and flip per clip, centre crop, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsvid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform


def noise_clip(frames: int = 4, height: int = 20, width: int = 26, seed: int = 0) -> torch.Tensor:
    """(L, 3, H, W) uint8: one random image plus the frame index, so frames differ by a constant."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 200, (1, 3, height, width), generator=g, dtype=torch.uint8)
    return base + torch.arange(frames, dtype=torch.uint8).view(-1, 1, 1, 1)


def test_output_shape_dtype_and_range() -> None:
    clip = torch.randint(0, 256, (5, 3, 60, 80), dtype=torch.uint8)
    for train in (True, False):
        out = ClipTransform(train=train, resize=36, crop=32)(clip, np.random.default_rng(0))
        assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_resize_scales_the_shorter_side_keeping_the_aspect() -> None:
    # 40 x 80 frame: black | white (x in 20..59) | black. Shorter side 20 gives 20 x 40 with
    # white in columns 10..29, and the centre 20 x 20 crop is all white. (Squashing to
    # 20 x 20 would leave black columns at both sides of the crop.)
    clip = torch.zeros(2, 3, 40, 80, dtype=torch.uint8)
    clip[..., 20:60] = 255
    out = ClipTransform(train=False, resize=20, crop=20)(clip)
    assert out.shape == (2, 3, 20, 20)
    assert torch.allclose(out[..., 1:-1], torch.ones_like(out[..., 1:-1]))
    # landscape and portrait alike: a 80 x 40 frame with white rows gives the same
    out_t = ClipTransform(train=False, resize=20, crop=20)(clip.transpose(-1, -2).contiguous())
    assert torch.allclose(out_t[..., 1:-1, :], torch.ones_like(out_t[..., 1:-1, :]))


def test_centre_crop_exact_window() -> None:
    clip = noise_clip(height=10, width=16)
    out = ClipTransform(train=False, resize=None, crop=8)(clip)
    # top = round((10 - 8) / 2) = 1, left = round((16 - 8) / 2) = 4
    assert torch.equal(torch.round(out * 255).to(torch.uint8), clip[:, :, 1:9, 4:12])


def _find_window(clip: torch.Tensor, out: torch.Tensor, crop: int) -> set[tuple[int, int, bool]]:
    """All (top, left, flipped) windows of ``clip`` equal to ``out`` (uint8 levels)."""
    target = torch.round(out * 255).to(torch.uint8)
    hits = set()
    for flipped in (False, True):
        source = clip.flip(-1) if flipped else clip
        for top in range(clip.shape[-2] - crop + 1):
            for left in range(clip.shape[-1] - crop + 1):
                if torch.equal(source[..., top : top + crop, left : left + crop], target):
                    hits.add((top, left, flipped))
    return hits


def test_training_uses_one_crop_and_one_flip_for_all_frames() -> None:
    clip = noise_clip(frames=4, height=12, width=15)
    transform = ClipTransform(train=True, resize=None, crop=8)
    windows = set()
    for seed in range(40):
        out = transform(clip, np.random.default_rng(seed))  # (4, 3, 8, 8)
        # the whole clip (every frame at once) matches exactly one window of the input
        hits = _find_window(clip, out, 8)
        assert len(hits) == 1
        windows |= hits
    flips = {flipped for _, _, flipped in windows}
    assert flips == {False, True}
    assert len({(t, l) for t, l, _ in windows}) > 10  # crops move around


def test_flip_off_and_determinism() -> None:
    clip = noise_clip(frames=3, height=12, width=15)
    no_flip = ClipTransform(train=True, resize=None, crop=8, flip=False)
    for seed in range(20):
        (hit,) = _find_window(clip, no_flip(clip, np.random.default_rng(seed)), 8)
        assert hit[2] is False
    always = ClipTransform(train=True, resize=None, crop=8, flip_p=1.0)
    assert all(next(iter(_find_window(clip, always(clip, np.random.default_rng(s)), 8)))[2] for s in range(5))
    transform = ClipTransform(train=True, resize=None, crop=8)
    assert torch.equal(transform(clip, np.random.default_rng(3)), transform(clip, np.random.default_rng(3)))


def test_imagenet_normalisation() -> None:
    clip = noise_clip(height=8, width=8)
    plain = ClipTransform(train=False, resize=None, crop=8)(clip)
    normed = ClipTransform(train=False, resize=None, crop=8, normalize=True)(clip)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normed, (plain - mean) / std, atol=1e-6)


def test_transform_errors() -> None:
    with pytest.raises(ValueError, match="at least the crop size"):
        ClipTransform(train=False, resize=200, crop=224)
    with pytest.raises(ValueError, match="smaller than the crop"):
        ClipTransform(train=False, resize=None, crop=32)(torch.zeros(2, 3, 20, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(L, 3, H, W\)"):
        ClipTransform(train=False, resize=None, crop=4)(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ClipTransform(train=False, resize=None, crop=4)(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="numpy Generator"):
        ClipTransform(train=True, resize=None, crop=4)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_centre_training_crop_is_the_same_window_for_every_draw() -> None:
    """``train_crop="center"`` (released MASTAF: resize, flip, centre crop): every draw gives
    the centre window, flipped or not; the flip coin still varies."""
    clip = noise_clip(height=10, width=16)
    centre = clip[:, :, 1:9, 4:12]  # as test_centre_crop_exact_window
    transform = ClipTransform(train=True, resize=None, crop=8, flip=True, train_crop="center")
    flips = set()
    for seed in range(20):
        out = torch.round(transform(clip, np.random.default_rng(seed)) * 255).to(torch.uint8)
        flipped = torch.equal(out, centre.flip(-1))
        assert flipped or torch.equal(out, centre)
        flips.add(flipped)
    assert flips == {True, False}
    # a random training crop does move (the default)
    random_crop = ClipTransform(train=True, resize=None, crop=8, flip=False)
    windows = {tuple(random_crop(clip, np.random.default_rng(s))[0, 0, 0, :2].tolist()) for s in range(20)}
    assert len(windows) > 1
    with pytest.raises(ValueError, match="train_crop"):
        ClipTransform(train=True, train_crop="middle")
