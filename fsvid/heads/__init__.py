"""Few-shot heads: ``head(support, support_labels, query, query_labels=None) -> HeadOutput``.

- ``PrototypeHead``: frame-mean prototypes (baseline);
- ``TRXHead``: the temporal-relational cross-transformer (TRX; STRM's TRM with Omega = {2});
- ``STRMHead``: spatio-temporal relation modeling (PLE, FLE, TRM, query-class classifier);
- ``MASTAFHead``: model-agnostic spatio-temporal attention fusion (``fsvid.heads.mastaf``).

For fast evaluation on cached features (``fsvid.features``), the prototype, TRX and STRM heads
also have a per-video form in their own files: ``PrecomputedPrototypes``, ``PrecomputedTRX``,
``PrecomputedSTRM`` (``scorer(support, query)`` from video indices, equal to the head).
"""

from .common import HeadOutput, SupportGroups, group_support, labels_to_columns
from .mastaf import MASTAFHead
from .positional import PositionalEncoding
from .prototype import PrecomputedPrototypes, PrototypeHead
from .strm import STRM_ABLATIONS, PrecomputedSTRM, STRMHead
from .trx import PrecomputedTRX, TemporalCrossTransformer, TRXHead

__all__ = [
    "HeadOutput",
    "SupportGroups",
    "group_support",
    "labels_to_columns",
    "PositionalEncoding",
    "PrototypeHead",
    "TRXHead",
    "TemporalCrossTransformer",
    "STRMHead",
    "STRM_ABLATIONS",
    "MASTAFHead",
    "PrecomputedPrototypes",
    "PrecomputedTRX",
    "PrecomputedSTRM",
]
