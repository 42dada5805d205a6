"""Few-shot tasks ("episodes"): which videos, and the clips read from them.

A C-way K-shot task with Q queries per class (METHODS.md, "The few-shot task"):

1. draw C distinct classes of the split;
2. in each, draw K + Q distinct videos: the first K are the support, the other Q the queries
   (``query_sampling="one_class"``, the released MASTAF sampler: then only one class of the
   task, drawn uniformly, keeps its Q queries);
3. read an L-frame clip of each video (:mod:`fsvid.data.sampling`, :mod:`fsvid.data.transforms`).

Task ``i`` is a pure function of ``(seed, i)``:

- the composition (steps 1-2) comes from ``numpy.random.default_rng([seed, i])`` and does
  not depend on frames, sizes or augmentation, so every method evaluated with the same seed
  and split sees exactly the same test tasks (paired comparison);
- the clip randomness (frame jitter, crop, flip; training only, or the frame jitter of
  ``jitter_test_frames`` test clips) comes from
  ``numpy.random.default_rng([seed, i, 1])``, drawn support videos first, then queries.

So the task list is reproducible, a resumed run continues at task ``i``
(``DataLoader(dataset, batch_size=None, sampler=range(i, len(dataset)))``), and processes can
share the work by task number (DDP rank ``r`` of ``w``: ``sampler=range(r, len(dataset), w)``;
DataLoader workers get different indices automatically) with the same result as one process.

:class:`EpisodeDataset` is a map-style ``torch.utils.data.Dataset``: ``dataset[i]`` is the
:class:`Episode` of task ``i``, ``len(dataset)`` the number of tasks. Use it with
``DataLoader(dataset, batch_size=None, num_workers=...)`` (one episode per item, no collation).

Short videos (fewer frames than L), policy ``short_videos``:

- ``"drop"`` (default, as the released TRX code): every video's frames are counted once when
  the dataset is built (a tqdm bar, ``progress=False`` hides it; frame folders count their
  ``.jpg`` files, video files are opened without decoding) and short ones are left out with a
  warning naming them;
- ``"repeat"``: nothing is counted up front (fast to build on large datasets); a short video's
  clip repeats frames (the sampling indices are clamped to the video).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from fsvid.data.sampling import FrameSampling, sample_frame_indices
from fsvid.data.splits import VideoSource, read_split, resolve_split, split_classes
from fsvid.data.transforms import ClipTransform
from fsvid.data.video import count_frames, open_video

ShortVideoPolicy = Literal["drop", "repeat"]
ClipTransformFn = Callable[[Tensor, "np.random.Generator | None"], Tensor]

#: How many names a warning or error lists.
_SHOW = 5


@dataclass
class Episode:
    """One few-shot task, support and queries ordered class by class.

    Fields (C = way, K = shot, Q = queries per class, L = frames):

    - ``support``: (C*K, L, 3, H, W) float clips; videos ``c*K .. c*K+K-1`` are class ``c``.
    - ``support_labels``: (C*K,) int64 task labels in ``0..C-1``: ``[0]*K + [1]*K + ...``.
    - ``query``: (C*Q, L, 3, H, W) float clips, ordered like the support (``one_class``
      query sampling: (Q, L, 3, H, W), all of one class).
    - ``query_labels``: (C*Q,) (or (Q,)) int64 task labels.
    - ``class_names``: the C real class names, ``class_names[c]`` is task label ``c``.
    - ``class_indices``: (C,) int64 index of each class among all classes of the split
      (sorted class names, :func:`fsvid.data.splits.split_classes`): the targets of a global
      classifier such as MASTAF's.
    - ``support_videos``, ``query_videos``: ``class/video_id`` of every clip, in order.
    - ``task_index``: the task number ``i``.
    """

    support: Tensor
    support_labels: Tensor
    query: Tensor
    query_labels: Tensor
    class_names: list[str]
    class_indices: Tensor
    support_videos: list[str]
    query_videos: list[str]
    task_index: int

    @property
    def way(self) -> int:
        return len(self.class_names)

    @property
    def query_class_indices(self) -> Tensor:
        """(C*Q,) int64 split-level class index of each query."""
        return self.class_indices[self.query_labels]

    def _map_tensors(self, fn: Callable[[Tensor], Tensor]) -> Episode:
        changes = {f.name: fn(getattr(self, f.name)) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return replace(self, **changes)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Episode:
        """A copy with every tensor on ``device``."""
        return self._map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Episode:
        """Pinned copy; called by ``DataLoader(pin_memory=True)``."""
        return self._map_tensors(lambda t: t.pin_memory())


@dataclass(frozen=True)
class Task:
    """The composition of task ``index``: indices into the sampler's video list.

    ``classes``: (C,) split-level class indices; ``support``: (C, K) video indices, row ``c``
    belonging to ``classes[c]``; ``query``: (C, Q) video indices likewise (``per_class``
    sampling), or (1, Q) of class ``classes[query_rows[0]]`` (``one_class``).
    ``query_rows``: the task label of each row of ``query``, ``arange(C)`` or ``[c]``.
    """

    index: int
    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    query_rows: np.ndarray | None = None

    @property
    def query_labels(self) -> np.ndarray:
        """(rows*Q,) task label of each query, in the order of ``query.reshape(-1)``."""
        rows = np.arange(len(self.classes)) if self.query_rows is None else self.query_rows
        return np.repeat(rows, self.query.shape[1])


QuerySampling = Literal["per_class", "one_class"]


class TaskSampler:
    """Draws the videos of C-way K-shot tasks with Q queries per class, task ``i`` from
    ``numpy.random.default_rng([seed, i])``, without replacement of classes or videos.

    Args:
        video_classes: class index (into ``class_names``) of each video.
        class_names: all classes of the split; classes without enough videos are an error.
        way, shot, query: C, K and Q.
        seed: non-negative integer.
        query_sampling: ``"per_class"`` (Q queries from each of the C classes) or
            ``"one_class"`` (Q queries from one class of the task, drawn uniformly; the released
            MASTAF sampler, ``staf/video_reader.py`` lines 254-266).

    Raises ``ValueError`` when the split has fewer than ``way`` classes or when a class has
    fewer than ``shot + query`` videos (naming every such class and its count).
    """

    def __init__(
        self,
        video_classes: Sequence[int],
        class_names: Sequence[str],
        way: int,
        shot: int,
        query: int,
        seed: int = 0,
        query_sampling: QuerySampling = "per_class",
    ) -> None:
        for name, value in (("way", way), ("shot", shot)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if query < 0:
            raise ValueError(f"query must be non-negative, got {query}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if query_sampling not in ("per_class", "one_class"):
            raise ValueError(f"query_sampling must be 'per_class' or 'one_class', got {query_sampling!r}")
        self.query_sampling = query_sampling
        self.class_names = list(class_names)
        self.way, self.shot, self.query, self.seed = way, shot, query, seed
        video_classes = np.asarray(video_classes, dtype=np.int64)
        # (classes,) lists of video indices, in the order of the video list
        self.videos_of_class = [np.flatnonzero(video_classes == c) for c in range(len(self.class_names))]
        if way > len(self.class_names):
            raise ValueError(f"{way}-way tasks need at least {way} classes, the split has {len(self.class_names)}")
        needed = shot + query
        short = [(n, len(v)) for n, v in zip(self.class_names, self.videos_of_class) if len(v) < needed]
        if short:
            listed = ", ".join(f"{n!r} has {k}" for n, k in short[:_SHOW])
            more = f" (and {len(short) - _SHOW} more classes)" if len(short) > _SHOW else ""
            raise ValueError(
                f"{len(short)} classes have fewer videos than shot + query = {shot} + {query} = {needed}: "
                f"{listed}{more}"
            )

    def task(self, index: int) -> Task:
        """The composition of task ``index``, the same in every process."""
        if index < 0:
            raise IndexError(f"task index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        classes = rng.choice(len(self.class_names), size=self.way, replace=False)  # (C,)
        support = np.empty((self.way, self.shot), dtype=np.int64)  # (C, K)
        query = np.empty((self.way, self.query), dtype=np.int64)  # (C, Q)
        for row, c in enumerate(classes):
            videos = self.videos_of_class[c]
            picked = videos[rng.choice(len(videos), size=self.shot + self.query, replace=False)]
            support[row], query[row] = picked[: self.shot], picked[self.shot :]
        if self.query_sampling == "per_class":
            return Task(index, classes.astype(np.int64), support, query)
        # one_class: the same draws, then one class keeps its queries (a draw of its own, so the
        # support of task i is the same under both samplings)
        row = int(rng.integers(self.way))
        return Task(index, classes.astype(np.int64), support, query[row : row + 1], np.array([row]))


class DecodedVideoMemory:
    """Keeps whole decoded videos in memory, so that each video is decoded only once.

    Worth it for small datasets read many times (the synthetic set: about 0.5 MB per
    video); ``max_bytes`` bounds the memory, videos beyond it are decoded on every read.
    Each DataLoader worker process holds its own copy.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._videos: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self._videos)

    def frames(self, source: VideoSource, decode_threads: int = 1) -> Tensor:
        """All frames of ``source``, (n, 3, H, W) uint8, decoded on first use."""
        key = str(source.path)
        video = self._videos.get(key)
        if video is None:
            reader = open_video(source.path, num_threads=decode_threads)
            video = reader.read(list(range(len(reader))))  # (n, 3, H, W)
            size = video.numel() * video.element_size()
            if self.used + size <= self.max_bytes:
                self._videos[key] = video
                self.used += size
        return video


