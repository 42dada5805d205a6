"""A synthetic few-shot action dataset whose classes are defined by motion.

Every clip is drawn procedurally: one or two objects (discs, squares, arrows, L shapes, ...)
on a cluttered, noisy background. What makes a clip belong to its class is *how things move*:
left to right, up, along a circle, growing (approach), fading in, passing behind another
object, pushing it, ... Appearance (shape, colour, size, speed, start position, background
colour and texture, noise) is drawn afresh for every video, so a single frame says little
about the class.

Most classes come in **time-reversed pairs**, as in Something-Something v2: ``recede`` is
*literally* ``approach`` played backwards (a clip of ``approach`` is rendered and its frame
order reversed). A clip and its reversal contain exactly the same frames, so a method that
ignores frame order (a mean of frame features, for instance) cannot tell the twins apart,
while a temporal model can. The members of a pair always land in the same split, so test
tasks can contain both twins.

The dataset is written like the real benchmarks this package reads::

    ROOT/videos/<class>/<video_id>.mp4            (format="mp4", H.264, yuv420p)
    ROOT/frames/<class>/<video_id>/000001.jpg      (format="frames")
    ROOT/splits/trainlist01.txt, vallist01.txt, testlist01.txt   ("class/video_id" lines)
    ROOT/dataset.json                              (config, classes, videos)

>>> clip = render_clip("approach", np.random.default_rng(0))       # (24, 80, 80, 3) uint8
>>> root = generate_synthetic_dataset("/tmp/fsvid_synthetic")       # about 1,150 short mp4s

Generation is deterministic: video ``v`` of class ``c`` is drawn from its own generator
seeded by ``(seed, index of c in SYNTHETIC_CLASSES, v)``, so the files do not depend on the
number of worker processes nor on which other classes are selected.
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "SyntheticClass",
    "SyntheticConfig",
    "SYNTHETIC_CLASSES",
    "GENERATOR_VERSION",
    "list_synthetic_classes",
    "select_classes",
    "video_rng",
    "render_clip",
    "generate_synthetic_dataset",
]

GENERATOR_VERSION = 1
"""Bumped whenever the drawing code changes what a given seed produces. It is stored in
``dataset.json``: a dataset made by another version is treated like one made with another
config."""

SPLIT_FILES = {"train": "trainlist01.txt", "val": "vallist01.txt", "test": "testlist01.txt"}
FORMATS = ("mp4", "frames")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated files (stored in ``dataset.json``)."""

    num_classes: int = 48
    """How many classes, taken from :data:`SYNTHETIC_CLASSES` so that the three splits keep
    their proportions (28 train / 8 val / 12 test for all 48) and twins stay together.
    Ignored when ``classes`` is given."""
    classes: tuple[str, ...] | None = None
    """Explicit class names (each keeps its split from :data:`SYNTHETIC_CLASSES`)."""
    videos_per_class: int = 24
    frames: int = 24
    size: int = 80
    """Height = width in pixels (even for mp4: yuv420p halves the chroma planes)."""
    format: str = "mp4"
    """``"mp4"`` (H.264 via PyAV/libx264) or ``"frames"`` (a folder of JPEGs per video)."""
    seed: int = 0
    clutter: float = 1.0
    """Scales background texture, distractor shapes and pixel noise (0 = clean backgrounds)."""
    fps: int = 12
    crf: int = 18
    """libx264 constant rate factor (lower = better quality, bigger files)."""
    x264_preset: str = "ultrafast"
    """libx264 speed preset: ``ultrafast`` encodes 80x80 clips 2.5x faster than
    ``veryfast`` for files about 20% bigger."""
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
            unknown = [c for c in self.classes if c not in _CLASS_INDEX]
            if unknown:
                raise ValueError(
                    f"unknown synthetic class(es) {unknown}; known classes: {sorted(_CLASS_INDEX)}"
                )
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"duplicate class names in classes={list(self.classes)}")
            if not self.classes:
                raise ValueError("classes=() selects no class; give at least one name or None")
        if not 1 <= self.num_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(
                f"num_classes must be in 1..{len(SYNTHETIC_CLASSES)}, got {self.num_classes}"
            )
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.videos_per_class < 1:
            raise ValueError(f"videos_per_class must be >= 1, got {self.videos_per_class}")
        if self.frames < 2:
            raise ValueError(f"frames must be >= 2, got {self.frames}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if self.format == "mp4" and self.size % 2:
            raise ValueError(f"size must be even for mp4 (yuv420p), got {self.size}")
        if self.clutter < 0:
            raise ValueError(f"clutter must be >= 0, got {self.clutter}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"x264_preset must be one of {X264_PRESETS}, got {self.x264_preset!r}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``classes`` as a list or None)."""
        d = dataclasses.asdict(self)
        d["classes"] = None if self.classes is None else list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SyntheticConfig":
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SyntheticConfig keys {sorted(unknown)}; valid: {sorted(known)}")
        d = dict(d)
        if d.get("classes") is not None:
            d["classes"] = tuple(d["classes"])
        return cls(**d)


# ----------------------------------------------------------------------------------------
# Drawing: shapes as (approximate) signed distance functions
# ----------------------------------------------------------------------------------------
# A shape is a function g(u, v) of local coordinates measured in object radii (u to the
# right, v downwards, as in images): g < 0 inside, g > 0 outside, |g| roughly the distance
# to the edge in radii. The renderer turns g into an anti-aliased alpha mask,
# alpha = clip(0.5 - g * radius_px, 0, 1), i.e. a one-pixel soft edge.


def _rect(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    """Axis-aligned box centred at (cu, cv) with half sizes (hu, hv)."""
    return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _disk(u, v, p):
    return np.hypot(u, v) - 1.0


def _square(u, v, p):
    return _rect(u, v, 0.0, 0.0, 0.85, 0.85)


def _diamond(u, v, p):
    return (np.abs(u) + np.abs(v) - 1.1) * np.float32(0.7071)


def _triangle(u, v, p):
    # Equilateral, pointing up (v < 0), in-radius 0.55: intersection of three half-planes.
    return np.maximum(
        v - 0.55, np.maximum(0.866 * u - 0.5 * v - 0.55, -0.866 * u - 0.5 * v - 0.55)
    )


def _l_shape(u, v, p):
    return np.minimum(_rect(u, v, -0.5, 0.0, 0.35, 0.95), _rect(u, v, 0.05, 0.6, 0.9, 0.35))


def _arrow(u, v, p):
    shaft = _rect(u, v, -0.35, 0.0, 0.6, 0.25)
    head = np.maximum(
        0.05 - u, np.maximum((0.6 * (u - 1.0) + 0.85 * v) / 1.04, (0.6 * (u - 1.0) - 0.85 * v) / 1.04)
    )
    return np.minimum(shaft, head)


def _half_disk(u, v, p):
    return np.maximum(np.hypot(u, v) - 1.0, -v - 0.2)


def _t_shape(u, v, p):
    return np.minimum(_rect(u, v, 0.0, -0.65, 0.95, 0.3), _rect(u, v, 0.0, 0.15, 0.3, 0.85))


def _plus(u, v, p):
    return np.minimum(_rect(u, v, 0.0, 0.0, 0.95, 0.3), _rect(u, v, 0.0, 0.0, 0.3, 0.95))


def _superellipse(u, v, p):
    # |u|^p + |v|^p <= 1: a circle for p = 2, close to a square for p = 10 (morph classes).
    return (np.abs(u) ** p + np.abs(v) ** p) ** (1.0 / p) - 1.0


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "disk": _disk,
    "square": _square,
    "diamond": _diamond,
    "triangle": _triangle,
    "l_shape": _l_shape,
    "arrow": _arrow,
    "half_disk": _half_disk,
    "t_shape": _t_shape,
    "plus": _plus,
    "superellipse": _superellipse,
}
ANY_SHAPE = ("disk", "square", "diamond", "triangle", "l_shape", "arrow", "half_disk", "t_shape", "plus")
ASYMMETRIC_SHAPES = ("l_shape", "arrow", "half_disk", "t_shape")
"""Shapes without rotational symmetry: their rotation sense is visible."""
SYMMETRIC_SHAPES = ("disk", "square", "diamond", "plus")
# Distance from the centre to the bottom edge of an upright shape, in radii (put_on_top).
_HALF_HEIGHT = {"disk": 1.0, "square": 0.85, "diamond": 1.1, "triangle": 0.55}


@dataclass
class _Sprite:
    """One object over the clip: per-frame arrays of shape (T,), colour (T, 3)."""

    shape: str
    colour: np.ndarray  # (T, 3) in [0, 1]
    cx: np.ndarray  # (T,) pixels
    cy: np.ndarray  # (T,)
    radius: np.ndarray  # (T,) pixels
    angle: np.ndarray  # (T,) radians; increasing = clockwise on screen (v points down)
    sx: np.ndarray  # (T,) stretch along the local u axis
    sy: np.ndarray  # (T,)
    opacity: np.ndarray  # (T,) in [0, 1]
    morph: np.ndarray  # (T,) superellipse exponent (used by "superellipse" only)
    two_tone: bool = False  # lower half (v > 0) darker: makes orientation visible


_REACH = 1.4
"""Every shape lies within this many radii of its centre (the L and T corners: 1.35)."""


def _draw(canvas: np.ndarray, sprite: _Sprite, xs: np.ndarray, ys: np.ndarray) -> None:
    """Alpha-blend ``sprite`` onto ``canvas`` (T, H, W, 3) in place, all frames at once.

    Only the box the sprite can reach over the whole clip is computed (xs, ys: (H, W)
    pixel-centre coordinates).
    """
    H, W = xs.shape
    reach = _REACH * sprite.radius * np.maximum(sprite.sx, sprite.sy) + 1.0  # (T,) pixels
    x0, x1 = max(int(np.floor((sprite.cx - reach).min())), 0), min(int(np.ceil((sprite.cx + reach).max())), W)
    y0, y1 = max(int(np.floor((sprite.cy - reach).min())), 0), min(int(np.ceil((sprite.cy + reach).max())), H)
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the frame
    box = canvas[:, y0:y1, x0:x1]  # (T, h, w, 3), a view
    col = lambda a: a.astype(np.float32)[:, None, None]  # (T,) -> (T, 1, 1)
    dx = xs[None, y0:y1, x0:x1] - col(sprite.cx)  # (T, h, w)
    dy = ys[None, y0:y1, x0:x1] - col(sprite.cy)
    cos, sin = col(np.cos(sprite.angle)), col(np.sin(sprite.angle))
    # Inverse rotation into the object's frame, then divide by radius and stretch.
    u = (cos * dx + sin * dy) / col(sprite.radius * sprite.sx)  # (T, h, w)
    v = (-sin * dx + cos * dy) / col(sprite.radius * sprite.sy)
    g = _SHAPES[sprite.shape](u, v, col(sprite.morph))  # (T, h, w), < 0 inside
    px = col(sprite.radius * np.minimum(sprite.sx, sprite.sy))  # radii -> pixels
    alpha = np.clip(0.5 - g * px, 0.0, 1.0) * col(sprite.opacity)  # (T, h, w)
    colour = sprite.colour.astype(np.float32)[:, None, None, :]  # (T, 1, 1, 3)
    if sprite.two_tone:
        colour = np.where((v > 0)[..., None], colour * np.float32(0.55), colour)  # (T, h, w, 3)
    box += alpha[..., None] * (colour - box)


# ----------------------------------------------------------------------------------------
# Random appearance
# ----------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (g, g, C) grid to (size, size, C)."""
    g = small.shape[0]
    pos = np.linspace(0, g - 1, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, g - 2)
    w = (pos - i0).astype(np.float32)
    rows = small[i0] * (1 - w)[:, None, None] + small[i0 + 1] * w[:, None, None]  # (size, g, C)
    return rows[:, i0] * (1 - w)[None, :, None] + rows[:, i0 + 1] * w[None, :, None]


class _Canvas:
    """The frame geometry and the random choices every motion shares."""

    def __init__(self, rng: np.random.Generator, frames: int, size: int, clutter: float):
        self.T, self.S, self.clutter = frames, size, clutter
        self.t = np.linspace(0.0, 1.0, frames)  # (T,) normalised time
        self.ys, self.xs = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5)  # (H, W) each
        self.background = self._background(rng)  # (H, W, 3)
        self.bg_mean = self.background.reshape(-1, 3).mean(0)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        S, k = self.S, self.clutter
        bg = np.empty((S, S, 3), np.float32)
        bg[:] = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.8))
        # Smooth blotches: low-resolution noise, upsampled.
        g = int(rng.integers(3, 7))
        bg += k * rng.uniform(0.03, 0.09) * _upsample(rng.normal(size=(g, g, 3)).astype(np.float32), S)
        # Stripes, half of the time.
        if rng.random() < 0.5:
            phi, freq = rng.uniform(0, np.pi), rng.uniform(2, 6)
            wave = np.sin(2 * np.pi * freq * (self.xs * np.cos(phi) + self.ys * np.sin(phi)) / S + rng.uniform(0, 6.3))
            bg += k * rng.uniform(0.02, 0.05) * wave[..., None]
        # Static distractors: small, semi-transparent shapes.
        canvas = bg[None]  # (1, H, W, 3)
        for _ in range(int(round(k * rng.integers(2, 7)))):
            one = lambda x: np.array([x], np.float32)
            sprite = _Sprite(
                shape=str(rng.choice(ANY_SHAPE)),
                colour=_hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.9))[None],
                cx=one(rng.uniform(0, S)), cy=one(rng.uniform(0, S)),
                radius=one(rng.uniform(0.03, 0.065) * S), angle=one(rng.uniform(0, 2 * np.pi)),
                sx=one(1.0), sy=one(1.0), opacity=one(rng.uniform(0.15, 0.4)), morph=one(2.0),
            )
            _draw(canvas, sprite, self.xs, self.ys)
        return np.clip(canvas[0], 0.0, 1.0)

    # --- per-video choices -------------------------------------------------------------

    def progress(self, rng: np.random.Generator, min_len: float = 0.6) -> np.ndarray:
        """(T,) motion progress in [0, 1]: the motion fills a random window of the clip.

        The window's start and its distance to the clip end have the same distribution,
        so the window of a reversed clip is distributed like the original's.
        """
        length = rng.uniform(min_len, 1.0)
        start = rng.uniform(0.0, 1.0 - length)
        return np.clip((self.t - start) / length, 0.0, 1.0)

    def colour(self, rng: np.random.Generator, avoid: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """A saturated colour that stands out from the background and from ``avoid``."""
        best, best_score = None, -1.0
        for _ in range(50):
            c = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
            score = min([np.linalg.norm(c - self.bg_mean) / 0.45] + [np.linalg.norm(c - a) / 0.4 for a in avoid])
            if score >= 1.0:
                return c
            if score > best_score:
                best, best_score = c, score
        return best

    def uniform(self, rng: np.random.Generator, lo: float, hi: float) -> float:
        """A length drawn uniformly in [lo, hi] * size (pixels)."""
        return float(rng.uniform(lo, hi) * self.S)

    def drift(self, rng: np.random.Generator, s: np.ndarray, max_frac: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
        """A small straight drift in a uniformly random direction (a nuisance motion)."""
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, max_frac) * self.S
        return d * np.cos(a) * (s - 0.5), d * np.sin(a) * (s - 0.5)

    def sprite(
        self,
        rng: np.random.Generator,
        cx: Any,
        cy: Any,
        radius: Any,
        *,
        shape: str | None = None,
        shapes: tuple[str, ...] = ANY_SHAPE,
        colour: Any = None,
        angle: Any = None,
        sx: Any = 1.0,
        sy: Any = 1.0,
        opacity: Any = 1.0,
        morph: Any = 2.0,
        two_tone: bool | None = None,
    ) -> _Sprite:
        """Build a sprite; scalars are broadcast over the T frames, missing styles drawn."""
        T = self.T
        full = lambda a: np.broadcast_to(np.asarray(a, np.float32), (T,)).copy()
        if shape is None:
            shape = str(rng.choice(shapes))
        if colour is None:
            colour = self.colour(rng)
        if angle is None:
            angle = rng.uniform(0, 2 * np.pi)
        if two_tone is None:
            two_tone = bool(rng.random() < 0.3)
        colour = np.broadcast_to(np.asarray(colour, np.float32), (T, 3)).copy()
        return _Sprite(shape, colour, full(cx), full(cy), full(radius), full(angle), full(sx), full(sy),
                       full(opacity), full(morph), two_tone)

    def render(self, rng: np.random.Generator, sprites: list[_Sprite]) -> np.ndarray:
        """Composite sprites (back to front) over the background, add noise: (T, H, W, 3) uint8."""
        frames = np.repeat(self.background[None], self.T, axis=0)  # (T, H, W, 3)
        for sprite in sprites:
            _draw(frames, sprite, self.xs, self.ys)
        k = self.clutter
        # Independent per-frame noise and lighting flicker: reversing a clip keeps it i.i.d.
        frames += k * rng.normal(0.0, 0.012, size=(self.T, 1, 1, 1)).astype(np.float32)
        # Pixel noise, uniform with standard deviation sigma (cheaper to draw than normal).
        sigma = k * rng.uniform(0.01, 0.035)
        noise = rng.random(frames.shape, dtype=np.float32)  # (T, H, W, 3) in [0, 1)
        noise -= 0.5
        noise *= np.float32(sigma * np.sqrt(12.0))
        frames += noise
        np.clip(frames, 0.0, 1.0, out=frames)
        frames *= 255.0
        frames += 0.5
        return frames.astype(np.uint8)


# ----------------------------------------------------------------------------------------
# Motions: one function per base class, returning the sprites (back to front)
# ----------------------------------------------------------------------------------------
# Conventions: x to the right, y downwards, angles clockwise. Centres are kept within
# [M, S - M] (M = 0.18 S) where the class allows it, so that a 64-pixel crop of an 80-pixel
# frame still shows the object.

_MARGIN = 0.18


def _box(c: _Canvas, rng: np.random.Generator, extent: float, lo: float = _MARGIN) -> float:
    """A start coordinate so that [start, start + extent] stays within [lo S, (1 - lo) S]."""
    a, b = lo * c.S, (1 - lo) * c.S
    if extent >= 0:
        return float(rng.uniform(a, max(a, b - extent)))
    return float(rng.uniform(min(b, a - extent), b))


def _translate(direction: tuple[float, float]) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    dx, dy = np.asarray(direction, float) / np.hypot(*direction)

    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng)
        dist = c.uniform(rng, 0.36, 0.55)
        x0, y0 = _box(c, rng, dx * dist), _box(c, rng, dy * dist)
        spin = rng.uniform(-0.6, 0.6) * s
        obj = c.sprite(rng, x0 + dx * dist * s, y0 + dy * dist * s, c.uniform(rng, 0.1, 0.16))
        obj.angle += spin
        return [obj]

    return motion


