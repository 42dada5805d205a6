"""Running a backbone over a batch of clips in pieces, to plan memory on one device.

``backbone(clips, chunks=n, checkpoint=True)`` (:meth:`VideoBackbone.forward`) splits the
batch into ``n`` pieces, runs the backbone on each piece separately and joins the outputs:

- Frame-wise (2D) backbones split the flattened frames ``(videos*L, 3, H, W)`` with
  ``torch.chunk``, which is how ``nn.DataParallel`` scatters the released TRX/STRM backbone
  input over its GPUs (a piece may end inside a video). 3D backbones split the videos.
- ``checkpoint=True`` keeps only each piece's input and output for backward and recomputes
  the piece's activations there (``torch.utils.checkpoint``, ``use_reentrant=False``, random
  state preserved), so the activation memory of training is that of one piece.
- BatchNorm in training mode normalises each piece with the piece's own statistics (as each
  DataParallel replica does); the running statistics are updated by the first piece only
  and never by a recomputation (as only the replica on the first device writes them back).
  In eval mode, or without BatchNorm, the outputs and gradients equal one whole pass up to
  float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as checkpoint_call

MapsFunction = Callable[[Tensor], tuple[Tensor, Tensor | None]]


@contextlib.contextmanager
def batch_norm_statistics_kept(module: nn.Module, keep: bool = True) -> Iterator[None]:
    """Inside the block, passes through ``module`` leave every BatchNorm layer's running
    statistics (mean, variance, batches tracked) as they were (``keep=False``: no effect).

    The layers in training mode (the only ones that move them) work on copies of their
    buffers inside the block, and get their own buffers back after it: the buffers are not
    written to, so a backward that saved them still finds them unchanged.
    """
    layers = [
        m for m in module.modules()
        if keep and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [dict(layer.named_buffers(recurse=False)) for layer in layers]
    for layer, buffers in zip(layers, saved):
        for name, buffer in buffers.items():
            setattr(layer, name, buffer.clone())
    try:
        yield
    finally:
        for layer, buffers in zip(layers, saved):
            for name, buffer in buffers.items():
                setattr(layer, name, buffer)


def _run_piece(
    forward_maps: MapsFunction, piece: Tensor, module: nn.Module, keep_statistics: bool, checkpoint: bool
) -> tuple[Tensor, Tensor | None]:
    """One piece through ``forward_maps``; recomputed in backward when ``checkpoint``."""
    if not (checkpoint and torch.is_grad_enabled()):
        with batch_norm_statistics_kept(module, keep_statistics):
            return forward_maps(piece)
    calls = 0

    def run(x: Tensor) -> tuple[Tensor, Tensor | None]:
        nonlocal calls
        calls += 1  # the second call is the recomputation in backward
        with batch_norm_statistics_kept(module, keep_statistics or calls > 1):
            return forward_maps(x)

    return checkpoint_call(run, piece, use_reentrant=False)


def chunked_maps(
    forward_maps: MapsFunction,
    clips: Tensor,
    module: nn.Module,
    chunks: int,
    frame_wise: bool,
    checkpoint: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``forward_maps`` over ``clips`` (videos, L, 3, H, W) in ``chunks`` pieces (module docstring).

    Returns maps (videos, C, T, h, w) and frame vectors (videos, T, C) or None, as one call
    of ``forward_maps`` would. ``module``: the backbone whose BatchNorm layers are kept.
    """
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    videos, frames = clips.shape[:2]
    if frame_wise:  # pieces of the flattened frames, each as one clip (1, n, 3, H, W)
        pieces = [part.unsqueeze(0) for part in clips.flatten(0, 1).chunk(chunks)]
    else:
        pieces = list(clips.chunk(chunks))  # pieces of whole videos
    outputs = [_run_piece(forward_maps, piece, module, k > 0, checkpoint) for k, piece in enumerate(pieces)]
    vectors = None if outputs[0][1] is None else [v for _, v in outputs]
    if not frame_wise:
        return torch.cat([m for m, _ in outputs]), None if vectors is None else torch.cat(vectors)
    maps = torch.cat([m for m, _ in outputs], dim=2)[0]  # (C, videos*L, h, w)
    maps = maps.unflatten(1, (videos, frames)).transpose(0, 1)  # (videos, C, L, h, w)
    if vectors is not None:
        vectors = torch.cat(vectors, dim=1)[0].unflatten(0, (videos, frames))  # (videos, L, C)
    return maps, vectors
