"""Tiny videos and frame folders for the data tests, written with PyAV and Pillow.

Frames encode their own index as a grey level (``10 + 4 * i``), so a test can decode a clip
and check that it got exactly the frames it asked for (:func:`decode_index`). Flat grey
frames survive H.264/VP9 encoding and JPEG compression to within a grey level or two.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import av
import numpy as np
from PIL import Image

#: grey level of frame i is BASE + STEP * i (up to 61 frames fit in uint8)
BASE, STEP = 10, 4


def index_frames(num_frames: int, height: int = 24, width: int = 32) -> np.ndarray:
    """(num_frames, H, W, 3) uint8 flat grey frames, frame i at level ``10 + 4 i``."""
    if BASE + STEP * (num_frames - 1) > 255:
        raise ValueError(f"at most {(255 - BASE) // STEP + 1} index-coded frames fit in uint8")
    levels = BASE + STEP * np.arange(num_frames)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)


def decode_index(clip) -> np.ndarray:
    """Frame indices of a clip of index-coded frames: (L, 3, H, W) or (L, H, W, 3), uint8
    levels or floats in [0, 1]."""
    array = np.asarray(clip, dtype=np.float64)
    if array.max() <= 1.0:
        array = array * 255.0
    means = array.reshape(array.shape[0], -1).mean(axis=1)
    return np.rint((means - BASE) / STEP).astype(np.int64)


def webm_codec() -> str:
    """VP9 if this PyAV build can encode it, else VP8."""
    return "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, hidden: int = 0, live: bool = False) -> Path:
    """Encode (T, H, W, 3) uint8 frames (H, W even) as .mp4 (libx264) or .webm (VP9/VP8).

    Two kinds of file met in the wild: ``hidden=N`` (mp4) hides the first N frames with an edit
    list, as a stream-copy cut (``ffmpeg -ss S -i in.mp4 -c copy out.mp4``) keeps the pre-roll
    from the previous key frame: the packets are muxed with timestamps shifted N frames below
    zero, in one GOP so every shown frame needs the hidden key frame. ``live=True`` (webm) writes
    no duration and no cues, like live muxers and browser recorders (MediaRecorder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        codec, options = "libx264", {"crf": "10", "preset": "ultrafast"}
        if hidden:
            options["g"] = str(len(frames) + 1)
    elif suffix == ".webm":
        codec, options = webm_codec(), {"crf": "10", "b": "0" if webm_codec() == "libvpx-vp9" else "2M"}
    else:
        raise ValueError(f"write_video writes .mp4 or .webm, not {path.name}")
    with av.open(str(path), "w", options={"live": "1"} if live else {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = options

        def mux(packets) -> None:
            for packet in packets:
                if hidden:  # the stream's time base is 1/fps: one frame per tick
                    packet.pts -= hidden
                    packet.dts -= hidden
                container.mux(packet)

        for frame in frames:
            mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        mux(stream.encode())
    return path


def write_frame_folder(folder: str | Path, frames: np.ndarray, pattern: str = "img_{:05d}.jpg") -> Path:
    """Write (T, H, W, 3) uint8 frames as JPEGs ``pattern.format(i + 1)`` (1-based like the
    usual extraction scripts)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame)).save(folder / pattern.format(i + 1), quality=95)
    return folder


def make_dataset(
    root: str | Path,
    videos_per_class: Mapping[str, int],
    num_frames: int | Mapping[str, int] = 12,
    kind: str = "frames",
    height: int = 24,
    width: int = 32,
) -> list[str]:
    """Write a data root with ``videos_per_class[c]`` videos ``v{k}`` per class ``c``.

    ``kind``: ``"frames"`` (JPEG folders), ``"mp4"`` or ``"webm"``. ``num_frames`` is one
    count for all videos or a mapping ``"class/video_id" -> count`` (default 12 for others).
    Returns the split lines ``class/video_id``.
    """
    root = Path(root)
    lines = []
    for class_name, count in videos_per_class.items():
        for k in range(count):
            key = f"{class_name}/v{k}"
            n = num_frames.get(key, 12) if isinstance(num_frames, Mapping) else num_frames
            frames = index_frames(n, height, width)
            if kind == "frames":
                write_frame_folder(root / class_name / f"v{k}", frames)
            else:
                write_video(root / class_name / f"v{k}.{kind}", frames)
            lines.append(key)
    return lines


def write_split(path: str | Path, lines: list[str]) -> Path:
    """Write split lines, one per line."""
    path = Path(path)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