def _move_and_back(direction: tuple[float, float]) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    dx, dy = direction

    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng, min_len=0.7)
        out = np.sin(np.pi * s)  # 0 -> 1 -> 0: symmetric in time
        dist = c.uniform(rng, 0.3, 0.45)
        x0, y0 = _box(c, rng, dx * dist), _box(c, rng, dy * dist)
        return [c.sprite(rng, x0 + dx * dist * out, y0 + dy * dist * out, c.uniform(rng, 0.1, 0.16))]

    return motion


def _approach(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    r0 = c.uniform(rng, 0.06, 0.08)
    r1 = r0 * rng.uniform(2.2, 3.0)
    radius = 1.0 / (1.0 / r0 + (1.0 / r1 - 1.0 / r0) * s)  # perspective: depth shrinks linearly
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.35, 0.65), c.uniform(rng, 0.35, 0.65)
    return [c.sprite(rng, x + ddx, y + ddy, radius)]


def _rotate(sense: float) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng)
        turn = np.deg2rad(rng.uniform(150, 300))
        ddx, ddy = c.drift(rng, s, 0.04)
        x, y = c.uniform(rng, 0.38, 0.62), c.uniform(rng, 0.38, 0.62)
        obj = c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.15, 0.21), shapes=ASYMMETRIC_SHAPES,
                       two_tone=bool(rng.random() < 0.5))
        obj.angle += sense * turn * s
        return [obj]

    return motion


