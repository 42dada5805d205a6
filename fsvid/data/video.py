"""Reading only the frames a clip needs, from video files or folders of JPEG frames.

Two readers with the same small interface, ``len(reader)`` (frames in the video) and
``reader.read(indices) -> (len(indices), 3, H, W) uint8``:

- :class:`VideoFileReader`: a video file decoded with decord; ``VideoReader.get_batch``
  seeks to and decodes just the requested frames, so an 8-frame clip of a 300-frame video
  does not decode the whole video. Files decord gets wrong (a WebM without duration, an mp4
  whose edit list hides frames) are decoded with PyAV.
- :class:`FrameFolderReader`: a folder of extracted frames (``*.jpg``), sorted in natural
  order (``img_2.jpg`` before ``img_10.jpg``); only the requested files are read and decoded
  with Pillow (libjpeg-turbo; as fast as ``torchvision.io.decode_jpeg``, whose image
  decoding is deprecated since torchvision 0.29).

:func:`open_video` picks the reader from the path. A file that cannot be decoded raises
:class:`VideoReadError` naming it. :func:`count_frames` gives the length of many videos, once,
with an optional progress bar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from PIL import Image
from tqdm.auto import tqdm

from fsvid.data.splits import FRAME_EXTENSIONS, VideoSource


class VideoReadError(RuntimeError):
    """A video file or frame image could not be opened or decoded; the message names it."""


def _natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: ``f2.jpg`` < ``f10.jpg``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike) -> list[str]:
    """File names of the JPEG frames in ``folder``, in natural order."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.is_file() and os.path.splitext(e.name)[1].lower() in FRAME_EXTENSIONS]
    return sorted(names, key=_natural_key)


def _check_indices(indices: Sequence[int], length: int, path: Path) -> list[int]:
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < length]
    if bad:
        raise IndexError(f"frame indices {bad} out of range for {path} ({length} frames)")
    return indices


