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
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .common import HeadOutput, group_support
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
