"""Frame counts recorded beside a prepared dataset, so that building episodes does not reopen
every video to count its frames (SSv2-full: 67k videos, about 2 minutes).

The prepare scripts (:func:`fsvid.prepare.prepare_dataset`) write ``ROOT/.fsvid/frame_counts.json``::

    {"format": 2,
     "videos": {"class/video_id": {"path": "class/video_id.mp4", "frames": 48,
                                   "size": 123456, "mtime_ns": 1700000000000000000}}}

``path`` is relative to ``ROOT``; ``size`` and ``mtime_ns`` are the file's ``os.stat`` values
when it was counted (for a folder of frames, those of the folder, whose modification time
changes when a frame file is added or removed). :func:`with_recorded_frame_counts` uses a
count only when the video found for the split entry is that path with that size and
modification time; every other video is counted again by the reader. The first version of
the file (``{"class/video_id": frames}``, no size or time) cannot be checked, so its counts
are not used. A file that cannot be read gives a warning naming it, and everything is counted.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from fsvid.data.splits import VideoSource

#: Where a dataset root keeps what fsvid wrote about it (the prepare scripts' folder).
META_DIR = ".fsvid"
FRAME_COUNTS_FILE = "frame_counts.json"
FORMAT = 2


def frame_counts_path(root: str | os.PathLike) -> Path:
    return Path(root) / META_DIR / FRAME_COUNTS_FILE


def _record(root: Path, path: Path, frames: int) -> dict[str, object]:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "frames": int(frames), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def write_frame_counts(root: str | os.PathLike, counts: Mapping[str, tuple[Path, int]]) -> Path:
    """Write ``{key: (path under root, frames)}`` to ``ROOT/.fsvid/frame_counts.json`` with
    each file's size and modification time; paths that no longer exist are left out."""
    root = Path(root)
    videos = {key: _record(root, Path(path), frames) for key, (path, frames) in sorted(counts.items())
              if Path(path).exists()}
    target = frame_counts_path(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{target.name}")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"format": FORMAT, "videos": videos}, handle, indent=1)
    os.replace(partial, target)  # a reader never sees half a file
    return target


def read_frame_counts(root: str | os.PathLike) -> dict[str, dict[str, object]]:
    """The recorded entries of ``ROOT/.fsvid/frame_counts.json`` (``{}`` when there is no
    file, or it is of the first version). A file that cannot be read or has another layout
    gives a ``UserWarning`` naming it and the cause, and ``{}``."""
    path = frame_counts_path(root)
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        warnings.warn(f"{path}: cannot read the recorded frame counts ({error}); counting the frames instead",
                      stacklevel=2)
        return {}
    if isinstance(data, dict) and "format" not in data and all(isinstance(v, int) for v in data.values()):
        return {}  # first version: no size or time to check the counts against
    if not (isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("videos"), dict)):
        warnings.warn(f"{path}: not a frame count file of format {FORMAT} ({{'format': {FORMAT}, 'videos': {{...}}}}); "
                      "counting the frames instead", stacklevel=2)
        return {}
    return data["videos"]


def _valid(entry: object, root: Path, source: VideoSource) -> int | None:
    """The recorded frame count when ``entry`` describes ``source`` as it is now, else None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), int) or entry["frames"] < 0:
        return None
    try:
        recorded, found = root / str(entry.get("path")), Path(source.path)
        if recorded != found and recorded.resolve() != found.resolve():
            return None
        stat = os.stat(source.path)
    except (OSError, ValueError):
        return None
    if stat.st_size != entry.get("size") or stat.st_mtime_ns != entry.get("mtime_ns"):
        return None
    return entry["frames"]


def with_recorded_frame_counts(videos: Sequence[VideoSource], root: str | os.PathLike) -> list[VideoSource]:
    """``videos`` with ``num_frames`` filled in from ``ROOT/.fsvid/frame_counts.json`` where the
    record still matches the file (module docstring); the others are returned unchanged."""
    recorded = read_frame_counts(root)
    if not recorded:
        return list(videos)
    root = Path(root)
    out = []
    for source in videos:
        frames = None if source.num_frames is not None else _valid(recorded.get(source.key), root, source)
        out.append(source if frames is None else replace(source, num_frames=frames))
    return out
