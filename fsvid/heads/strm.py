"""STRM: spatio-temporal relation modeling (Thatipelli et al., CVPR 2022).

Input: patch features, support (support videos, L, P, D) and query (queries, L, P, D), with
P = 16 patches (ResNet-50 layer4 2048x7x7, ``AdaptiveMaxPool2d(4)``). All videos of a task go
through the enrichment together (batched matmuls), supports first, then the queries.

    x (videos, L, P, D)
      -> PLE, patch-level enrichment (Eq. 2-4): self-attention over the P patches of a frame
      -> mean over patches: H (videos, L, D)
      -> query-class similarity classifier on H (Eq. 8-9)         -> qc_logits
      -> FLE, frame-level enrichment (Eq. 5-6): MLP-mixer over the L frames: E (videos, L, D)
      -> TRM: TRX with Omega = {2} on E (Eq. 1, ``fsvid.heads.trx``) -> logits

Paper vs released code (the default follows the released code, so released checkpoints and
the fixtures reproduce): the released PLE does not divide the attention scores by sqrt(D)
(``attention_scale=False``; the paper's Eq. 3 does, ``True``) and scales the attended values by
a learnable scalar gamma initialised to 0 (``learnable_gamma=True``; the paper has no gamma,
``False``). With gamma = 0 at initialisation, the PLE's query/key/value maps get zero gradient
until gamma has moved away from 0 (released behaviour).

Scores. ``logits`` is the TRM score (what ``CE`` in Eq. 7 and 10 is applied to, and the
fixture's ``logits``); ``qc_logits`` the query-class classifier's (Eq. 8, the released
``logits_post_pat``). The released code scores TEST tasks with ``logits + 0.1 * qc_logits``;
that combination is ``extras["test_logits"]`` (weight ``qc_test_weight``; it equals ``logits``
when the classifier is switched off). Evaluate with ``output.extras["test_logits"]`` to follow
the released protocol, with ``output.logits`` for the TRM alone.

The classifier is a registered module (``query_class``), so it is trained and saved
(``qc_mode="trained"``). The released code keeps it in a plain Python list
(``strm/model.py`` line 447): never optimised, never saved, never switched to eval mode, yet
its loss term reaches the PLE and the backbone. ``qc_mode="released"`` reproduces that: fixed
random weights drawn from ``qc_seed`` (non-persistent buffers, rebuilt identically whenever the
head is built, so checkpoints need not hold them), dropout on in eval mode too. (A converted
released checkpoint has no classifier weights either, see ``fsvid.convert``.)

Ablations (all constructor switches; ``STRM_ABLATIONS`` lists the paper's settings):
- pieces on/off (Fig. 6 left): ``patch_enrichment=None``, ``frame_enrichment=None``,
  ``query_class=False``;
- PLE and FLE each "self_attention" or "mlp_mixer" (Table A2);
- ``joint_layers = 1 or 2`` (Table A1): joint spatio-temporal self-attention over all L*P tokens
  of a video replaces PLE and FLE (both must then be None); H is then the patch mean of its
  output, used both by the classifier and by the TRM;
- ``cardinalities`` (Table 2), ``tuple_fraction`` / ``eval_tuples`` (Fig. 6 right, TRM only;
  the classifier always uses every tuple).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .common import FeatureSource, HeadOutput, as_index, feature_chunks, group_support, module_device, require_eval
from .positional import PositionalEncoding
from .trx import PrecomputedTRX, TRXHead, check_features, frame_tuples, project_tuples

Enrichment = Literal["self_attention", "mlp_mixer"]


class SelfAttentionEnrichment(nn.Module):
    """Self-attention over the tokens of a sample plus a refining MLP (PLE, paper Eq. 2-4).

    (batch, tokens, D) -> (batch, tokens, D). Used over the P patches of a frame (PLE), over the
    L frames of a video (FLE ablation) or over all L*P tokens of a video (joint ablation).
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        hidden_dim: int | None = None,
        dropout: float = 0.1,
        attention_scale: bool = False,
        learnable_gamma: bool = True,
        positional_encoding: bool = True,
    ) -> None:
        super().__init__()
        hidden_dim = hidden_dim or dim // 2
        self.attention_scale = attention_scale
        self.positional_encoding = (
            PositionalEncoding(dim, max_len=int(1.5 * num_tokens), dropout=dropout) if positional_encoding else None
        )
        self.query_proj = nn.Linear(dim, dim)  # W_1
        self.key_proj = nn.Linear(dim, dim)  # W_2
        self.value_proj = nn.Linear(dim, dim)  # W_3
        self.gamma = nn.Parameter(torch.zeros(1)) if learnable_gamma else None
        # psi: the point-wise refining sub-network, D -> D/2 -> D/2 -> D.
        self.refine = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, dim),
        )  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, tokens, D). Returns the enriched tokens and the attention (batch, tokens, tokens)."""
        if self.positional_encoding is not None:
            x = self.positional_encoding(x)  # (batch, tokens, D)
        queries, keys, values = self.query_proj(x), self.key_proj(x), self.value_proj(x)  # Eq. 2, (batch, tokens, D)
        scores = queries @ keys.transpose(1, 2)  # (batch, tokens, tokens)
        if self.attention_scale:
            scores = scores / math.sqrt(x.shape[-1])
        attention = scores.softmax(dim=-1)  # (batch, tokens, tokens), eta in Eq. 3
        attended = attention @ values  # (batch, tokens, D)
        if self.gamma is not None:
            attended = self.gamma * attended
        alpha = attended + x  # Eq. 3
        return self.refine(alpha) + alpha, attention  # Eq. 4, (batch, tokens, D)


class MLPMixerEnrichment(nn.Module):
    """An MLP-mixer layer without LayerNorm (FLE, paper Eq. 5-6).

    (batch, tokens, D) -> (batch, tokens, D): token mixing ``Linear(N, N)-ReLU-Linear(N, N)``
    along the tokens plus residual (Eq. 5), then channel mixing ``Linear(D, D)-ReLU-Linear(D, D)``
    plus residual (Eq. 6). Used over the L frames (FLE) or the P patches (PLE ablation).
    """

    def __init__(self, dim: int, num_tokens: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.positional_encoding = PositionalEncoding(dim, max_len=int(1.5 * num_tokens), dropout=dropout)
        self.token_mixing = nn.Sequential(nn.Linear(num_tokens, num_tokens), nn.ReLU(), nn.Linear(num_tokens, num_tokens))
        self.channel_mixing = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        """x: (batch, tokens, D). Returns the enriched tokens (and no attention map)."""
        x = self.positional_encoding(x)  # (batch, N, D)
        mixed = self.token_mixing(x.transpose(1, 2)).transpose(1, 2) + x  # Eq. 5: H*, (batch, N, D)
        return self.channel_mixing(mixed) + mixed, None  # Eq. 6: E, (batch, N, D)


def make_enrichment(
    kind: Enrichment, dim: int, num_tokens: int, dropout: float, attention_scale: bool, learnable_gamma: bool
) -> nn.Module:
    """A self-attention or MLP-mixer enrichment over ``num_tokens`` tokens."""
    if kind == "self_attention":
        return SelfAttentionEnrichment(dim, num_tokens, None, dropout, attention_scale, learnable_gamma)
    if kind == "mlp_mixer":
        return MLPMixerEnrichment(dim, num_tokens, dropout)
    raise ValueError(f"enrichment must be 'self_attention', 'mlp_mixer' or None, got {kind!r}")


class TupleEmbedding(nn.Module):
    """``ReLU(W_cls [h_t1; ...; h_tw])`` for every frame tuple of one cardinality (Sec. 3.3)."""

    def __init__(self, dim: int, out_dim: int, seq_len: int, cardinality: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cardinality * dim, out_dim)  # W_cls
        self.register_buffer("tuples", frame_tuples(seq_len, cardinality), persistent=False)  # (T, w)

    def forward(self, frames: Tensor) -> Tensor:
        """frames: (videos, L, D) -> (videos, T, D''), through the per-frame factorisation."""
        return torch.relu(project_tuples(frames, self.linear, self.tuples))


class QueryClassSimilarity(nn.Module):
    """The query-class similarity classifier (paper Eq. 8-9), as the released code computes it.

    Dropout on H, tuple embeddings z (no positional encoding), then for every query tuple the
    Euclidean distance to every tuple of every support video of a class, minimum over those,
    mean over the query tuples; logit = -that mean (the paper's max-similarity written as a
    min-distance), averaged over cardinalities.

    ``frozen_seed`` (``qc_mode="released"``): the linear maps get ``nn.Linear``'s default
    initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn from a generator seeded with
    it, and are kept as non-persistent buffers (no gradient, not in the state dict); dropout
    then stays on in eval mode. Gradients still flow through the classifier into its input.
    """

    def __init__(
        self,
        dim: int,
        seq_len: int,
        cardinalities: Sequence[int],
        out_dim: int | None = None,
        dropout: float = 0.1,
        frozen_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.tuple_embeddings = nn.ModuleList(
            TupleEmbedding(dim, out_dim or dim // 2, seq_len, w) for w in cardinalities
        )
        self.frozen = frozen_seed is not None
        if self.frozen:
            generator = torch.Generator().manual_seed(frozen_seed)
            for embedding in self.tuple_embeddings:
                _freeze_linear(embedding.linear, generator)

    def forward(self, support: Tensor, query: Tensor) -> Tensor:
        """support: (way, shots, L, D); query: (queries, L, D) -> logits (queries, way)."""
        way, shots = support.shape[:2]
        n_queries = query.shape[0]
        frames = torch.cat([support.flatten(0, 1), query])  # (videos, L, D)
        frames = F.dropout(frames, self.dropout.p, training=self.training or self.frozen)
        logits = []
        for embedding in self.tuple_embeddings:
            z = embedding(frames)  # (videos, T, D'')
            n_tuples, width = z.shape[1:]
            support_z = z[: way * shots].reshape(way * shots * n_tuples, width)  # (way*shots*T, D'')
            query_z = z[way * shots :].reshape(n_queries * n_tuples, width)  # (queries*T, D'')
            distance = torch.cdist(query_z, support_z)  # (queries*T, way*shots*T)
            distance = distance.view(n_queries, n_tuples, way, shots * n_tuples)
            nearest = distance.min(dim=-1).values  # (queries, T, way): closest tuple of the class
            logits.append(-nearest.mean(dim=1))  # Eq. 8, (queries, way)
        return torch.stack(logits, dim=-1).mean(dim=-1)  # (queries, way)


def _freeze_linear(linear: nn.Linear, generator: torch.Generator) -> None:
    """Replace ``linear``'s parameters by seeded random non-persistent buffers (same init law)."""
    bound = 1.0 / math.sqrt(linear.in_features)
    weight = torch.empty_like(linear.weight).uniform_(-bound, bound, generator=generator)
    bias = torch.empty_like(linear.bias).uniform_(-bound, bound, generator=generator)
    del linear.weight, linear.bias
    linear.register_buffer("weight", weight, persistent=False)
    linear.register_buffer("bias", bias, persistent=False)


