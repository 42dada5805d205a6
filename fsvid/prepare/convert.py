"""Convert one raw video: decode, resize to 256 on the shorter side, write mp4 or JPEG frames.

``raw video  ->  decode every frame once (PyAV or the ffmpeg program)  ->  resize (bicubic)
->  [keep only the L test-time frames]  ->  H.264 .mp4 (PyAV/libx264) or 000001.jpg, ...``

- Frame rate: every decoded frame is kept exactly once, in order (no frame is dropped or
  duplicated to reach a rate; the ffmpeg program runs with ``-fps_mode passthrough``), so a
  prepared video has as many frames as the decoder found in the raw one, and the frame
  sampling of :mod:`fsvid.data.sampling` sees the same video. The mp4 is written at the raw video's average
  frame rate (it only matters for playback).
- Size: the shorter side becomes ``short_side`` (default 256, like the load-time resize of
  the released code, which then does nothing), the longer one keeps the aspect ratio; both
  are rounded to even numbers (H.264 with 4:2:0 chroma needs them). ``square=True`` gives
  ``short_side x short_side`` frames instead, as the TRX author's extraction scripts did
  (``ffmpeg -vf scale=256:256``), distorting the aspect ratio.
- ``keep_frames=L``: only the L frames that test-time sampling reads (the ``"trx"`` scheme:
  ``linspace(1, n-2, L)``) are written, renumbered ``1..L``; reading such a video at test time
  gives exactly the frames of the full video (with n == L the sampler takes every frame).
  The TRX author shrank his frame folders similarly to save space, keeping 8 frames at
  ``linspace(0, n-1, 8)`` (``shrink_dataset.py`` in his few-shot-action-recognition
  repository); keeping the test-time frames instead makes testing identical to testing on the
  full videos. Training then sees those same L frames every time: no temporal jitter. A video
  shorter than L keeps all its frames.
- Atomic: the output is written under a ``.partial-`` name in the class folder, then renamed.
  An interrupted run leaves at most a ``.partial-`` leftover (removed by the next run), never
  a half-written video under its final name, so "the final name exists" means "done".

Errors: a video that cannot be opened, or yields no frame, is ``"unreadable"`` (nothing is
written); one whose decoding fails part-way keeps the frames decoded so far and is
``"truncated"`` (what the ffmpeg program does with a damaged tail). Errors while writing
(disk full, permissions) are raised: they would hit every video.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from fsvid.data.sampling import FrameSampling, sample_frame_indices

OutputFormat = Literal["mp4", "frames"]
Decoder = Literal["pyav", "ffmpeg"]
Status = Literal["ok", "truncated", "unreadable"]

#: Prefix of the temporary names outputs are written under before the final rename.
PARTIAL_PREFIX = ".partial-"
#: File name of frame ``i`` (0-based) in a frame folder: ``000001.jpg`` for i = 0.
FRAME_NAME = "{:06d}.jpg"


@dataclass(frozen=True)
class OutputOptions:
    """How prepared videos are written (see the module docstring).

    Args:
        format: ``"mp4"`` (H.264, read with decord) or ``"frames"`` (a folder of JPEGs).
        short_side: target shorter side in pixels; ``None`` keeps the raw size.
        square: resize to ``short_side x short_side`` (aspect ratio not kept).
        keep_frames: write only the L test-time frames; ``None`` writes every frame.
        sampling: the frame sampling scheme whose test-time frames ``keep_frames`` keeps.
        crf: x264 constant rate factor (lower is better and bigger; 18 is visually lossless).
        preset: x264 speed preset.
        jpeg_quality: Pillow JPEG quality for ``"frames"`` (1-95).
        decoder: ``"pyav"`` (PyAV, a dependency) or ``"ffmpeg"`` (the program, on PATH).
    """

    format: OutputFormat = "mp4"
    short_side: int | None = 256
    square: bool = False
    keep_frames: int | None = None
    sampling: FrameSampling = "trx"
    crf: int = 23
    preset: str = "veryfast"
    jpeg_quality: int = 90
    decoder: Decoder = "pyav"

    def __post_init__(self) -> None:
        if self.format not in ("mp4", "frames"):
            raise ValueError(f"format must be 'mp4' or 'frames', got {self.format!r}")
        if self.short_side is not None and self.short_side < 2:
            raise ValueError(f"short_side must be at least 2 pixels (or None), got {self.short_side}")
        if self.square and self.short_side is None:
            raise ValueError("square=True needs a short_side")
        if self.keep_frames is not None and self.keep_frames < 1:
            raise ValueError(f"keep_frames must be at least 1 (or None), got {self.keep_frames}")
        if self.sampling not in ("trx", "tsn"):
            raise ValueError(f"sampling must be 'trx' or 'tsn', got {self.sampling!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if self.decoder not in ("pyav", "ffmpeg"):
            raise ValueError(f"decoder must be 'pyav' or 'ffmpeg', got {self.decoder!r}")

    def output_settings(self) -> dict[str, object]:
        """The options that change what is written (not how fast): two runs into the same
        folder must agree on these."""
        settings = asdict(self)
        for how in ("preset", "decoder"):
            settings.pop(how)
        if self.keep_frames is None:
            settings.pop("sampling")
        if self.format == "mp4":
            settings.pop("jpeg_quality")
        else:
            settings.pop("crf")
        return settings


@dataclass(frozen=True)
class ConvertResult:
    """What happened to one video. ``frames_in``: frames decoded from the raw video;
    ``frames_out``: frames written; ``width``/``height`` of the written frames."""

    key: str
    status: Status
    frames_in: int = 0
    frames_out: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    message: str = ""


def output_size(width: int, height: int, short_side: int | None, square: bool = False) -> tuple[int, int]:
    """(width, height) after resizing: shorter side ``short_side``, aspect kept, both even."""
    if short_side is None:
        return width - width % 2, height - height % 2
    if square:
        return short_side, short_side

    def even(x: float) -> int:
        return max(2, 2 * round(x / 2))

    if width <= height:
        return even(short_side), even(height * short_side / width)
    return even(width * short_side / height), even(short_side)


def output_path(out_root: str | os.PathLike, class_name: str, video_id: str, format: OutputFormat) -> Path:
    """``OUT/<class>/<video_id>.mp4`` or the frame folder ``OUT/<class>/<video_id>``."""
    folder = Path(out_root) / class_name
    return folder / f"{video_id}.mp4" if format == "mp4" else folder / video_id


def partial_path(dest: Path) -> Path:
    """The temporary name ``dest`` is written under: ``.partial-<name>`` beside it."""
    return dest.with_name(PARTIAL_PREFIX + dest.name)


def ffmpeg_path() -> str:
    """The ffmpeg program, or ``FileNotFoundError`` saying how to get it."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise FileNotFoundError(
            "the ffmpeg program is not on PATH: install it (apt install ffmpeg, brew install ffmpeg or "
            "conda install -c conda-forge ffmpeg) or use the PyAV decoder (--decoder pyav, the default)"
        )
    return found


