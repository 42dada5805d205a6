"""Building a feature store with a frozen backbone: each video of a split through it once.

- **Views.** View 0 of a video is the test view (deterministic frames, centre crop, exactly
  ``load_clip(source, frames, train=False, ClipTransform(train=False, ...))``). Views
  ``1..train_views`` are augmented training views: view ``k`` of video ``v`` is the training
  clip drawn from ``numpy.random.default_rng([view_seed, v, k])`` (random frames, crop and
  flip), so a view is a pure function of the settings and a rebuilt or resumed cache holds
  the same values.
- **Resuming.** Running :func:`build_feature_cache` again with the same settings computes
  only the shards that are missing (:func:`fsvid.features.store.write_feature_cache`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fsvid.data.episodes import EpisodeDataset, load_clip
from fsvid.data.sampling import FrameSampling
from fsvid.data.splits import VideoSource, split_classes
from fsvid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform

from .settings import backbone_settings
from .store import FeatureCache, write_feature_cache


class _ViewClips(Dataset):
    """Item ``i``: the ``views`` clips of video ``start + i``, (views, L, 3, H, W)."""

    def __init__(
        self,
        videos: Sequence[VideoSource],
        start: int,
        views: int,
        frames: int,
        sampling: FrameSampling,
        test_transform: ClipTransform,
        train_transform: ClipTransform,
        view_seed: int,
        decode_threads: int,
    ) -> None:
        self.videos, self.start, self.views, self.frames, self.sampling = videos, start, views, frames, sampling
        self.test_transform, self.train_transform = test_transform, train_transform
        self.view_seed, self.decode_threads = view_seed, decode_threads

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: int) -> Tensor:
        source, video = self.videos[item], self.start + item
        clips = [load_clip(source, self.frames, False, self.test_transform, None, self.sampling, self.decode_threads)]
        for view in range(1, self.views):
            rng = np.random.default_rng([self.view_seed, video, view])
            clips.append(load_clip(source, self.frames, True, self.train_transform, rng, self.sampling, self.decode_threads))
        return torch.stack(clips)  # (views, L, 3, H, W)


def build_feature_cache(
    folder: str | os.PathLike,
    videos: Sequence[VideoSource],
    backbone: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    frames: int = 8,
    sampling: FrameSampling = "trx",
    resize: int | None = 256,
    crop: int = 224,
    flip: bool = True,
    normalize: bool = False,
    train_views: int = 0,
    view_seed: int = 0,
    dtype: str = "float16",
    backbone_name: str | None = None,
    weights_file: str | os.PathLike | None = None,
    hash_weights_file: bool = False,
    shard_size: int = 128,
    batch_size: int = 8,
    num_workers: int = 0,
    decode_threads: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> FeatureCache:
    """Run a frozen backbone once over every video and store its output (see the module docstring).

    Args:
        folder: cache folder. An unfinished cache with the same settings is resumed; one with
            other settings raises :class:`CacheMismatchError` (naming the differences)
            unless ``overwrite=True``.
        videos: the split's videos, e.g. ``EpisodeDataset.videos`` (after short videos were
            dropped) so that feature episodes match video episodes.
        backbone: any module mapping clips (videos, L, 3, H, W) to features (videos, ...);
            run in eval mode under ``torch.inference_mode`` on the device of its parameters.
        class_names: all classes of the split (default: sorted classes of ``videos``).
        frames, sampling: clip length and frame sampling (:mod:`fsvid.data.sampling`).
        resize, crop, flip, normalize: the :class:`fsvid.data.ClipTransform` settings.
        train_views: augmented training views per video besides the test view.
        view_seed: seed of the training views.
        dtype: ``"float16"`` (default) or ``"float32"`` on disk.
        backbone_name, weights_file, hash_weights_file: recorded with the backbone's
            parameter hash (:func:`backbone_settings`).
        shard_size: videos per shard file; batch_size: videos per backbone call.
        num_workers: DataLoader workers decoding clips; decode_threads: decord threads.
        progress: tqdm bar.

    Returns the finished :class:`FeatureCache`.
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if train_views < 0:
        raise ValueError(f"train_views must be non-negative, got {train_views}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    videos = list(videos)
    class_names = list(class_names) if class_names is not None else split_classes(videos)
    test_transform = ClipTransform(train=False, resize=resize, crop=crop, flip=flip, normalize=normalize)
    train_transform = ClipTransform(train=True, resize=resize, crop=crop, flip=flip, normalize=normalize)
    settings = {
        **backbone_settings(backbone, backbone_name, weights_file, hash_weights_file),
        "frames": frames,
        "sampling": sampling,
        "clip_transform": {"resize": resize, "crop": crop, "flip": flip, "flip_p": train_transform.flip_p,
                           "normalize": normalize, "mean": train_transform.mean if normalize else None,
                           "std": train_transform.std if normalize else None},
        "train_views": train_views,
        "view_seed": view_seed,
    }
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    views = 1 + train_views

    def batches(start: int, stop: int) -> Iterator[np.ndarray]:
        clips = _ViewClips(videos[start:stop], start, views, frames, sampling, test_transform, train_transform,
                           view_seed, decode_threads)
        loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=torch.stack,
                            generator=torch.Generator())  # leave the global random state alone
        for batch in loader:  # (b, views, L, 3, H, W)
            with torch.inference_mode():
                features = backbone(batch.flatten(0, 1).to(device))  # (b*views, *feature_shape)
            yield features.float().cpu().unflatten(0, (batch.shape[0], views)).numpy()  # (b, views, ...)

    was_training = backbone.training
    backbone.eval()
    try:
        return write_feature_cache(
            folder, [v.key for v in videos], batches, num_views=views, class_names=class_names, settings=settings,
            dtype=dtype, shard_size=shard_size, overwrite=overwrite, progress=progress,
        )
    finally:
        backbone.train(was_training)


def build_feature_cache_from_dataset(
    folder: str | os.PathLike, dataset: EpisodeDataset, backbone: nn.Module, **options: Any
) -> FeatureCache:
    """:func:`build_feature_cache` for the videos, classes, frames, sampling and clip
    transform of an :class:`fsvid.data.EpisodeDataset` (train or test: both views come from
    the transform's resize / crop / flip / normalize). ``options`` are passed on."""
    transform = dataset.transform
    if not isinstance(transform, ClipTransform):
        raise ValueError(
            f"the dataset's transform is {type(transform).__name__}, not a ClipTransform: call "
            "build_feature_cache with explicit resize/crop/flip/normalize instead"
        )
    custom_statistics = transform.mean != list(IMAGENET_MEAN) or transform.std != list(IMAGENET_STD)
    if transform.flip_p != 0.5 or (transform.normalize and custom_statistics):
        raise ValueError(f"{transform!r} has a non-default flip_p or mean/std, which the cache cannot reproduce")
    return build_feature_cache(
        folder, dataset.videos, backbone, class_names=dataset.class_names, frames=dataset.frames,
        sampling=dataset.sampling, resize=transform.resize, crop=transform.crop, flip=transform.flip,
        normalize=transform.normalize, decode_threads=dataset.decode_threads, **options,
    )