def _appear(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.5)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.1, 0.16), opacity=s)]


def _blink(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.7)
    width = rng.uniform(0.2, 0.35)
    opacity = np.clip(np.abs(s - 0.5) / width, 0.0, 1.0)  # 1 -> 0 -> 1
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.1, 0.16), opacity=opacity)]


def _change_colour(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.5)
    first = c.colour(rng)
    second = c.colour(rng, avoid=(first,))
    colour = (1 - s)[:, None] * first + s[:, None] * second  # (T, 3)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.11, 0.17), colour=colour, two_tone=False)]


def _circle(sense: float) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng, min_len=0.7)
        cx, cy = c.uniform(rng, 0.44, 0.56), c.uniform(rng, 0.44, 0.56)
        R = c.uniform(rng, 0.17, 0.25)
        phi = rng.uniform(0, 2 * np.pi) + sense * np.deg2rad(rng.uniform(200, 300)) * s
        return [c.sprite(rng, cx + R * np.cos(phi), cy + R * np.sin(phi), c.uniform(rng, 0.08, 0.12))]

    return motion


def _spiral_inward(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.7)
    cx, cy = c.uniform(rng, 0.44, 0.56), c.uniform(rng, 0.44, 0.56)
    R0, R1 = c.uniform(rng, 0.26, 0.32), c.uniform(rng, 0.0, 0.04)
    radius_path = R0 + (R1 - R0) * s
    sense = rng.choice([-1.0, 1.0])  # either sense: only "inward" vs "outward" matters
    phi = rng.uniform(0, 2 * np.pi) + sense * np.deg2rad(rng.uniform(270, 420)) * s
    return [c.sprite(rng, cx + radius_path * np.cos(phi), cy + radius_path * np.sin(phi),
                     c.uniform(rng, 0.08, 0.12))]