# --- decoding -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Probe:
    width: int
    height: int
    fps: Fraction


def _probe(path: Path) -> _Probe:
    """Frame size and average rate of the first video stream (PyAV, no decoding)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
    if not width or not height:
        raise ValueError("the video stream has no frame size")
    fps = Fraction(rate) if rate and 1 <= float(rate) <= 240 else Fraction(25)
    return _Probe(width, height, fps.limit_denominator(1001))


def _decode_pyav(path: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Every frame of the first video stream, resized (bicubic, swscale): (H, W, 3) uint8."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BICUBIC")


def _decode_ffmpeg(path: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Every frame, decoded and resized by the ffmpeg program into a pipe of raw RGB."""
    command = [
        ffmpeg_path(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
        "-vf", f"scale={width}:{height}:flags=bicubic", *_ffmpeg_passthrough(),
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]
    size = width * height * 3
    # stderr goes to a file, not a pipe: a pipe nobody reads could fill up and block ffmpeg
    with tempfile.TemporaryFile() as errors, \
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process:
        assert process.stdout is not None
        while True:
            chunk = process.stdout.read(size)
            if len(chunk) < size:
                break
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3)
        if process.wait() != 0:
            errors.seek(0)
            text = errors.read().decode(errors="replace").strip()
            reason = text.splitlines()[-1] if text else f"exit status {process.returncode}"
            raise RuntimeError(f"ffmpeg failed: {reason}")


