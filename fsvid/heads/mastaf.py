"""MASTAF: model-agnostic spatio-temporal attention fusion (Liu et al., WACV 2023).

The head works on any backbone's feature map flattened to ``N`` positions of ``D``
channels. For every query and every class prototype it builds correlation maps between
positions, turns each into an attention map over positions with CAN's meta-learner
(Hou et al., NeurIPS 2019, "Cross Attention Network"), and scores the attended maps with
a scaled cosine. Two kinds of attention are fused:

- self-attention: each map against itself (the prototype's does not depend on the query,
  the query's does not depend on the class);
- cross-attention: the prototype against the query, and the query against the prototype
  (the transposed correlation map), so both sides depend on the (query, class) pair.

Score (test time, "fusion")::

    logits[q, c] = cross[q, c] + alpha * self[q, c]
    cross[q, c]  = scale * cos(GAP(P_c * A^cross_{P_c|q}), GAP(Q_q * A^cross_{Q_q|c}))
    self[q, c]   = scale * cos(GAP(P_c * A^self_{P_c}),    GAP(Q_q * A^self_{Q_q}))

with GAP the mean over positions and ``P_c`` the mean of the class's ``K`` support maps
(taken *before* attention). Training uses the same fused score computed densely (the
cosine between each of the query's positions and the prototype's GAP) and a global
classifier over all training classes on the cross-attended query map (see
``MASTAFHead.forward``).

What the released code (github lxhit/STAF) does exactly, all reproduced here and checked
against ``fixtures/official/mastaf_public.pt``:

1. Correlation ``R[p, q] = <x_p / |x_p|, y_q / |y_q|>`` with channels L2-normalised
   (eps 1e-12) at every position.
2. Meta-learner (one module shared by the four uses): ``m[q] = mean_p R[p, q]``, then
   ``w = conv2(relu(bn(conv1(m))))``, two 1x1 convolutions whose *channels* are the
   positions (N -> 6 -> N), i.e. linear maps over the position axis.
3. ``a[p] = mean_q R[p, q] * w[q]`` and ``A = softmax_p(a / 0.025) + 1``.
4. Batch norm skipping: the released ``ConvBlock`` skips its BatchNorm when axis 3 of
   its input is 1. That input is laid out ``(1, N, n2, n1)`` where ``n1`` is the number
   of maps on the *first* side of the call. For the cross-attention (both sides) and the
   prototype self-attention ``n1`` is the way; for the query self-attention it is the
   number of queries in the call. So BatchNorm is skipped for cross / prototype-self
   attention only when ``way == 1``, and for the query self-attention exactly when the
   task holds a single query. The released sampler puts ``query_per_class`` queries of
   ONE class in each task (1 by default), so released training and testing never used
   BatchNorm for the query self-attention; an engine that batches several queries does.
   ``query_self_norm="never"`` gives the released models' own behaviour for any number
   of queries (and makes a query's score independent of the other queries in eval mode).
5. In training mode BatchNorm takes batch statistics over all (query, class) pairs of the
   call (cross), all classes (prototype-self) or all queries (query-self), and updates its
   running statistics four times per forward pass in the order prototype-self,
   query-self, cross prototype side, cross query side (skipped calls do not update).
6. The dense score of a position is the cosine between that attended position and the
   GAP of the attended prototype, times the scale; the fused dense score is
   ``dense_cross + alpha * dense_self``.
7. The global classifier is a 1x1x1 conv (a linear map at every position) applied to the
   query map cross-attended against its own class's prototype; the released code picks
   that map by multiplying with the one-hot task label of the query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsvid.heads.common import HeadOutput, group_support, labels_to_columns

Kernel = Literal["meta", "uniform", "mean"]
Scores = Literal["fused", "cross", "self", "neighbor"]
QuerySelfNorm = Literal["released", "never"]


# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------
def flatten_positions(x: Tensor, name: str) -> tuple[Tensor, tuple[int, ...]]:
    """Bring a batch of feature maps to ``(videos, D, N)`` and return its spatial layout.

    - 3-D input is token form ``(videos, N, D)`` (e.g. a video transformer); layout ``(N,)``.
    - 4-D or more is channels-first ``(videos, D, *spatial)`` (e.g. a 3D CNN's
      ``(videos, D, T, H, W)``, or a 2D CNN's per-frame maps permuted to
      ``(videos, D, L, h, w)``); positions are the row-major flattening of ``spatial``.
    """
    if x.dim() == 3:
        return x.transpose(1, 2), (x.shape[1],)  # (videos, D, N)
    if x.dim() >= 4:
        return x.flatten(2), tuple(x.shape[2:])  # (videos, D, N)
    raise ValueError(
        f"MASTAFHead: {name} must be token features (videos, N, D) or channels-first maps "
        f"(videos, D, *spatial), got shape {tuple(x.shape)}"
    )


def correlation_map(x: Tensor, y: Tensor) -> Tensor:
    """Cosine similarity between every position of ``x`` and every position of ``y``.

    ``x``: (..., D, Nx), ``y``: (..., D, Ny) -> ``R``: (..., Nx, Ny), channels L2-normalised
    at each position (eps 1e-12, as the released code).
    """
    x = F.normalize(x, p=2, dim=-2, eps=1e-12)
    y = F.normalize(y, p=2, dim=-2, eps=1e-12)
    return x.transpose(-1, -2) @ y  # (..., Nx, Ny)


def scaled_cosine(a: Tensor, b: Tensor, scale: float, dim: int = -1) -> Tensor:
    """``scale * cos(a, b)`` along ``dim`` (inputs broadcast against each other)."""
    a = F.normalize(a, p=2, dim=dim, eps=1e-12)
    b = F.normalize(b, p=2, dim=dim, eps=1e-12)
    return scale * (a * b).sum(dim)


class MetaLearner(nn.Module):
    """CAN's meta-learner: a kernel over the other map's positions from a correlation map.

    Input: ``m`` (..., N), the correlation map averaged over the attended positions.
    Output: the kernel ``w`` (..., N). The released code's two 1x1 convolutions take the
    positions as channels, so they are linear maps over the position axis:
    ``reduce`` (N -> hidden) + BatchNorm + ReLU, ``expand`` (hidden -> N).
    """

    def __init__(self, positions: int, hidden: int = 6) -> None:
        super().__init__()
        self.positions = positions
        self.reduce = nn.Linear(positions, hidden)  # released: cam.conv1.conv (1x1)
        self.norm = nn.BatchNorm1d(hidden)  # released: cam.conv1.bn
        self.expand = nn.Linear(hidden, positions)  # released: cam.conv2 (1x1)
        # Released init: weights ~ normal(0, sqrt(2 / n)), n = kernel area * out channels
        # (kernel area 1); biases keep PyTorch's default (same for Conv 1x1 and Linear).
        for layer in (self.reduce, self.expand):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.out_features))

    def forward(self, mean_correlation: Tensor, batch_norm: bool) -> Tensor:
        """``mean_correlation`` (..., N) -> kernel (..., N). BatchNorm runs over all rows."""
        lead = mean_correlation.shape[:-1]
        h = self.reduce(mean_correlation.reshape(-1, self.positions))  # (rows, hidden)
        if batch_norm:
            h = self.norm(h)
        h = F.relu(h)
        return self.expand(h).reshape(*lead, self.positions)  # (..., N)


# ----------------------------------------------------------------------------------------
# The head
# ----------------------------------------------------------------------------------------
class MASTAFHead(nn.Module):
    """MASTAF's few-shot head: self- and cross-attention on flattened maps, fused cosine.

    Args:
        positions: ``N``, the number of positions of the input maps (T*H*W, L*h*w or the
            number of tokens). The meta-learner's 1x1 convs map N -> hidden -> N, so N is
            fixed at construction; inputs with another N raise ``ValueError``.
        channels: ``D``, needed when ``n_global`` is set (the global classifier is
            ``D -> n_global``); otherwise optional, checked against the inputs if given.
        n_global: number of training classes for the global classification task; 0 or
            None disables it (MASTAF-No-Global).
        alpha: weight of the self term in the fusion ``cross + alpha * self`` (1).
        scale: the cosine scale (7, ``scale_cls`` in the released code).
        temperature: softmax temperature of the attention maps (0.025).
        hidden: the meta-learner's hidden width (6).
        kernel: ``"meta"`` the meta-learner (MASTAF); ``"uniform"`` every kernel entry 1,
            so ``a[p] = mean_q R[p, q]`` is plain average pooling of the correlation map
            (MASTAF-NoML-Mean, the appendix's "average pooling on each relation map as the
            kernel"); ``"mean"`` the meta-learner's input ``mean_p R[p, q]`` used as the
            kernel without the convolutions (the other reading of that sentence).
        residual: ``A = softmax + 1`` (True, MASTAF) or ``A = softmax`` (MASTAF-NoRes).
        scores: ``"fused"`` cross + alpha * self (MASTAF); ``"cross"`` or ``"self"`` one
            term only (MASTAF-Cross / MASTAF-Self); ``"neighbor"`` plain nearest prototype,
            ``scale * cos(GAP(P_c), GAP(Q_q))`` without any attention (MASTAF-Neighbor;
            its global classifier sees the un-attended query map).
        query_self_norm: ``"released"`` applies the meta-learner's BatchNorm to the query
            self-attention unless the call holds a single query (the released rule, which
            the fixture follows); ``"never"`` always skips it there, which is how released
            models were trained and tested (one query per task) and makes each query's
            score independent of the other queries in eval mode.

    Call ``head(support, support_labels, query, query_labels=None, return_global=None)``;
    see ``forward``.
    """

    def __init__(
        self,
        positions: int,
        channels: int | None = None,
        n_global: int | None = None,
        alpha: float = 1.0,
        scale: float = 7.0,
        temperature: float = 0.025,
        hidden: int = 6,
        kernel: Kernel = "meta",
        residual: bool = True,
        scores: Scores = "fused",
        query_self_norm: QuerySelfNorm = "released",
    ) -> None:
        super().__init__()
        if int(positions) < 1:
            raise ValueError(f"MASTAFHead: positions must be >= 1, got {positions}")
        if kernel not in ("meta", "uniform", "mean"):
            raise ValueError(f"MASTAFHead: kernel must be 'meta', 'uniform' or 'mean', got {kernel!r}")
        if scores not in ("fused", "cross", "self", "neighbor"):
            raise ValueError(
                f"MASTAFHead: scores must be 'fused', 'cross', 'self' or 'neighbor', got {scores!r}"
            )
        if query_self_norm not in ("released", "never"):
            raise ValueError(
                f"MASTAFHead: query_self_norm must be 'released' or 'never', got {query_self_norm!r}"
            )
        if temperature <= 0:
            raise ValueError(f"MASTAFHead: temperature must be > 0, got {temperature}")
        n_global = int(n_global or 0)
        if n_global < 0:
            raise ValueError(f"MASTAFHead: n_global must be >= 0, got {n_global}")
        if n_global and channels is None:
            raise ValueError("MASTAFHead: the global classifier (n_global > 0) needs channels=D")

        self.positions = int(positions)
        self.channels = None if channels is None else int(channels)
        self.n_global = n_global
        self.alpha = float(alpha)
        self.scale = float(scale)
        self.temperature = float(temperature)
        self.kernel = kernel
        self.residual = bool(residual)
        self.scores = scores
        self.query_self_norm = query_self_norm

        self.meta_learner = MetaLearner(self.positions, hidden)
        # Global classification task: a 1x1x1 conv D -> n_train_classes, i.e. a linear map
        # applied at every position (released: `classifier`).
        self.global_classifier = nn.Linear(self.channels, n_global) if n_global else None

    # ------------------------------------------------------------------------------------
    def attention(self, correlation: Tensor, batch_norm: bool) -> Tensor:
        """Attention over the attended map's positions from a correlation map.

        ``correlation``: (..., P, Q), rows ``p`` the positions being attended, columns ``q``
        the other map's positions. Returns ``A``: (..., P).
        """
        mean_over_attended = correlation.mean(-2)  # (..., Q)
        if self.kernel == "meta":
            kernel = self.meta_learner(mean_over_attended, batch_norm)  # (..., Q)
        elif self.kernel == "mean":
            kernel = mean_over_attended  # (..., Q)
        else:  # "uniform": average pooling of each row of the correlation map
            kernel = torch.ones_like(mean_over_attended)  # (..., Q)
        a = (correlation * kernel.unsqueeze(-2)).mean(-1)  # (..., P)  a[p] = mean_q R[p,q] w[q]
        attention = F.softmax(a / self.temperature, dim=-1)  # (..., P)
        return attention + 1 if self.residual else attention  # the +1 is the residual

    # ------------------------------------------------------------------------------------
    def forward(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor | None = None,
        return_global: bool | None = None,
    ) -> HeadOutput:
        """Score queries against the support set, in float32 even under autocast.

        The cosine scores (x ``scale``) and the attention softmax (/ ``temperature``) magnify
        bfloat16's rounding of the correlation and GAP products beyond the gaps between
        classes, so the whole head runs with autocast off on float32 copies of its inputs
        (the backbone before it may still run in reduced precision).

        Args:
            support: (support videos, D, *spatial) maps or (support videos, N, D) tokens,
                classes in any order.
            support_labels: (support videos,) task labels.
            query: (queries, ...) in the same layout as ``support``.
            query_labels: (queries,) task labels (values among ``support_labels``). Only
                used to pick, for the global classifier, the query map cross-attended
                against the query's own class.
            return_global: compute ``global_logits``? ``None``: yes when the head has a
                global classifier and ``query_labels`` is given; in training mode a head
                with a global classifier then requires ``query_labels``. Requesting it
                (``True``) without ``query_labels`` raises ``ValueError``.

        Returns ``HeadOutput`` with
            ``logits`` (queries, way): the test score (fused by default); column ``c`` is the
                ``c``-th smallest support label;
            ``dense_logits`` (queries, way, *spatial): the same score per query position
                (``(queries, way, N)`` for token input), for the few-shot training loss;
            ``global_logits`` (queries, n_global, *spatial) or None: the global classifier.
                The loss compares it, at every position, with the query's class index among
                ALL training classes. That index is not known to the head: the engine
                supplies it (the episode carries the global class index of each task class,
                ``global_index[query_labels]``). The released code used the index of the
                class folder among all class folders of the dataset, hence
                ``--train_num_classes 51`` for HMDB.
            ``extras``: detached attention maps and the two terms, for notebooks:
                ``self_attention_prototype`` (way, *spatial), ``self_attention_query``
                (queries, *spatial), ``cross_attention_prototype`` and
                ``cross_attention_query`` (queries, way, *spatial), ``self_logits`` and
                ``cross_logits`` (queries, way), ``classes`` (way,). Only the maps that
                were computed are present.
        """
        with torch.autocast(support.device.type, enabled=False):
            return self._scores(support.float(), support_labels, query.float(), query_labels, return_global)

    def _scores(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor | None,
        return_global: bool | None,
    ) -> HeadOutput:
        """:meth:`forward` without the float32 guard (same arguments and result)."""
        support_maps, layout = flatten_positions(support, "support")  # (S, D, N)
        query_maps, query_layout = flatten_positions(query, "query")  # (queries, D, N)
        self._check_inputs(support_maps, layout, query_maps, query_layout)

        groups = group_support(support_maps, support_labels)
        prototypes = groups.features.mean(1)  # (way, D, N)  mean of the K support maps
        way, n_queries = prototypes.shape[0], query_maps.shape[0]

        want_global = self._wants_global(query_labels, return_global)
        # Only the pieces the chosen score (and the global task) need are computed.
        need_self = self.scores in ("fused", "self")
        need_cross = self.scores in ("fused", "cross") or (want_global and self.scores != "neighbor")
        extras: dict[str, Any] = {"classes": groups.classes}

        # --- Self-attention: each map against itself ----------------------------------
        # Calls in the released order (prototype, then query) so that BatchNorm's running
        # statistics update in the same order in training mode.
        if need_self:
            a_proto = self.attention(correlation_map(prototypes, prototypes), batch_norm=way > 1)  # (way, N)
            query_bn = self.query_self_norm == "released" and n_queries > 1
            a_query = self.attention(correlation_map(query_maps, query_maps), batch_norm=query_bn)  # (queries, N)
            proto_self = prototypes * a_proto.unsqueeze(1)  # (way, D, N)
            query_self = query_maps * a_query.unsqueeze(1)  # (queries, D, N)
            proto_gap = proto_self.mean(-1)  # (way, D)
            self_logits = scaled_cosine(query_self.mean(-1)[:, None], proto_gap[None], self.scale)  # (queries, way)
            self_dense = scaled_cosine(
                query_self[:, None], proto_gap[None, :, :, None], self.scale, dim=2
            )  # (queries, way, N)
            extras["self_attention_prototype"] = a_proto.detach().reshape(way, *layout)
            extras["self_attention_query"] = a_query.detach().reshape(n_queries, *layout)
            extras["self_logits"] = self_logits.detach()

        # --- Cross-attention: prototype vs query, and the transpose for the query -------
        query_attended = query_maps[:, None]  # (queries, 1, D, N) when no attention
        if need_cross:
            correlation = correlation_map(prototypes[None], query_maps[:, None])  # (queries, way, Np, Nq)
            a_proto_x = self.attention(correlation, batch_norm=way > 1)  # (queries, way, Np)
            a_query_x = self.attention(correlation.transpose(-1, -2), batch_norm=way > 1)  # (queries, way, Nq)
            # GAP of the attended prototype without materialising (queries, way, D, N).
            proto_gap_x = torch.einsum("cdn,qcn->qcd", prototypes, a_proto_x) / self.positions  # (queries, way, D)
            query_attended = query_maps[:, None] * a_query_x.unsqueeze(2)  # (queries, way, D, N)
            cross_logits = scaled_cosine(query_attended.mean(-1), proto_gap_x, self.scale)  # (queries, way)
            cross_dense = scaled_cosine(query_attended, proto_gap_x.unsqueeze(-1), self.scale, dim=2)  # (queries, way, N)
            extras["cross_attention_prototype"] = a_proto_x.detach().reshape(n_queries, way, *layout)
            extras["cross_attention_query"] = a_query_x.detach().reshape(n_queries, way, *layout)
            extras["cross_logits"] = cross_logits.detach()

        # --- Fusion --------------------------------------------------------------------
        if self.scores == "fused":
            logits = cross_logits + self.alpha * self_logits  # (queries, way)
            dense = cross_dense + self.alpha * self_dense  # (queries, way, N)
        elif self.scores == "cross":
            logits, dense = cross_logits, cross_dense
        elif self.scores == "self":
            logits, dense = self_logits, self_dense
        else:  # "neighbor": nearest prototype on plain GAP features, no attention at all
            proto_gap = prototypes.mean(-1)  # (way, D)
            logits = scaled_cosine(query_maps.mean(-1)[:, None], proto_gap[None], self.scale)  # (queries, way)
            dense = scaled_cosine(query_maps[:, None], proto_gap[None, :, :, None], self.scale, dim=2)  # (queries, way, N)

        global_logits = None
        if want_global:
            assert self.global_classifier is not None and query_labels is not None
            if query_labels.shape != (n_queries,):
                raise ValueError(
                    f"MASTAFHead: query_labels must have shape ({n_queries},), got {tuple(query_labels.shape)}"
                )
            columns = labels_to_columns(query_labels.to(groups.classes.device), groups.classes)  # (queries,)
            if query_attended.shape[1] == 1:  # neighbor: the plain query map
                own_class_map = query_attended[:, 0]  # (queries, D, N)
            else:  # the query map cross-attended against its own class's prototype
                rows = torch.arange(n_queries, device=columns.device)
                own_class_map = query_attended[rows, columns.to(query_attended.device)]  # (queries, D, N)
            global_logits = self.global_classifier(own_class_map.transpose(1, 2)).transpose(1, 2)  # (queries, n_global, N)
            global_logits = global_logits.reshape(n_queries, self.n_global, *layout)

        return HeadOutput(
            logits=logits,
            dense_logits=dense.reshape(n_queries, way, *layout),
            global_logits=global_logits,
            extras=extras,
        )

    # ------------------------------------------------------------------------------------
    def _check_inputs(
        self,
        support_maps: Tensor,
        layout: tuple[int, ...],
        query_maps: Tensor,
        query_layout: tuple[int, ...],
    ) -> None:
        if layout != query_layout or support_maps.shape[1] != query_maps.shape[1]:
            raise ValueError(
                "MASTAFHead: support and query must share a layout, got support "
                f"(D={support_maps.shape[1]}, spatial={layout}) and query "
                f"(D={query_maps.shape[1]}, spatial={query_layout})"
            )
        n = support_maps.shape[2]
        if n != self.positions:
            raise ValueError(
                f"MASTAFHead: the inputs have N={n} positions (spatial {layout}) but the head was "
                f"built with positions={self.positions}; the meta-learner's 1x1 convs are "
                f"N -> hidden -> N, so build the head with positions={n}"
            )
        if self.channels is not None and support_maps.shape[1] != self.channels:
            raise ValueError(
                f"MASTAFHead: the inputs have D={support_maps.shape[1]} channels but the head was "
                f"built with channels={self.channels}"
            )

    def _wants_global(self, query_labels: Tensor | None, return_global: bool | None) -> bool:
        if return_global is None:
            if self.global_classifier is None:
                return False
            if query_labels is None and self.training:
                raise ValueError(
                    "MASTAFHead: in training mode the global task needs query_labels (task labels) "
                    "to pick each query's own-class cross-attended map; pass them, or return_global=False"
                )
            return query_labels is not None
        if return_global and self.global_classifier is None:
            raise ValueError("MASTAFHead: global logits requested but the head has no global task (n_global=0)")
        if return_global and query_labels is None:
            raise ValueError(
                "MASTAFHead: global logits need query_labels (task labels) to pick each query's "
                "map cross-attended against its own class"
            )
        return bool(return_global)

    def extra_repr(self) -> str:
        return (
            f"positions={self.positions}, channels={self.channels}, n_global={self.n_global}, "
            f"alpha={self.alpha}, scale={self.scale}, temperature={self.temperature}, "
            f"kernel={self.kernel!r}, residual={self.residual}, scores={self.scores!r}, "
            f"query_self_norm={self.query_self_norm!r}"
        )


# ----------------------------------------------------------------------------------------
# Released checkpoints
# ----------------------------------------------------------------------------------------
# released name (after removing `module.` parts) -> our name
_OFFICIAL_NAMES: dict[str, str] = {
    "cam.conv1.conv.weight": "meta_learner.reduce.weight",  # (6, N, 1, 1) -> (6, N)
    "cam.conv1.conv.bias": "meta_learner.reduce.bias",
    "cam.conv1.bn.weight": "meta_learner.norm.weight",
    "cam.conv1.bn.bias": "meta_learner.norm.bias",
    "cam.conv1.bn.running_mean": "meta_learner.norm.running_mean",
    "cam.conv1.bn.running_var": "meta_learner.norm.running_var",
    "cam.conv1.bn.num_batches_tracked": "meta_learner.norm.num_batches_tracked",
    "cam.conv2.weight": "meta_learner.expand.weight",  # (N, 6, 1, 1) -> (N, 6)
    "cam.conv2.bias": "meta_learner.expand.bias",
    "classifier.weight": "global_classifier.weight",  # (n_global, D, 1, 1, 1) -> (n_global, D)
    "classifier.bias": "global_classifier.bias",
}
_OPTIONAL = {"cam.conv1.bn.num_batches_tracked"}  # absent from very old checkpoints


def _strip_module(name: str) -> str:
    """Remove every DataParallel ``module.`` part: ``cam.module.conv2.bias`` -> ``cam.conv2.bias``."""
    return ".".join(part for part in name.split(".") if part != "module")


def convert_official_mastaf(
    state_dict: Mapping[str, Tensor],
    config: Mapping[str, Any],
    ignore_prefixes: tuple[str, ...] = ("base.",),
) -> MASTAFHead:
    """Build a ``MASTAFHead`` from the released code's weights, in eval mode.

    ``config`` needs ``C, T, H, W`` (positions N = T*H*W, channels D = C) and may give
    ``alpha`` (1), ``scale_cls`` (7) and ``n_global`` (0: no global classifier); ``way``,
    ``shot`` and ``nq`` are accepted and ignored. Parameter names are the released ones
    (``cam.conv1.conv.*``, ``cam.conv1.bn.*`` with running statistics, ``cam.conv2.*``,
    ``classifier.*``); ``module.`` parts from DataParallel are removed. Keys under
    ``ignore_prefixes`` (the backbone, ``base.*``, converted separately) are skipped.
    Missing or unexpected keys, or shapes that disagree with ``config``, raise ``ValueError``
    listing them.
    """
    for key in ("C", "T", "H", "W"):
        if key not in config:
            raise ValueError(f"convert_official_mastaf: config lacks {key!r} (needs C, T, H, W), got {sorted(config)}")
    channels = int(config["C"])
    positions = int(config["T"]) * int(config["H"]) * int(config["W"])
    n_global = int(config.get("n_global") or 0)

    renamed: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for name, value in state_dict.items():
        clean = _strip_module(name)
        if any(clean.startswith(prefix) for prefix in ignore_prefixes):
            continue
        if clean not in _OFFICIAL_NAMES or (clean.startswith("classifier.") and not n_global):
            unexpected.append(name)
            continue
        renamed[_OFFICIAL_NAMES[clean]] = value
    expected = {k for k in _OFFICIAL_NAMES if n_global or not k.startswith("classifier.")}
    present = {_strip_module(n) for n in state_dict}
    missing = sorted(expected - present - _OPTIONAL)
    if missing or unexpected:
        raise ValueError(
            "convert_official_mastaf: state dict does not match the released MASTAF head "
            f"(n_global={n_global}): missing keys {missing}, unexpected keys {sorted(unexpected)}"
        )

    head = MASTAFHead(
        positions=positions,
        channels=channels,
        n_global=n_global,
        alpha=float(config.get("alpha", 1.0)),
        scale=float(config.get("scale_cls", 7.0)),
    )
    ours = head.state_dict()
    for name, value in renamed.items():
        target = ours[name]
        # A released 1x1(x1) conv weight is our Linear weight with trailing unit axes.
        trailing = tuple(value.shape[target.dim():])
        if tuple(value.shape[: target.dim()]) != tuple(target.shape) or any(s != 1 for s in trailing):
            raise ValueError(
                f"convert_official_mastaf: {name} has shape {tuple(value.shape)}, expected "
                f"{tuple(target.shape)} (positions={positions}, channels={channels}, n_global={n_global})"
            )
        renamed[name] = value.reshape(target.shape).to(dtype=target.dtype)
    head.load_state_dict(renamed, strict=False)  # names were checked above
    return head.eval()
