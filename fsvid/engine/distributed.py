"""Devices, mixed precision and several processes (``torchrun``).

Run ``torchrun --nproc_per_node=G -m fsvid.cli train ...`` (or ``fsvid`` through torchrun) to
train on G GPUs: every process reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` from the
environment, joins one process group (NCCL on CUDA, gloo on CPU) and takes its own share of
the tasks of each optimiser step. Without torchrun it is process 0 of 1 and nothing is
initialised.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> this process's CUDA device (``LOCAL_RANK``) when there is one, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"train.device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name} but CUDA is not available; use train.device=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def autocast_context(device: torch.device, amp: str):
    """Mixed precision on CUDA (``bf16`` or ``fp16``); plain float32 elsewhere (``amp`` is
    ignored on CPU, where the heads' small matrix products gain nothing from it)."""
    if amp == "none" or device.type != "cuda":
        return nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of none, bf16, fp16, got {amp!r}")
    return torch.autocast("cuda", dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 on CUDA (float16 gradients underflow without one); ``None`` otherwise
    (bf16 has float32's range and needs no scaling)."""
    if amp == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


@dataclass
class Distributed:
    """This process's place among ``torchrun`` processes (rank 0 of 1 without torchrun).

    ``owns_group``: this object initialised the process group (and :meth:`close` ends it).
    """

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Whether this process logs, prints and writes files (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the process group that ``torchrun`` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", 1))
        if world == 1:
            return cls()
        owns = False
        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), owns)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or ``min``/``max``) ``tensor`` over all processes, in place; returns it."""
        if self.world > 1:
            dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
        return tensor

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every process, so that all
        of them evaluate the same model."""
        if self.world > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def close(self) -> None:
        """End the process group if this object started it."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self.owns_group = False


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