class STRMHead(nn.Module):
    """STRM: PLE -> H -> (query-class classifier) -> FLE -> TRM. See the module docstring.

    Defaults: the paper's sizes (D = 2048, D' = 1152, L = 8, P = 16, Omega = {2}, D'' = D/2,
    psi hidden D/2) and the released code's choices (no sqrt(D) scaling, learnable gamma).
    ``keep_attention = True`` puts the enrichment attention maps and the TRM's tuple attention
    into ``extras``.
    """

    def __init__(
        self,
        dim: int = 2048,
        out_dim: int = 1152,
        seq_len: int = 8,
        patches: int = 16,
        cardinalities: Sequence[int] = (2,),
        patch_enrichment: Enrichment | None = "self_attention",
        frame_enrichment: Enrichment | None = "mlp_mixer",
        joint_layers: int = 0,
        query_class: bool = True,
        qc_dim: int | None = None,
        qc_test_weight: float = 0.1,
        qc_mode: Literal["trained", "released"] = "trained",
        qc_seed: int = 0,
        attention_scale: bool = False,
        learnable_gamma: bool = True,
        dropout: float = 0.1,
        tuple_fraction: float = 1.0,
        eval_tuples: Literal["all", "fixed"] = "all",
        tuple_seed: int = 0,
    ) -> None:
        super().__init__()
        if joint_layers < 0:
            raise ValueError(f"joint_layers must be >= 0, got {joint_layers}")
        if joint_layers and (patch_enrichment is not None or frame_enrichment is not None):
            raise ValueError(
                "joint_layers > 0 replaces PLE and FLE: pass patch_enrichment=None and frame_enrichment=None "
                f"(got {patch_enrichment!r}, {frame_enrichment!r})"
            )
        self.dim, self.seq_len, self.patches = dim, seq_len, patches
        if qc_mode not in ("trained", "released"):
            raise ValueError(f"qc_mode must be 'trained' or 'released', got {qc_mode!r}")
        self.qc_test_weight = qc_test_weight
        self.keep_attention = False

        self.patch_enrichment = (
            None
            if patch_enrichment is None
            else make_enrichment(patch_enrichment, dim, patches, dropout, attention_scale, learnable_gamma)
        )
        # Joint spatio-temporal self-attention over all L*P tokens; the encoding only in the first layer.
        self.joint_enrichment = nn.ModuleList(
            SelfAttentionEnrichment(dim, seq_len * patches, None, dropout, attention_scale, learnable_gamma, i == 0)
            for i in range(joint_layers)
        )
        self.query_class = (
            QueryClassSimilarity(dim, seq_len, cardinalities, qc_dim, dropout, qc_seed if qc_mode == "released" else None)
            if query_class
            else None
        )
        self.frame_enrichment = (
            None
            if frame_enrichment is None
            else make_enrichment(frame_enrichment, dim, seq_len, dropout, attention_scale, learnable_gamma)
        )
        self.temporal_relation = TRXHead(
            dim, out_dim, seq_len, cardinalities, dropout, tuple_fraction, eval_tuples, tuple_seed
        )

    @property
    def needs_patches(self) -> bool:
        """Whether the input must keep its patch axis, (videos, L, P, D)."""
        return self.patch_enrichment is not None or len(self.joint_enrichment) > 0

    def frame_representation(self, x: Tensor, extras: dict) -> Tensor:
        """Patch features (videos, L, P, D) -> H (videos, L, D): PLE (or joint attention), patch mean."""
        if x.dim() == 3:  # already frame features, only allowed without patch-level pieces
            return x
        videos, seq_len, patches, dim = x.shape
        if self.patch_enrichment is not None:
            tokens, attention = self.patch_enrichment(x.reshape(videos * seq_len, patches, dim))  # (videos*L, P, D)
            x = tokens.view(videos, seq_len, patches, dim)
            if self.keep_attention and attention is not None:
                extras["patch_attention"] = attention.view(videos, seq_len, patches, patches)
        elif len(self.joint_enrichment) > 0:
            tokens = x.reshape(videos, seq_len * patches, dim)  # (videos, L*P, D)
            maps = []
            for layer in self.joint_enrichment:
                tokens, attention = layer(tokens)
                maps.append(attention)
            x = tokens.view(videos, seq_len, patches, dim)
            if self.keep_attention:
                extras["joint_attention"] = maps
        return x.mean(dim=2)  # (videos, L, D)

    def forward(
        self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor | None = None
    ) -> HeadOutput:
        """support: (support videos, L, P, D) in any class order; support_labels: (support videos,);
        query: (queries, L, P, D). Without PLE and joint attention, (videos, L, D) frame features
        are accepted too. ``query_labels`` is not used."""
        dims = 4 if self.needs_patches or support.dim() == 4 else 3
        check_features("STRMHead support", support, dims, self.seq_len, self.dim)
        check_features("STRMHead query", query, dims, self.seq_len, self.dim)
        if dims == 4 and (support.shape[2] != self.patches or query.shape[2] != self.patches):
            raise ValueError(
                f"STRMHead expects P={self.patches} patches, got support {tuple(support.shape)}, query {tuple(query.shape)}"
            )
        groups = group_support(support, support_labels)  # features (way, shots, L, [P,] D)
        way, shots = groups.way, groups.shots
        n_support = way * shots

        extras: dict = {"classes": groups.classes}
        videos = torch.cat([groups.features.flatten(0, 1), query])  # (videos, L, [P,] D), supports first
        h = self.frame_representation(videos, extras)  # H, (videos, L, D)
        h_support = h[:n_support].view(way, shots, *h.shape[1:])  # (way, shots, L, D)

        qc_logits = None
        if self.query_class is not None:
            qc_logits = self.query_class(h_support, h[n_support:])  # Eq. 8, (queries, way)

        e = h
        if self.frame_enrichment is not None:
            e, attention = self.frame_enrichment(h)  # Eq. 5-6, E (videos, L, D)
            if self.keep_attention and attention is not None:
                extras["frame_attention"] = attention
        trm = self.temporal_relation.classify(
            e[:n_support].view(way, shots, *e.shape[1:]), e[n_support:], keep_attention=self.keep_attention
        )  # Eq. 1 on E, Omega = cardinalities ({2})
        extras.update(trm.extras)

        logits = trm.logits  # Eq. 1 on E, (queries, way)
        extras["test_logits"] = logits if qc_logits is None else logits + self.qc_test_weight * qc_logits
        return HeadOutput(logits=logits, qc_logits=qc_logits, extras=extras)