def _line_pair(rng: np.random.Generator, c: _Canvas) -> tuple[float, float, float, float]:
    """A random axis through a point near the centre: (mid x, mid y, cos, sin)."""
    psi = rng.uniform(0, np.pi)
    return c.uniform(rng, 0.42, 0.58), c.uniform(rng, 0.42, 0.58), float(np.cos(psi)), float(np.sin(psi))


def _two_objects_approach(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    mx, my, ux, uy = _line_pair(rng, c)
    r1, r2 = c.uniform(rng, 0.08, 0.12), c.uniform(rng, 0.08, 0.12)
    d0 = c.uniform(rng, 0.58, 0.68)
    d1 = r1 + r2 + c.uniform(rng, 0.0, 0.06)  # they stop (nearly) touching
    half = 0.5 * (d0 + (d1 - d0) * s)  # (T,) half distance
    a = c.sprite(rng, mx - ux * half, my - uy * half, r1)
    b = c.sprite(rng, mx + ux * half, my + uy * half, r2, colour=c.colour(rng, avoid=(a.colour[0],)))
    return [a, b]


def _merge(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    mx, my, ux, uy = _line_pair(rng, c)
    r = c.uniform(rng, 0.09, 0.13)
    half = 0.5 * c.uniform(rng, 0.45, 0.58) * (1 - s)  # ends fully overlapping: one object
    a = c.sprite(rng, mx - ux * half, my - uy * half, r)
    b = c.sprite(rng, mx + ux * half, my + uy * half, r, shape=a.shape, colour=a.colour,
                 angle=a.angle, two_tone=a.two_tone)
    return [a, b]


def _cover(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    px, py = c.uniform(rng, 0.38, 0.62), c.uniform(rng, 0.38, 0.62)
    small = c.sprite(rng, px, py, c.uniform(rng, 0.07, 0.1))
    big_r = c.uniform(rng, 0.21, 0.26)  # square half side 0.85 * big_r covers the small one
    ang = rng.choice([0.0, 0.5, 1.0, 1.5]) * np.pi  # comes from the right/below/left/above
    dist = c.uniform(rng, 0.45, 0.6)
    ease = 1 - (1 - s) ** 2  # slows down as it settles over the object
    bx = px + np.cos(ang) * dist * (1 - ease)
    by = py + np.sin(ang) * dist * (1 - ease)
    cloth = c.sprite(rng, bx, by, big_r, shape="square", angle=0.0, two_tone=False,
                     colour=c.colour(rng, avoid=(small.colour[0],)))
    return [small, cloth]


def _put_on_top(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    bx, by = c.uniform(rng, 0.38, 0.62), c.uniform(rng, 0.7, 0.78)
    br, bsx, bsy = c.uniform(rng, 0.12, 0.15), rng.uniform(1.6, 2.0), rng.uniform(0.45, 0.6)
    base = c.sprite(rng, bx, by, br, shape="square", angle=0.0, sx=bsx, sy=bsy, two_tone=False)
    shape = str(rng.choice(tuple(_HALF_HEIGHT)))
    r = c.uniform(rng, 0.08, 0.11)
    y_rest = by - 0.85 * br * bsy - _HALF_HEIGHT[shape] * r  # resting on the base's top edge
    y_start = c.uniform(rng, 0.1, 0.2)
    x = bx + rng.uniform(-0.4, 0.4) * 0.85 * br * bsx
    top = c.sprite(rng, x, y_start + (y_rest - y_start) * s, r, shape=shape, angle=0.0,
                   colour=c.colour(rng, avoid=(base.colour[0],)))
    return [base, top]


def _fall(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    y0, dist = c.uniform(rng, 0.15, 0.25), c.uniform(rng, 0.42, 0.55)
    x0 = c.uniform(rng, 0.3, 0.7)
    sideways = c.uniform(rng, -0.12, 0.12)
    return [c.sprite(rng, x0 + sideways * s, y0 + dist * s**2, c.uniform(rng, 0.09, 0.14))]  # accelerates


def _speed_up(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    dist = c.uniform(rng, 0.4, 0.55) * rng.choice([-1.0, 1.0])
    x0, y = _box(c, rng, dist), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x0 + dist * s**2, y, c.uniform(rng, 0.09, 0.14))]


def _enter(axis: str) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng)
        r = c.uniform(rng, 0.1, 0.15)
        start, stop = -1.2 * r, c.uniform(rng, 0.4, 0.65)  # from fully outside to inside
        along = start + (stop - start) * (1 - (1 - s) ** 2)  # slides in and slows down
        other = c.uniform(rng, 0.3, 0.7)
        x, y = (along, other) if axis == "x" else (other, along)
        return [c.sprite(rng, x, y, r)]

    return motion


def _push(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng)
    ra, rb = c.uniform(rng, 0.08, 0.11), c.uniform(rng, 0.08, 0.11)
    contact = 0.95 * (ra + rb)
    d_free, d_push = c.uniform(rng, 0.15, 0.25), c.uniform(rng, 0.18, 0.26)
    xa0 = _box(c, rng, d_free + contact + d_push, lo=0.1)
    xb0 = xa0 + d_free + contact
    travel = (d_free + d_push) * s
    xa = xa0 + travel
    xb = xb0 + np.maximum(0.0, travel - d_free)  # B starts moving when A reaches it
    if rng.random() < 0.5:  # mirror: push to the left
        xa, xb = c.S - xa, c.S - xb
    y = c.uniform(rng, 0.35, 0.65)
    a = c.sprite(rng, xa, y, ra, shapes=("disk", "square", "diamond", "triangle"))
    b = c.sprite(rng, xb, y, rb, shapes=("disk", "square", "diamond", "triangle"),
                 colour=c.colour(rng, avoid=(a.colour[0],)))
    return [a, b]


def _morph_square_to_circle(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.5)
    p = np.exp(np.log(10.0) + (np.log(2.0) - np.log(10.0)) * s)  # 10 (square) -> 2 (circle)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.35, 0.65), c.uniform(rng, 0.35, 0.65)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.13, 0.18), shape="superellipse",
                     morph=p, angle=rng.uniform(0, np.pi / 2), two_tone=False)]


def _stretch(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
    s = c.progress(rng, min_len=0.5)
    grow = 1 + (rng.uniform(1.8, 2.4) - 1) * s
    sx, sy = (grow, 1.0) if rng.random() < 0.5 else (1.0, grow)  # horizontal or vertical
    ddx, ddy = c.drift(rng, s, 0.04)
    x, y = c.uniform(rng, 0.4, 0.6), c.uniform(rng, 0.4, 0.6)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.08, 0.11), shapes=SYMMETRIC_SHAPES,
                     angle=0.0, sx=sx, sy=sy)]


