"""Feature store: a frozen backbone's output for every video of a split, computed once.

With a frozen backbone, every training or test task would run the same videos through the
same network again and again. The store runs each video once, keeps the result on disk and
lets heads be trained and evaluated from it:

- :mod:`~fsvid.features.store`: the cache folder (shards, index, resuming, memory-mapped
  reading; :class:`FeatureCache`, :func:`write_feature_cache`);
- :mod:`~fsvid.features.settings`: what the features depend on, and the
  :class:`CacheMismatchError` that names every setting a folder's cache differs in;
- :mod:`~fsvid.features.build`: the backbone over every video, test view and augmented
  training views (:func:`build_feature_cache`, :func:`build_feature_cache_from_dataset`);
- :mod:`~fsvid.features.views`: a store of backbone maps seen in another output form
  (frames, patches, positions) or restricted to some videos (:class:`CacheView`), so that one
  store serves every head;
- :mod:`~fsvid.features.episodes`: the few-shot tasks of cached features
  (:class:`FeatureEpisodeDataset`, the same tasks as :class:`fsvid.data.EpisodeDataset`);
- :mod:`~fsvid.features.evaluation`: many tasks scored from a precomputed head
  (:func:`evaluate_precomputed`).

The per-video precomputations of the heads themselves live with each head's math:
:class:`fsvid.heads.prototype.PrecomputedPrototypes`, :class:`fsvid.heads.trx.PrecomputedTRX`
and :class:`fsvid.heads.strm.PrecomputedSTRM` (in eval mode every step of these heads before
the support-query comparison depends on one video only, so it is done once per video and a
10,000-task evaluation takes minutes on a CPU).

Typical use::

    from fsvid.features import FeatureEpisodeDataset, build_feature_cache_from_dataset, evaluate_precomputed
    from fsvid.heads import PrecomputedTRX

    test_videos = EpisodeDataset.from_split(split, root, train=False, num_tasks=10_000)
    cache = build_feature_cache_from_dataset("cache/ssv2_test_r50", test_videos, backbone)
    episodes = FeatureEpisodeDataset.like(test_videos, cache)   # episode.support (25, 8, 2048)
    trx = PrecomputedTRX(trained_head.eval(), cache)
    result = evaluate_precomputed(trx, episodes)                # result.accuracies (10000,)
"""

from .build import build_feature_cache, build_feature_cache_from_dataset
from .episodes import FeatureEpisodeDataset
from .evaluation import PrecomputedEvaluation, evaluate_precomputed
from .settings import (
    CacheMismatchError,
    backbone_settings,
    describe_differences,
    file_sha256,
    module_sha256,
    video_list_settings,
)
from .store import CACHE_FORMAT, FeatureCache, write_feature_cache
from .views import CacheView, OutputForm

__all__ = [
    "CACHE_FORMAT",
    "CacheMismatchError",
    "CacheView",
    "FeatureCache",
    "FeatureEpisodeDataset",
    "OutputForm",
    "PrecomputedEvaluation",
    "backbone_settings",
    "build_feature_cache",
    "build_feature_cache_from_dataset",
    "describe_differences",
    "evaluate_precomputed",
    "file_sha256",
    "module_sha256",
    "video_list_settings",
    "write_feature_cache",
]
