"""Feature cache: a frozen backbone's output for every video of a split, computed once.

With a frozen backbone, every training or test task would run the same videos through the
same network again and again. The cache runs each video once, stores the result on disk and
lets heads be trained and evaluated from it (:class:`FeatureEpisodeDataset`); for TRX and
STRM it can also precompute, per video, everything of the head that does not depend on the
task (:class:`PrecomputedTRX`, :class:`PrecomputedSTRM`), so that a 10,000-task evaluation
takes minutes on a CPU.

A cache is a folder::

    index.json          settings, shard table, finished shards, feature shape
    videos.json         the split's class names and videos ("class/video_id"), in order
    shard_00000.npy     (videos of the shard, views, *feature_shape), float16 (or float32)
    shard_00001.npy     ...

- **Views.** View 0 of a video is the test view (deterministic frames, centre crop, exactly
  ``load_clip(source, frames, train=False, ClipTransform(train=False, ...))``). Views
  ``1..train_views`` are augmented training views: view ``k`` of video ``v`` is the training
  clip drawn from ``numpy.random.default_rng([view_seed, v, k])`` (random frames, crop and
  flip), so a view is a pure function of the settings and a rebuilt or resumed cache holds
  the same values.
- **Shards** hold consecutive videos (``shard_size`` of them). Each is written to a temporary
  name, flushed, then renamed, and only then recorded in ``index.json`` (also written through
  a temporary file): a run killed at any moment leaves only finished shards, and running
  :func:`build_feature_cache` again with the same settings computes only the missing ones.
  Reading memory-maps the shards (``np.load(mmap_mode="r")``): only the rows a task needs
  are read from disk.
- **Settings.** ``index.json`` records everything the features depend on: the backbone (name,
  class, output form, its simple attributes, a SHA-256 of all its parameters and buffers,
  and the weights file's path, size and modification time when given), frames, frame
  sampling, resize / crop / flip / normalisation, dtype, number of views, view seed and a hash
  of the video list. Building into a folder whose cache has other settings raises
  :class:`CacheMismatchError` naming every differing setting, never mixing features.
- **One writer per folder.** Two processes building into the same folder at once are not
  coordinated; build on one process (e.g. rank 0) and read from all.
- **dtype.** float16 by default (half the disk and page cache of float32; features that do
  not fit in float16 are refused with a message), float32 on request; reading always returns
  float32 tensors.

Training and evaluating heads from the cache (:class:`FeatureEpisodeDataset`): task ``i`` is
drawn by the same :class:`fsvid.data.TaskSampler` from the same video list and seed as
:class:`fsvid.data.EpisodeDataset`, so it holds exactly the same classes and videos; its
``support`` / ``query`` hold features instead of clips. In training, the view of every video
of task ``i`` is drawn from ``numpy.random.default_rng([seed, i, 1])`` (supports first, then
queries), the generator ``EpisodeDataset`` uses for its clip augmentation.

Fast evaluation (:class:`PrecomputedPrototypes`, :class:`PrecomputedTRX`,
:class:`PrecomputedSTRM`, :func:`evaluate_precomputed`): in eval mode (no dropout) every step
of these heads before the support-query comparison depends on one video only, so it is done
once per video. For TRX, with the per-frame factorisation of ``fsvid.heads.trx`` (METHODS.md,
"exact identity worth using"), a tuple's key before LayerNorm and its value are sums of
per-frame pieces, ``W_1 (e_i + pe_i) + W_2 (e_j + pe_j) + b``; per video we store those
pieces, ``(L*w, D')`` per map and cardinality, and a task combines them (see
:func:`tuple_distance_logits` for the algebra, which also moves the key LayerNorm out of the
support-query products). The logits equal the head's up to float rounding.

Typical use::

    from fsvid.cache import (FeatureEpisodeDataset, PrecomputedTRX, build_feature_cache_from_dataset,
                             evaluate_precomputed)

    test_videos = EpisodeDataset.from_split(split, root, train=False, num_tasks=10_000)
    cache = build_feature_cache_from_dataset("cache/ssv2_test_r50", test_videos, backbone)
    episodes = FeatureEpisodeDataset.like(test_videos, cache)   # episode.support (25, 8, 2048)
    trx = PrecomputedTRX(trained_head.eval(), cache)
    result = evaluate_precomputed(trx, episodes)                # result.accuracies (10000,)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fsvid.data.episodes import Episode, EpisodeDataset, Task, TaskSampler, load_clip
from fsvid.data.sampling import FrameSampling
from fsvid.data.splits import VideoSource, split_classes
from fsvid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from fsvid.heads.common import HeadOutput
from fsvid.heads.prototype import PrototypeHead, video_vectors
from fsvid.heads.strm import STRMHead
from fsvid.heads.trx import TemporalCrossTransformer, TRXHead

CACHE_FORMAT = 1
INDEX_FILE = "index.json"
VIDEOS_FILE = "videos.json"
DTYPES = ("float16", "float32")
_SHARD_NAME = re.compile(r"^shard_\d{5}\.npy$")
_TEMP_NAME = re.compile(r"^\.(shard_\d{5}\.npy|index\.json|videos\.json)\.tmp-\d+$")
_SHOW = 5  # how many names a message lists

#: ``batches(start, stop)``: the features of videos ``start..stop-1`` as arrays
#: (videos, views, *feature_shape), in order, in one or more pieces.
ShardBatches = Callable[[int, int], Iterable[np.ndarray]]


class CacheMismatchError(ValueError):
    """A cache folder holds features computed with other settings than the ones requested."""


# ---------------------------------------------------------------------------------------------
# Settings: what the features depend on
# ---------------------------------------------------------------------------------------------


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (names, dtypes, shapes, values).

    Buffers include non-persistent ones such as a backbone's input mean and std, which are
    not in its state dict but change its output.
    """
    digest = hashlib.sha256()
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 16 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def backbone_settings(
    backbone: nn.Module,
    name: str | None = None,
    weights_file: str | os.PathLike | None = None,
    hash_weights_file: bool = False,
) -> dict[str, Any]:
    """The backbone part of a cache's settings.

    ``backbone``: its ``name`` (default: the class name), class, the simple attributes that
    shape its output (``output``, ``feature_dim``, ``patch_grid``, ``patch_pool``,
    ``frame_feature``, ... but not ``trainable``, which does not change eval-mode features)
    and ``weights_sha256``, a hash of all its parameters and buffers. ``weights_file`` adds
    the file's path, size and modification time (and its SHA-256 with
    ``hash_weights_file=True``), so replacing the file counts as a change too.
    """
    ignored = {"training", "trainable", "missing_file_help"}
    attributes = {
        key: value
        for key, value in sorted(vars(backbone).items())
        if not key.startswith("_") and key not in ignored and isinstance(value, (bool, int, float, str, tuple, type(None)))
    }
    settings: dict[str, Any] = {
        "backbone": name if name is not None else type(backbone).__name__,
        "backbone_class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "backbone_attributes": attributes,
        "weights_sha256": module_sha256(backbone),
        "weights_file": None,
    }
    if weights_file is not None:
        path = Path(weights_file).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        stat = path.stat()
        settings["weights_file"] = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if hash_weights_file:
            settings["weights_file"]["sha256"] = file_sha256(path)
    return settings


