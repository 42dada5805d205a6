"""The slow reference: TRX written the straightforward way, for ``bench_heads.py``.

The style of the released TRX code: build every tuple's concatenation with ``index_select``
(T copies of w frames), apply the tuple-sized linear maps to all of them, then a Python loop
over the classes, and inside it a loop over the queries for the softmax. It reuses the
parameters of a ``fsvid.heads.TRXHead`` so that the two give the same logits and gradients
(the benchmark checks ``allclose``). Not part of the package: a yardstick only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fsvid.heads.trx import TemporalCrossTransformer, TRXHead


def reference_cross_transformer(
    transformer: TemporalCrossTransformer, support: Tensor, support_labels: Tensor, queries: Tensor
) -> Tensor:
    """One cardinality. support (support videos, L, D), queries (queries, L, D) -> (queries, way)."""
    n_queries, n_support = queries.shape[0], support.shape[0]
    support = transformer.positional_encoding(support)
    queries = transformer.positional_encoding(queries)

    # Every tuple as the concatenation of its frames: (videos, T, w*D).
    tuples = list(transformer.tuples)
    support = torch.stack([torch.index_select(support, -2, t).reshape(n_support, -1) for t in tuples], dim=-2)
    queries = torch.stack([torch.index_select(queries, -2, t).reshape(n_queries, -1) for t in tuples], dim=-2)
    n_tuples = len(tuples)

    support_keys = transformer.key_norm(transformer.key_map(support))  # (support videos, T, D')
    query_keys = transformer.key_norm(transformer.key_map(queries))  # (queries, T, D')
    support_values = transformer.value_map(support)
    query_values = transformer.value_map(queries)

    classes = torch.unique(support_labels)
    logits = torch.zeros(n_queries, len(classes), device=queries.device, dtype=query_values.dtype)
    for column, c in enumerate(classes):
        members = torch.nonzero(support_labels == c).flatten()
        class_keys = torch.index_select(support_keys, 0, members)  # (shots, T, D')
        class_values = torch.index_select(support_values, 0, members)
        shots = class_keys.shape[0]

        scores = torch.matmul(query_keys.unsqueeze(1), class_keys.transpose(-2, -1))  # (queries, shots, T, T)
        scores = scores / math.sqrt(transformer.out_dim)
        scores = scores.permute(0, 2, 1, 3).reshape(n_queries, n_tuples, -1)  # (queries, T, shots*T)
        scores = torch.cat([torch.softmax(scores[i], dim=-1) for i in range(n_queries)])
        scores = scores.reshape(n_queries, n_tuples, shots, n_tuples).permute(0, 2, 1, 3)

        prototype = torch.matmul(scores, class_values).sum(dim=1)  # (queries, T, D')
        distance = torch.norm(query_values - prototype, dim=[-2, -1]) ** 2 / n_tuples
        logits[:, column] = -distance
    return logits


def reference_trx_logits(head: TRXHead, support: Tensor, support_labels: Tensor, query: Tensor) -> Tensor:
    """The mean over the head's cardinalities of ``reference_cross_transformer``."""
    per_cardinality = [reference_cross_transformer(t, support, support_labels, query) for t in head.cross_transformers]
    return torch.stack(per_cardinality, dim=-1).mean(dim=-1)


def tuple_loop_cross_transformer(
    transformer: TemporalCrossTransformer, support: Tensor, support_labels: Tensor, queries: Tensor
) -> Tensor:
    """One cardinality, as METHODS.md states it, loop by loop: every tuple is concatenated and
    projected on its own, and for every class and every query tuple the attention over the
    class's support tuples is computed separately (vectorised over the queries only)."""
    support = transformer.positional_encoding(support)
    queries = transformer.positional_encoding(queries)

    def project(videos: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = [], []
        for frames in transformer.tuples:  # one tuple at a time: [x_i; x_j; ...] (videos, w*D)
            concatenated = videos[:, frames].flatten(1)
            keys.append(transformer.key_norm(transformer.key_map(concatenated)))
            values.append(transformer.value_map(concatenated))
        return torch.stack(keys, 1), torch.stack(values, 1)  # (videos, T, D') each

    support_keys, support_values = project(support)
    query_keys, query_values = project(queries)
    n_tuples = len(transformer.tuples)
    classes = torch.unique(support_labels)
    columns = []
    for c in classes:
        members = support_labels == c
        class_keys = support_keys[members].flatten(0, 1)  # (shots*T, D')
        class_values = support_values[members].flatten(0, 1)
        distance = torch.zeros(queries.shape[0], dtype=query_values.dtype, device=queries.device)
        for t in range(n_tuples):  # one query tuple at a time
            scores = query_keys[:, t] @ class_keys.T / math.sqrt(transformer.out_dim)  # (queries, shots*T)
            prototype = torch.softmax(scores, dim=-1) @ class_values  # (queries, D')
            distance = distance + ((query_values[:, t] - prototype) ** 2).sum(-1)
        columns.append(-distance / n_tuples)
    return torch.stack(columns, dim=-1)  # (queries, way)


def tuple_loop_trx_logits(head: TRXHead, support: Tensor, support_labels: Tensor, query: Tensor) -> Tensor:
    """The mean over the head's cardinalities of ``tuple_loop_cross_transformer``."""
    per_cardinality = [tuple_loop_cross_transformer(t, support, support_labels, query) for t in head.cross_transformers]
    return torch.stack(per_cardinality, dim=-1).mean(dim=-1)
