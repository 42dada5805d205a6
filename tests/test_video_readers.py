"""Readers: the frames read are the frames asked for, from mp4, webm and JPEG folders; errors name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import decode_index, index_frames, write_frame_folder, write_video
from fsvid.data.splits import VideoSource
from fsvid.data.video import (
    FrameFolderReader,
    VideoFileReader,
    VideoReadError,
    count_frames,
    count_video_frames,
    open_video,
    read_frames,
)

ASKED = [0, 5, 19, 3, 3, 12]  # any order, with a repeat


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_video_file_returns_the_frames_asked_for(tmp_path: Path, suffix: str) -> None:
    path = write_video(tmp_path / f"clip{suffix}", index_frames(20, 24, 32))
    reader = open_video(path)
    assert isinstance(reader, VideoFileReader) and len(reader) == 20
    clip = reader.read(ASKED)
    assert clip.shape == (len(ASKED), 3, 24, 32) and clip.dtype == torch.uint8
    assert decode_index(clip).tolist() == ASKED
    assert count_video_frames(path) == 20


@pytest.mark.parametrize("width", [16, 72])
def test_widths_decord_mishandles_are_read_through_pyav(tmp_path: Path, width: int) -> None:
    for suffix in (".mp4", ".webm"):
        path = write_video(tmp_path / f"narrow{suffix}", index_frames(20, 16, width))
        clip = read_frames(path, ASKED)
        assert clip.shape == (len(ASKED), 3, 16, width)
        assert decode_index(clip).tolist() == ASKED


def test_frame_folder_natural_order_and_frames_asked_for(tmp_path: Path) -> None:
    # names 1.jpg .. 20.jpg: plain string order would put 10.jpg before 2.jpg
    folder = write_frame_folder(tmp_path / "vid", index_frames(20, 24, 32), pattern="{}.jpg")
    (folder / "notes.txt").write_text("not a frame")
    reader = open_video(folder)
    assert isinstance(reader, FrameFolderReader) and len(reader) == 20
    clip = reader.read(ASKED)
    assert clip.shape == (len(ASKED), 3, 24, 32) and clip.dtype == torch.uint8
    assert decode_index(clip).tolist() == ASKED
    assert count_video_frames(folder) == 20


def test_grey_jpeg_frames_come_out_rgb(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "grey"
    folder.mkdir()
    Image.fromarray(np.full((8, 10), 90, np.uint8), mode="L").save(folder / "img_00001.jpg")
    clip = read_frames(folder, [0, 0])
    assert clip.shape == (2, 3, 8, 10)


def test_count_frames_fills_in_counts(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a" / "v.mp4", index_frames(9, 16, 16))
    folder = write_frame_folder(tmp_path / "a" / "w", index_frames(7, 16, 16))
    sources = [VideoSource("a", "v", video, "video"), VideoSource("a", "w", folder, "frames"),
               VideoSource("a", "known", tmp_path / "absent", "frames", num_frames=3)]
    counted = count_frames(sources, progress=False)
    assert [s.num_frames for s in counted] == [9, 7, 3]  # a known count is not recounted


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_undecodable_video_names_the_file(tmp_path: Path, damage: str) -> None:
    good = write_video(tmp_path / "good.mp4", index_frames(20, 24, 32)).read_bytes()
    bad = tmp_path / "class" / "broken video.mp4"
    bad.parent.mkdir()
    bad.write_bytes({"garbage": b"\x00not a video" * 50, "empty": b"", "truncated": good[: len(good) // 3]}[damage])
    with pytest.raises(VideoReadError, match="broken video.mp4"):
        read_frames(bad, [0, 1])
    with pytest.raises(VideoReadError, match="broken video.mp4"):
        count_video_frames(bad)


def test_corrupt_jpeg_names_the_file(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "vid", index_frames(5, 16, 16))
    (folder / "img_00003.jpg").write_bytes(b"\xff\xd8 broken")
    assert decode_index(read_frames(folder, [0, 1, 4])).tolist() == [0, 1, 4]  # untouched frames still read
    with pytest.raises(VideoReadError, match="img_00003.jpg"):
        read_frames(folder, [0, 2])


def test_reader_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no .jpg files"):
        open_video(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        open_video(tmp_path / "absent.mp4")
    folder = write_frame_folder(tmp_path / "vid", index_frames(5, 16, 16))
    with pytest.raises(IndexError, match=r"\[5\] out of range .*5 frames"):
        read_frames(folder, [0, 5])
    video = write_video(tmp_path / "v.webm", index_frames(6, 16, 16))
    with pytest.raises(IndexError, match="v.webm"):
        read_frames(video, [-1])