def video_list_settings(video_keys: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """The video-list part of the settings: counts and a hash of the ordered keys and classes."""
    digest = hashlib.sha256("\n".join(video_keys).encode() + b"\0" + "\n".join(class_names).encode())
    return {"count": len(video_keys), "classes": len(class_names), "sha256": digest.hexdigest()}


def _jsonable(value: Any) -> Any:
    """What ``value`` becomes after a JSON round trip (tuples -> lists), to compare settings."""
    return json.loads(json.dumps(value))


def describe_differences(
    cached: Mapping[str, Any],
    requested: Mapping[str, Any],
    cached_videos: Sequence[str] | None = None,
    requested_videos: Sequence[str] | None = None,
) -> list[str]:
    """One line per setting that differs, ``name: cache has X, requested Y``; for the video
    list, which videos are in one but not the other (when the lists are given)."""
    lines = []
    for key in sorted(set(cached) | set(requested)):
        old, new = cached.get(key, "<not set>"), requested.get(key, "<not set>")
        if old == new:
            continue
        if key == "videos" and cached_videos is not None and requested_videos is not None:
            lines.append("videos: " + _describe_video_lists(cached_videos, requested_videos))
        elif isinstance(old, dict) and isinstance(new, dict):
            for sub in sorted(set(old) | set(new)):
                before, after = old.get(sub, "<not set>"), new.get(sub, "<not set>")
                if before != after:
                    lines.append(f"{key}.{sub}: cache has {before!r}, requested {after!r}")
        else:
            hint = " (the backbone's parameters or buffers differ)" if key == "weights_sha256" else ""
            lines.append(f"{key}: cache has {old!r}, requested {new!r}{hint}")
    return lines


def _describe_video_lists(cached: Sequence[str], requested: Sequence[str]) -> str:
    cached_set, requested_set = set(cached), set(requested)
    only_cached = [v for v in cached if v not in requested_set]
    only_requested = [v for v in requested if v not in cached_set]
    parts = [f"the cache holds {len(cached)} videos, the request has {len(requested)}"]
    if only_cached:
        parts.append(f"{len(only_cached)} only in the cache (e.g. {only_cached[:_SHOW]})")
    if only_requested:
        parts.append(f"{len(only_requested)} only in the request (e.g. {only_requested[:_SHOW]})")
    if not only_cached and not only_requested:
        parts.append("the same videos in another order, or other class names")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Writing: shards, index, resuming
# ---------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, flush to disk, rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, content: Any) -> None:
    _atomic_write(path, lambda handle: handle.write(json.dumps(content, indent=1).encode()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete the cache folder and rebuild it") from error


def _shard_file(shard: int) -> str:
    return f"shard_{shard:05d}.npy"


def _remove_cache_files(folder: Path) -> None:
    """Delete what a cache consists of (index, video list, shards, leftovers), nothing else."""
    for item in folder.iterdir():
        if item.name in (INDEX_FILE, VIDEOS_FILE) or _SHARD_NAME.match(item.name) or _TEMP_NAME.match(item.name):
            item.unlink()


def _shard_is_valid(path: Path, rows: int, num_views: int, feature_shape: Sequence[int] | None, dtype: str) -> bool:
    """Whether a finished shard's file is there with the expected header (read without loading)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    expected = (rows, num_views, *feature_shape) if feature_shape is not None else None
    return array.dtype == np.dtype(dtype) and (expected is None or tuple(array.shape) == expected)


def write_feature_cache(
    folder: str | os.PathLike,
    video_keys: Sequence[str],
    batches: ShardBatches,
    *,
    num_views: int = 1,
    class_names: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    dtype: str = "float16",
    shard_size: int = 128,
    overwrite: bool = False,
    progress: bool = True,
) -> FeatureCache:
    """Write (or finish) a cache from any source of features: the storage loop behind
    :func:`build_feature_cache`, usable directly for features computed elsewhere.

    Args:
        folder: the cache folder (created if needed).
        video_keys: ``class/video_id`` of every video, in order (index ``v`` is video ``v``).
        batches: ``batches(start, stop)`` yields the features of videos ``start..stop-1``
            in order, as float arrays (videos, num_views, *feature_shape), in one or more
            pieces. Called once per unfinished shard.
        num_views: views per video (view 0 the test view).
        class_names: all classes of the split (default: the sorted classes of the keys).
        settings: what the features depend on (JSON-serialisable); ``videos``, ``dtype`` and
            ``views`` are added. A folder holding a cache with other settings is refused
            with :class:`CacheMismatchError` unless ``overwrite=True``.
        dtype: ``"float16"`` or ``"float32"`` on disk.
        shard_size: videos per shard. A resumed cache keeps the shard size it was begun with.
        overwrite: delete whatever cache the folder holds (only its index, video list and
            shards) and start again.
        progress: tqdm bar over the videos.
    """
    folder = Path(folder)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    video_keys = list(video_keys)
    if not video_keys:
        raise ValueError("a feature cache needs at least one video")
    if len(set(video_keys)) != len(video_keys):
        raise ValueError("video_keys repeat a video")
    malformed = [key for key in video_keys if key.count("/") != 1]
    if malformed:
        raise ValueError(f"video keys must be 'class/video_id', got {malformed[:_SHOW]}")
    class_names = list(class_names) if class_names is not None else sorted({k.split("/")[0] for k in video_keys})
    unknown = sorted({k.split("/")[0] for k in video_keys} - set(class_names))
    if unknown:
        raise ValueError(f"videos of classes {unknown[:_SHOW]} are not in class_names")

    requested = _jsonable(
        {**dict(settings or {}), "videos": video_list_settings(video_keys, class_names), "dtype": dtype, "views": num_views}
    )
    folder.mkdir(parents=True, exist_ok=True)
    index = _open_or_start(folder, requested, video_keys, class_names, shard_size, num_views, dtype, overwrite)

    shards, finished = index["shards"], set(index["finished"])
    done = sum(stop - start for s, (start, stop) in enumerate(shards) if s in finished)
    bar = tqdm(total=len(video_keys), initial=done, desc=f"caching features in {folder.name}", unit="video",
               disable=not progress)
    try:
        for shard, (start, stop) in enumerate(shards):
            if shard in finished:
                continue
            pieces = []
            for piece in batches(start, stop):
                piece = np.asarray(piece)
                pieces.append(piece)
                bar.update(piece.shape[0])
            array = _check_shard(np.concatenate(pieces), start, stop, num_views, index["feature_shape"], dtype, folder)
            _atomic_write(folder / _shard_file(shard), lambda handle: np.save(handle, array))
            index["feature_shape"] = list(array.shape[2:])
            index["finished"] = sorted(finished | {shard})
            finished.add(shard)
            index["complete"] = len(finished) == len(shards)
            _write_json(folder / INDEX_FILE, index)
    finally:
        bar.close()
    return FeatureCache(folder)


def _open_or_start(
    folder: Path,
    requested: dict[str, Any],
    video_keys: list[str],
    class_names: list[str],
    shard_size: int,
    num_views: int,
    dtype: str,
    overwrite: bool,
) -> dict[str, Any]:
    """The index to continue from: the existing one if its settings match (finished shards
    checked on disk), or a fresh one. Refuses other settings unless ``overwrite``."""
    for item in folder.iterdir():  # leftovers of an interrupted write
        if _TEMP_NAME.match(item.name):
            item.unlink()
    index_path = folder / INDEX_FILE
    if index_path.exists() and not overwrite:
        index = _read_json(index_path)
        if index.get("format") != CACHE_FORMAT:
            raise CacheMismatchError(
                f"{index_path} has cache format {index.get('format')!r}, this version writes {CACHE_FORMAT}: "
                "pass overwrite=True to rebuild it or use another folder"
            )
        if index["settings"] != requested:
            cached_videos = _read_json(folder / VIDEOS_FILE)["videos"] if (folder / VIDEOS_FILE).exists() else None
            differences = describe_differences(index["settings"], requested, cached_videos, video_keys)
            raise CacheMismatchError(
                f"the feature cache in {folder} was built with other settings:\n  "
                + "\n  ".join(differences)
                + f"\nTo rebuild it, pass overwrite=True (this deletes the cached features in {folder}) "
                "or choose another folder."
            )
        # Keep only the finished shards whose files are really there and intact.
        shards = index["shards"]
        index["finished"] = [
            s for s in index["finished"]
            if _shard_is_valid(folder / _shard_file(s), shards[s][1] - shards[s][0], num_views, index["feature_shape"], dtype)
        ]
        index["complete"] = len(index["finished"]) == len(shards)
        return index

    if overwrite:
        _remove_cache_files(folder)
    elif any(_SHARD_NAME.match(item.name) for item in folder.iterdir()) or (folder / VIDEOS_FILE).exists():
        raise CacheMismatchError(
            f"{folder} holds cache shards but no {INDEX_FILE}: pass overwrite=True to rebuild or use another folder"
        )
    starts = range(0, len(video_keys), shard_size)
    index = {
        "format": CACHE_FORMAT,
        "settings": requested,
        "num_videos": len(video_keys),
        "num_views": num_views,
        "dtype": dtype,
        "shard_size": shard_size,
        "shards": [[start, min(start + shard_size, len(video_keys))] for start in starts],
        "finished": [],
        "feature_shape": None,
        "complete": False,
    }
    _write_json(folder / VIDEOS_FILE, {"class_names": class_names, "videos": video_keys})
    _write_json(index_path, index)
    return index


def _check_shard(
    array: np.ndarray, start: int, stop: int, num_views: int, feature_shape: Sequence[int] | None, dtype: str, folder: Path
) -> np.ndarray:
    """Shape and value checks before a shard goes to disk; returns it in the storage dtype."""
    if array.ndim < 2 or array.shape[:2] != (stop - start, num_views):
        raise ValueError(
            f"features of videos {start}..{stop - 1} must be (videos={stop - start}, views={num_views}, ...), "
            f"got {tuple(array.shape)}"
        )
    if feature_shape is not None and list(array.shape[2:]) != list(feature_shape):
        raise ValueError(
            f"features of videos {start}..{stop - 1} have shape {array.shape[2:]}, earlier shards {tuple(feature_shape)}"
        )
    with np.errstate(over="ignore"):  # reported below with a hint
        stored = array.astype(dtype)
    if not np.isfinite(stored).all():
        hint = " (values beyond float16's range 65504: build with dtype='float32')" if np.isfinite(array).all() else ""
        raise ValueError(f"features of videos {start}..{stop - 1} for {folder} are not finite{hint}")
    return stored


# ---------------------------------------------------------------------------------------------
# Building from videos with a frozen backbone
# ---------------------------------------------------------------------------------------------


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
        loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=torch.stack)
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


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


class FeatureCache:
    """A finished cache folder, read through memory-mapped shards.

    Attributes: ``folder``, ``settings`` (as recorded), ``class_names``, ``video_keys``,
    ``video_classes`` ((videos,) index into ``class_names``), ``num_views``,
    ``train_views``, ``feature_shape``, ``dtype`` (on disk).

    Raises ``FileNotFoundError`` when the folder holds no cache and ``ValueError`` when the
    cache is unfinished (``require_complete=True``, the default).
    """

    def __init__(self, folder: str | os.PathLike, require_complete: bool = True) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"no feature cache in {self.folder} (no {INDEX_FILE}); build one with build_feature_cache")
        index = _read_json(index_path)
        if index.get("format") != CACHE_FORMAT:
            raise ValueError(f"{index_path} has cache format {index.get('format')!r}, expected {CACHE_FORMAT}")
        if require_complete and not index["complete"]:
            done = sum(b - a for s, (a, b) in enumerate(index["shards"]) if s in set(index["finished"]))
            raise ValueError(
                f"the feature cache in {self.folder} is unfinished ({done} of {index['num_videos']} videos): "
                "run build_feature_cache again with the same settings to finish it"
            )
        listing = _read_json(self.folder / VIDEOS_FILE)
        self.index = index
        self.settings: dict[str, Any] = index["settings"]
        self.class_names: list[str] = listing["class_names"]
        self.video_keys: list[str] = listing["videos"]
        class_index = {name: k for k, name in enumerate(self.class_names)}
        self.video_classes = np.array([class_index[key.split("/")[0]] for key in self.video_keys], dtype=np.int64)
        self.num_views: int = index["num_views"]
        self.feature_shape: tuple[int, ...] = tuple(index["feature_shape"] or ())
        self.dtype: str = index["dtype"]
        self._starts = np.array([start for start, _ in index["shards"]], dtype=np.int64)  # (shards,)
        self._arrays: dict[int, np.ndarray] = {}

    @property
    def num_videos(self) -> int:
        return len(self.video_keys)

    @property
    def train_views(self) -> int:
        return self.num_views - 1

    def __len__(self) -> int:
        return self.num_videos

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.folder)!r}, {self.num_videos} videos in {len(self.class_names)} classes, "
                f"{self.num_views} views, features {self.feature_shape} {self.dtype})")

    def shard_array(self, shard: int) -> np.ndarray:
        """Shard ``shard`` memory-mapped read-only: (videos of the shard, views, *feature_shape)."""
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.folder / _shard_file(shard), mmap_mode="r")
        return self._arrays[shard]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the memory maps
        return {**self.__dict__, "_arrays": {}}

    def check_settings(self, **expected: Any) -> None:
        """Raise :class:`CacheMismatchError` naming every ``expected`` setting the cache does
        not have, e.g. ``cache.check_settings(frames=8, sampling="trx")``."""
        cached = {key: self.settings.get(key, "<not set>") for key in expected}
        differences = describe_differences(cached, _jsonable(expected))
        if differences:
            raise CacheMismatchError(f"the feature cache in {self.folder} does not match:\n  " + "\n  ".join(differences))

    def features(self, videos: Sequence[int] | np.ndarray | Tensor, views: Sequence[int] | np.ndarray | int = 0) -> Tensor:
        """Float32 features of the given videos, (n, *feature_shape); ``views`` one view for
        all or one per video. Reads only those rows from the memory-mapped shards."""
        videos = np.asarray(videos, dtype=np.int64).reshape(-1)
        views = np.broadcast_to(np.asarray(views, dtype=np.int64), videos.shape)
        if videos.size and (videos.min() < 0 or videos.max() >= self.num_videos):
            raise IndexError(f"video indices must be in 0..{self.num_videos - 1}, got {videos.min()}..{videos.max()}")
        if views.size and (views.min() < 0 or views.max() >= self.num_views):
            raise IndexError(f"views must be in 0..{self.num_views - 1}, got {views.min()}..{views.max()}")
        shards = np.searchsorted(self._starts, videos, side="right") - 1  # (n,)
        out = np.empty((videos.size, *self.feature_shape), dtype=np.float32)
        for k, (video, view, shard) in enumerate(zip(videos, views, shards)):
            out[k] = self.shard_array(int(shard))[video - self._starts[shard], view]
        return torch.from_numpy(out)

    def iter_view(self, view: int = 0) -> Iterator[tuple[int, Tensor]]:
        """``(start, features)`` shard by shard: float32 (videos of the shard, *feature_shape)."""
        for shard, start in enumerate(self._starts.tolist()):
            yield start, torch.from_numpy(np.array(self.shard_array(shard)[:, view], dtype=np.float32))  # a copy

    def load_view(self, view: int = 0) -> Tensor:
        """One view of every video in memory, float32 (videos, *feature_shape)."""
        return torch.cat([features for _, features in self.iter_view(view)])


# ---------------------------------------------------------------------------------------------
# Few-shot tasks of features
# ---------------------------------------------------------------------------------------------


class FeatureEpisodeDataset(Dataset):
    """Map-style dataset of few-shot tasks of cached features: ``dataset[i]`` is the
    :class:`fsvid.data.Episode` of task ``i`` with ``support`` (C*K, *feature_shape) and
    ``query`` (C*Q, *feature_shape) float32 features.

    Task ``i`` is ``TaskSampler(cache videos, cache classes, way, shot, query, seed).task(i)``,
    the composition :class:`fsvid.data.EpisodeDataset` gives for the same video list and
    seed. ``train=False`` reads the test view (view 0); ``train=True`` picks for every video
    one of the training views ``1..train_views``, drawn from
    ``numpy.random.default_rng([seed, i, 1])`` (supports first, then queries), which needs a
    cache built with ``train_views >= 1``.
    """

    def __init__(
        self,
        cache: FeatureCache | str | os.PathLike,
        *,
        way: int = 5,
        shot: int = 5,
        query: int = 1,
        train: bool = False,
        num_tasks: int = 10_000,
        seed: int = 0,
    ) -> None:
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
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
        self.sampler = TaskSampler(self.cache.video_classes, self.class_names, way, shot, query, seed)

    @classmethod
    def like(
        cls, dataset: EpisodeDataset, cache: FeatureCache | str | os.PathLike, num_tasks: int | None = None
    ) -> FeatureEpisodeDataset:
        """The feature twin of ``dataset``: same way, shot, query, train, seed (and
        ``num_tasks`` unless given); checks that the cache holds exactly its videos and classes."""
        cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        keys = [v.key for v in dataset.videos]
        if keys != cache.video_keys or list(dataset.class_names) != cache.class_names:
            raise CacheMismatchError(
                f"the feature cache in {cache.folder} was built for other videos than the dataset: "
                + _describe_video_lists(cache.video_keys, keys)
            )
        return cls(cache, way=dataset.way, shot=dataset.shot, query=dataset.query, train=dataset.train,
                   num_tasks=dataset.num_tasks if num_tasks is None else num_tasks, seed=dataset.seed)

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
            query=features[support_videos.size :],  # (C*Q, *feature_shape)
            query_labels=torch.arange(self.way).repeat_interleave(self.query),  # (C*Q,)
            class_names=[self.class_names[c] for c in task.classes],
            class_indices=torch.from_numpy(task.classes),  # (C,)
            support_videos=[keys[v] for v in support_videos],
            query_videos=[keys[v] for v in query_videos],
            task_index=index,
        )

    def __repr__(self) -> str:
        mode = "train" if self.train else "test"
        return (f"FeatureEpisodeDataset({mode}, {self.way}-way {self.shot}-shot, {self.query} queries/class, "
                f"{self.num_tasks} tasks, seed={self.seed}, {self.cache!r})")


# ---------------------------------------------------------------------------------------------
# Fast evaluation: per-video precomputation, then tasks from video indices
# ---------------------------------------------------------------------------------------------

FeatureSource = Tensor | FeatureCache


def _chunks(features: FeatureSource, size: int, device: torch.device) -> Iterator[Tensor]:
    """Test-view features in pieces of at most ``size`` videos, float32 on ``device``."""
    if isinstance(features, FeatureCache):
        for _, shard in features.iter_view(0):
            for piece in shard.split(size):
                yield piece.to(device)
    else:
        for piece in features.split(size):
            yield piece.to(device=device, dtype=torch.float32)


def _device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module)."""
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _require_eval(module: nn.Module, name: str) -> None:
    if module.training:
        raise ValueError(
            f"{name} is in training mode: call .eval() first (the per-video precomputation holds only without dropout)"
        )


def _as_index(indices: Tensor | np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(indices), dtype=torch.long, device=device)


class PrecomputedPrototypes:
    """:class:`fsvid.heads.PrototypeHead` from per-video mean vectors.

    ``scorer(support, query)``: support (tasks, way, shots) and query (tasks, queries) video
    indices -> ``HeadOutput`` with logits (tasks, queries, way), column ``c`` = row ``c`` of
    ``support``. Equal to the head on each task.
    """

    def __init__(self, head: PrototypeHead, features: FeatureSource, chunk_size: int = 256) -> None:
        device = _device_of(head)
        self.head = head
        with torch.inference_mode():
            self.vectors = torch.cat([video_vectors(chunk) for chunk in _chunks(features, chunk_size, device)])  # (videos, D)

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        support, query = _as_index(support, self.vectors.device), _as_index(query, self.vectors.device)
        prototypes = self.vectors[support].mean(dim=2)  # (tasks, way, D)
        queries = self.vectors[query]  # (tasks, queries, D)
        if self.head.distance == "euclidean":
            logits = -(queries.unsqueeze(2) - prototypes.unsqueeze(1)).pow(2).sum(dim=-1)  # (tasks, queries, way)
        else:
            logits = self.head.scale * F.normalize(queries, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(1, 2)
        return HeadOutput(logits=logits)


@dataclass
class TupleProjections:
    """Per-video pieces of one cardinality's tuple keys and values (see :class:`PrecomputedTRX`).

    - ``tuples``: (T, w) frame indices; ``key_selection``: (T, L*w + 1) 0/1, the last column
      all ones (the bias); ``value_selection``: (T, L*w).
    - ``key_pieces``: (videos, L*w + 1, D'), ``g * (K_l^j - mean)`` for row ``l*w + j`` and
      ``g * (b - mean b)`` for the last row (``g``: the key LayerNorm's weight).
    - ``inverse_std``: (videos, T), ``1 / sqrt(var(key_t) + eps)`` of every tuple's key.
    - ``key_offset``: (videos, T), ``<g * beta, centred key_t> / std_t``.
    - ``value_pieces``: (videos, L*w, D'), ``V_l^j`` without bias.
    """

    tuples: Tensor
    key_selection: Tensor
    value_selection: Tensor
    key_pieces: Tensor
    inverse_std: Tensor
    key_offset: Tensor
    value_pieces: Tensor


def piece_selection(tuples: Tensor, seq_len: int) -> Tensor:
    """The 0/1 matrix (T, L*w) that sums a tuple from per-frame pieces laid out row
    ``l*w + j`` (frame l projected by block j): ``selection[t, l*w + j] = 1`` iff ``t_j = l``."""
    n_tuples, w = tuples.shape
    selection = torch.zeros(n_tuples, seq_len, w, device=tuples.device)
    rows = torch.arange(n_tuples, device=tuples.device).unsqueeze(1)  # (T, 1)
    selection[rows, tuples, torch.arange(w, device=tuples.device)] = 1.0
    return selection.view(n_tuples, seq_len * w)


def project_video_tuples(transformer: TemporalCrossTransformer, frames: Tensor) -> TupleProjections:
    """The per-video part of one :class:`fsvid.heads.TemporalCrossTransformer` in eval mode,
    for frame features (videos, L, D)."""
    _require_eval(transformer, "the TRX head")
    videos, seq_len, dim = frames.shape
    out_dim, tuples = transformer.out_dim, transformer.active_tuples()  # (T, w)
    w = tuples.shape[1]
    x = transformer.positional_encoding(frames)  # (videos, L, D), step 1 (no dropout in eval)

    def pieces(linear: nn.Linear) -> Tensor:
        # W = [W_1 | ... | W_w]: row l*w + j of the result is W_j x_l (the trx.project_tuples split).
        blocks = linear.weight.view(out_dim, w, dim).permute(2, 1, 0).reshape(dim, w * out_dim)  # (D, w*D')
        return (x @ blocks).view(videos, seq_len * w, out_dim)  # (videos, L*w, D')

    norm = transformer.key_norm
    gain = norm.weight if norm.weight is not None else torch.ones(out_dim, device=frames.device)
    shift = norm.bias if norm.bias is not None else torch.zeros(out_dim, device=frames.device)
    key_bias = transformer.key_map.bias.expand(videos, 1, out_dim)  # (videos, 1, D')
    keys = torch.cat([pieces(transformer.key_map), key_bias], dim=1)  # (videos, L*w + 1, D')
    keys = keys - keys.mean(dim=-1, keepdim=True)  # centring is linear: centred tuple = sum of centred pieces
    value_selection = piece_selection(tuples, seq_len).to(frames.dtype)  # (T, L*w)
    key_selection = torch.cat([value_selection, value_selection.new_ones(len(tuples), 1)], dim=1)  # (T, L*w + 1)
    centred = key_selection @ keys  # (videos, T, D'): key_t - mean(key_t)
    inverse_std = torch.rsqrt(centred.pow(2).mean(dim=-1) + norm.eps)  # (videos, T)
    return TupleProjections(
        tuples=tuples,
        key_selection=key_selection,
        value_selection=value_selection,
        key_pieces=keys * gain,  # (videos, L*w + 1, D')
        inverse_std=inverse_std,
        key_offset=(centred @ (gain * shift)) * inverse_std,  # (videos, T)
        value_pieces=pieces(transformer.value_map),  # (videos, L*w, D')
    )


def _cat_projections(parts: list[TupleProjections]) -> TupleProjections:
    first = parts[0]
    return TupleProjections(
        first.tuples, first.key_selection, first.value_selection,
        *(torch.cat([getattr(p, name) for p in parts]) for name in ("key_pieces", "inverse_std", "key_offset", "value_pieces")),
    )


def tuple_distance_logits(projections: TupleProjections, support: Tensor, query: Tensor, out_dim: int) -> Tensor:
    """One cardinality's TRX logits for a batch of tasks from per-video pieces.

    support: (tasks, way, shots) and query (tasks, queries) video indices -> (tasks, queries, way).

    With ``n_t`` the centred key of tuple t before LayerNorm and ``s_t`` its std, the
    LayerNorm'd key is ``k_t = g * n_t / s_t + beta``, so

        k_t . k_u = (g n_t) . (g n_u) / (s_t s_u) + o_t + o_u + |beta|^2,   o_t = (g beta) . n_t / s_t

    and ``g n_t = S_t P`` sums the rows of the video's ``key_pieces`` P picked by the
    selection row S_t. The products of all query and support tuples are therefore
    ``S (P_q P_s^T) S^T``: a Gram matrix of (L*w + 1) pieces per video pair instead of T
    tuples (24 vs 56 rows for triples at L = 8). ``o_t + |beta|^2`` is the same for every
    support tuple of a query tuple, so it cancels in the softmax (step 4) and is left out.
    Values have no norm: a prototype is ``sum_u a_tu (S_u V_s + b)`` and, as the attention
    sums to 1, the bias cancels against the query's; the attention is folded onto the
    support's value pieces first, ``(a S) V_s``, again L*w rows instead of T.
    """
    tasks, way, shots = support.shape
    n_query = query.shape[1]
    key_selection, value_selection = projections.key_selection, projections.value_selection  # (T, R), (T, L*w)
    n_tuples, rows = key_selection.shape

    # Step 4: scores of every query tuple against every support tuple of each class.
    query_keys = projections.key_pieces[query]  # (tasks, queries, R, D')
    support_keys = projections.key_pieces[support]  # (tasks, way, shots, R, D')
    gram = query_keys.flatten(1, 2) @ support_keys.flatten(1, 3).transpose(1, 2)  # (tasks, queries*R, way*shots*R)
    gram = gram.view(tasks, n_query, rows, way * shots, rows)
    per_support = gram @ key_selection.T  # (tasks, queries, R, way*shots, T)
    products = key_selection @ per_support.flatten(3)  # (tasks, queries, T, way*shots*T)
    inverse_std_query = projections.inverse_std[query].unsqueeze(-1)  # (tasks, queries, T, 1)
    inverse_std_support = projections.inverse_std[support].flatten(1).unsqueeze(1).unsqueeze(1)  # (tasks, 1, 1, way*shots*T)
    offset_support = projections.key_offset[support].flatten(1).unsqueeze(1).unsqueeze(1)  # (tasks, 1, 1, way*shots*T)
    scores = (products * inverse_std_query * inverse_std_support + offset_support) / math.sqrt(out_dim)
    attention = scores.view(tasks, n_query, n_tuples, way, shots * n_tuples).softmax(dim=-1)  # one softmax per class

    # Step 5: prototypes, with the attention moved onto the support's value pieces.
    attention = attention.view(tasks, n_query, n_tuples, way, shots, n_tuples)
    on_pieces = attention @ value_selection  # (tasks, queries, T, way, shots, L*w)
    on_pieces = on_pieces.permute(0, 3, 1, 2, 4, 5).flatten(4).flatten(2, 3)  # (tasks, way, queries*T, shots*L*w)
    support_values = projections.value_pieces[support].flatten(2, 3)  # (tasks, way, shots*L*w, D')
    prototypes = on_pieces @ support_values  # (tasks, way, queries*T, D')
    query_values = value_selection @ projections.value_pieces[query]  # (tasks, queries, T, D')

    # Step 6: squared distance over tuples and channels, divided by T (in place: the largest tensor).
    difference = prototypes.sub_(query_values.flatten(1, 2).unsqueeze(1))  # (tasks, way, queries*T, D')
    distance = difference.pow(2).sum(-1).view(tasks, way, n_query, n_tuples).sum(-1) / n_tuples  # (tasks, way, queries)
    return -distance.transpose(1, 2)  # (tasks, queries, way)


class PrecomputedTRX:
    """:class:`fsvid.heads.TRXHead` (eval mode) with every per-video step done once.

    Per video and cardinality it keeps :class:`TupleProjections` (key and value pieces of
    every frame for every tuple position, about ``2 (L*w + 1) D'`` numbers), computed in
    pieces of ``chunk_size`` videos from ``features`` (a (videos, L, D) tensor or a
    :class:`FeatureCache`, test view). A task then costs two Gram products of pieces and
    the prototype products (:func:`tuple_distance_logits`).

    ``scorer(support, query)``: support (tasks, way, shots) and query (tasks, queries) video
    indices -> ``HeadOutput`` with logits (tasks, queries, way) (the mean over cardinalities)
    and ``extras["logits_per_cardinality"]`` (tasks, queries, way, |Omega|); equal to the
    head's logits on each task up to float rounding.

    Memory: ``(2 L*w + 1) D'`` floats per video and cardinality, 378 KB per video for
    Omega = {2, 3}, L = 8, D' = 1152 in float32 (0.9 GB for 2,400 test videos). Speed: the
    products are batched over ``tasks`` given together; on a CPU one task at a time keeps
    the intermediate tensors in cache, on a GPU pass many.
    """

    def __init__(
        self,
        head: TRXHead,
        features: FeatureSource | Iterable[Tensor],
        chunk_size: int = 256,
        progress: bool = False,
    ) -> None:
        _require_eval(head, "the TRX head")
        self.head, self.out_dim = head, head.out_dim
        device = _device_of(head)
        chunks = _chunks(features, chunk_size, device) if isinstance(features, (Tensor, FeatureCache)) else features
        parts: list[list[TupleProjections]] = [[] for _ in head.cross_transformers]
        with torch.inference_mode():
            for chunk in tqdm(chunks, desc="TRX projections", unit="chunk", disable=not progress):
                if chunk.dim() != 3 or chunk.shape[1:] != (head.seq_len, head.dim):
                    raise ValueError(
                        f"PrecomputedTRX needs frame features (videos, L={head.seq_len}, D={head.dim}), got {tuple(chunk.shape)}"
                    )
                for k, transformer in enumerate(head.cross_transformers):
                    parts[k].append(project_video_tuples(transformer, chunk.to(device)))
        self.projections = [_cat_projections(p) for p in parts]

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        device = self.projections[0].key_pieces.device
        support, query = _as_index(support, device), _as_index(query, device)
        per_cardinality = torch.stack(
            [tuple_distance_logits(p, support, query, self.out_dim) for p in self.projections], dim=-1
        )  # (tasks, queries, way, |Omega|)
        return HeadOutput(logits=per_cardinality.mean(dim=-1), extras={"logits_per_cardinality": per_cardinality})


class PrecomputedSTRM:
    """:class:`fsvid.heads.STRMHead` (eval mode) with every per-video step done once.

    In eval mode PLE (or joint attention), the patch mean H, the classifier's tuple
    embeddings of H and FLE all act on one video at a time, so per video it keeps the
    query-class tuple embeddings (T, D'') per cardinality and the TRM's
    :class:`TupleProjections` of E. A task then costs the TRM (as in :class:`PrecomputedTRX`)
    and the classifier's ``cdist`` between tuple embeddings.

    ``scorer(support, query)`` -> ``HeadOutput`` with logits (TRM), qc_logits and
    ``extras["test_logits"]`` (``logits + qc_test_weight * qc_logits``), each (tasks, queries, way).

    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs PLE (or the joint attention) and the
    classifier's tuple embeddings under autocast: nearly all of the per-video work (about
    2.3 G multiply-adds per video at the papers' sizes), several times faster on GPUs and on
    CPUs with AVX512-BF16 / AMX, with logits no longer equal to the head's in float32. FLE
    and the task-level steps run in float32 (FLE is about 1 % of the work, and its
    transposed token mixing makes the CPU autocast path copy the channel-mixing weight per
    video).
    """

    def __init__(
        self,
        head: STRMHead,
        features: FeatureSource,
        chunk_size: int = 64,
        progress: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        _require_eval(head, "the STRM head")
        self.head = head
        device = _device_of(head)
        enriched, embeddings = [], []
        dims = 4 if head.needs_patches else 3
        with torch.inference_mode():
            chunks = _chunks(features, chunk_size, device)
            for chunk in tqdm(chunks, desc="STRM per-video steps", unit="chunk", disable=not progress):
                if chunk.dim() != dims or chunk.shape[1] != head.seq_len or chunk.shape[-1] != head.dim:
                    layout = "(videos, L, P, D)" if dims == 4 else "(videos, L, D)"
                    raise ValueError(
                        f"PrecomputedSTRM needs features {layout} with L={head.seq_len}, D={head.dim}, got {tuple(chunk.shape)}"
                    )
                autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
                with autocast:
                    h = head.frame_representation(chunk, {})  # H (videos, L, D)
                    if head.query_class is not None:
                        z = [embedding(h).float() for embedding in head.query_class.tuple_embeddings]  # (videos, T, D'') each
                        embeddings.append(z)
                h = h.float()
                e = head.frame_enrichment(h)[0] if head.frame_enrichment is not None else h  # E (videos, L, D)
                enriched.append(e)
        self.trm = PrecomputedTRX(head.temporal_relation, iter(enriched))
        self.tuple_embeddings = [torch.cat(parts) for parts in zip(*embeddings)] if embeddings else []

    def query_class_logits(self, support: Tensor, query: Tensor) -> Tensor:
        """The classifier (Eq. 8): per query tuple, the distance to the nearest tuple of each
        class's support videos, averaged over query tuples and cardinalities; (tasks, queries, way)."""
        tasks, way, shots = support.shape
        logits = []
        for z in self.tuple_embeddings:  # (videos, T, D'')
            n_tuples = z.shape[1]
            distance = torch.cdist(z[query].flatten(1, 2), z[support].flatten(1, 3))  # (tasks, queries*T, way*shots*T)
            distance = distance.view(tasks, query.shape[1], n_tuples, way, shots * n_tuples)
            logits.append(-distance.min(dim=-1).values.mean(dim=2))  # (tasks, queries, way)
        return torch.stack(logits, dim=-1).mean(dim=-1)

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        trm = self.trm(support, query)
        device = trm.logits.device
        support, query = _as_index(support, device), _as_index(query, device)
        qc_logits = self.query_class_logits(support, query) if self.tuple_embeddings else None
        test_logits = trm.logits if qc_logits is None else trm.logits + self.head.qc_test_weight * qc_logits
        return HeadOutput(logits=trm.logits, qc_logits=qc_logits, extras={**trm.extras, "test_logits": test_logits})


@dataclass
class PrecomputedEvaluation:
    """Results of :func:`evaluate_precomputed`, in task order.

    ``task_indices`` (tasks,); ``accuracies`` (tasks,) in [0, 1]; ``predicted`` and
    ``true_classes`` (tasks, queries) split-level class indices (into ``class_names``), for
    confusion matrices and per-class accuracy.
    """

    task_indices: np.ndarray
    accuracies: np.ndarray
    predicted: np.ndarray
    true_classes: np.ndarray
    class_names: list[str]


def evaluate_precomputed(
    scorer: Callable[[Tensor, Tensor], HeadOutput],
    dataset: FeatureEpisodeDataset | EpisodeDataset,
    tasks: Sequence[int] | None = None,
    tasks_per_batch: int = 1,
    progress: bool = True,
) -> PrecomputedEvaluation:
    """Score tasks of ``dataset`` (all by default) with a precomputed head, ``tasks_per_batch``
    at a time (1 suits CPUs, where small intermediate tensors stay in cache; use more on a
    GPU). Only the compositions of the tasks are used (``dataset.task(i)``), so an
    :class:`fsvid.data.EpisodeDataset` of the same videos works as well. The score is
    ``extras["test_logits"]`` when the scorer gives one (STRM's protocol), else ``logits``.
    """
    tasks = list(range(len(dataset))) if tasks is None else list(tasks)
    predicted, true_classes = [], []
    bar = tqdm(total=len(tasks), desc="evaluate (precomputed)", unit="task", disable=not progress)
    for first in range(0, len(tasks), tasks_per_batch):
        compositions = [dataset.task(i) for i in tasks[first : first + tasks_per_batch]]
        support = np.stack([t.support for t in compositions])  # (tasks, way, shots)
        query = np.stack([t.query.reshape(-1) for t in compositions])  # (tasks, way*queries), class by class
        output = scorer(support, query)
        scores = output.extras.get("test_logits", output.logits)  # (tasks, queries, way)
        columns = scores.float().argmax(-1).cpu().numpy()  # (tasks, queries) task labels
        classes = np.stack([t.classes for t in compositions])  # (tasks, way)
        labels = np.repeat(np.arange(classes.shape[1]), compositions[0].query.shape[1])  # (queries,)
        predicted.append(np.take_along_axis(classes, columns, axis=1))
        true_classes.append(classes[:, labels])
        bar.update(len(compositions))
    bar.close()
    predicted_all, true_all = np.concatenate(predicted), np.concatenate(true_classes)
    return PrecomputedEvaluation(
        task_indices=np.asarray(tasks, dtype=np.int64),
        accuracies=(predicted_all == true_all).mean(axis=1),
        predicted=predicted_all,
        true_classes=true_all,
        class_names=list(dataset.class_names),
    )


__all__ = [
    "CACHE_FORMAT",
    "CacheMismatchError",
    "FeatureCache",
    "FeatureEpisodeDataset",
    "PrecomputedEvaluation",
    "PrecomputedPrototypes",
    "PrecomputedSTRM",
    "PrecomputedTRX",
    "TupleProjections",
    "backbone_settings",
    "build_feature_cache",
    "build_feature_cache_from_dataset",
    "describe_differences",
    "evaluate_precomputed",
    "file_sha256",
    "module_sha256",
    "piece_selection",
    "project_video_tuples",
    "tuple_distance_logits",
    "video_list_settings",
    "write_feature_cache",
]
