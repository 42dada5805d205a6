"""Tiny fake raw datasets in each benchmark's official download layout, for the prepare tests.

Every raw video is written with PyAV at 80x60 (so the default 4:3 resize to a shorter side of
48 gives 64x48, a width decord reads) and its frames encode their index as a grey level
(``20 + 10 * i``), so a test can check which frames a prepared video holds
(:func:`frame_indices`). Split files are written in each benchmark's format
(``class_folder/video_id``, no extension).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

BASE, STEP = 20, 10
WIDTH, HEIGHT = 80, 60


def coded_frames(num_frames: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """(T, H, W, 3) uint8 flat frames, frame i at grey level ``20 + 10 i`` (T <= 24)."""
    if BASE + STEP * (num_frames - 1) > 255:
        raise ValueError("at most 24 index-coded frames fit in uint8")
    levels = BASE + STEP * np.arange(num_frames)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)


def frame_indices(clip) -> np.ndarray:
    """The index coded in each frame of a clip: (L, 3, H, W) or (L, H, W, 3), uint8 or [0, 1]."""
    array = np.asarray(clip, dtype=np.float64)
    if array.max() <= 1.0:
        array = array * 255.0
    means = array.reshape(array.shape[0], -1).mean(axis=1)
    return np.rint((means - BASE) / STEP).astype(np.int64)


def write_raw_video(path: Path, num_frames: int = 20, fps: int = 25, codec: str | None = None) -> Path:
    """A coded video in the container of ``path``: .webm (VP9/VP8), .mp4 (H.264), .avi
    (MPEG-4 part 2, or ``codec="mjpeg"``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    options: dict[str, str] = {}
    pix_fmt = "yuv420p"
    if codec is None:
        codec = {".webm": "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx",
                 ".mp4": "libx264", ".avi": "mpeg4", ".mkv": "libx264"}[suffix]
    if codec == "libx264":
        options = {"crf": "5", "preset": "ultrafast"}
    elif codec.startswith("libvpx"):
        options = {"crf": "4", "b": "0"} if codec == "libvpx-vp9" else {"crf": "4", "b": "2M"}
    elif codec == "mpeg4":
        options = {"qscale": "1"}
    elif codec == "mjpeg":
        pix_fmt = "yuvj420p"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        if codec == "mpeg4":
            stream.codec_context.qscale = 1  # type: ignore[attr-defined]
            stream.bit_rate = 4_000_000
        stream.options = options
        for frame in coded_frames(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_corrupt_video(path: Path) -> Path:
    """Bytes that no decoder accepts, under a video name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def write_split(path: Path, keys: Iterable[str]) -> Path:
    """A split list: one ``class_folder/video_id`` per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
    return path


@dataclass
class FakeDataset:
    """A raw download plus split lists. ``frames``: raw frames of each listed ``class/id``
    that exists; ``missing``: listed keys with no raw file; ``corrupt``: listed keys whose raw
    file is garbage."""

    raw: Path
    splits: dict[str, Path]
    frames: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    def keys(self, split: str) -> list[str]:
        return [line for line in self.splits[split].read_text().splitlines() if line]


# --- SSv2 -------------------------------------------------------------------------------------

SSV2_TEMPLATES = (
    "Pushing [something] from left to right",
    "Putting [number of] [something] onto [something]",
    "Twisting (wringing) [something] wet until water comes out",
    "Moving [something] and [something] away from each other",
)


def make_ssv2(tmp: Path, per_class: int = 3) -> tuple[FakeDataset, FakeDataset]:
    """SSv2 as downloaded: ``raw/20bn-something-something-v2/<id>.webm`` and the 20BN label
    JSONs beside it; returns the same raw data with OTAM-style lists (anonymised
    ``train0``.. / ``test0``.. folders) and with CMN-style lists (label text classes).
    Classes 0-1 train, 2-3 test. One listed id has no webm, one webm is corrupt."""
    raw = tmp / "ssv2_raw"
    videos = raw / "20bn-something-something-v2"
    train_json, val_json = [], []
    otam: dict[str, list[str]] = {"train": [], "test": []}
    cmn: dict[str, list[str]] = {"train": [], "test": []}
    frames: dict[str, int] = {}
    next_id = 1000
    for c, template in enumerate(SSV2_TEMPLATES):
        split = "train" if c < 2 else "test"
        folder = f"{split}{c % 2}"
        label_class = template.replace("[", "").replace("]", "")
        for _ in range(per_class):
            vid = str(next_id)
            next_id += 7
            write_raw_video(videos / f"{vid}.webm", num_frames=12 + c, fps=12)
            (train_json if c % 2 == 0 else val_json).append(
                {"id": vid, "label": template.replace("[", "").replace("]", "").lower(),
                 "template": template, "placeholders": ["a pen"]})
            otam[split].append(f"{folder}/{vid}")
            cmn[split].append(f"{label_class}/{vid}")
            frames[vid] = 12 + c
    (raw / "something-something-v2-train.json").write_text(json.dumps(train_json))
    (raw / "something-something-v2-validation.json").write_text(json.dumps(val_json))
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(SSV2_TEMPLATES)}
    (raw / "something-something-v2-labels.json").write_text(json.dumps(labels))
    # problems: a listed id without a webm, a corrupt webm (labelled, listed in test)
    otam["test"].append("test0/999999")
    cmn["test"].append(f"{SSV2_TEMPLATES[2].replace('[', '').replace(']', '')}/999999")
    write_corrupt_video(videos / "424242.webm")
    val_json.append({"id": "424242", "label": "x", "template": SSV2_TEMPLATES[3], "placeholders": []})
    (raw / "something-something-v2-validation.json").write_text(json.dumps(val_json))
    otam["test"].append("test1/424242")
    cmn["test"].append(f"{SSV2_TEMPLATES[3].replace('[', '').replace(']', '')}/424242")

    def dataset(name: str, lists: dict[str, list[str]], number: str) -> FakeDataset:
        splits = {s: write_split(tmp / "splits" / name / f"{s}list{number}.txt", keys) for s, keys in lists.items()}
        by_key = {k: frames[k.split("/")[1]] for keys in lists.values() for k in keys if k.split("/")[1] in frames}
        missing = [k for keys in lists.values() for k in keys if k.endswith("/999999")]
        corrupt = [k for keys in lists.values() for k in keys if k.endswith("/424242")]
        return FakeDataset(raw, splits, by_key, missing, corrupt)

    return dataset("ssv2_OTAM", otam, "07"), dataset("ssv2_CMN", cmn, "03")


# --- Kinetics ---------------------------------------------------------------------------------

def kinetics_id(youtube: str, start: int) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>`` for a 10-second clip."""
    return f"{youtube}_{start:06d}_{start + 10:06d}"


def make_kinetics(tmp: Path) -> FakeDataset:
    """Kinetics as downloaded by the kinetics-dataset scripts: ``raw/train/<id>.mp4`` flat for
    some clips, ``raw/val/<class name>/<id>.mp4`` in class folders for others; class names
    with spaces. One clip was downloaded with other times (matched by YouTube id), one is
    missing, one is corrupt in ``train/`` with a good copy in the mirror's
    ``replacement/replacement_for_corrupted_k400/``."""
    raw = tmp / "kinetics_raw"
    classes = ["air drumming", "blasting sand", "baking cookies", "tying tie"]
    lists: dict[str, list[str]] = {"train": [], "test": []}
    frames: dict[str, int] = {}
    for c, name in enumerate(classes):
        split = "train" if c < 2 else "test"
        for v in range(3):
            youtube = f"-x{c}Yz_{v}Ab-Q"[:11]
            vid = kinetics_id(youtube, 12 + v)
            key = f"{name}/{vid}"
            lists[split].append(key)
            if c == 3 and v == 2:
                # downloaded with other times: <id>_000100_000110.mp4
                write_raw_video(raw / "val" / name / f"{kinetics_id(youtube, 100)}.mp4", num_frames=18)
            elif c == 0 and v == 0:
                # corrupted in train/, replaced by the mirror's replacement archive
                write_corrupt_video(raw / "train" / f"{vid}.mp4")
                write_raw_video(raw / "replacement" / "replacement_for_corrupted_k400" / f"{vid}.mp4", num_frames=18)
            elif c % 2 == 0:
                write_raw_video(raw / "train" / f"{vid}.mp4", num_frames=18)
            else:
                write_raw_video(raw / "val" / name.replace(" ", "_") / f"{vid}.mp4", num_frames=18)
            frames[key] = 18
    missing_key = f"{classes[2]}/{kinetics_id('NoSuchVid00', 5)}"
    lists["test"].append(missing_key)
    splits = {s: write_split(tmp / "splits" / "kinetics_CMN" / f"{s}list03.txt", k) for s, k in lists.items()}
    return FakeDataset(raw, splits, frames, [missing_key])


# --- HMDB51 and UCF101 ------------------------------------------------------------------------

HMDB_VIDEOS = {
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0",
                   "Aussie_Brush_Hair_brush_hair_f_nm_np1_ri_med_2"],
    "cartwheel": ["(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0",
                  "Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8",
                  "Bodenturnen_2004_cartwheel_f_cm_np1_le_med_0"],
    "fencing": ["Die_Another_Day_-_Fencing_Scene_Part_1_[HD]_fencing_f_cm_np2_le_goo_0",
                "1899_Hamlet__the_Fencing_Scene_with_Laertes_fencing_f_cm_np2_le_med_0",
                "Fencing_Training_fencing_f_cm_np2_ri_bad_1"],
    "kick_ball": ["Amazing_Soccer_#2_kick_ball_f_cm_np1_ba_bad_5", "Banned_Nike_Ad_kick_ball_f_cm_np1_fr_med_1",
                  "Best_Of_Ronaldinho_kick_ball_f_cm_np1_le_goo_3"],
}


def make_hmdb(tmp: Path) -> FakeDataset:
    """HMDB51 after unrar: ``raw/<class>/<video>.avi`` (MPEG-4), names with capitals and
    punctuation. The file of one listed video differs only in letter case (a near miss) and
    one class keeps its (unextracted) .rar beside the folder."""
    raw = tmp / "hmdb_raw"
    lists: dict[str, list[str]] = {"train": [], "test": []}
    frames: dict[str, int] = {}
    missing = []
    for c, (name, videos) in enumerate(HMDB_VIDEOS.items()):
        split = "train" if c < 2 else "test"
        for v, video in enumerate(videos):
            key = f"{name}/{video}"
            lists[split].append(key)
            if name == "fencing" and v == 2:
                write_raw_video(raw / name / f"{video.lower()}.avi", num_frames=16)  # case differs
                missing.append(key)
                continue
            write_raw_video(raw / name / f"{video}.avi", num_frames=16)
            frames[key] = 16
    (raw / "kick_ball.rar").write_bytes(b"Rar!")
    splits = {s: write_split(tmp / "splits" / "hmdb_ARN" / f"{s}list03.txt", k) for s, k in lists.items()}
    return FakeDataset(raw, splits, frames, missing)


UCF_CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "BlowingCandles", "HandstandWalking")


def make_ucf(tmp: Path, short_frames: int = 5) -> FakeDataset:
    """UCF101 after unrar: ``raw/UCF-101/<Class>/v_<Class>_gXX_cXX.avi`` (Motion JPEG in
    AVI). One video has only ``short_frames`` frames (too short for 8-frame clips)."""
    raw = tmp / "ucf_raw"
    lists: dict[str, list[str]] = {"train": [], "test": []}
    frames: dict[str, int] = {}
    for c, name in enumerate(UCF_CLASSES):
        split = "train" if c < 2 else "test"
        for g, clip in ((8, 1), (8, 2), (9, 1)):
            vid = f"v_{name}_g{g:02d}_c{clip:02d}"
            n = short_frames if (c == 3 and g == 9) else 14
            write_raw_video(raw / "UCF-101" / name / f"{vid}.avi", num_frames=n, codec="mjpeg")
            lists[split].append(f"{name}/{vid}")
            frames[f"{name}/{vid}"] = n
    splits = {s: write_split(tmp / "splits" / "ucf_ARN" / f"{s}list03.txt", k) for s, k in lists.items()}
    return FakeDataset(raw, splits, frames)


def listed_classes(keys: Sequence[str]) -> list[str]:
    return sorted({k.split("/")[0] for k in keys})
