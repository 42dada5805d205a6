"""BatchNorm statistics over chunks of a batch, as ``nn.DataParallel`` computes them.

The released TRX and STRM code wraps the ResNet in ``nn.DataParallel`` over 4 GPUs
(``trx/model.py`` lines 186-189, ``strm/model.py`` lines 522-525) and calls it twice per
task, once on the support frames and once on the query frames (``trx/model.py`` lines
166-167, ``strm/model.py`` lines 463-464). DataParallel scatters each call's input with
``torch.chunk`` along dimension 0, which there is the flattened frames ``(videos*L, 3, H, W)``
(200 support frames of a 5-way 5-shot task -> 4 chunks of 50; 160 query frames -> 40). So in
training mode every BatchNorm layer normalises each chunk with that chunk's own mean and
variance, and only the replica on the first device writes its running statistics back
(PyTorch documents that in-place buffer updates survive on ``device_ids[0]`` only).

:func:`chunked_batch_norm` gives the same arithmetic on one device: inside it, every
BatchNorm layer of a module in training mode splits its input into ``chunks`` with
``torch.chunk``, normalises each chunk with its own statistics, and updates the running
statistics from the first chunk only. Every other layer of a 2D CNN treats frames
independently, so the output equals that of the released multi-GPU pass. In eval mode
BatchNorm uses the running statistics and the split changes nothing.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _chunked_forward(layer: nn.modules.batchnorm._BatchNorm, x: Tensor, chunks: int) -> Tensor:
    """One BatchNorm layer on ``x`` (batch, C, ...) split into ``chunks`` along the batch."""
    if not layer.training or not layer.track_running_stats or layer.momentum is None:
        return type(layer).forward(layer, x)
    layer._check_input_dim(x)
    if layer.num_batches_tracked is not None:
        layer.num_batches_tracked.add_(1)  # once per call, as the first replica does
    parts = []
    for k, part in enumerate(x.chunk(chunks, dim=0)):  # DataParallel's scatter
        momentum = layer.momentum if k == 0 else 0.0  # running statistics from the first chunk only
        parts.append(F.batch_norm(part, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                                  True, momentum, layer.eps))
    return torch.cat(parts, dim=0)


@contextlib.contextmanager
def chunked_batch_norm(module: nn.Module, chunks: int) -> Iterator[None]:
    """Inside the block, the BatchNorm layers of ``module`` normalise ``chunks`` chunks of
    their batch separately (see the module docstring). ``chunks=1`` changes nothing."""
    if chunks < 1:
        raise ValueError(f"chunks must be at least 1, got {chunks}")
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if chunks == 1 or not layers:
        yield
        return
    for layer in layers:
        layer.forward = types.MethodType(lambda self, x: _chunked_forward(self, x, chunks), layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward
