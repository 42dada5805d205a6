"""The synthetic classes and the motion that defines each.

One function per base class returns the sprites of a clip (back to front); a class that
``reverses`` its twin has no motion of its own (its clips are the twin's, played backwards,
see :func:`fsvid.data.synthetic.render.render_clip`). :data:`SYNTHETIC_CLASSES` fixes the
classes' order, which seeds their videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fsvid.data.synthetic.canvas import ASYMMETRIC_SHAPES, SYMMETRIC_SHAPES, Canvas, Sprite


# ----------------------------------------------------------------------------------------
# Motions: one function per base class, returning the sprites (back to front)
# ----------------------------------------------------------------------------------------
# Conventions: x to the right, y downwards, angles clockwise. Centres are kept within
# [M, S - M] (M = 0.18 S) where the class allows it, so that a 64-pixel crop of an 80-pixel
# frame still shows the object.

_MARGIN = 0.18
# Distance from the centre to the bottom edge of an upright shape, in radii (put_on_top).
_HALF_HEIGHT = {"disk": 1.0, "square": 0.85, "diamond": 1.1, "triangle": 0.55}


def _box(c: Canvas, rng: np.random.Generator, extent: float, lo: float = _MARGIN) -> float:
    """A start coordinate so that [start, start + extent] stays within [lo S, (1 - lo) S]."""
    a, b = lo * c.S, (1 - lo) * c.S
    if extent >= 0:
        return float(rng.uniform(a, max(a, b - extent)))
    return float(rng.uniform(min(b, a - extent), b))


def _translate(direction: tuple[float, float]) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    dx, dy = np.asarray(direction, float) / np.hypot(*direction)

    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
        s = c.progress(rng)
        dist = c.uniform(rng, 0.36, 0.55)
        x0, y0 = _box(c, rng, dx * dist), _box(c, rng, dy * dist)
        spin = rng.uniform(-0.6, 0.6) * s
        obj = c.sprite(rng, x0 + dx * dist * s, y0 + dy * dist * s, c.uniform(rng, 0.1, 0.16))
        obj.angle += spin
        return [obj]

    return motion


def _move_and_back(direction: tuple[float, float]) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    dx, dy = direction

    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
        s = c.progress(rng, min_len=0.7)
        out = np.sin(np.pi * s)  # 0 -> 1 -> 0: symmetric in time
        dist = c.uniform(rng, 0.3, 0.45)
        x0, y0 = _box(c, rng, dx * dist), _box(c, rng, dy * dist)
        return [c.sprite(rng, x0 + dx * dist * out, y0 + dy * dist * out, c.uniform(rng, 0.1, 0.16))]

    return motion


def _approach(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng)
    r0 = c.uniform(rng, 0.06, 0.08)
    r1 = r0 * rng.uniform(2.2, 3.0)
    radius = 1.0 / (1.0 / r0 + (1.0 / r1 - 1.0 / r0) * s)  # perspective: depth shrinks linearly
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.35, 0.65), c.uniform(rng, 0.35, 0.65)
    return [c.sprite(rng, x + ddx, y + ddy, radius)]


def _rotate(sense: float) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
        s = c.progress(rng)
        turn = np.deg2rad(rng.uniform(150, 300))
        ddx, ddy = c.drift(rng, s, 0.04)
        x, y = c.uniform(rng, 0.38, 0.62), c.uniform(rng, 0.38, 0.62)
        obj = c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.15, 0.21), shapes=ASYMMETRIC_SHAPES,
                       two_tone=bool(rng.random() < 0.5))
        obj.angle += sense * turn * s
        return [obj]

    return motion


def _appear(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.5)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.1, 0.16), opacity=s)]


def _blink(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.7)
    width = rng.uniform(0.2, 0.35)
    opacity = np.clip(np.abs(s - 0.5) / width, 0.0, 1.0)  # 1 -> 0 -> 1
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.1, 0.16), opacity=opacity)]


def _change_colour(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.5)
    first = c.colour(rng)
    second = c.colour(rng, avoid=(first,))
    colour = (1 - s)[:, None] * first + s[:, None] * second  # (T, 3)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.3, 0.7), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.11, 0.17), colour=colour, two_tone=False)]


def _circle(sense: float) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
        s = c.progress(rng, min_len=0.7)
        cx, cy = c.uniform(rng, 0.44, 0.56), c.uniform(rng, 0.44, 0.56)
        R = c.uniform(rng, 0.17, 0.25)
        phi = rng.uniform(0, 2 * np.pi) + sense * np.deg2rad(rng.uniform(200, 300)) * s
        return [c.sprite(rng, cx + R * np.cos(phi), cy + R * np.sin(phi), c.uniform(rng, 0.08, 0.12))]

    return motion


def _spiral_inward(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.7)
    cx, cy = c.uniform(rng, 0.44, 0.56), c.uniform(rng, 0.44, 0.56)
    R0, R1 = c.uniform(rng, 0.26, 0.32), c.uniform(rng, 0.0, 0.04)
    radius_path = R0 + (R1 - R0) * s
    sense = rng.choice([-1.0, 1.0])  # either sense: only "inward" vs "outward" matters
    phi = rng.uniform(0, 2 * np.pi) + sense * np.deg2rad(rng.uniform(270, 420)) * s
    return [c.sprite(rng, cx + radius_path * np.cos(phi), cy + radius_path * np.sin(phi),
                     c.uniform(rng, 0.08, 0.12))]


def _line_pair(rng: np.random.Generator, c: Canvas) -> tuple[float, float, float, float]:
    """A random axis through a point near the centre: (mid x, mid y, cos, sin)."""
    psi = rng.uniform(0, np.pi)
    return c.uniform(rng, 0.42, 0.58), c.uniform(rng, 0.42, 0.58), float(np.cos(psi)), float(np.sin(psi))


def _two_objects_approach(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng)
    mx, my, ux, uy = _line_pair(rng, c)
    r1, r2 = c.uniform(rng, 0.08, 0.12), c.uniform(rng, 0.08, 0.12)
    d0 = c.uniform(rng, 0.58, 0.68)
    d1 = r1 + r2 + c.uniform(rng, 0.0, 0.06)  # they stop (nearly) touching
    half = 0.5 * (d0 + (d1 - d0) * s)  # (T,) half distance
    a = c.sprite(rng, mx - ux * half, my - uy * half, r1)
    b = c.sprite(rng, mx + ux * half, my + uy * half, r2, colour=c.colour(rng, avoid=(a.colour[0],)))
    return [a, b]


def _merge(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng)
    mx, my, ux, uy = _line_pair(rng, c)
    r = c.uniform(rng, 0.09, 0.13)
    half = 0.5 * c.uniform(rng, 0.45, 0.58) * (1 - s)  # ends fully overlapping: one object
    a = c.sprite(rng, mx - ux * half, my - uy * half, r)
    b = c.sprite(rng, mx + ux * half, my + uy * half, r, shape=a.shape, colour=a.colour,
                 angle=a.angle, two_tone=a.two_tone)
    return [a, b]


def _cover(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
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


def _put_on_top(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
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


def _fall(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng)
    y0, dist = c.uniform(rng, 0.15, 0.25), c.uniform(rng, 0.42, 0.55)
    x0 = c.uniform(rng, 0.3, 0.7)
    sideways = c.uniform(rng, -0.12, 0.12)
    return [c.sprite(rng, x0 + sideways * s, y0 + dist * s**2, c.uniform(rng, 0.09, 0.14))]  # accelerates


def _speed_up(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng)
    dist = c.uniform(rng, 0.4, 0.55) * rng.choice([-1.0, 1.0])
    x0, y = _box(c, rng, dist), c.uniform(rng, 0.3, 0.7)
    return [c.sprite(rng, x0 + dist * s**2, y, c.uniform(rng, 0.09, 0.14))]


def _enter(axis: str) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
        s = c.progress(rng)
        r = c.uniform(rng, 0.1, 0.15)
        start, stop = -1.2 * r, c.uniform(rng, 0.4, 0.65)  # from fully outside to inside
        along = start + (stop - start) * (1 - (1 - s) ** 2)  # slides in and slows down
        other = c.uniform(rng, 0.3, 0.7)
        x, y = (along, other) if axis == "x" else (other, along)
        return [c.sprite(rng, x, y, r)]

    return motion


def _push(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
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


def _morph_square_to_circle(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.5)
    p = np.exp(np.log(10.0) + (np.log(2.0) - np.log(10.0)) * s)  # 10 (square) -> 2 (circle)
    ddx, ddy = c.drift(rng, s)
    x, y = c.uniform(rng, 0.35, 0.65), c.uniform(rng, 0.35, 0.65)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.13, 0.18), shape="superellipse",
                     morph=p, angle=rng.uniform(0, np.pi / 2), two_tone=False)]


def _stretch(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
    s = c.progress(rng, min_len=0.5)
    grow = 1 + (rng.uniform(1.8, 2.4) - 1) * s
    sx, sy = (grow, 1.0) if rng.random() < 0.5 else (1.0, grow)  # horizontal or vertical
    ddx, ddy = c.drift(rng, s, 0.04)
    x, y = c.uniform(rng, 0.4, 0.6), c.uniform(rng, 0.4, 0.6)
    return [c.sprite(rng, x + ddx, y + ddy, c.uniform(rng, 0.08, 0.11), shapes=SYMMETRIC_SHAPES,
                     angle=0.0, sx=sx, sy=sy)]


def _pass(in_front: bool) -> Callable[[np.random.Generator, Canvas], list[Sprite]]:
    def motion(rng: np.random.Generator, c: Canvas) -> list[Sprite]:
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


MotionFn = Callable[[np.random.Generator, Canvas], list[Sprite]]


def _pair(split: str, a: str, a_desc: str, b: str, b_desc: str, motion: MotionFn) -> list[tuple[SyntheticClass, MotionFn | None]]:
    return [
        (SyntheticClass(a, split, a_desc, twin=b), motion),
        (SyntheticClass(b, split, b_desc, twin=a, reverses=a), None),
    ]


def _single(split: str, name: str, desc: str, motion: MotionFn) -> list[tuple[SyntheticClass, MotionFn | None]]:
    return [(SyntheticClass(name, split, desc), motion)]


# Within each split: pairs first, then classes without a twin (the order in which
# select_classes() takes them for smaller datasets).
_TABLE: list[tuple[SyntheticClass, MotionFn | None]] = [
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
CLASS_INDEX = {cls.name: i for i, cls in enumerate(SYNTHETIC_CLASSES)}
"""Class name -> its position in :data:`SYNTHETIC_CLASSES`."""
MOTIONS = {cls.name: motion for cls, motion in _TABLE if motion is not None}
"""Class name -> its motion, for the classes that do not reverse a twin."""
assert len(CLASS_INDEX) == len(SYNTHETIC_CLASSES)
