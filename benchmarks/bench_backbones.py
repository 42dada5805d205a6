"""Frames per second of each backbone, forward only (inference mode, eval, random weights).

2D backbones get `--videos` clips of `--frames` frames (default 1 x 8, as TRX/STRM);
3D backbones get `--videos` clips of `--clip-frames` frames (default 16, as MASTAF).
Frames per second counts input frames: videos * frames / seconds per forward pass.
`cpu ms` is the process's CPU time per pass (all threads): on a machine shared with other
work the wall-clock figures grow with the load, the CPU time much less.

    python benchmarks/bench_backbones.py                       # all backbones, default sizes
    python benchmarks/bench_backbones.py --backbones resnet50 r3d50 --size-3d 224 --reps 5
    python benchmarks/bench_backbones.py --device cuda --amp   # bfloat16 autocast on a GPU
    python benchmarks/bench_backbones.py --backbones efficientnet_lite0 --sizes 112 128 160 --threads 2 --reps 9
"""

from __future__ import annotations

import argparse
import time

import torch

from fsvid.backbones import BACKBONE_NAMES, OUTPUT_MODES, build_backbone

THREE_D = ("r3d50", "r3d_18", "r2plus1d_18")


def default_size(name: str, args: argparse.Namespace) -> int:
    if name == "small_cnn":
        return args.size_small
    return args.size_3d if name in THREE_D else args.size_2d


def benchmark(name: str, args: argparse.Namespace, device: torch.device, size: int) -> dict[str, float]:
    """Time `args.reps` forward passes after `args.warmup` untimed ones; returns the figures."""
    frames = args.clip_frames if name in THREE_D else args.frames
    backbone = build_backbone(name, output=args.output, trainable="none").to(device).eval()
    clips = torch.rand(args.videos, frames, 3, size, size, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)

    def forward() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return backbone(clips)

    for _ in range(args.warmup):
        out = forward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times, cpu_times = [], []
    for _ in range(args.reps):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = forward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    seconds = sorted(times)[len(times) // 2]  # median
    return {
        "size": size,
        "frames": args.videos * frames,
        "ms": seconds * 1000,
        "cpu_ms": sorted(cpu_times)[len(cpu_times) // 2] * 1000,
        "fps": args.videos * frames / seconds,
        "params_m": sum(p.numel() for p in backbone.parameters()) / 1e6,
        "shape": tuple(out.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONE_NAMES), choices=BACKBONE_NAMES)
    parser.add_argument("--videos", type=int, default=1, help="clips per forward pass")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip for 2D backbones")
    parser.add_argument("--clip-frames", type=int, default=16, help="frames per clip for 3D backbones")
    parser.add_argument("--size-2d", type=int, default=224, help="frame side for ResNets, ViT and EfficientNet-Lite")
    parser.add_argument("--size-3d", type=int, default=112, help="frame side for 3D backbones (MASTAF: 224)")
    parser.add_argument("--size-small", type=int, default=64, help="frame side for small_cnn")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="time every backbone at each of these frame sides instead of its default")
    parser.add_argument("--output", default="maps", choices=OUTPUT_MODES)
    parser.add_argument("--reps", type=int, default=3, help="timed passes (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {where}; amp: {args.amp}; output: {args.output}; median of {args.reps} passes")
    print(f"{'backbone':<18} {'input':<18} {'params (M)':>10} {'ms/pass':>9} {'cpu ms':>9} {'frames/s':>9}  output shape")
    for name in args.backbones:
        for size in args.sizes or [default_size(name, args)]:
            r = benchmark(name, args, device, size)
            frames = args.clip_frames if name in THREE_D else args.frames
            shape = f"{args.videos}x{frames}x{size}x{size}"
            print(f"{name:<18} {shape:<18} {r['params_m']:>10.1f} {r['ms']:>9.1f} {r['cpu_ms']:>9.1f} {r['fps']:>9.1f}  {r['shape']}", flush=True)


if __name__ == "__main__":
    main()
