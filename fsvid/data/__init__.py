"""Episodic video data: from a benchmark split list to batches of few-shot tasks.

The pieces, in the order data flows through them:

- :mod:`fsvid.data.splits`: parse ``class_folder/video_id`` split lists (:func:`read_split`)
  and find each entry under a data root as a video file or a folder of JPEG frames
  (:func:`resolve_split`), case-sensitively, with clear errors for malformed lines and
  missing videos.
- :mod:`fsvid.data.video`: read only the frames a clip needs (decord ``get_batch`` for video
  files, Pillow for frame folders) as uint8 (L, 3, H, W); count frames.
- :mod:`fsvid.data.sampling`: which L frames: the released TRX/STRM scheme (``"trx"``) or
  TSN segments (``"tsn"``), random in training from an explicit numpy Generator,
  deterministic at test time.
- :mod:`fsvid.data.transforms`: :class:`ClipTransform`, shorter-side resize, one crop and
  one flip for the whole clip, float in [0, 1], optional ImageNet normalisation.
- :mod:`fsvid.data.episodes`: :class:`TaskSampler` (task ``i`` a pure function of
  ``(seed, i)``) and :class:`EpisodeDataset`, a map-style dataset of :class:`Episode` items
  for ``DataLoader(dataset, batch_size=None, num_workers=...)``.

Typical use::

    from torch.utils.data import DataLoader
    from fsvid.data import EpisodeDataset

    test_set = EpisodeDataset.from_split(
        "splits/hmdb_ARN/testlist03.txt", "/data/hmdb51_frames",
        way=5, shot=5, query=1, frames=8, train=False, num_tasks=10_000, seed=0)
    for episode in DataLoader(test_set, batch_size=None, num_workers=4):
        episode.support        # (25, 8, 3, 224, 224)
        episode.query_labels   # (5,) in 0..4
"""

from fsvid.data.episodes import (
    DecodedVideoMemory,
    Episode,
    EpisodeDataset,
    ShortVideoPolicy,
    Task,
    TaskSampler,
    load_clip,
)
from fsvid.data.sampling import FrameSampling, sample_frame_indices, trx_frame_indices, tsn_frame_indices
from fsvid.data.splits import (
    FRAME_EXTENSIONS,
    VIDEO_EXTENSIONS,
    SplitEntry,
    VideoSource,
    parse_split_lines,
    read_split,
    resolve_split,
    split_classes,
)
from fsvid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from fsvid.data.video import (
    FrameFolderReader,
    VideoFileReader,
    VideoReadError,
    count_frames,
    count_video_frames,
    list_frame_files,
    open_video,
    read_frames,
)

__all__ = [
    "Episode",
    "EpisodeDataset",
    "ShortVideoPolicy",
    "Task",
    "TaskSampler",
    "load_clip",
    "DecodedVideoMemory",
    "FrameSampling",
    "sample_frame_indices",
    "trx_frame_indices",
    "tsn_frame_indices",
    "FRAME_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "SplitEntry",
    "VideoSource",
    "parse_split_lines",
    "read_split",
    "resolve_split",
    "split_classes",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipTransform",
    "FrameFolderReader",
    "VideoFileReader",
    "VideoReadError",
    "count_frames",
    "count_video_frames",
    "list_frame_files",
    "open_video",
    "read_frames",
]
