"""What a synthetic dataset is made of: :class:`SyntheticConfig` and the classes it selects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fsvid.data.synthetic.motions import CLASS_INDEX, SYNTHETIC_CLASSES, SyntheticClass

GENERATOR_VERSION = 1
"""Bumped whenever the drawing code changes what a given seed produces. It is stored in
``dataset.json``: a dataset made by another version is treated like one made with another
config."""

FORMATS = ("mp4", "frames")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


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
            unknown = [c for c in self.classes if c not in CLASS_INDEX]
            if unknown:
                raise ValueError(
                    f"unknown synthetic class(es) {unknown}; known classes: {sorted(CLASS_INDEX)}"
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
        return sorted((SYNTHETIC_CLASSES[CLASS_INDEX[n]] for n in config.classes), key=lambda c: CLASS_INDEX[c.name])
    units: dict[str, list[list[SyntheticClass]]] = {"train": [], "val": [], "test": []}
    for cls in SYNTHETIC_CLASSES:
        if cls.reverses is None:
            units[cls.split].append([cls] + ([SYNTHETIC_CLASSES[CLASS_INDEX[cls.twin]]] if cls.twin else []))
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
    return sorted(chosen, key=lambda c: CLASS_INDEX[c.name])
