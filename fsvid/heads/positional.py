"""Fixed sinusoidal positional encoding, as TRX and STRM use it.

The encoding of Vaswani et al. (2017) with both the sine and the cosine terms multiplied by
0.1 (``scale``), added to the tokens and followed by dropout (0.1 in TRX and STRM). The table
is a buffer ``pe`` of shape (1, max_len, D), the layout the released TRX/STRM checkpoints
store, so it loads from them unchanged. The released code sizes it ``int(1.5 * tokens)``:
12 for 8 frames, 24 for 16 patches.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid_table(max_len: int, dim: int, scale: float = 0.1) -> Tensor:
    """The (max_len, dim) table: ``pe[p, 2i] = scale * sin(p / 10000^(2i/dim))``, ``pe[p, 2i+1]``
    the matching cosine."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))  # (ceil(dim/2),)
    angle = position * frequency  # (max_len, ceil(dim/2))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(angle) * scale
    table[:, 1::2] = torch.cos(angle[:, : dim // 2]) * scale
    return table


class PositionalEncoding(nn.Module):
    """``x + pe[:tokens]`` then dropout, for x of shape (batch, tokens, D)."""

    def __init__(self, dim: int, max_len: int, dropout: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoid_table(max_len, dim, scale).unsqueeze(0))  # (1, max_len, D)

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.shape[-2]
        if tokens > self.pe.shape[1]:
            raise ValueError(
                f"PositionalEncoding: {tokens} tokens but the table holds only {self.pe.shape[1]} positions"
            )
        if x.shape[-1] != self.pe.shape[2]:
            raise ValueError(f"PositionalEncoding: tokens have {x.shape[-1]} channels, expected {self.pe.shape[2]}")
        return self.dropout(x + self.pe[:, :tokens].to(x.dtype))  # (batch, tokens, D)
