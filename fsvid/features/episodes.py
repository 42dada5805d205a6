"""Few-shot tasks of cached features: the same tasks as the video episodes, features instead of clips.

Task ``i`` is drawn by the same :class:`fsvid.data.TaskSampler` from the same video list and
seed as :class:`fsvid.data.EpisodeDataset`, so it holds exactly the same classes and videos;
its ``support`` / ``query`` hold features instead of clips. In training, the view of every
video of task ``i`` is drawn from ``numpy.random.default_rng([seed, i, 1])`` (supports first,
then queries), the generator ``EpisodeDataset`` uses for its clip augmentation.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from fsvid.data.episodes import Episode, EpisodeDataset, QuerySampling, Task, TaskSampler

from .settings import CacheMismatchError, describe_video_lists
from .store import FeatureCache
from .views import CacheView


class FeatureEpisodeDataset(Dataset):
    """Map-style dataset of few-shot tasks of cached features: ``dataset[i]`` is the
    :class:`fsvid.data.Episode` of task ``i`` with ``support`` (C*K, *feature_shape) and
    ``query`` (C*Q, *feature_shape) float32 features.

    Task ``i`` is ``TaskSampler(cache videos, cache classes, way, shot, query, seed,
    query_sampling).task(i)``, the composition :class:`fsvid.data.EpisodeDataset` gives for the
    same video list, seed and query sampling (``one_class``: the Q queries of one class of the
    task, ``query`` (Q, *feature_shape)). ``train=False`` reads the test view (view 0); ``train=True`` picks for every video
    one of the training views ``1..train_views``, drawn from
    ``numpy.random.default_rng([seed, i, 1])`` (supports first, then queries), which needs a
    cache built with ``train_views >= 1``. ``cache``: a store, its folder, or a
    :class:`fsvid.features.CacheView` of one (another output form, some of its videos).
    """

    def __init__(
        self,
        cache: FeatureCache | CacheView | str | os.PathLike,
        *,
        way: int = 5,
        shot: int = 5,
        query: int = 1,
        train: bool = False,
        num_tasks: int = 10_000,
        seed: int = 0,
        query_sampling: QuerySampling = "per_class",
    ) -> None:
        self.cache = FeatureCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        if num_tasks < 0:
            raise ValueError(f"num_tasks must be non-negative, got {num_tasks}")
        if train and self.cache.train_views < 1:
            raise ValueError(
                f"train=True needs training views, but the cache in {self.cache.folder} has only the test view: "
                "build it with train_views >= 1, or use train=False to train on the test view"
            )
        self.class_names = list(self.cache.class_names)
        self.way, self.shot, self.query = way, shot, query
        self.train, self.num_tasks, self.seed = train, num_tasks, seed
        self.sampler = TaskSampler(self.cache.video_classes, self.class_names, way, shot, query, seed, query_sampling)

    @classmethod
    def like(
        cls, dataset: EpisodeDataset, cache: FeatureCache | CacheView | str | os.PathLike, num_tasks: int | None = None
    ) -> FeatureEpisodeDataset:
        """The feature twin of ``dataset``: same way, shot, query, query sampling, train, seed (and
        ``num_tasks`` unless given); checks that the cache holds exactly its videos and classes."""
        cache = FeatureCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        keys = [v.key for v in dataset.videos]
        if keys != cache.video_keys or list(dataset.class_names) != cache.class_names:
            raise CacheMismatchError(
                f"the feature cache in {cache.folder} was built for other videos than the dataset: "
                + describe_video_lists(cache.video_keys, keys)
            )
        return cls(cache, way=dataset.way, shot=dataset.shot, query=dataset.query, train=dataset.train,
                   num_tasks=dataset.num_tasks if num_tasks is None else num_tasks, seed=dataset.seed,
                   query_sampling=dataset.sampler.query_sampling)

    def __len__(self) -> int:
        return self.num_tasks

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one video's features, e.g. (L, D) or (L, P, D)."""
        return self.cache.feature_shape

    def task(self, index: int) -> Task:
        """Which videos task ``index`` uses, without reading them."""
        return self.sampler.task(index)

    def __getitem__(self, index: int) -> Episode:
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task {index} out of range for {self.num_tasks} tasks")
        task = self.sampler.task(index)
        support_videos, query_videos = task.support.reshape(-1), task.query.reshape(-1)  # class by class
        if self.train:
            rng = np.random.default_rng([self.seed, index, 1])
            views = 1 + rng.integers(0, self.cache.train_views, size=support_videos.size + query_videos.size)
        else:
            views = np.zeros(support_videos.size + query_videos.size, dtype=np.int64)
        features = self.cache.features(np.concatenate([support_videos, query_videos]), views)  # (C*K + C*Q, ...)
        keys = self.cache.video_keys
        return Episode(
            support=features[: support_videos.size],  # (C*K, *feature_shape)
            support_labels=torch.arange(self.way).repeat_interleave(self.shot),  # (C*K,)
            query=features[support_videos.size :],  # (C*Q, *feature_shape), or (Q, ...) of one class
            query_labels=torch.from_numpy(task.query_labels),  # (C*Q,), or (Q,)
            class_names=[self.class_names[c] for c in task.classes],
            class_indices=torch.from_numpy(task.classes),  # (C,)
            support_videos=[keys[v] for v in support_videos],
            query_videos=[keys[v] for v in query_videos],
            task_index=index,
        )

    def __repr__(self) -> str:
        mode = "train" if self.train else "test"
        queries = f"{self.query} queries/class" if self.sampler.query_sampling == "per_class" else \
            f"{self.query} queries of one class"
        return (f"FeatureEpisodeDataset({mode}, {self.way}-way {self.shot}-shot, {queries}, "
                f"{self.num_tasks} tasks, seed={self.seed}, {self.cache!r})")

