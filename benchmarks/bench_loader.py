"""Episode loading speed: clips per second from mp4 files and from JPEG frame folders.

Writes a small temporary dataset (by default 20 videos of 48 frames at 256 x 340, in 4
classes, once as H.264 mp4 files and once as folders of JPEG frames), then reads training
episodes (4-way 4-shot 1 query: 20 clips of 8 frames, random 224 crop of the 256-short-side
frames) through ``DataLoader(batch_size=None)`` with 0 and 2 workers, and prints clips per
second. The time to build each dataset (counting frames for the "drop" policy) is printed too.

    python benchmarks/bench_loader.py                  # about a minute on 2 CPU cores
    python benchmarks/bench_loader.py --episodes 20 --workers 0 2 4 --threads 1

On a machine whose cores are busy with other work, torch's default of one intra-op thread
per core makes the main process (0 workers) much slower than it should be (threads wait on
each other); ``--threads 1`` shows the difference. DataLoader workers use one thread each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fsvid.data import EpisodeDataset


def synthetic_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8: a moving colour gradient with a drifting square and mild noise,
    so that the codecs have real work to do (neither flat nor pure noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    colour = rng.uniform(0.3, 1.0, size=3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        wave = 0.5 + 0.5 * np.sin((x + 3 * t) / 17.0 + y / 23.0)  # (H, W)
        image = wave[..., None] * colour * 200  # (H, W, 3)
        top, left = (5 * t) % (height - 40), (7 * t) % (width - 40)
        image[top : top + 40, left : left + 40] = 255
        image += rng.normal(0, 4, size=image.shape)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_dataset(root: Path, args: argparse.Namespace) -> Path:
    """Both copies of the dataset under ``root/mp4`` and ``root/frames``; returns the split list."""
    lines = []
    for k in range(args.videos):
        class_name, video_id = f"class {k % args.classes}", f"Video_{k:03d}"
        frames = synthetic_frames(args.frames_per_video, args.height, args.width, seed=k)
        (root / "mp4" / class_name).mkdir(parents=True, exist_ok=True)
        write_mp4(root / "mp4" / class_name / f"{video_id}.mp4", frames)
        folder = root / "frames" / class_name / video_id
        folder.mkdir(parents=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"img_{t + 1:05d}.jpg", quality=90)
        lines.append(f"{class_name}/{video_id}")
    split = root / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    return split


def measure(dataset: EpisodeDataset, workers: int, episodes: int) -> tuple[float, float]:
    """Seconds for ``episodes`` episodes after the first (which pays worker start-up), and clips/s."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, sampler=range(episodes + 1))
    clips = 0
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for episode in iterator:
        clips += episode.support.shape[0] + episode.query.shape[0]
    seconds = time.perf_counter() - start
    return seconds, clips / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--frames-per-video", type=int, default=48)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=340)
    parser.add_argument("--clip-frames", type=int, default=8)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--episodes", type=int, default=8, help="timed episodes per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of the main process (workers always use 1)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shot = args.videos // args.classes - 1

    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    with tempfile.TemporaryDirectory(prefix="fsvid_bench_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        split = write_dataset(root, args)
        print(f"wrote {args.videos} videos of {args.frames_per_video} frames at {args.height}x{args.width} "
              f"as mp4 and as JPEG folders in {time.perf_counter() - start:.1f} s")
        print(f"episodes: {args.classes}-way {shot}-shot 1 query = {args.classes * (shot + 1)} clips of "
              f"{args.clip_frames} frames, resize {args.resize}, random crop {args.crop}, training mode")
        print(f"{'source':<8} {'workers':>7} {'build s':>8} {'episodes':>8} {'seconds':>8} {'clips/s':>8}")
        for source in ("mp4", "frames"):
            start = time.perf_counter()
            dataset = EpisodeDataset.from_split(
                split, root / source, way=args.classes, shot=shot, query=1, frames=args.clip_frames,
                train=True, num_tasks=args.episodes + 1, resize=args.resize, crop=args.crop, progress=False,
            )
            build = time.perf_counter() - start
            for workers in args.workers:
                seconds, rate = measure(dataset, workers, args.episodes)
                print(f"{source:<8} {workers:>7} {build:>8.2f} {args.episodes:>8} {seconds:>8.2f} {rate:>8.1f}")


if __name__ == "__main__":
    main()