def load_clip(
    source: VideoSource,
    frames: int,
    train: bool,
    transform: ClipTransformFn,
    rng: np.random.Generator | None = None,
    sampling: FrameSampling = "trx",
    decode_threads: int = 1,
    memory: DecodedVideoMemory | None = None,
) -> Tensor:
    """Read one clip: sample ``frames`` indices, decode only those (or take them from
    ``memory``), transform. Returns what ``transform`` returns, (L, 3, crop, crop) for
    :class:`ClipTransform`."""
    if memory is not None:
        video = memory.frames(source, decode_threads)  # (n, 3, H, W)
        indices = sample_frame_indices(video.shape[0], frames, train, rng, sampling)  # (L,)
        return transform(video[torch.from_numpy(indices)], rng)
    reader = open_video(source.path, num_threads=decode_threads)
    indices = sample_frame_indices(len(reader), frames, train, rng, sampling)  # (L,)
    clip = reader.read(indices.tolist())  # (L, 3, H, W) uint8
    return transform(clip, rng)


class EpisodeDataset(Dataset):
    """Map-style dataset of few-shot tasks: ``dataset[i]`` is the :class:`Episode` of task ``i``.

    Args:
        videos: the split's videos (e.g. from :func:`fsvid.data.splits.resolve_split`).
        way, shot, query: C classes, K support and Q query videos per class.
        frames: L, frames per clip.
        train: training-time (random) or test-time (deterministic) frames and crops.
        num_tasks: ``len(dataset)``.
        seed: the task list's seed (see the module docstring).
        transform: ``transform(clip_uint8, rng) -> clip``; default
            ``ClipTransform(train)`` (resize 256, crop 224, flip in training).
        sampling: ``"trx"`` or ``"tsn"`` frame sampling (:mod:`fsvid.data.sampling`).
        short_videos: ``"drop"`` or ``"repeat"`` (see the module docstring).
        class_names: all classes of the split for the global class index; default: the
            sorted classes of ``videos``. Pass the full list when some videos are missing.
        progress: show a progress bar while counting frames (``"drop"`` policy).
        decode_threads: decord threads per video (1 suits DataLoader workers).
        memory_bytes: keep up to this many bytes of decoded videos in memory
            (:class:`DecodedVideoMemory`); 0 (default) decodes the sampled frames on every read.
        query_sampling: ``"per_class"`` or ``"one_class"`` (:class:`TaskSampler`).
        jitter_test_frames: with ``train=False``, sample frames as in training (random ends,
            from the clip generator of the task) while the transform stays the test one; the
            released MASTAF loader does this (``staf/video_reader.py`` lines 190-205 ignore the
            train/test mode). Default False: deterministic test frames.
    """

    def __init__(
        self,
        videos: Sequence[VideoSource],
        *,
        way: int = 5,
        shot: int = 5,
        query: int = 1,
        frames: int = 8,
        train: bool = True,
        num_tasks: int = 10_000,
        seed: int = 0,
        transform: ClipTransformFn | None = None,
        sampling: FrameSampling = "trx",
        short_videos: ShortVideoPolicy = "drop",
        class_names: Sequence[str] | None = None,
        progress: bool = True,
        decode_threads: int = 1,
        memory_bytes: int = 0,
        query_sampling: QuerySampling = "per_class",
        jitter_test_frames: bool = False,
    ) -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        if num_tasks < 0:
            raise ValueError(f"num_tasks must be non-negative, got {num_tasks}")
        if sampling not in ("trx", "tsn"):
            raise ValueError(f"sampling must be 'trx' or 'tsn', got {sampling!r}")
        if short_videos not in ("drop", "repeat"):
            raise ValueError(f"short_videos must be 'drop' or 'repeat', got {short_videos!r}")
        self.class_names = list(class_names) if class_names is not None else split_classes(videos)
        index_of = {name: k for k, name in enumerate(self.class_names)}
        unknown = sorted({v.class_name for v in videos} - index_of.keys())
        if unknown:
            raise ValueError(f"videos of classes {unknown[:_SHOW]} are not in class_names")

        videos = list(videos)
        if short_videos == "drop":
            videos = _drop_short(count_frames(videos, progress=progress), frames)
        self.videos = videos
        self.way, self.shot, self.query, self.frames = way, shot, query, frames
        self.train, self.num_tasks, self.seed = train, num_tasks, seed
        self.transform = transform if transform is not None else ClipTransform(train=train)
        self.sampling = sampling
        self.short_videos = short_videos
        self.decode_threads = decode_threads
        self.memory = DecodedVideoMemory(memory_bytes) if memory_bytes > 0 else None
        self.jitter_test_frames = jitter_test_frames
        self.sampler = TaskSampler(
            [index_of[v.class_name] for v in videos], self.class_names, way, shot, query, seed, query_sampling
        )

    @classmethod
    def from_split(
        cls,
        split_file: str | os.PathLike,
        data_root: str | os.PathLike,
        *,
        way: int = 5,
        shot: int = 5,
        query: int = 1,
        frames: int = 8,
        train: bool = True,
        num_tasks: int = 10_000,
        seed: int = 0,
        resize: int | None = 256,
        crop: int = 224,
        flip: bool = True,
        normalize: bool = False,
        sampling: FrameSampling = "trx",
        short_videos: ShortVideoPolicy = "drop",
        on_missing: Literal["error", "skip"] = "error",
        progress: bool = True,
        decode_threads: int = 1,
        memory_bytes: int = 0,
        train_crop: Literal["random", "center"] = "random",
        query_sampling: QuerySampling = "per_class",
        jitter_test_frames: bool = False,
    ) -> EpisodeDataset:
        """Read ``split_file``, find its videos under ``data_root`` and build the dataset.

        ``resize``, ``crop``, ``train_crop``, ``flip`` and ``normalize`` configure
        :class:`ClipTransform` (flip applies in training only); ``on_missing`` is passed to
        :func:`fsvid.data.splits.resolve_split`. The global class index covers every class
        of the list, even one whose videos are all missing.
        """
        entries = read_split(split_file)
        if not entries:
            raise ValueError(f"split list {split_file} has no entries")
        videos = resolve_split(entries, data_root, on_missing=on_missing, split_name=str(Path(split_file)))
        transform = ClipTransform(
            train=train, resize=resize, crop=crop, flip=flip, normalize=normalize, train_crop=train_crop
        )
        return cls(
            videos, way=way, shot=shot, query=query, frames=frames, train=train, num_tasks=num_tasks,
            seed=seed, transform=transform, sampling=sampling, short_videos=short_videos,
            class_names=split_classes(entries), progress=progress, decode_threads=decode_threads,
            memory_bytes=memory_bytes, query_sampling=query_sampling, jitter_test_frames=jitter_test_frames,
        )

    def __len__(self) -> int:
        return self.num_tasks

    def task(self, index: int) -> Task:
        """Which videos task ``index`` uses, without reading them."""
        return self.sampler.task(index)

    def __getitem__(self, index: int) -> Episode:
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task {index} out of range for {self.num_tasks} tasks")
        task = self.sampler.task(index)
        random_frames = self.train or self.jitter_test_frames
        clip_rng = np.random.default_rng([self.seed, index, 1]) if random_frames else None

        def clips(video_indices: np.ndarray) -> tuple[Tensor, list[str]]:
            sources = [self.videos[v] for v in video_indices.reshape(-1)]  # class by class
            tensors = [load_clip(s, self.frames, random_frames, self.transform, clip_rng, self.sampling,
                                 self.decode_threads, self.memory)
                       for s in sources]
            return torch.stack(tensors), [s.key for s in sources]  # (C*K, L, 3, H, W)

        support, support_videos = clips(task.support)
        if self.query > 0:
            query, query_videos = clips(task.query)
        else:
            query, query_videos = support.new_empty((0, *support.shape[1:])), []
        way = self.way
        return Episode(
            support=support,
            support_labels=torch.arange(way).repeat_interleave(self.shot),  # (C*K,)
            query=query,
            query_labels=torch.from_numpy(task.query_labels),  # (C*Q,), or (Q,) of one class
            class_names=[self.class_names[c] for c in task.classes],
            class_indices=torch.from_numpy(task.classes),  # (C,)
            support_videos=support_videos,
            query_videos=query_videos,
            task_index=index,
        )

    def __repr__(self) -> str:
        mode = "train" if self.train else "test"
        return (f"EpisodeDataset({mode}, {self.way}-way {self.shot}-shot, {self.query} queries/class, "
                f"{self.frames} frames, {len(self.videos)} videos in {len(self.class_names)} classes, "
                f"{self.num_tasks} tasks, seed={self.seed}, sampling={self.sampling!r}, {self.transform!r})")


def _drop_short(videos: list[VideoSource], frames: int) -> list[VideoSource]:
    """Leave out videos with fewer than ``frames`` frames, warning with their names."""
    short = [v for v in videos if v.num_frames is not None and v.num_frames < frames]
    if not short:
        return videos
    listed = ", ".join(f"{v.key!r} ({v.num_frames} frames)" for v in short[:_SHOW])
    more = f", ... and {len(short) - _SHOW} more" if len(short) > _SHOW else ""
    warnings.warn(
        f"dropping {len(short)} of {len(videos)} videos shorter than {frames} frames "
        f"(short_videos='drop'; use 'repeat' to keep them): {listed}{more}",
        stacklevel=3,
    )
    return [v for v in videos if v.num_frames is None or v.num_frames >= frames]