# Constructor arguments of the paper's ablations (SSv2 accuracy in the paper in the comment).
STRM_ABLATIONS: dict[str, dict] = {
    # Fig. 6 left
    "TRM": dict(patch_enrichment=None, frame_enrichment=None, query_class=False),  # 62.1
    "PLE+TRM": dict(frame_enrichment=None, query_class=False),  # 63.7
    "FLE+TRM": dict(patch_enrichment=None, query_class=False),  # 65.3
    "PLE+FLE+TRM": dict(query_class=False),  # 66.8
    "STRM": dict(),  # 68.1
    # Table A1: joint spatio-temporal self-attention instead of PLE + FLE
    "Jnt-ST(1)": dict(patch_enrichment=None, frame_enrichment=None, joint_layers=1),  # 64.7
    "Jnt-ST(2)": dict(patch_enrichment=None, frame_enrichment=None, joint_layers=2),  # 65.8
    # Table A2: PLE / FLE mechanism
    "PLE-SA/FLE-SA": dict(frame_enrichment="self_attention"),  # 64.2
    "PLE-MLP/FLE-SA": dict(patch_enrichment="mlp_mixer", frame_enrichment="self_attention"),  # 64.1
    "PLE-MLP/FLE-MLP": dict(patch_enrichment="mlp_mixer"),  # 65.0
    # Fig. 6 right: 20 % of the tuples
    "STRM-20%-tuples": dict(tuple_fraction=0.2),  # 65.4
    # Paper's equations instead of the released code
    "STRM-paper-PLE": dict(attention_scale=True, learnable_gamma=False),
}