def _pass(in_front: bool) -> Callable[[np.random.Generator, _Canvas], list[_Sprite]]:
    def motion(rng: np.random.Generator, c: _Canvas) -> list[_Sprite]:
        s = c.progress(rng)
        ox, oy = c.uniform(rng, 0.44, 0.56), c.uniform(rng, 0.42, 0.58)
        pillar = c.sprite(rng, ox, oy, c.uniform(rng, 0.15, 0.18), shape="square", angle=0.0,
                          sx=rng.uniform(0.65, 0.8), sy=rng.uniform(1.5, 1.9), two_tone=False)
        dist = c.uniform(rng, 0.5, 0.62) * rng.choice([-1.0, 1.0])  # either direction
        mover = c.sprite(rng, ox - dist / 2 + dist * s, oy + c.uniform(rng, -0.08, 0.08),
                         c.uniform(rng, 0.07, 0.09), shapes=("disk", "square", "diamond", "triangle"),
                         colour=c.colour(rng, avoid=(pillar.colour[0],)))
        return [pillar, mover] if in_front else [mover, pillar]

    return motion


# ----------------------------------------------------------------------------------------
# The classes
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticClass:
    """One synthetic action class."""

    name: str
    split: str  # "train", "val" or "test"
    description: str
    twin: str | None = None
    """The class that is this one played backwards (None: no twin)."""
    reverses: str | None = None
    """If set, clips of this class are rendered as clips of ``reverses`` in reverse order."""