@functools.lru_cache(maxsize=1)
def _ffmpeg_passthrough() -> tuple[str, str]:
    """Keep every decoded frame once: ``-fps_mode passthrough`` (ffmpeg >= 5.1) or the older
    ``-vsync passthrough``."""
    try:
        banner = subprocess.run([ffmpeg_path(), "-version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        banner = ""
    match = re.search(r"version n?(\d+)\.(\d+)", banner)
    if match and (int(match.group(1)), int(match.group(2))) >= (5, 1):
        return "-fps_mode", "passthrough"
    return "-vsync", "passthrough"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


# --- writing --------------------------------------------------------------------------------

class _Mp4Writer:
    """H.264 in mp4 with PyAV, yuv420p, every frame given is one frame of the file."""

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, crf: int, preset: str) -> None:
        import av

        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": preset}
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.count
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class _FrameWriter:
    """JPEG files ``000001.jpg, 000002.jpg, ...`` in a folder."""

    def __init__(self, folder: Path, quality: int) -> None:
        folder.mkdir()
        self.folder, self.quality, self.count = folder, quality, 0

    def write(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self.folder / FRAME_NAME.format(self.count + 1), quality=self.quality)
        self.count += 1

    def close(self) -> None:
        pass


def remove_output(path: Path) -> None:
    """Delete a prepared video (file) or frame folder, if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def convert_video(
    source: str | os.PathLike, dest: str | os.PathLike, options: OutputOptions, key: str = ""
) -> ConvertResult:
    """Decode ``source`` and write ``dest`` (a .mp4 file or a frame folder) atomically.

    ``key`` (``class/video_id``) names the video in the result. Returns a
    :class:`ConvertResult`; decoding problems are reported in it, not raised. ``dest`` must not
    exist yet (the caller decides what is done already).
    """
    source, dest = Path(source), Path(dest)
    key = key or dest.name
    try:
        probe = _probe(source)
    except Exception as error:  # PyAV raises av.error.* (OSError/ValueError subclasses) for bad files
        return ConvertResult(key, "unreadable", message=f"cannot open {source}: {_first_line(error)}")
    width, height = output_size(probe.width, probe.height, options.short_side, options.square)
    decode = _decode_ffmpeg if options.decoder == "ffmpeg" else _decode_pyav
    frames = decode(source, width, height)

    partial = partial_path(dest)
    remove_output(partial)
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    kept: list[np.ndarray] = []
    decoded, decode_error = 0, None
    try:
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception as error:  # the decoder failed part-way (or at once)
                decode_error = error
                break
            decoded += 1
            if options.keep_frames is not None:
                kept.append(frame)  # which frames to keep is known only once all are counted
                continue
            if writer is None:
                writer = _open_writer(partial, width, height, probe.fps, options)
            writer.write(frame)
        if decoded == 0:
            reason = _first_line(decode_error) if decode_error else "no frames decoded"
            return ConvertResult(key, "unreadable", message=f"cannot decode {source}: {reason}")
        if options.keep_frames is not None:
            if decoded >= options.keep_frames:
                indices = sample_frame_indices(decoded, options.keep_frames, train=False, scheme=options.sampling)
            else:
                indices = np.arange(decoded)  # too short: keep all (dropped or repeated at load time)
            writer = _open_writer(partial, width, height, probe.fps, options)
            for i in indices:
                writer.write(kept[int(i)])
        assert writer is not None
        writer.close()
        written = writer.count
        writer = None
        if options.format == "mp4":
            os.replace(partial, dest)
        else:
            os.rename(partial, dest)  # a folder: fails rather than merge into an existing one
    finally:
        frames.close()
        if writer is not None:
            try:
                writer.close()
            except Exception:  # already failing; the partial output is removed below
                pass
        remove_output(partial)
    status: Status = "ok"
    message = ""
    if decode_error is not None:
        status, message = "truncated", f"decoding stopped after {decoded} frames: {_first_line(decode_error)}"
    return ConvertResult(key, status, decoded, written, width, height, float(probe.fps), message)


def _open_writer(
    partial: Path, width: int, height: int, fps: Fraction, options: OutputOptions
) -> _Mp4Writer | _FrameWriter:
    if options.format == "mp4":
        return _Mp4Writer(partial, width, height, fps, options.crf, options.preset)
    return _FrameWriter(partial, options.jpeg_quality)
