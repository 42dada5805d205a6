"""TRX: the temporal-relational cross-transformer (Perrett et al., CVPR 2021).

Input: frame features, support (support videos, L, D) and query (queries, L, D).
For every cardinality w in Omega (TRX: {2, 3}; STRM's TRM: {2}):

1. add a fixed sinusoidal positional encoding to the frames (then dropout 0.1);
2. form every ordered tuple of w frames, ``itertools.combinations(range(L), w)`` (28 pairs,
   56 triples for L = 8); a tuple is the concatenation of its w frames, size w*D;
3. key map ``Linear(w*D -> D')`` + ``LayerNorm(D')``, value map ``Linear(w*D -> D')``, shared
   by queries and supports;
4. for each query tuple and class c: scaled dot products with every tuple of every support
   video of c, ONE softmax over all shots*T of them;
5. query-specific class prototype: the softmax-weighted sum of the support values;
6. distance = ||query values - prototype||^2 summed over tuples and channels, divided by T;
   logit = -distance (STRM paper Eq. 1);
7. several cardinalities: the mean of their logits.

The tuple maps are never applied to concatenated tuples. A linear map of a concatenation is
the sum of per-position maps, ``W [e_i; e_j] + b = W_1 e_i + W_2 e_j + b`` where
``W = [W_1 | W_2]`` is split into w column blocks of width D. So each map projects, per tuple
position, only the frames that position can hold (L-w+1 of them), the "pieces" (videos, R, D')
of :func:`tuple_pieces`, and a tuple's projection is a product with a fixed 0/1 selection
matrix (T, R): the same result as projecting the T concatenations with about T/(L-w+1) times
fewer multiply-adds (4x for pairs, 9.3x for triples at L = 8, backward pass alike).

Steps 4-6 never form the T tuples either: LayerNorm'd key products and the squared distances
to the query-specific prototypes are expanded into Gram matrices of pieces (R + 1 = 15 / 19
rows per video instead of T = 28 / 56 tuples), see :func:`key_scores` and
:func:`prototype_distances`. The value bias cancels from the distances and is left out (its
gradient is exactly zero). ``benchmarks/bench_heads.py`` compares the head with the
straightforward per-tuple, per-class formulation kept in ``benchmarks/reference_trx_loop.py``
and, given a clone of the released code (``--released-trx``), with the released code itself.

Optional tuple subsampling (STRM Fig. 6 right, ``tuple_fraction < 1``): in training every
task draws a fresh random subset of ``round(fraction * T)`` tuples (the same subset for all
videos of the task). In evaluation ``eval_tuples="all"`` (default) uses every tuple, and
``eval_tuples="fixed"`` a subset drawn once at construction from ``tuple_seed`` (one "trial"
of the figure; different seeds give the different trials).

Parameter names: ``cross_transformers.{i}.key_map / key_norm / value_map /
positional_encoding.pe``; ``fsvid.convert`` maps the released code's ``transformers.{i}.k_linear
/ norm_k / v_linear / pe.pe`` onto them (the released ``norm_v`` is never used and dropped).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from tqdm.auto import tqdm

from .common import (
    FeatureSource,
    HeadOutput,
    ViewStore,
    as_index,
    feature_chunks,
    group_support,
    module_device,
    require_eval,
)
from .positional import PositionalEncoding


def frame_tuples(seq_len: int, cardinality: int) -> Tensor:
    """All ordered frame tuples, ``itertools.combinations(range(seq_len), cardinality)`` in that
    order, as a (T, cardinality) long tensor."""
    if not 1 <= cardinality <= seq_len:
        raise ValueError(f"tuple cardinality must be between 1 and seq_len={seq_len}, got {cardinality}")
    return torch.tensor(list(itertools.combinations(range(seq_len), cardinality)), dtype=torch.long)


class _PerPositionProjection(torch.autograd.Function):
    """``cat_j(frames[:, lo_j:hi_j+1] @ W_j^T)`` over the tuple positions j, (videos, R, D_out).

    The same as the plain expression with ``weight.split``, except for the backward pass:
    autograd's backward of the split concatenates the w blocks' gradients into the weight's
    layout, a copy of the whole (D_out, w*D) matrix per map and step; here each block's
    gradient ``G_j^T X_j`` is written by its product straight into its columns.
    """

    @staticmethod
    def forward(ctx, frames: Tensor, weight: Tensor, ranges: tuple[tuple[int, int], ...]) -> Tensor:
        videos, _, dim = frames.shape
        inputs = [frames[:, lo : hi + 1].reshape(-1, dim) for lo, hi in ranges]  # X_j: (videos*F_j, D)
        blocks = weight.split(dim, dim=1)  # W_j: (D_out, D), views
        pieces = torch.cat([(x @ w.T).view(videos, -1, w.shape[0]) for x, w in zip(inputs, blocks)], dim=1)
        ctx.save_for_backward(weight, *inputs)
        ctx.ranges, ctx.frames_shape = ranges, frames.shape
        return pieces  # (videos, R, D_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        weight, *inputs = ctx.saved_tensors
        videos, _, dim = ctx.frames_shape
        needs_frames, needs_weight = ctx.needs_input_grad[:2]
        grad_frames = grad.new_zeros(ctx.frames_shape) if needs_frames else None
        grad_weight = torch.empty_like(weight) if needs_weight else None
        start = 0
        for j, ((lo, hi), x) in enumerate(zip(ctx.ranges, inputs)):
            columns = slice(j * dim, (j + 1) * dim)
            g = grad[:, start : start + hi - lo + 1].reshape(-1, weight.shape[0])  # G_j: (videos*F_j, D_out)
            start += hi - lo + 1
            if needs_weight:
                torch.mm(g.T, x, out=grad_weight[:, columns])  # dL/dW_j = G_j^T X_j, (D_out, D)
            if needs_frames:
                grad_frames[:, lo : hi + 1] += (g @ weight[:, columns]).view(videos, -1, dim)  # G_j W_j
        return grad_frames, grad_weight, None


def tuple_pieces(frames: Tensor, weight: Tensor, tuples: Tensor) -> tuple[Tensor, Tensor]:
    """The per-frame pieces of a tuple map and the 0/1 matrix that sums them into tuples.

    frames: (videos, L, D); weight: (D_out, w*D), ``W = [W_1 | ... | W_w]`` in blocks of D
    columns; tuples: (T, w) frame indices. Position j of a tuple only ever holds frames
    ``lo_j..hi_j`` (frames 0..L-w for the first position of ``combinations``), so block j is
    applied to those ``F_j`` frames only (L-w+1 of L: 7/8 of the work for pairs, 3/4 for triples).

    Returns ``pieces`` (videos, R, D_out) with R = sum_j F_j, row ``offset_j + (l - lo_j)`` holding
    ``W_j x_l``, and ``selection`` (T, R) with ``selection[t, offset_j + t_j - lo_j] = 1``, so that
    ``selection @ pieces`` is (videos, T, D_out), ``W [x_t1; ...; x_tw]`` for every tuple (no bias).
    A product with ``selection`` is the tuple gather, and its backward is a product with its transpose.
    """
    lows, highs = tuples.min(dim=0).values.tolist(), tuples.max(dim=0).values.tolist()
    pieces = _PerPositionProjection.apply(frames, weight, tuple(zip(lows, highs)))  # (videos, R, D_out)
    widths = torch.tensor([hi - lo + 1 for lo, hi in zip(lows, highs)], device=tuples.device)  # (w,) F_j
    offsets = widths.cumsum(0) - widths - torch.tensor(lows, device=tuples.device)  # (w,) offset_j - lo_j
    selection = torch.zeros(tuples.shape[0], pieces.shape[1], dtype=frames.dtype, device=frames.device)
    selection.scatter_(1, tuples + offsets, 1.0)  # (T, R)
    return pieces, selection


def project_tuples(frames: Tensor, linear: nn.Linear, tuples: Tensor) -> Tensor:
    """``linear`` applied to every frame tuple's concatenation, through the per-frame factorisation.

    frames: (videos, L, D); linear: ``Linear(w*D -> D_out)``; tuples: (T, w) frame indices.
    Returns (videos, T, D_out), equal to ``linear(cat(frames[:, t_1], ..., frames[:, t_w]))``:
    with ``W = [W_1 | ... | W_w]`` split into w blocks of D columns,
    ``W [e_t1; ...; e_tw] + b = W_1 e_t1 + ... + W_w e_tw + b`` (see :func:`tuple_pieces`).
    """
    pieces, selection = tuple_pieces(frames, linear.weight, tuples)  # (videos, R, D_out), (T, R)
    return torch.matmul(selection, pieces) + linear.bias  # (videos, T, D_out)


def key_scores(pieces: Tensor, bias: Tensor, norm: nn.LayerNorm, selection: Tensor, n_support: int) -> Tensor:
    """Step 4's scores ``LayerNorm(key_qt) . LayerNorm(key_su) / sqrt(D')`` for every query tuple and
    support tuple, up to a term that depends on the query tuple only (it cancels in the softmax
    over support tuples).

    pieces: (videos, R, D') key pieces of :func:`tuple_pieces`, supports first; bias: (D',);
    selection: (T, R). Returns (queries, T, support videos * T).

    With the bias as one more piece (selection column of ones), ``S = [selection | 1]``, and the
    channel mean removed from every piece (the mean is linear), the centred key of tuple t is
    ``n_t = S_t P`` with P (R+1, D'). LayerNorm gives ``k_t = g * n_t / s_t + beta``,
    ``s_t = sqrt(|n_t|^2 / D' + eps)``, and

        k_qt . k_su = S_t (G_q G_s^T) S_u^T / (s_qt s_su) + o_su + [o_qt + |beta|^2],
        G = g * P,   o_t = (g * beta) . n_t / s_t,

    the bracket being the dropped term. ``G_q G_s^T`` is a Gram matrix of R+1 pieces per video
    pair instead of T tuples (19 vs 56 rows for triples at L = 8), and ``|n_t|^2 = S_t (P P^T) S_t^T``.
    The scales go on the small factors: ``1 / s_su`` on the support side after the first selection
    product, ``1 / s_qt`` on the rows of the query side's selection, and ``o_su`` is added by the
    last product itself (``baddbmm``).
    """
    videos, rows, out_dim = pieces.shape
    n_queries, n_tuples = videos - n_support, selection.shape[0]
    pieces = torch.cat([pieces, bias.expand(videos, 1, out_dim)], dim=1)  # (videos, R+1, D')
    centred = pieces - pieces.mean(dim=-1, keepdim=True)  # (videos, R+1, D'), P
    selection = torch.cat([selection, selection.new_ones(n_tuples, 1)], dim=1)  # (T, R+1), S
    squared = ((selection @ (centred @ centred.mT)) * selection).sum(-1)  # (videos, T): |n_t|^2
    inverse_std = torch.rsqrt(squared / out_dim + norm.eps)  # (videos, T): 1 / s_t
    support_scale, query_scale = inverse_std.split([n_support, n_queries])  # 1 / s_su, 1 / s_qt
    support_scale = support_scale / math.sqrt(out_dim)  # (support, T), with the 1 / sqrt(D') of the scores
    gain = norm.weight if norm.weight is not None else centred.new_ones(out_dim)  # (D',) g
    support_gained, query_gained = (centred * gain).split([n_support, n_queries])  # G_s, G_q
    gram = query_gained.flatten(0, 1) @ support_gained.flatten(0, 1).T  # (queries*(R+1), support*(R+1))
    per_support = gram.view(n_queries, rows + 1, n_support, rows + 1) @ selection.T  # (queries, R+1, support, T)
    per_support = (per_support * support_scale).view(n_queries, rows + 1, n_support * n_tuples)  # / s_su sqrt(D')
    query_selection = selection * query_scale.unsqueeze(-1)  # (queries, T, R+1): S_t / s_qt
    if norm.bias is None:
        return query_selection @ per_support  # (queries, T, support*T)
    offset = (centred[:n_support] @ (gain * norm.bias)) @ selection.T  # (support, T): (g * beta) . n_su
    offset = (offset * support_scale).flatten()  # (support*T,) o_su / sqrt(D')
    return torch.baddbmm(offset, query_selection, per_support)  # (queries, T, support*T)


def prototype_distances(attention: Tensor, pieces: Tensor, selection: Tensor) -> Tensor:
    """Steps 5-6 without forming the prototypes: ``sum_t |v_qt - p_qct|^2`` for every query and class.

    attention: (queries, T, way, shots, T), the softmax over each class's support tuples;
    pieces: (videos, R, D') value pieces of :func:`tuple_pieces`, the way*shots supports first
    (class-major); selection: (T, R). Returns (queries, way).

    The value bias cancels (the attention sums to 1): ``v_qt - p_qct = S_t V_q - sum_s B_s V_s`` with
    ``B_s = a_s S`` (T, R), the attention on support video s moved onto its R pieces. Expanding,

        |v_qt - p_qct|^2 = S_t (V_q V_q^T) S_t^T - 2 sum_s B_st (V_s V_q^T) S_t^T + B_t (V_c V_c^T) B_t^T

    with ``V_c`` (shots*R, D') the pieces of class c and ``B_t`` (shots*R,) its folded attention:
    Gram matrices of pieces (R = 14 rows for pairs, 18 for triples) instead of products of
    queries*T prototypes with D' channels.
    """
    n_queries, n_tuples, way, shots = attention.shape[:4]
    videos, rows, out_dim = pieces.shape
    n_support = way * shots
    support, query = pieces.split([n_support, n_queries])  # (way*shots, R, D'), (queries, R, D')
    folded = (attention @ selection).flatten(3)  # (queries, T, way, shots*R), B
    query_squared = ((selection @ (query @ query.mT)) * selection).sum(-1)  # (queries, T): |v_qt|^2
    cross = query.flatten(0, 1) @ support.flatten(0, 1).T  # (queries*R, way*shots*R): V_q V_s^T
    cross = selection @ cross.view(n_queries, rows, n_support * rows)  # (queries, T, way*shots*R)
    cross = (folded * cross.view(n_queries, n_tuples, way, shots * rows)).sum(-1)  # (queries, T, way): v_qt . p_qct
    class_pieces = support.reshape(way, shots * rows, out_dim)  # (way, shots*R, D'), V_c
    gram = class_pieces @ class_pieces.mT  # (way, shots*R, shots*R)
    per_class = folded.permute(2, 0, 1, 3).flatten(1, 2)  # (way, queries*T, shots*R)
    squared = ((per_class @ gram) * per_class).sum(-1).view(way, n_queries, n_tuples)  # |p_qct|^2
    return (query_squared.unsqueeze(-1) - 2 * cross + squared.permute(1, 2, 0)).sum(dim=1)  # (queries, way)


class TemporalCrossTransformer(nn.Module):
    """TRX for one tuple cardinality: (way, shots, L, D) support + (queries, L, D) query -> (queries, way)."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        seq_len: int,
        cardinality: int,
        dropout: float = 0.1,
        tuple_fraction: float = 1.0,
        eval_tuples: Literal["all", "fixed"] = "all",
        tuple_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < tuple_fraction <= 1.0:
            raise ValueError(f"tuple_fraction must be in (0, 1], got {tuple_fraction}")
        if eval_tuples not in ("all", "fixed"):
            raise ValueError(f"eval_tuples must be 'all' or 'fixed', got {eval_tuples!r}")
        self.dim, self.out_dim, self.seq_len, self.cardinality = dim, out_dim, seq_len, cardinality
        self.tuple_fraction, self.eval_tuples = tuple_fraction, eval_tuples

        # Step 1: its own copy of the fixed encoding, max_len int(1.5 L) as in the released code.
        self.positional_encoding = PositionalEncoding(dim, max_len=int(1.5 * seq_len), dropout=dropout)
        # Step 3: key map + LayerNorm, value map without norm.
        self.key_map = nn.Linear(cardinality * dim, out_dim)
        self.key_norm = nn.LayerNorm(out_dim)
        self.value_map = nn.Linear(cardinality * dim, out_dim)
        # The value bias cancels from every distance (the attention sums to 1, step 6), so it never
        # reaches the loss: frozen, so that the optimiser and DistributedDataParallel do not wait for
        # a gradient that cannot come. It stays a parameter, so released checkpoints load unchanged.
        self.value_map.bias.requires_grad_(False)

        # Step 2: the tuples, (T, w); not saved (they follow from seq_len and cardinality).
        tuples = frame_tuples(seq_len, cardinality)
        self.register_buffer("tuples", tuples, persistent=False)
        self.num_kept = max(1, round(tuple_fraction * len(tuples)))
        generator = torch.Generator().manual_seed(tuple_seed)
        fixed = torch.randperm(len(tuples), generator=generator)[: self.num_kept].sort().values
        self.register_buffer("fixed_subset", fixed, persistent=False)  # (T_kept,) indices into tuples

    @property
    def num_tuples(self) -> int:
        return self.tuples.shape[0]

    def active_tuples(self) -> Tensor:
        """The tuples used by this forward pass, (T', w): all, a fresh random subset (training), or
        the fixed subset (evaluation with ``eval_tuples="fixed"``)."""
        if self.num_kept == self.num_tuples:
            return self.tuples
        if self.training:
            keep = torch.randperm(self.num_tuples, device=self.tuples.device)[: self.num_kept].sort().values
            return self.tuples[keep]
        if self.eval_tuples == "fixed":
            return self.tuples[self.fixed_subset]
        return self.tuples

    def forward(self, support: Tensor, query: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """support: (way, shots, L, D) grouped by class; query: (queries, L, D).

        Returns logits (queries, way), the attention (queries, way, T', shots, T') of every query
        tuple over the class's support tuples, and the tuples used (T', w).
        """
        way, shots = support.shape[:2]
        n_support, n_queries = way * shots, query.shape[0]
        frames = torch.cat([support.flatten(0, 1), query])  # (videos, L, D), supports first
        frames = self.positional_encoding(frames)  # step 1

        tuples = self.active_tuples()  # (T, w), step 2
        n_tuples = tuples.shape[0]
        # Step 3 as per-frame pieces: a tuple's key / value is selection @ pieces (+ bias).
        key_pieces, selection = tuple_pieces(frames, self.key_map.weight, tuples)  # (videos, R, D'), (T, R)
        value_pieces, _ = tuple_pieces(frames, self.value_map.weight, tuples)  # (videos, R, D')

        # Step 4: every query tuple against every support tuple of each class, one softmax per class.
        scores = key_scores(key_pieces, self.key_map.bias, self.key_norm, selection, n_support)
        attention = scores.view(n_queries, n_tuples, way, shots * n_tuples).softmax(dim=-1)
        attention = attention.view(n_queries, n_tuples, way, shots, n_tuples)
        # Steps 5-6: squared distance to the query-specific prototypes, over tuples and channels, / T.
        distance = prototype_distances(attention, value_pieces, selection) / n_tuples  # (queries, way)
        return -distance, attention.transpose(1, 2), tuples  # attention (queries, way, T, shots, T)


def check_features(name: str, x: Tensor, dims: int, seq_len: int, dim: int) -> None:
    """Raise ``ValueError`` unless ``x`` is (videos, seq_len, [patches,] dim) with ``dims`` axes."""
    if x.dim() != dims or x.shape[1] != seq_len or x.shape[-1] != dim:
        layout = "(videos, L, D)" if dims == 3 else "(videos, L, P, D)"
        raise ValueError(
            f"{name} must be {layout} with L={seq_len}, D={dim}; got shape {tuple(x.shape)}"
        )


class TRXHead(nn.Module):
    """TRX over a set of cardinalities; ``logits`` is the mean of the per-cardinality logits.

    Defaults are the paper's: D = 2048, D' = 1152, L = 8, Omega = {2, 3}. STRM's TRM is this head
    with ``cardinalities=(2,)``. Set ``keep_attention = True`` to get the tuple attention maps
    in ``extras["attention"]`` (a list, one (queries, way, T, shots, T) tensor per cardinality).

    ``extras`` always holds ``logits_per_cardinality`` (queries, way, |Omega|),
    ``cardinalities``, ``tuples`` (the (T, w) tuples used, per cardinality) and ``classes``
    (the support label of each logit column).
    """

    def __init__(
        self,
        dim: int = 2048,
        out_dim: int = 1152,
        seq_len: int = 8,
        cardinalities: Sequence[int] = (2, 3),
        dropout: float = 0.1,
        tuple_fraction: float = 1.0,
        eval_tuples: Literal["all", "fixed"] = "all",
        tuple_seed: int = 0,
    ) -> None:
        super().__init__()
        if len(cardinalities) == 0:
            raise ValueError("TRXHead needs at least one tuple cardinality")
        self.dim, self.out_dim, self.seq_len = dim, out_dim, seq_len
        self.cardinalities = tuple(int(w) for w in cardinalities)
        self.cross_transformers = nn.ModuleList(
            TemporalCrossTransformer(dim, out_dim, seq_len, w, dropout, tuple_fraction, eval_tuples, tuple_seed + i)
            for i, w in enumerate(self.cardinalities)
        )
        self.keep_attention = False

    def forward(
        self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor | None = None
    ) -> HeadOutput:
        """support: (support videos, L, D) in any class order; support_labels: (support videos,);
        query: (queries, L, D). ``query_labels`` is not used."""
        check_features("TRXHead support", support, 3, self.seq_len, self.dim)
        check_features("TRXHead query", query, 3, self.seq_len, self.dim)
        groups = group_support(support, support_labels)  # features (way, shots, L, D)
        output = self.classify(groups.features, query)
        output.extras["classes"] = groups.classes
        return output

    def classify(self, support: Tensor, query: Tensor, keep_attention: bool | None = None) -> HeadOutput:
        """The head on a support set already grouped by class, (way, shots, L, D), and a query
        (queries, L, D). ``keep_attention`` overrides the head's attribute of that name."""
        keep_attention = self.keep_attention if keep_attention is None else keep_attention
        results = [transformer(support, query) for transformer in self.cross_transformers]
        per_cardinality = torch.stack([logits for logits, _, _ in results], dim=-1)  # (queries, way, |Omega|)
        extras: dict = {
            "logits_per_cardinality": per_cardinality,
            "cardinalities": self.cardinalities,
            "tuples": [tuples for _, _, tuples in results],
        }
        if keep_attention:
            extras["attention"] = [attention for _, attention, _ in results]
        return HeadOutput(logits=per_cardinality.mean(dim=-1), extras=extras)  # step 7, (queries, way)


# ---------------------------------------------------------------------------------------------
# Fast evaluation: per-video pieces once, then tasks from video indices
# ---------------------------------------------------------------------------------------------
#
# In eval mode (no dropout) every step of the head before the support-query comparison
# depends on one video only, so it can be done once per video and reused by every task that
# holds the video. With the per-frame factorisation of ``project_tuples``, a tuple's key
# before LayerNorm and its value are sums of per-frame pieces,
#
#     W [x_i; x_j] + b = W_1 x_i + W_2 x_j + b,     x_l = e_l + pe_l   (step 1),
#
# so per video and cardinality we store those pieces, (L*w, D') per map
# (``project_video_tuples`` -> ``TupleProjections``), and a task combines them
# (``tuple_distance_logits``, whose docstring gives the algebra that also moves the key
# LayerNorm out of the support-query products). The logits equal the head's up to float
# rounding (``PrecomputedTRX``; ``fsvid.features.evaluate_precomputed`` scores a task list).


@dataclass
class TupleProjections:
    """Per-video pieces of one cardinality's tuple keys and values (see :class:`PrecomputedTRX`).

    - ``tuples``: (T, w) frame indices; ``key_selection``: (T, L*w + 1) 0/1, the last column
      all ones (the bias); ``value_selection``: (T, L*w).
    - ``key_pieces``: (videos, L*w + 1, D'), ``g * (K_l^j - mean)`` for row ``l*w + j`` and
      ``g * (b - mean b)`` for the last row (``g``: the key LayerNorm's weight).
    - ``inverse_std``: (videos, T), ``1 / sqrt(var(key_t) + eps)`` of every tuple's key.
    - ``key_offset``: (videos, T), ``<g * beta, centred key_t> / std_t``.
    - ``value_pieces``: (videos, L*w, D'), ``V_l^j`` without bias.
    """

    tuples: Tensor
    key_selection: Tensor
    value_selection: Tensor
    key_pieces: Tensor
    inverse_std: Tensor
    key_offset: Tensor
    value_pieces: Tensor


def piece_selection(tuples: Tensor, seq_len: int) -> Tensor:
    """The 0/1 matrix (T, L*w) that sums a tuple from per-frame pieces laid out row
    ``l*w + j`` (frame l projected by block j): ``selection[t, l*w + j] = 1`` iff ``t_j = l``."""
    n_tuples, w = tuples.shape
    selection = torch.zeros(n_tuples, seq_len, w, device=tuples.device)
    rows = torch.arange(n_tuples, device=tuples.device).unsqueeze(1)  # (T, 1)
    selection[rows, tuples, torch.arange(w, device=tuples.device)] = 1.0
    return selection.view(n_tuples, seq_len * w)


def project_video_tuples(transformer: TemporalCrossTransformer, frames: Tensor) -> TupleProjections:
    """The per-video part of one :class:`TemporalCrossTransformer` in eval mode, for frame
    features (videos, L, D): steps 1-3 up to the sums over a tuple's frames."""
    require_eval(transformer, "the TRX head")
    videos, seq_len, dim = frames.shape
    out_dim, tuples = transformer.out_dim, transformer.active_tuples()  # (T, w)
    w = tuples.shape[1]
    x = transformer.positional_encoding(frames)  # (videos, L, D), step 1 (no dropout in eval)

    def pieces(linear: nn.Linear) -> Tensor:
        # W = [W_1 | ... | W_w]: row l*w + j of the result is W_j x_l (the trx.project_tuples split).
        blocks = linear.weight.view(out_dim, w, dim).permute(2, 1, 0).reshape(dim, w * out_dim)  # (D, w*D')
        return (x @ blocks).view(videos, seq_len * w, out_dim)  # (videos, L*w, D')

    norm = transformer.key_norm
    gain = norm.weight if norm.weight is not None else torch.ones(out_dim, device=frames.device)
    shift = norm.bias if norm.bias is not None else torch.zeros(out_dim, device=frames.device)
    key_bias = transformer.key_map.bias.expand(videos, 1, out_dim)  # (videos, 1, D')
    keys = torch.cat([pieces(transformer.key_map), key_bias], dim=1)  # (videos, L*w + 1, D')
    keys = keys - keys.mean(dim=-1, keepdim=True)  # centring is linear: centred tuple = sum of centred pieces
    value_selection = piece_selection(tuples, seq_len).to(frames.dtype)  # (T, L*w)
    key_selection = torch.cat([value_selection, value_selection.new_ones(len(tuples), 1)], dim=1)  # (T, L*w + 1)
    centred = key_selection @ keys  # (videos, T, D'): key_t - mean(key_t)
    inverse_std = torch.rsqrt(centred.pow(2).mean(dim=-1) + norm.eps)  # (videos, T)
    return TupleProjections(
        tuples=tuples,
        key_selection=key_selection,
        value_selection=value_selection,
        key_pieces=keys * gain,  # (videos, L*w + 1, D')
        inverse_std=inverse_std,
        key_offset=(centred @ (gain * shift)) * inverse_std,  # (videos, T)
        value_pieces=pieces(transformer.value_map),  # (videos, L*w, D')
    )


def _cat_projections(parts: list[TupleProjections]) -> TupleProjections:
    first = parts[0]
    return TupleProjections(
        first.tuples, first.key_selection, first.value_selection,
        *(torch.cat([getattr(p, name) for p in parts]) for name in ("key_pieces", "inverse_std", "key_offset", "value_pieces")),
    )


def tuple_distance_logits(projections: TupleProjections, support: Tensor, query: Tensor, out_dim: int) -> Tensor:
    """One cardinality's TRX logits for a batch of tasks from per-video pieces.

    support: (tasks, way, shots) and query (tasks, queries) video indices -> (tasks, queries, way).

    With ``n_t`` the centred key of tuple t before LayerNorm and ``s_t`` its std, the
    LayerNorm'd key is ``k_t = g * n_t / s_t + beta``, so

        k_t . k_u = (g n_t) . (g n_u) / (s_t s_u) + o_t + o_u + |beta|^2,   o_t = (g beta) . n_t / s_t

    and ``g n_t = S_t P`` sums the rows of the video's ``key_pieces`` P picked by the
    selection row S_t. The products of all query and support tuples are therefore
    ``S (P_q P_s^T) S^T``: a Gram matrix of (L*w + 1) pieces per video pair instead of T
    tuples (24 vs 56 rows for triples at L = 8). ``o_t + |beta|^2`` is the same for every
    support tuple of a query tuple, so it cancels in the softmax (step 4) and is left out.
    Values have no norm: a prototype is ``sum_u a_tu (S_u V_s + b)`` and, as the attention
    sums to 1, the bias cancels against the query's; the attention is folded onto the
    support's value pieces first, ``(a S) V_s``, again L*w rows instead of T.
    """
    tasks, way, shots = support.shape
    n_query = query.shape[1]
    key_selection, value_selection = projections.key_selection, projections.value_selection  # (T, R), (T, L*w)
    n_tuples, rows = key_selection.shape

    # Step 4: scores of every query tuple against every support tuple of each class.
    query_keys = projections.key_pieces[query]  # (tasks, queries, R, D')
    support_keys = projections.key_pieces[support]  # (tasks, way, shots, R, D')
    gram = query_keys.flatten(1, 2) @ support_keys.flatten(1, 3).transpose(1, 2)  # (tasks, queries*R, way*shots*R)
    gram = gram.view(tasks, n_query, rows, way * shots, rows)
    per_support = gram @ key_selection.T  # (tasks, queries, R, way*shots, T)
    products = key_selection @ per_support.flatten(3)  # (tasks, queries, T, way*shots*T)
    inverse_std_query = projections.inverse_std[query].unsqueeze(-1)  # (tasks, queries, T, 1)
    inverse_std_support = projections.inverse_std[support].flatten(1).unsqueeze(1).unsqueeze(1)  # (tasks, 1, 1, way*shots*T)
    offset_support = projections.key_offset[support].flatten(1).unsqueeze(1).unsqueeze(1)  # (tasks, 1, 1, way*shots*T)
    scores = (products * inverse_std_query * inverse_std_support + offset_support) / math.sqrt(out_dim)
    attention = scores.view(tasks, n_query, n_tuples, way, shots * n_tuples).softmax(dim=-1)  # one softmax per class

    # Step 5: prototypes, with the attention moved onto the support's value pieces.
    attention = attention.view(tasks, n_query, n_tuples, way, shots, n_tuples)
    on_pieces = attention @ value_selection  # (tasks, queries, T, way, shots, L*w)
    on_pieces = on_pieces.permute(0, 3, 1, 2, 4, 5).flatten(4).flatten(2, 3)  # (tasks, way, queries*T, shots*L*w)
    support_values = projections.value_pieces[support].flatten(2, 3)  # (tasks, way, shots*L*w, D')
    prototypes = on_pieces @ support_values  # (tasks, way, queries*T, D')
    query_values = value_selection @ projections.value_pieces[query]  # (tasks, queries, T, D')

    # Step 6: squared distance over tuples and channels, divided by T (in place: the largest tensor).
    difference = prototypes.sub_(query_values.flatten(1, 2).unsqueeze(1))  # (tasks, way, queries*T, D')
    distance = difference.pow(2).sum(-1).view(tasks, way, n_query, n_tuples).sum(-1) / n_tuples  # (tasks, way, queries)
    return -distance.transpose(1, 2)  # (tasks, queries, way)


class PrecomputedTRX:
    """:class:`TRXHead` (eval mode) with every per-video step done once.

    Per video and cardinality it keeps :class:`TupleProjections` (key and value pieces of
    every frame for every tuple position, about ``2 (L*w + 1) D'`` numbers), computed in
    pieces of ``chunk_size`` videos from ``features`` (a (videos, L, D) tensor, a feature
    store such as :class:`fsvid.features.FeatureCache` (its test view), or an iterable of
    (videos, L, D) chunks). A task then costs two Gram products of pieces and
    the prototype products (:func:`tuple_distance_logits`).

    ``scorer(support, query)``: support (tasks, way, shots) and query (tasks, queries) video
    indices -> ``HeadOutput`` with logits (tasks, queries, way) (the mean over cardinalities)
    and ``extras["logits_per_cardinality"]`` (tasks, queries, way, |Omega|); equal to the
    head's logits on each task up to float rounding.

    Memory: ``(2 L*w + 1) D'`` floats per video and cardinality, 378 KB per video for
    Omega = {2, 3}, L = 8, D' = 1152 in float32 (0.9 GB for 2,400 test videos). Speed: the
    products are batched over ``tasks`` given together; on a CPU one task at a time keeps
    the intermediate tensors in cache, on a GPU pass many.
    """

    def __init__(
        self,
        head: TRXHead,
        features: FeatureSource | Iterable[Tensor],
        chunk_size: int = 256,
        progress: bool = False,
    ) -> None:
        require_eval(head, "the TRX head")
        self.head, self.out_dim = head, head.out_dim
        device = module_device(head)
        chunks = feature_chunks(features, chunk_size, device) if isinstance(features, (Tensor, ViewStore)) else features
        parts: list[list[TupleProjections]] = [[] for _ in head.cross_transformers]
        with torch.inference_mode():
            for chunk in tqdm(chunks, desc="TRX projections", unit="chunk", disable=not progress):
                if chunk.dim() != 3 or chunk.shape[1:] != (head.seq_len, head.dim):
                    raise ValueError(
                        f"PrecomputedTRX needs frame features (videos, L={head.seq_len}, D={head.dim}), got {tuple(chunk.shape)}"
                    )
                for k, transformer in enumerate(head.cross_transformers):
                    parts[k].append(project_video_tuples(transformer, chunk.to(device)))
        self.projections = [_cat_projections(p) for p in parts]

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        device = self.projections[0].key_pieces.device
        support, query = as_index(support, device), as_index(query, device)
        per_cardinality = torch.stack(
            [tuple_distance_logits(p, support, query, self.out_dim) for p in self.projections], dim=-1
        )  # (tasks, queries, way, |Omega|)
        return HeadOutput(logits=per_cardinality.mean(dim=-1), extras={"logits_per_cardinality": per_cardinality})