_MotionFn = Callable[[np.random.Generator, _Canvas], list[_Sprite]]


def _pair(split: str, a: str, a_desc: str, b: str, b_desc: str, motion: _MotionFn) -> list[tuple[SyntheticClass, _MotionFn | None]]:
    return [
        (SyntheticClass(a, split, a_desc, twin=b), motion),
        (SyntheticClass(b, split, b_desc, twin=a, reverses=a), None),
    ]


def _single(split: str, name: str, desc: str, motion: _MotionFn) -> list[tuple[SyntheticClass, _MotionFn | None]]:
    return [(SyntheticClass(name, split, desc), motion)]


# Within each split: pairs first, then classes without a twin (the order in which
# select_classes() takes them for smaller datasets).
_TABLE: list[tuple[SyntheticClass, _MotionFn | None]] = [
    # ---- train: 12 pairs + 4 singles = 28 classes
    *_pair("train", "move_left_to_right", "an object moves from left to right",
           "move_right_to_left", "an object moves from right to left", _translate((1, 0))),
    *_pair("train", "circle_clockwise", "an object travels clockwise along a circular path",
           "circle_anticlockwise", "an object travels anticlockwise along a circular path", _circle(+1.0)),
    *_pair("train", "two_objects_approach", "two objects move towards each other until they almost touch",
           "two_objects_separate", "two touching objects move apart", _two_objects_approach),
    *_pair("train", "push", "an object moves into another and pushes it along",
           "pull_and_release", "two touching objects move together, then one stops and the other moves on",
           _push),
    *_pair("train", "put_on_top", "an object comes down and lands on top of a flat object",
           "lift_off", "an object resting on a flat object rises off it", _put_on_top),
    *_pair("train", "move_diagonal_down_right", "an object moves diagonally from top left to bottom right",
           "move_diagonal_up_left", "an object moves diagonally from bottom right to top left",
           _translate((1, 1))),
    *_pair("train", "spiral_inward", "an object spirals in towards the centre (either sense)",
           "spiral_outward", "an object spirals out from the centre (either sense)", _spiral_inward),
    *_pair("train", "merge_into_one", "two identical objects slide into each other and become one",
           "split_in_two", "an object splits into two identical objects that slide apart", _merge),
    *_pair("train", "enter_from_left", "an object slides in from the left edge and stops",
           "exit_to_left", "a still object starts moving and leaves by the left edge", _enter("x")),
    *_pair("train", "morph_square_to_circle", "a square gradually turns into a circle",
           "morph_circle_to_square", "a circle gradually turns into a square", _morph_square_to_circle),
    *_pair("train", "stretch", "an object stretches along one axis (horizontal or vertical)",
           "squash", "an elongated object shrinks back along one axis", _stretch),
    *_pair("train", "speed_up", "an object starts from rest and accelerates sideways",
           "slow_down", "an object moving sideways decelerates to a stop", _speed_up),
    *_single("train", "move_right_and_back", "an object moves to the right and comes back",
             _move_and_back((1, 0))),
    *_single("train", "move_up_and_back", "an object moves up and comes back", _move_and_back((0, -1))),
    *_single("train", "pass_behind", "an object crosses behind a tall object (either direction)",
             _pass(in_front=False)),
    *_single("train", "change colour", "an object changes colour gradually (class name with a space)",
             _change_colour),
    # ---- val: 3 pairs + 2 singles = 8 classes
    *_pair("val", "cover", "a large square slides over a small object and hides it",
           "uncover", "a large square slides off a small object and reveals it", _cover),
    *_pair("val", "move_diagonal_down_left", "an object moves diagonally from top right to bottom left",
           "move_diagonal_up_right", "an object moves diagonally from bottom left to top right",
           _translate((-1, 1))),
    *_pair("val", "enter_from_top", "an object slides in from the top edge and stops",
           "exit_to_top", "a still object starts moving and leaves by the top edge", _enter("y")),
    *_single("val", "move_down_and_back", "an object moves down and comes back", _move_and_back((0, 1))),
    *_single("val", "blink", "an object fades out and back in", _blink),
    # ---- test: 5 pairs + 2 singles = 12 classes
    *_pair("test", "approach", "an object grows as if coming towards the camera",
           "recede", "an object shrinks as if moving away from the camera", _approach),
    *_pair("test", "rotate_clockwise", "an asymmetric object turns clockwise",
           "rotate_anticlockwise", "an asymmetric object turns anticlockwise", _rotate(+1.0)),
    *_pair("test", "appear", "an object fades in", "disappear", "an object fades out", _appear),
    *_pair("test", "fall", "an object drops, accelerating downwards",
           "toss_up", "an object shoots upwards and slows to a stop", _fall),
    *_pair("test", "move_up", "an object moves upwards", "move_down", "an object moves downwards",
           _translate((0, -1))),
    *_single("test", "move_left_and_back", "an object moves to the left and comes back",
             _move_and_back((-1, 0))),
    *_single("test", "pass_in_front", "an object crosses in front of a tall object (either direction)",
             _pass(in_front=True)),
]

