"""Cost of one training task of each paper preset at the papers' sizes, and what a whole run costs.

    python benchmarks/bench_train_step.py --device cuda --out results/gpu_check     # full tasks on a GPU
    python benchmarks/bench_train_step.py                                            # CPU, projected (below)
    python benchmarks/bench_train_step.py --device cpu --full --tasks 1              # CPU, whole tasks

Presets: ``trx_ssv2_full`` (ResNet-50, 224 x 224, 8 frames, 5-way 5-shot, 5 training queries
per class: 50 clips = 400 frames per task; 75,000 tasks), ``strm_ssv2_full`` (the same with 4
queries per class: 360 frames; 75,000 tasks) and ``mastaf_hmdb`` (3D ResNet-50, 16 x 224 x 224
clips, 5-way 1-shot, 1 query: 6 clips; 128,000 tasks). The backbones have RANDOM weights (the
cost does not depend on the values; nothing is downloaded); MASTAF's global classifier has 51
outputs (HMDB's classes). Clips are random; the loss is the training loss of the method
(``fsvid.engine.training.task_loss``), followed by backward. No optimiser step (its cost is
one pass over the parameters).

Modes: ``one`` (each backbone call in one piece), ``chunked`` (``--chunks`` pieces per call,
``model.backbone_chunks``), ``checkpointed`` (``--chunks`` pieces recomputed in backward,
``model.checkpoint_backbone``); each in fp32 and bf16 (autocast). Reported per mode: seconds
per task, peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: peak RSS of a fresh
process, ``resource.getrusage``), tasks per second, the projected wall time of the preset's
schedule, and of a 10,000-task evaluation read per task or from each test video's features
once (``fsvid evaluate`` by default; not for MASTAF's released jittered test frames, whose
features change from task to task), and the bf16 logits' drift from fp32 (max abs
difference / max abs fp32 logit, same weights and clips, eval mode).

On a CPU a whole task takes many minutes and its one-pass training needs more memory than
this machine has, so by default (without ``--full``) each backbone is measured on ONE clip in
fresh processes: forward + backward in one piece and with the piece recomputed in backward
(seconds per clip, projected linearly to the task's clips: 2D backbones treat frames
independently), the bytes autograd saves for backward (saved-tensor hooks, each storage
once: device-independent in fp32), and the head at the full task size. The memory printed
for a mode is then what a GPU would hold: weights + gradients + the head's saved tensors +
the saved activations of the whole task (one pass, chunked: every piece's activations are
kept until backward) or of the largest piece plus every piece's output (checkpointed); the
allocator's slack and cuDNN workspaces come on top (hence 90% of a GPU's memory in the
advice). bf16 time on a CPU says nothing about a GPU and is not measured; the drift on a CPU
uses 5-way 1-shot tasks at 112 x 112 (CPU autocast leaves 3D convolutions in fp32, so
MASTAF's CPU drift is not that of a GPU).
``--json`` writes every figure to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fsvid.backbones import build_backbone
from fsvid.config import RunConfig, load_config
from fsvid.data import Episode
from fsvid.engine.training import task_loss
from fsvid.models import FewShotModel, build_model

PRESETS = {"trx_ssv2_full": 75_000, "strm_ssv2_full": 75_000, "mastaf_hmdb": 128_000}
TEST_VIDEOS = {"trx_ssv2_full": 2857, "strm_ssv2_full": 2857, "mastaf_hmdb": 1292}  # the test lists
GLOBAL_CLASSES = 51
EVAL_TASKS = 10_000
MODES = ("one", "chunked", "checkpointed")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def preset_config(name: str, overrides: tuple[str, ...] = ()) -> RunConfig:
    return load_config(name, ["model.backbone_weights=null", "train.device=cpu", *overrides])


@dataclass(frozen=True)
class TaskShape:
    """Clips of one task: ``support`` and ``query`` counts, in training or testing."""

    way: int
    support: int
    query: int

    @classmethod
    def of(cls, config: RunConfig, train: bool) -> TaskShape:
        task = config.task
        shot = (task.train_shot or task.shot) if train else task.shot
        per_class = task.query if train else task.test_query
        one_class = task.query_sampling == "one_class"
        return cls(task.way, task.way * shot, per_class if one_class else task.way * per_class)


def random_episode(config: RunConfig, shape: TaskShape, device: torch.device, crop: int | None = None) -> Episode:
    frames, crop = config.data.frames, crop or config.data.crop
    shot = shape.support // shape.way
    generator = torch.Generator().manual_seed(0)
    clips = torch.rand(shape.support + shape.query, frames, 3, crop, crop, generator=generator)
    query_labels = torch.arange(shape.query) % shape.way if shape.query >= shape.way else torch.zeros(shape.query)
    return Episode(
        support=clips[: shape.support].to(device),
        support_labels=torch.arange(shape.way).repeat_interleave(shot).to(device),
        query=clips[shape.support :].to(device),
        query_labels=query_labels.long().sort().values.to(device),
        class_names=[f"class{c}" for c in range(shape.way)],
        class_indices=torch.arange(shape.way).to(device),
        support_videos=[], query_videos=[], task_index=0,
    )


def build(config: RunConfig, device: torch.device, mode: str, chunks: int) -> FewShotModel:
    torch.manual_seed(0)
    model = build_model(config, n_global=GLOBAL_CLASSES).to(device)
    model.chunks = 1 if mode == "one" else chunks
    model.checkpoint_backbone = mode == "checkpointed"
    return model


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_task(model: FewShotModel, config: RunConfig, episode: Episode, device: torch.device, precision: str) -> None:
    """Forward, the method's loss and backward of one task; gradients dropped afterwards."""
    with autocast(device, precision):
        output = model(episode.support, episode.support_labels, episode.query, episode.query_labels)
        loss = task_loss(config, output, episode)
    loss.float().backward()
    model.zero_grad(set_to_none=True)