# ---------------------------------------------------------------------------------------------
# Fast evaluation: per-video steps once, then tasks from video indices
# ---------------------------------------------------------------------------------------------
#
# In eval mode PLE (or the joint attention), the patch mean H, the classifier's tuple
# embeddings z of H (Sec. 3.3) and FLE act on one video at a time: they are done once per
# video. A task then needs only the TRM's support-query steps on E (``PrecomputedTRX``, the
# per-frame pieces of ``fsvid.heads.trx``) and the classifier's distances between tuple
# embeddings (Eq. 8).


class PrecomputedSTRM:
    """:class:`STRMHead` (eval mode) with every per-video step done once.

    In eval mode PLE (or joint attention), the patch mean H, the classifier's tuple
    embeddings of H and FLE all act on one video at a time, so per video it keeps the
    query-class tuple embeddings (T, D'') per cardinality and the TRM's
    :class:`TupleProjections` of E. A task then costs the TRM (as in :class:`PrecomputedTRX`)
    and the classifier's ``cdist`` between tuple embeddings.

    ``scorer(support, query)`` -> ``HeadOutput`` with logits (TRM), qc_logits and
    ``extras["test_logits"]`` (``logits + qc_test_weight * qc_logits``), each (tasks, queries, way).

    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs PLE (or the joint attention) and the
    classifier's tuple embeddings under autocast: nearly all of the per-video work (about
    2.3 G multiply-adds per video at the papers' sizes), several times faster on GPUs and on
    CPUs with AVX512-BF16 / AMX, with logits no longer equal to the head's in float32. FLE
    and the task-level steps run in float32 (FLE is about 1 % of the work, and its
    transposed token mixing makes the CPU autocast path copy the channel-mixing weight per
    video).
    """

    def __init__(
        self,
        head: STRMHead,
        features: FeatureSource,
        chunk_size: int = 64,
        progress: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        require_eval(head, "the STRM head")
        self.head = head
        device = module_device(head)
        enriched, embeddings = [], []
        dims = 4 if head.needs_patches else 3
        with torch.inference_mode():
            chunks = feature_chunks(features, chunk_size, device)
            for chunk in tqdm(chunks, desc="STRM per-video steps", unit="chunk", disable=not progress):
                if chunk.dim() != dims or chunk.shape[1] != head.seq_len or chunk.shape[-1] != head.dim:
                    layout = "(videos, L, P, D)" if dims == 4 else "(videos, L, D)"
                    raise ValueError(
                        f"PrecomputedSTRM needs features {layout} with L={head.seq_len}, D={head.dim}, got {tuple(chunk.shape)}"
                    )
                autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
                with autocast:
                    h = head.frame_representation(chunk, {})  # H (videos, L, D)
                    if head.query_class is not None:
                        z = [embedding(h).float() for embedding in head.query_class.tuple_embeddings]  # (videos, T, D'') each
                        embeddings.append(z)
                h = h.float()
                e = head.frame_enrichment(h)[0] if head.frame_enrichment is not None else h  # E (videos, L, D)
                enriched.append(e)
        self.trm = PrecomputedTRX(head.temporal_relation, iter(enriched))
        self.tuple_embeddings = [torch.cat(parts) for parts in zip(*embeddings)] if embeddings else []

    def query_class_logits(self, support: Tensor, query: Tensor) -> Tensor:
        """The classifier (Eq. 8): per query tuple, the distance to the nearest tuple of each
        class's support videos, averaged over query tuples and cardinalities; (tasks, queries, way)."""
        tasks, way, shots = support.shape
        logits = []
        for z in self.tuple_embeddings:  # (videos, T, D'')
            n_tuples = z.shape[1]
            distance = torch.cdist(z[query].flatten(1, 2), z[support].flatten(1, 3))  # (tasks, queries*T, way*shots*T)
            distance = distance.view(tasks, query.shape[1], n_tuples, way, shots * n_tuples)
            logits.append(-distance.min(dim=-1).values.mean(dim=2))  # (tasks, queries, way)
        return torch.stack(logits, dim=-1).mean(dim=-1)

    @torch.inference_mode()
    def __call__(self, support: Tensor | np.ndarray, query: Tensor | np.ndarray) -> HeadOutput:
        trm = self.trm(support, query)
        device = trm.logits.device
        support, query = as_index(support, device), as_index(query, device)
        qc_logits = self.query_class_logits(support, query) if self.tuple_embeddings else None
        test_logits = trm.logits if qc_logits is None else trm.logits + self.head.qc_test_weight * qc_logits
        return HeadOutput(logits=trm.logits, qc_logits=qc_logits, extras={**trm.extras, "test_logits": test_logits})