SYNTHETIC_CLASSES: tuple[SyntheticClass, ...] = tuple(cls for cls, _ in _TABLE)
"""All classes, in a fixed order (a class's position seeds its videos)."""
_CLASS_INDEX = {cls.name: i for i, cls in enumerate(SYNTHETIC_CLASSES)}
_MOTIONS = {cls.name: motion for cls, motion in _TABLE if motion is not None}
assert len(_CLASS_INDEX) == len(SYNTHETIC_CLASSES)


def list_synthetic_classes(config: SyntheticConfig | None = None) -> list[SyntheticClass]:
    """The classes with split, description and twin: all of them, or those ``config`` selects."""
    return list(SYNTHETIC_CLASSES) if config is None else select_classes(config)


def select_classes(config: SyntheticConfig) -> list[SyntheticClass]:
    """The classes a config generates, in :data:`SYNTHETIC_CLASSES` order.

    With ``config.classes`` the named classes. Otherwise ``num_classes`` classes taken split
    by split so each split keeps its share of the full set (28/8/12): twins are taken
    together, and a class without a twin is used when one class is left to fill.
    """
    if config.classes is not None:
        return sorted((SYNTHETIC_CLASSES[_CLASS_INDEX[n]] for n in config.classes), key=lambda c: _CLASS_INDEX[c.name])
    units: dict[str, list[list[SyntheticClass]]] = {"train": [], "val": [], "test": []}
    for cls in SYNTHETIC_CLASSES:
        if cls.reverses is None:
            units[cls.split].append([cls] + ([SYNTHETIC_CLASSES[_CLASS_INDEX[cls.twin]]] if cls.twin else []))
    full = {split: sum(len(u) for u in us) for split, us in units.items()}
    taken: dict[str, int] = {split: 0 for split in units}
    chosen: list[SyntheticClass] = []
    while len(chosen) < config.num_classes:
        left = config.num_classes - len(chosen)
        # the split furthest below its share; ties: train, test, val
        order = sorted((s for s in ("train", "test", "val") if units[s]), key=lambda s: taken[s] / full[s])
        for split in order:
            fitting = [u for u in units[split] if len(u) <= left]
            if fitting:
                unit = fitting[0]
                units[split].remove(unit)
                chosen += unit
                taken[split] += len(unit)
                break
        else:  # only pairs left but one class to fill: use a pair's first member alone
            unit = units[order[0]].pop(0)
            chosen.append(unit[0])
            taken[order[0]] += 1
    return sorted(chosen, key=lambda c: _CLASS_INDEX[c.name])


def video_rng(seed: int, class_name: str, video_index: int) -> np.random.Generator:
    """The generator of one video, seeded by (seed, class position, video index)."""
    return np.random.default_rng([seed, _CLASS_INDEX[class_name], video_index])


def render_clip(
    class_name: str,
    rng: np.random.Generator | int | None = None,
    config: SyntheticConfig | None = None,
) -> np.ndarray:
    """Draw one clip of ``class_name``: (frames, size, size, 3) uint8 RGB.

    ``rng`` may be a numpy Generator or an int seed. A class with a twin that ``reverses``
    it is rendered as its twin's clip, drawn with the same generator, in reverse frame
    order: ``render_clip("recede", 0)`` is ``render_clip("approach", 0)[::-1]``.
    """
    if class_name not in _CLASS_INDEX:
        raise ValueError(f"unknown synthetic class {class_name!r}; known classes: {sorted(_CLASS_INDEX)}")
    config = config or SyntheticConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cls = SYNTHETIC_CLASSES[_CLASS_INDEX[class_name]]
    base = cls.reverses or cls.name
    canvas = _Canvas(rng, config.frames, config.size, config.clutter)
    clip = canvas.render(rng, _MOTIONS[base](rng, canvas))  # (T, H, W, 3) uint8
    return np.ascontiguousarray(clip[::-1]) if cls.reverses else clip


