"""A view of a feature store: some of its videos, in another output form of the backbone.

A store of backbone *maps* (videos, C, T, h, w) holds everything the other output forms are
made of (:func:`fsvid.backbones.base.shape_output`): frame vectors are the spatial mean of
each time step, STRM's patches the map pooled to P x P, MASTAF's positions the flattened map.
So one store of maps can serve the four heads, each through a :class:`CacheView` that
reshapes the rows it reads; the backbone runs once per video for all of them (the demo's
pretrained regime trains four heads on one EfficientNet-Lite0 store).

A view can also keep only some of the videos (by key), e.g. the two classes of a
time-reversed pair, so that 2-way tasks of that pair are drawn from the test split's store
without building another one. A view has the reading interface of
:class:`fsvid.features.FeatureCache` (``features``, ``iter_view``, ``load_view``,
``video_keys``, ``class_names``, ``video_classes``, ``num_views``, ``feature_shape``, ...), so
:class:`fsvid.features.FeatureEpisodeDataset` and the precomputed heads read it as they read a
store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fsvid.backbones.base import OUTPUT_MODES, shape_output

from .store import FeatureCache

#: Videos read at a time by :meth:`CacheView.iter_view`.
CHUNK_VIDEOS = 128


@dataclass(frozen=True)
class OutputForm:
    """One output form of a backbone (``output``, ``patch_grid``, ``patch_pool``, as
    :class:`fsvid.backbones.VideoBackbone` has them)."""

    output: str
    patch_grid: int | None = 4
    patch_pool: str = "max"

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"unknown output form {self.output!r}: choose one of {OUTPUT_MODES}")

    @classmethod
    def of(cls, backbone: Any) -> OutputForm:
        """The form a backbone's ``forward`` gives."""
        return cls(backbone.output, backbone.patch_grid, backbone.patch_pool)

    def apply(self, maps: Tensor) -> Tensor:
        """maps (videos, C, T, h, w) -> this form (videos, ...)."""
        return shape_output(maps, self.output, self.patch_grid, self.patch_pool)


class CacheView:
    """``cache`` seen through ``form`` (``None``: as stored; otherwise the cache must hold maps
    (videos, C, T, h, w)) and restricted to ``video_keys`` (``None``: all of them, in order).

    With a subset, ``class_names`` are the sorted classes of the kept videos (what
    :class:`fsvid.data.EpisodeDataset` gives for the same video list) and video ``i`` of the
    view is the cache's video ``indices[i]``.
    """

    def __init__(
        self,
        cache: FeatureCache | CacheView,
        form: OutputForm | None = None,
        video_keys: Sequence[str] | None = None,
    ) -> None:
        if isinstance(cache, CacheView):  # a view of a view: compose
            form = form if form is not None else cache.form
            if video_keys is None:
                video_keys = cache.video_keys
            cache = cache.cache
        self.cache, self.form = cache, form
        if form is not None and len(cache.feature_shape) != 4:
            raise ValueError(
                f"{cache!r} does not hold backbone maps (C, T, h, w) but features {cache.feature_shape}: "
                f"it cannot be seen as {form.output!r}"
            )
        if video_keys is None:
            self.indices = np.arange(cache.num_videos, dtype=np.int64)
        else:
            position = {key: i for i, key in enumerate(cache.video_keys)}
            missing = [key for key in video_keys if key not in position]
            if missing:
                raise KeyError(f"{len(missing)} videos are not in the feature cache {cache.folder}, e.g. {missing[:3]}")
            self.indices = np.array([position[key] for key in video_keys], dtype=np.int64)
        self.video_keys: list[str] = [cache.video_keys[i] for i in self.indices]
        if video_keys is None:
            self.class_names: list[str] = list(cache.class_names)
        else:
            self.class_names = sorted({key.split("/")[0] for key in self.video_keys})
        class_index = {name: k for k, name in enumerate(self.class_names)}
        self.video_classes = np.array([class_index[key.split("/")[0]] for key in self.video_keys], dtype=np.int64)
        blank = torch.zeros(1, *cache.feature_shape)
        self.feature_shape: tuple[int, ...] = tuple(self._shaped(blank).shape[1:])

    # what a FeatureCache tells about itself
    folder = property(lambda self: self.cache.folder)
    settings = property(lambda self: self.cache.settings)
    num_views = property(lambda self: self.cache.num_views)
    train_views = property(lambda self: self.cache.train_views)
    dtype = property(lambda self: self.cache.dtype)

    @property
    def num_videos(self) -> int:
        return len(self.video_keys)

    def __len__(self) -> int:
        return self.num_videos

    def __repr__(self) -> str:
        form = self.form.output if self.form is not None else "as stored"
        return (f"CacheView({self.num_videos} of the {self.cache.num_videos} videos of {self.cache!r}, "
                f"form {form}, features {self.feature_shape})")

    def _shaped(self, features: Tensor) -> Tensor:
        return self.form.apply(features) if self.form is not None else features

    def features(self, videos: Sequence[int] | np.ndarray | Tensor, views: Sequence[int] | np.ndarray | int = 0) -> Tensor:
        """Float32 features of the view's videos ``videos``, (n, *feature_shape) (see
        :meth:`fsvid.features.FeatureCache.features`)."""
        videos = np.asarray(videos, dtype=np.int64).reshape(-1)
        if videos.size and (videos.min() < 0 or videos.max() >= self.num_videos):
            raise IndexError(f"video indices must be in 0..{self.num_videos - 1}, got {videos.min()}..{videos.max()}")
        return self._shaped(self.cache.features(self.indices[videos], views))  # (n, *feature_shape)

    def iter_view(self, view: int = 0) -> Iterator[tuple[int, Tensor]]:
        """``(start, features)`` in pieces of :data:`CHUNK_VIDEOS` videos, float32."""
        for start in range(0, self.num_videos, CHUNK_VIDEOS):
            stop = min(start + CHUNK_VIDEOS, self.num_videos)
            yield start, self.features(np.arange(start, stop), view)

    def load_view(self, view: int = 0) -> Tensor:
        """One view of every video of the view in memory, float32 (videos, *feature_shape)."""
        return torch.cat([features for _, features in self.iter_view(view)])

    def subset(self, video_keys: Sequence[str]) -> CacheView:
        """The same view restricted to ``video_keys`` (in that order)."""
        return CacheView(self, video_keys=video_keys)
