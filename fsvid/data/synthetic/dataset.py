"""Writing a synthetic dataset to disk in the layout of the real benchmarks (see the package)."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from fsvid.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig, select_classes
from fsvid.data.synthetic.motions import CLASS_INDEX, SYNTHETIC_CLASSES
from fsvid.data.synthetic.render import render_clip, video_rng

SPLIT_FILES = {"train": "trainlist01.txt", "val": "vallist01.txt", "test": "testlist01.txt"}


def _video_id(class_name: str, index: int) -> str:
    return f"{class_name.replace(' ', '_')}_{index:04d}"


def _write_mp4(path: Path, clip: np.ndarray, config: SyntheticConfig) -> None:
    import av  # imported here: only the mp4 writer needs it

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=config.fps)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # parallelism comes from worker processes
        # mbtree=0: with x264's macroblock-tree rate control on, encoding the same frames
        # twice gave different bytes (measured with libx264 core 165); without it the
        # output is identical from run to run, which the determinism promise needs.
        stream.options = {"crf": str(config.crf), "preset": config.x264_preset, "x264-params": "mbtree=0"}
        for frame in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush
            container.mux(packet)
    os.replace(tmp, path)


def _write_frames(folder: Path, clip: np.ndarray, config: SyntheticConfig) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{i + 1:06d}.jpg", quality=config.jpeg_quality)


def _generate_class(root: str, config_dict: dict[str, Any], class_name: str) -> list[dict[str, Any]]:
    """Render and write all videos of one class (runs in a worker process)."""
    config = SyntheticConfig.from_dict(config_dict)
    split = SYNTHETIC_CLASSES[CLASS_INDEX[class_name]].split
    records = []
    for v in range(config.videos_per_class):
        clip = render_clip(class_name, video_rng(config.seed, class_name, v), config)
        vid = _video_id(class_name, v)
        if config.format == "mp4":
            rel = Path("videos") / class_name / f"{vid}.mp4"
            _write_mp4(Path(root) / rel, clip, config)
        else:
            rel = Path("frames") / class_name / vid
            _write_frames(Path(root) / rel, clip, config)
        records.append({"class": class_name, "video_id": vid, "split": split, "path": rel.as_posix(),
                        "frames": int(clip.shape[0])})
    return records


def _describe_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = sorted(set(stored) | set(wanted))
    return ", ".join(f"{k}: {stored.get(k)!r} on disk vs {wanted.get(k)!r} requested"
                     for k in keys if stored.get(k) != wanted.get(k))


def generate_synthetic_dataset(
    root: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    progress: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Generate the dataset under ``root`` (see :mod:`fsvid.data.synthetic` for the layout).

    Idempotent: if ``root/dataset.json`` exists with the same config (and generator
    version) nothing is done. If it exists with a different config a ``ValueError``
    says what differs, unless ``overwrite=True``, which deletes the old ``videos/``,
    ``frames/``, ``splits/`` and ``dataset.json`` first. ``dataset.json`` is written last,
    so an interrupted run is simply redone. ``workers`` processes render in parallel
    (default: the number of CPUs, at most 8; 1 = in this process); the files are identical
    whatever the number.

    Returns ``root`` as a ``Path``.
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    wanted = {"generator_version": GENERATOR_VERSION, **config.to_dict()}
    if meta_path.exists():
        try:
            stored_meta = json.loads(meta_path.read_text())
            stored = {"generator_version": stored_meta.get("generator_version"), **stored_meta["config"]}
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{meta_path} is not a synthetic dataset description ({err}); "
                             "remove it or choose another root") from err
        if stored == wanted:
            return root
        if not overwrite:
            raise ValueError(
                f"{root} already holds a synthetic dataset made with a different config "
                f"({_describe_mismatch(stored, wanted)}); pass overwrite=True to replace it "
                "or choose another root"
            )
        for sub in ("videos", "frames", "splits"):
            shutil.rmtree(root / sub, ignore_errors=True)
        meta_path.unlink()

    classes = select_classes(config)
    root.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(1, min(workers, len(classes)))
    by_class: dict[str, list[dict[str, Any]]] = {}

    from tqdm.auto import tqdm

    total = len(classes) * config.videos_per_class
    with tqdm(total=total, desc="synthetic videos", unit="video", disable=not progress) as bar:
        if workers == 1:
            for cls in classes:
                by_class[cls.name] = _generate_class(str(root), config.to_dict(), cls.name)
                bar.update(config.videos_per_class)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_generate_class, str(root), config.to_dict(), cls.name): cls.name
                           for cls in classes}
                for future in as_completed(futures):
                    by_class[futures[future]] = future.result()
                    bar.update(config.videos_per_class)

    videos = [rec for cls in classes for rec in by_class[cls.name]]
    (root / "splits").mkdir(exist_ok=True)
    for split, filename in SPLIT_FILES.items():
        lines = [f"{rec['class']}/{rec['video_id']}" for rec in videos if rec["split"] == split]
        (root / "splits" / filename).write_text("".join(line + "\n" for line in lines))

    meta = {
        "name": "fsvid-synthetic",
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "format": config.format,
        "layout": "videos/<class>/<video_id>.mp4" if config.format == "mp4" else "frames/<class>/<video_id>/000001.jpg",
        "splits": {split: f"splits/{filename}" for split, filename in SPLIT_FILES.items()},
        "classes": [
            {"name": c.name, "index": CLASS_INDEX[c.name], "split": c.split, "description": c.description,
             "twin": c.twin if c.twin in by_class else None, "reverses": c.reverses if c.reverses in by_class else None}
            for c in classes
        ],
        "videos": videos,
    }
    tmp = meta_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return root