# ----------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------


def _video_id(class_name: str, index: int) -> str:
    return f"{class_name.replace(' ', '_')}_{index:04d}"


def _write_mp4(path: Path, clip: np.ndarray, config: SyntheticConfig) -> None:
    import av  # imported here: only the mp4 writer needs it

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=config.fps)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # parallelism comes from worker processes
        # mbtree=0: with x264's macroblock-tree rate control on, encoding the same frames
        # twice gave different bytes (measured with libx264 core 165); without it the
        # output is identical from run to run, which the determinism promise needs.
        stream.options = {"crf": str(config.crf), "preset": config.x264_preset, "x264-params": "mbtree=0"}
        for frame in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush
            container.mux(packet)
    os.replace(tmp, path)


def _write_frames(folder: Path, clip: np.ndarray, config: SyntheticConfig) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{i + 1:06d}.jpg", quality=config.jpeg_quality)


def _generate_class(root: str, config_dict: dict[str, Any], class_name: str) -> list[dict[str, Any]]:
    """Render and write all videos of one class (runs in a worker process)."""
    config = SyntheticConfig.from_dict(config_dict)
    split = SYNTHETIC_CLASSES[_CLASS_INDEX[class_name]].split
    records = []
    for v in range(config.videos_per_class):
        clip = render_clip(class_name, video_rng(config.seed, class_name, v), config)
        vid = _video_id(class_name, v)
        if config.format == "mp4":
            rel = Path("videos") / class_name / f"{vid}.mp4"
            _write_mp4(Path(root) / rel, clip, config)
        else:
            rel = Path("frames") / class_name / vid
            _write_frames(Path(root) / rel, clip, config)
        records.append({"class": class_name, "video_id": vid, "split": split, "path": rel.as_posix(),
                        "frames": int(clip.shape[0])})
    return records


def _describe_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(set(stored) | set(wanted))
    return ", ".join(f"{k}: {stored.get(k)!r} on disk vs {wanted.get(k)!r} requested"
                     for k in keys if stored.get(k) != wanted.get(k))


def generate_synthetic_dataset(
    root: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    progress: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Generate the dataset under ``root`` (see the module docstring for the layout).

    Idempotent: if ``root/dataset.json`` exists with the same config (and generator
    version) nothing is done. If it exists with a different config a ``ValueError``
    says what differs, unless ``overwrite=True``, which deletes the old ``videos/``,
    ``frames/``, ``splits/`` and ``dataset.json`` first. ``dataset.json`` is written last,
    so an interrupted run is simply redone. ``workers`` processes render in parallel
    (default: the number of CPUs, at most 8; 1 = in this process); the files are identical
    whatever the number.

    Returns ``root`` as a ``Path``.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    wanted = {"generator_version": GENERATOR_VERSION, **config.to_dict()}
    if meta_path.exists():
        try:
            stored_meta = json.loads(meta_path.read_text())
            stored = {"generator_version": stored_meta.get("generator_version"), **stored_meta["config"]}
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{meta_path} is not a synthetic dataset description ({err}); "
                             "remove it or choose another root") from err
        if stored == wanted:
            return root
        if not overwrite:
            raise ValueError(
                f"{root} already holds a synthetic dataset made with a different config "
                f"({_describe_mismatch(stored, wanted)}); pass overwrite=True to replace it "
                "or choose another root"
            )
        for sub in ("videos", "frames", "splits"):
            shutil.rmtree(root / sub, ignore_errors=True)
        meta_path.unlink()

    classes = select_classes(config)
    root.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, len(classes)))
    by_class: dict[str, list[dict[str, Any]]] = {}

    from tqdm.auto import tqdm

    total = len(classes) * config.videos_per_class
    with tqdm(total=total, desc="synthetic videos", unit="video", disable=not progress) as bar:
        if workers == 1:
            for cls in classes:
                by_class[cls.name] = _generate_class(str(root), config.to_dict(), cls.name)
                bar.update(config.videos_per_class)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_generate_class, str(root), config.to_dict(), cls.name): cls.name
                           for cls in classes}
                for future in as_completed(futures):
                    by_class[futures[future]] = future.result()
                    bar.update(config.videos_per_class)

    videos = [rec for cls in classes for rec in by_class[cls.name]]
    (root / "splits").mkdir(exist_ok=True)
    for split, filename in SPLIT_FILES.items():
        lines = [f"{rec['class']}/{rec['video_id']}" for rec in videos if rec["split"] == split]
        (root / "splits" / filename).write_text("".join(line + "\n" for line in lines))

    meta = {
        "name": "fsvid-synthetic",
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "format": config.format,
        "layout": "videos/<class>/<video_id>.mp4" if config.format == "mp4" else "frames/<class>/<video_id>/000001.jpg",
        "splits": {split: f"splits/{filename}" for split, filename in SPLIT_FILES.items()},
        "classes": [
            {"name": c.name, "index": _CLASS_INDEX[c.name], "split": c.split, "description": c.description,
             "twin": c.twin if c.twin in by_class else None, "reverses": c.reverses if c.reverses in by_class else None}
            for c in classes
        ],
        "videos": videos,
    }
    tmp = meta_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return root
