"""One clip of a synthetic class, and the generator that seeds each video."""

from __future__ import annotations

import numpy as np

from fsvid.data.synthetic.canvas import Canvas
from fsvid.data.synthetic.config import SyntheticConfig
from fsvid.data.synthetic.motions import CLASS_INDEX, MOTIONS, SYNTHETIC_CLASSES


def video_rng(seed: int, class_name: str, video_index: int) -> np.random.Generator:
    """The generator of one video, seeded by (seed, class position, video index)."""
    return np.random.default_rng([seed, CLASS_INDEX[class_name], video_index])


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
    if class_name not in CLASS_INDEX:
        raise ValueError(f"unknown synthetic class {class_name!r}; known classes: {sorted(CLASS_INDEX)}")
    config = config or SyntheticConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cls = SYNTHETIC_CLASSES[CLASS_INDEX[class_name]]
    base = cls.reverses or cls.name
    canvas = Canvas(rng, config.frames, config.size, config.clutter)
    clip = canvas.render(rng, MOTIONS[base](rng, canvas))  # (T, H, W, 3) uint8
    return np.ascontiguousarray(clip[::-1]) if cls.reverses else clip
