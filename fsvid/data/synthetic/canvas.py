"""Drawing the synthetic clips: shapes as signed distance functions, sprites, the canvas.

A :class:`Sprite` is one object over a whole clip (per-frame position, size, angle, stretch,
opacity, colour); :class:`Canvas` holds a clip's frame geometry and random background and
composites sprites over it (:meth:`Canvas.render`). The motions of
:mod:`fsvid.data.synthetic.motions` decide what the sprites do.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


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


@dataclass
class Sprite:
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


def _draw(canvas: np.ndarray, sprite: Sprite, xs: np.ndarray, ys: np.ndarray) -> None:
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


class Canvas:
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
            sprite = Sprite(
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
    ) -> Sprite:
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
        return Sprite(shape, colour, full(cx), full(cy), full(radius), full(angle), full(sx), full(sy),
                       full(opacity), full(morph), two_tone)

    def render(self, rng: np.random.Generator, sprites: list[Sprite]) -> np.ndarray:
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