def peak_memory(device: torch.device) -> float:
    """GB: CUDA's max allocated since the last reset, or this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: kilobytes


def time_training(config: RunConfig, device: torch.device, mode: str, precision: str, chunks: int, tasks: int,
                  shape: TaskShape) -> dict[str, float]:
    """Seconds per task (after one warm-up task on CUDA) and peak memory of ``tasks`` tasks."""
    model = build(config, device, mode, chunks).train()
    episode = random_episode(config, shape, device)
    if device.type == "cuda":
        train_task(model, config, episode, device, precision)  # warm-up: cuDNN autotuning, allocator
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(tasks):
        train_task(model, config, episode, device, precision)
    synchronize(device)
    return {"seconds_per_task": (time.perf_counter() - started) / tasks, "peak_gb": peak_memory(device)}


@torch.no_grad()
def time_inference(config: RunConfig, device: torch.device, clips: int, repeats: int = 1) -> float:
    """Seconds per clip of the backbone in eval mode (evaluation's cost per video)."""
    model = build(config, device, "one", 1).eval()
    batch = torch.rand(clips, config.data.frames, 3, config.data.crop, config.data.crop, device=device)
    model.backbone(batch)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        model.backbone(batch)
    synchronize(device)
    return (time.perf_counter() - started) / (repeats * clips)


@torch.no_grad()
def logit_drift(config: RunConfig, device: torch.device, shape: TaskShape) -> float:
    """max |bf16 - fp32| / max |fp32| of the scores of one task, eval mode."""
    model = build(config, device, "one", 1).eval()
    episode = random_episode(config, shape, device)
    reference = model(episode.support, episode.support_labels, episode.query).logits.float()
    with autocast(device, "bf16"):
        low = model(episode.support, episode.support_labels, episode.query).logits.float()
    return float((low - reference).abs().max() / reference.abs().max())


def time_backbone(config: RunConfig, device: torch.device, mode: str, precision: str, chunks: int,
                  clips: int) -> dict[str, float]:
    """Forward + backward of the backbone alone on ``clips`` training clips (one call), and the
    bytes autograd saved for backward (each storage once: what one pass keeps, on any device)."""
    model = build(config, device, mode, chunks).train()
    batch = torch.rand(clips, config.data.frames, 3, config.data.crop, config.data.crop, device=device)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    started = time.perf_counter()
    with autocast(device, precision), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        features = model.backbone(batch, chunks=model.chunks, checkpoint=model.checkpoint_backbone)
    features.float().square().mean().backward()
    synchronize(device)
    return {"seconds": time.perf_counter() - started, "peak_gb": peak_memory(device),
            "saved_gb": sum(storages.values()) / 1e9}


def time_head(config: RunConfig, shape: TaskShape) -> dict[str, float]:
    """The head's forward + loss + backward at the full task size (CPU, fp32): seconds, bytes
    saved for backward, and the whole model's parameter bytes."""
    model = build(config, torch.device("cpu"), "one", 1).train()
    episode = random_episode(config, TaskShape(shape.way, shape.way, min(shape.query, shape.way)),
                             torch.device("cpu"))
    with torch.no_grad():
        feature_shape = model.backbone(episode.support[:1]).shape[1:]
    support = torch.randn(shape.support, *feature_shape, requires_grad=True)
    query = torch.randn(shape.query, *feature_shape, requires_grad=True)
    episode.support_labels = torch.arange(shape.way).repeat_interleave(shape.support // shape.way)
    episode.query_labels = (torch.arange(shape.query) % shape.way).sort().values
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model.head(support, episode.support_labels, query, episode.query_labels)
        loss = task_loss(config, output, episode)
    loss.backward()
    return {"seconds": time.perf_counter() - started, "saved_gb": sum(storages.values()) / 1e9,
            "parameters_gb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9,
            "output_gb_per_clip": feature_shape.numel() * 4 / 1e9}


def worker(job: dict) -> dict:
    """One measurement in this (fresh) process, for ``--worker``."""
    torch.set_num_threads(job["threads"])
    config = preset_config(job["preset"], tuple(job.get("overrides", ())))
    device = torch.device(job["device"])
    if job["what"] == "backbone":
        return time_backbone(config, device, job["mode"], job["precision"], job["chunks"], job["clips"])
    if job["what"] == "inference":
        return {"seconds_per_clip": time_inference(config, device, job["clips"])}
    if job["what"] == "head":
        return time_head(config, TaskShape.of(config, train=True))
    if job["what"] == "task":
        shape = TaskShape.of(config, train=True)
        return time_training(config, device, job["mode"], "fp32", job["chunks"], job["tasks"], shape)
    if job["what"] == "drift":
        return {"drift": logit_drift(config, device, TaskShape(config.task.way, config.task.way, config.task.way))}
    raise ValueError(f"unknown job {job['what']!r}")


def in_fresh_process(job: dict) -> dict:
    """``worker(job)`` in a child process (its own peak RSS), returning its figures."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pass_clips(config: RunConfig, shape: TaskShape) -> list[int]:
    """Clips of each backbone call of a training task (released: support, then queries)."""
    if config.model.backbone_passes == "released":
        return [shape.support, shape.query]
    return [shape.support + shape.query]


def clips_per_piece(config: RunConfig, shape: TaskShape, chunks: int) -> float:
    """Clips of the largest piece (2D: frames split evenly, possibly inside a clip)."""
    frame_wise = type(build_backbone(config.model.backbone, trainable="none")).frame_wise
    return max(c / chunks if frame_wise else -(-c // chunks) for c in pass_clips(config, shape))


def evaluation_hours(config: RunConfig, preset: str, seconds_per_clip: float) -> tuple[float, float | None]:
    """10,000 test tasks: (read per task, features of each test video once), hours of backbone
    time; the second is None when test clips change from task to task (jittered frames)."""
    shape = TaskShape.of(config, train=False)
    per_task = EVAL_TASKS * (shape.support + shape.query) * seconds_per_clip / 3600
    jittered = config.data.test_sampling != "deterministic"
    return per_task, None if jittered else TEST_VIDEOS[preset] * seconds_per_clip / 3600


def cpu_projection(preset: str, threads: int, chunks: int, overrides: tuple[str, ...] = ()) -> dict:
    """Measure on one clip (fresh processes) and project to the preset's task (module docstring)."""
    config = preset_config(preset, overrides)
    shape = TaskShape.of(config, train=True)
    clips = shape.support + shape.query
    job = {"preset": preset, "device": "cpu", "threads": threads, "chunks": 1, "what": "backbone", "clips": 1,
           "overrides": list(overrides), "precision": "fp32"}
    started = time.perf_counter()
    one = in_fresh_process({**job, "mode": "one"})
    recomputed = in_fresh_process({**job, "mode": "checkpointed"})  # one piece, recomputed in backward
    head = in_fresh_process({**job, "what": "head"})
    infer = in_fresh_process({**job, "what": "inference"})["seconds_per_clip"]
    drift = in_fresh_process({**job, "what": "drift", "overrides": ["data.crop=112", "data.resize=128", *overrides]})
    activation, piece = one["saved_gb"], clips_per_piece(config, shape, chunks)
    fixed = 2 * head["parameters_gb"] + head["saved_gb"]  # weights, gradients, the head's saved tensors
    rows = {}
    for mode in MODES:
        seconds = (recomputed if mode == "checkpointed" else one)["seconds"] * clips + head["seconds"]
        stored = piece * activation + clips * head["output_gb_per_clip"] if mode == "checkpointed" else clips * activation
        rows[mode] = {"seconds_per_task": seconds, "peak_gb": fixed + stored}
    per_task_eval, once_eval = evaluation_hours(config, preset, infer)
    return {
        "preset": preset, "device": "cpu", "projected": True, "clips_per_task": clips, "chunks": chunks,
        "measured": {"one_clip": one, "one_clip_recomputed": recomputed, "head": head,
                     "inference_seconds_per_clip": infer},
        "activation_gb_per_clip": activation, "fixed_gb": fixed, "largest_piece_clips": piece,
        "modes": {"fp32": rows}, "drift_bf16": drift["drift"],
        "eval_hours": {"per_task": per_task_eval, "features_once": once_eval},
        "measurement_seconds": time.perf_counter() - started,
    }


def cuda_measurement(preset: str, device: torch.device, chunks: int, tasks: int, overrides: tuple[str, ...] = ()) -> dict:
    """Whole tasks on the GPU for every mode and precision."""
    config = preset_config(preset, overrides)
    shape = TaskShape.of(config, train=True)
    started = time.perf_counter()
    modes: dict[str, dict] = {"fp32": {}, "bf16": {}}
    for precision in modes:
        for mode in MODES:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            try:
                modes[precision][mode] = time_training(config, device, mode, precision, chunks, tasks, shape)
            except torch.cuda.OutOfMemoryError as error:
                modes[precision][mode] = {"error": f"out of memory: {str(error).splitlines()[0]}"}
    infer = time_inference(config, device, clips=8, repeats=3)
    drift = logit_drift(config, device, TaskShape.of(config, train=False))
    per_task_eval, once_eval = evaluation_hours(config, preset, infer)
    return {"preset": preset, "device": torch.cuda.get_device_name(device), "projected": False,
            "clips_per_task": shape.support + shape.query, "chunks": chunks, "tasks_timed": tasks, "modes": modes,
            "inference_seconds_per_clip": infer, "drift_bf16": drift,
            "eval_hours": {"per_task": per_task_eval, "features_once": once_eval},
            "measurement_seconds": time.perf_counter() - started}


def fitting_settings(result: dict, budgets=(24, 40, 80)) -> dict[int, str]:
    """The first of one pass / checkpointed pieces whose projected fp32 peak fits each budget
    (90% of it, for the allocator and cuDNN workspaces); an estimate from CPU figures."""
    rows = result["modes"]["fp32"]
    advice = {}
    for budget in budgets:
        usable = 0.9 * budget
        if rows["one"].get("peak_gb", float("inf")) <= usable:
            advice[budget] = "one pass (model.checkpoint_backbone: false)"
        elif rows["checkpointed"].get("peak_gb", float("inf")) <= usable:
            advice[budget] = f"model.backbone_chunks: {result['chunks']}, model.checkpoint_backbone: true"
        else:
            advice[budget] = "does not fit in fp32 with these pieces: more pieces (other BatchNorm statistics) or bf16"
    return advice


def report(result: dict) -> str:
    schedule = PRESETS[result["preset"]]
    lines = [f"{result['preset']} on {result['device']} ({result['clips_per_task']} clips per training task, "
             f"{result['chunks']} pieces per backbone call{', projected from one clip' if result['projected'] else ''})"]
    for precision, rows in result["modes"].items():
        for mode, row in rows.items():
            if "error" in row:
                lines.append(f"  {precision} {mode:12s} {row['error']}")
                continue
            seconds = row["seconds_per_task"]
            lines.append(f"  {precision} {mode:12s} {seconds:9.2f} s/task  {1 / seconds:8.3f} tasks/s  peak "
                         f"{row['peak_gb']:6.1f} GB  {schedule:,} tasks: {seconds * schedule / 3600:9.1f} h")
    per_task, once = result["eval_hours"]["per_task"], result["eval_hours"]["features_once"]
    once_text = "n/a (jittered test frames)" if once is None else f"{once:.2f} h + the heads' task loop"
    lines.append(f"  10,000-task evaluation (backbone): per task {per_task:.1f} h, features once {once_text}")
    lines.append(f"  bf16 logit drift vs fp32: {result['drift_bf16']:.2e} (max abs difference / max abs logit)")
    if result["projected"]:
        one = result["measured"]["one_clip"]
        lines.append(f"  saved for backward per clip {result['activation_gb_per_clip']:.2f} GB, weights + gradients + "
                     f"head {result['fixed_gb']:.2f} GB (memory above: their sum, what a GPU holds); peak RSS of one clip "
                     f"on this CPU {one['peak_gb']:.2f} GB")
        for budget, advice in fitting_settings(result).items():
            lines.append(f"  one GPU with {budget} GB (estimate): {advice}")
    lines.append(f"  measured in {result['measurement_seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--device", default="cpu", help="cpu (projected unless --full) or cuda / cuda:N")
    parser.add_argument("--full", action="store_true", help="on the CPU too, time whole tasks (slow, much memory)")
    parser.add_argument("--chunks", type=int, default=4, help="pieces per backbone call (chunked modes)")
    parser.add_argument("--tasks", type=int, default=2, help="tasks timed per mode (whole-task measurements)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of every preset (e.g. data.crop=64 for a quick check of this script)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"{load()}; torch {torch.__version__}; random backbone weights")
    results = []
    for preset in args.presets:
        if device.type == "cuda" or args.full:
            if device.type == "cuda":
                result = cuda_measurement(preset, device, args.chunks, args.tasks, tuple(args.set))
            else:
                result = cpu_full(preset, args.chunks, args.tasks, tuple(args.set))
        else:
            result = cpu_projection(preset, args.threads, args.chunks, tuple(args.set))
        result["load_after"] = load()
        results.append(result)
        print(report(result) + f"\n  {result['load_after']}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def cpu_full(preset: str, chunks: int, tasks: int, overrides: tuple[str, ...] = ()) -> dict:
    """Whole tasks on the CPU, fp32 (bf16 autocast on a CPU says little about a GPU)."""
    config = preset_config(preset, overrides)
    shape = TaskShape.of(config, train=True)
    started = time.perf_counter()
    rows = {mode: in_fresh_process({"preset": preset, "device": "cpu", "threads": torch.get_num_threads(),
                                    "what": "task", "mode": mode, "chunks": chunks, "tasks": tasks,
                                    "overrides": list(overrides)})
            for mode in MODES}
    infer = time_inference(config, torch.device("cpu"), clips=2)
    per_task_eval, once_eval = evaluation_hours(config, preset, infer)
    drift = logit_drift(preset_config(preset, ("data.crop=112", "data.resize=128", *overrides)), torch.device("cpu"),
                        TaskShape(config.task.way, config.task.way, config.task.way))
    return {"preset": preset, "device": "cpu", "projected": False, "clips_per_task": shape.support + shape.query,
            "chunks": chunks, "modes": {"fp32": rows}, "drift_bf16": drift,
            "eval_hours": {"per_task": per_task_eval, "features_once": once_eval},
            "measurement_seconds": time.perf_counter() - started}


if __name__ == "__main__":
    main()
