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
``W = [W_1 | W_2]`` is split into w column blocks of width D. So each map projects the L
frames once per tuple position, (videos, L, D') per position, and a tuple's projection is a
gather and a sum: the same result as projecting the T concatenations with T/L times fewer
multiply-adds (3.5x for pairs, 7x for triples at L = 8, backward pass alike). The attention
of steps 4-6 is unchanged, so the whole head gains less than that (see
``benchmarks/bench_heads.py``, which compares with the straightforward per-tuple, per-class
formulation kept in ``benchmarks/reference_trx_loop.py``).

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


def project_tuples(frames: Tensor, linear: nn.Linear, tuples: Tensor) -> Tensor:
    """``linear`` applied to every frame tuple's concatenation, through the per-frame factorisation.

    frames: (videos, L, D); linear: ``Linear(w*D -> D_out)``; tuples: (T, w) frame indices.
    Returns (videos, T, D_out), equal to ``linear(cat(frames[:, t_1], ..., frames[:, t_w]))``:
    with ``W = [W_1 | ... | W_w]`` split into w blocks of D columns,
    ``W [e_t1; ...; e_tw] + b = W_1 e_t1 + ... + W_w e_tw + b``.
    """
    dim = frames.shape[-1]
    projected = linear.bias  # (D_out,)
    for position, block in enumerate(linear.weight.split(dim, dim=1)):  # W_j: (D_out, D), a view
        per_frame = frames @ block.T  # (videos, L, D_out): W_j e_l for every frame l, once
        projected = projected + per_frame[:, tuples[:, position]]  # gather frame t_j of every tuple: (videos, T, D_out)
    return projected  # (videos, T, D_out)


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
        n_support = way * shots
        frames = torch.cat([support.flatten(0, 1), query])  # (videos, L, D), supports first
        frames = self.positional_encoding(frames)  # step 1

        tuples = self.active_tuples()  # (T, w), step 2
        n_tuples = tuples.shape[0]
        keys = self.key_norm(project_tuples(frames, self.key_map, tuples))  # (videos, T, D'), step 3
        values = project_tuples(frames, self.value_map, tuples)  # (videos, T, D')

        support_keys = keys[:n_support].reshape(way, shots * n_tuples, self.out_dim)  # (way, shots*T, D')
        support_values = values[:n_support].reshape(way, shots * n_tuples, self.out_dim)  # (way, shots*T, D')
        query_keys, query_values = keys[n_support:], values[n_support:]  # (queries, T, D')

        # Step 4: every query tuple against every support tuple of each class, one softmax per class.
        scores = torch.einsum("qtd,csd->qcts", query_keys, support_keys) / math.sqrt(self.out_dim)
        attention = scores.softmax(dim=-1)  # (queries, way, T, shots*T)
        # Step 5: query-specific class prototypes.
        prototypes = torch.einsum("qcts,csd->qctd", attention, support_values)  # (queries, way, T, D')
        # Step 6: squared distance over tuples and channels, divided by T.
        difference = query_values.unsqueeze(1) - prototypes  # (queries, way, T, D')
        distance = difference.pow(2).sum(dim=(-2, -1)) / n_tuples  # (queries, way)
        attention = attention.view(query.shape[0], way, n_tuples, shots, n_tuples)
        return -distance, attention, tuples


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

