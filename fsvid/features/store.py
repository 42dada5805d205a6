"""The feature store: a frozen backbone's output for every video of a split, on disk.

A cache is a folder::

    index.json          settings, shard table, finished shards, feature shape
    videos.json         the split's class names and videos ("class/video_id"), in order
    shard_00000.npy     (videos of the shard, views, *feature_shape), float16 (or float32)
    shard_00001.npy     ...

- **Shards** hold consecutive videos (``shard_size`` of them). Each is written to a temporary
  name, flushed, then renamed (:func:`fsvid.files.atomic_write`), and only then recorded in
  ``index.json`` (also written through a temporary file): a run killed at any moment leaves
  only finished shards, and writing again with the same settings computes only the missing
  ones. Reading memory-maps the shards (``np.load(mmap_mode="r")``): only the rows a task
  needs are read from disk.
- **Settings** (:mod:`fsvid.features.settings`): ``index.json`` records everything the
  features depend on; writing into a folder whose cache has other settings raises
  :class:`CacheMismatchError` naming every differing setting, never mixing features.
- **One writer per folder.** Two processes building into the same folder at once are not
  coordinated; build on one process (e.g. rank 0) and read from all.
- **dtype.** float16 by default (half the disk and page cache of float32; features that do
  not fit in float16 are refused with a message), float32 on request; reading always returns
  float32 tensors.

:func:`write_feature_cache` stores features from any source; :mod:`fsvid.features.build`
computes them with a backbone; :class:`FeatureCache` reads a finished cache.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from fsvid.files import atomic_write

from .settings import CacheMismatchError, NAMES_SHOWN, describe_differences, jsonable, video_list_settings

CACHE_FORMAT = 1
INDEX_FILE = "index.json"
VIDEOS_FILE = "videos.json"
DTYPES = ("float16", "float32")
_SHARD_NAME = re.compile(r"^shard_\d{5}\.npy$")
_TEMP_NAME = re.compile(r"^\.(shard_\d{5}\.npy|index\.json|videos\.json)\.tmp-\d+$")

#: ``batches(start, stop)``: the features of videos ``start..stop-1`` as arrays
#: (videos, views, *feature_shape), in order, in one or more pieces.
ShardBatches = Callable[[int, int], Iterable[np.ndarray]]


# ---------------------------------------------------------------------------------------------
# Writing: shards, index, resuming
# ---------------------------------------------------------------------------------------------


def _write_json(path: Path, content: Any) -> None:
    atomic_write(path, lambda handle: handle.write(json.dumps(content, indent=1).encode()))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
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
        raise ValueError(f"video keys must be 'class/video_id', got {malformed[:NAMES_SHOWN]}")
    class_names = list(class_names) if class_names is not None else sorted({k.split("/")[0] for k in video_keys})
    unknown = sorted({k.split("/")[0] for k in video_keys} - set(class_names))
    if unknown:
        raise ValueError(f"videos of classes {unknown[:NAMES_SHOWN]} are not in class_names")

    requested = jsonable(
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
            atomic_write(folder / _shard_file(shard), lambda handle: np.save(handle, array))
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
        differences = describe_differences(cached, jsonable(expected))
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