class VideoFileReader:
    """A video file opened with decord. ``num_threads`` is decord's decoding threads
    (0 lets FFmpeg choose; 1 is best inside DataLoader workers).

    Three kinds of file are decoded with PyAV instead (from the start of the video up to the
    last index asked for; ``self.decoder`` says which is used):

    - decord 0.6 fails to copy out frames of some small widths (8, 12, 16, 24, 48, 72 pixels
      among others: "DECORDArrayCopyFromTo: The size must exactly match"); when ``get_batch``
      fails, that call is decoded with PyAV;
    - decord cannot open a WebM without duration or cues (written by live muxers and browser
      recorders): the whole file is read with PyAV, which counts its frames by decoding them;
    - an mp4 cut by stream copy keeps the pre-roll packets before the cut and hides them with
      an edit list: decord counts the hidden frames too (its frame timestamps start below
      zero) and returns the last frame, or after a seek the wrong frames, for some indices.
      Such a file is counted by decoding with PyAV and read with PyAV.

    Only if PyAV fails too is the video reported undecodable.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        import decord  # imported here so that frame folders work without decord installed

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        self.decoder = "decord"
        try:
            self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=num_threads)
        except Exception as error:  # decord raises DECORDError (a RuntimeError) with a C++ trace
            self._reader, self.decoder = None, "pyav"
            self._length = _count_or_explain(self.path, f"cannot open video {self.path}: decord: {_first_line(error)}")
        else:
            self._length = len(self._reader)
            if self._length and _hides_frames(self._reader):
                decoded = _count_or_explain(self.path, f"cannot decode video {self.path}")
                if decoded != self._length:  # decord's indices are not the frames shown
                    self._reader, self.decoder, self._length = None, "pyav", decoded
        if self._length == 0:
            raise VideoReadError(f"video {self.path} has no frames")

    def __len__(self) -> int:
        return self._length

    def read(self, indices: Sequence[int]) -> Tensor:
        """Decode frames ``indices`` (any order, repeats allowed): (len(indices), 3, H, W) uint8."""
        indices = _check_indices(indices, len(self), self.path)
        if self._reader is None:
            frames = self._read_with_pyav(indices, "")
        else:
            try:
                frames = self._reader.get_batch(indices).asnumpy()  # (L, H, W, 3) uint8
            except Exception as error:
                frames = self._read_with_pyav(indices, f"decord: {_first_line(error)}; ")
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (L, 3, H, W)

    def _read_with_pyav(self, indices: list[int], earlier: str) -> np.ndarray:
        try:
            return _decode_with_pyav(self.path, indices)
        except Exception as error:
            raise VideoReadError(
                f"cannot decode frames {indices} of {self.path}: {earlier}PyAV: {_first_line(error)}"
            ) from error


def _hides_frames(reader) -> bool:
    """True when decord's frame timestamps start before zero: packets before the first shown
    frame, normally hidden by an mp4 edit list (pre-roll kept by a stream-copy cut)."""
    try:
        first = reader.get_frame_timestamp(0)  # (start, end) in seconds
    except Exception:  # no timestamps: nothing to go by, decord's count stands
        return False
    return float(first[0]) < -1e-3


def _count_or_explain(path: Path, context: str) -> int:
    """Frames of ``path`` counted by decoding with PyAV; ``VideoReadError(context + why)``."""
    try:
        return decoded_frame_count(path)
    except Exception as error:
        raise VideoReadError(f"{context}; PyAV: {_first_line(error)}") from error


def decoded_frame_count(path: str | os.PathLike) -> int:
    """Frames of a video file as a player shows them: decoded with PyAV (edit lists applied),
    so it costs a full decode (use it to check a count, not for every video)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def container_frame_counts(path: str | os.PathLike) -> tuple[int | None, int | None]:
    """(frames the container lists, frames its duration and frame rate imply), each None when
    the container does not say; read from the headers with PyAV, nothing decoded. The two
    differ when an edit list hides frames (or the index is broken)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        listed = int(stream.frames) or None
        rate = stream.average_rate or stream.guessed_rate
        if stream.duration is None or stream.time_base is None or not rate:
            return listed, None
        return listed, int(round(float(stream.duration * stream.time_base * rate)))


def _decode_with_pyav(path: Path, indices: list[int]) -> np.ndarray:
    """Decode frames in order with PyAV, keeping ``indices``: (L, H, W, 3) uint8."""
    import av

    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                kept[number] = frame.to_ndarray(format="rgb24")
            if number >= max(wanted):
                break
    absent = sorted(wanted - kept.keys())
    if absent:
        raise ValueError(f"the video ended before frames {absent}")
    return np.stack([kept[i] for i in indices])


class FrameFolderReader:
    """A folder of JPEG frames; the folder is listed once when opened."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"frame folder not found: {self.path}")
        self.files = list_frame_files(self.path)
        if not self.files:
            raise VideoReadError(f"frame folder {self.path} has no .jpg files")

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> Tensor:
        """Decode frames ``indices`` (any order, repeats allowed): (len(indices), 3, H, W) uint8.

        A repeated index is decoded once. All frames must have the same size.
        """
        indices = _check_indices(indices, len(self), self.path)
        decoded: dict[int, Tensor] = {}
        for i in dict.fromkeys(indices):
            file = self.path / self.files[i]
            try:
                with Image.open(file) as image:
                    rgb = np.array(image.convert("RGB"))  # (H, W, 3) uint8, grey frames too
            except (OSError, ValueError) as error:
                raise VideoReadError(f"cannot decode frame {file}: {_first_line(error)}") from error
            decoded[i] = torch.from_numpy(rgb).permute(2, 0, 1)  # (3, H, W)
        sizes = {tuple(f.shape) for f in decoded.values()}
        if len(sizes) > 1:
            raise VideoReadError(f"frames of {self.path} differ in size: {sorted(sizes)}")
        return torch.stack([decoded[i] for i in indices])  # (L, 3, H, W)


def open_video(path: str | os.PathLike, num_threads: int = 1) -> VideoFileReader | FrameFolderReader:
    """A folder is read as JPEG frames, a file with decord."""
    path = Path(path)
    if path.is_dir():
        return FrameFolderReader(path)
    return VideoFileReader(path, num_threads=num_threads)


def read_frames(path: str | os.PathLike, indices: Sequence[int], num_threads: int = 1) -> Tensor:
    """Open ``path`` and read frames ``indices``: (len(indices), 3, H, W) uint8."""
    return open_video(path, num_threads=num_threads).read(indices)


def count_video_frames(path: str | os.PathLike) -> int:
    """Frames of one video: the number of .jpg files of a frame folder (no decoding), or
    decord's frame count of a video file (opens the container, decodes nothing; a file decord
    cannot open or whose edit list hides frames is counted by decoding it with PyAV).
    Raises :class:`VideoReadError` for a file that cannot be opened."""
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    return len(VideoFileReader(path))


def count_frames(sources: Sequence[VideoSource], progress: bool = True) -> list[VideoSource]:
    """Return ``sources`` with ``num_frames`` filled in (already known counts are kept).

    Counting frame folders is a directory listing each; counting video files opens each
    container, which for tens of thousands of videos takes minutes, hence the tqdm progress
    bar (``progress=False`` hides it). To pay this once, store the counts (e.g. as JSON of
    ``{source.key: source.num_frames}``) and pass sources with ``num_frames`` set.
    """
    counted = []
    for source in tqdm(sources, desc="counting frames", unit="video", disable=not progress):
        if source.num_frames is None:
            source = VideoSource(source.class_name, source.video_id, source.path, source.kind,
                                 count_video_frames(source.path))
        counted.append(source)
    return counted


def _first_line(error: BaseException) -> str:
    """decord's messages carry a long C++ stack trace; keep its first line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
