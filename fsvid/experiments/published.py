"""The papers' published accuracies, as data: one table per (sweep, dataset), with its source.

Papers: STRM (Thatipelli et al., CVPR 2022; ResNet-50, 5-way 5-shot), TRX (Perrett et al.,
CVPR 2021) and MASTAF (Liu et al., WACV 2023; appendix, 5-way 1-shot, where "SSv2-all" is the
OTAM split); the numbers are also listed in METHODS.md. Only numbers the papers state are
here. Variant names are those of the sweeps (:data:`fsvid.experiments.definitions.SWEEPS`),
datasets the ``data.dataset`` names of the benchmarks.

    >>> published("strm_joint", "ssv2_OTAM", "Jnt-ST (2 l)")
    65.8
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedTable:
    """The accuracies (%) a paper reports for variants of one sweep on one dataset."""

    sweep: str
    dataset: str
    source: str
    """The paper, table or figure (and setting) the numbers come from."""
    accuracies: Mapping[str, float]
    """Variant name -> accuracy (%)."""


_CARDINALITIES = ("{1}", "{2}", "{3}", "{4}", "{2,3}", "{2,4}", "{3,4}", "{2,3,4}")

PUBLISHED_TABLES: tuple[PublishedTable, ...] = (
    PublishedTable("strm_table1", "kinetics_CMN", "STRM Table 1",
                   {"TRX (Kinetics)": 85.9, "STRM (Kinetics)": 86.7}),
    PublishedTable("strm_table1", "ssv2_OTAM", "STRM Table 1", {"TRX (SSv2)": 64.6, "STRM (SSv2)": 68.1}),
    PublishedTable("strm_table1", "hmdb_ARN", "STRM Table 1", {"TRX (HMDB)": 75.6, "STRM (HMDB)": 77.3}),
    PublishedTable("strm_table1", "ucf_ARN", "STRM Table 1", {"TRX (UCF)": 96.1, "STRM (UCF)": 96.9}),
    PublishedTable("strm_cardinalities", "kinetics_CMN", "STRM Table 2",
                   dict(zip(_CARDINALITIES, (86.2, 86.5, 86.0, 85.3, 85.9, 86.1, 85.7, 86.1)))),
    PublishedTable("strm_cardinalities", "ssv2_OTAM", "STRM Table 2",
                   dict(zip(_CARDINALITIES, (67.2, 68.1, 66.9, 66.4, 67.1, 67.3, 67.3, 68.1)))),
    PublishedTable("strm_joint", "ssv2_OTAM", "STRM Table 3",
                   {"TRM": 62.1, "Jnt-ST (1 l)": 64.7, "Jnt-ST (2 l)": 65.8, "STRM": 68.1}),
    PublishedTable("strm_mechanisms", "ssv2_OTAM", "STRM Table 4",
                   {"TRM": 62.1, "SA/SA": 64.2, "MLP/SA": 64.1, "MLP/MLP": 65.0, "SA/MLP": 68.1}),
    PublishedTable("strm_components", "ssv2_OTAM", "STRM Fig. 6 (left)",
                   {"TRM": 62.1, "PLE+TRM": 63.7, "FLE+TRM": 65.3, "PLE+FLE+TRM": 66.8, "STRM": 68.1}),
    PublishedTable("strm_tuples", "ssv2_OTAM", "STRM Fig. 6 (right), 20% and all tuples", {"20%": 65.4, "100%": 68.1}),
    PublishedTable("strm_shots", "ssv2_OTAM", "STRM Fig. 7, the 5-shot points (= Fig. 6 left and Table 1)",
                   {"TRM K=5": 62.1, "TRX K=5": 64.6, "STRM K=5": 68.1}),
    PublishedTable("strm_lambda", "ssv2_OTAM", "STRM Fig. 8 and Sec. 4: the best, lambda = 0.1", {"lambda=0.1": 68.1}),
    PublishedTable("strm_class_gain", "ssv2_OTAM", "STRM Fig. 6 (left): the two models of Fig. 9",
                   {"TRM": 62.1, "STRM": 68.1}),
    PublishedTable("trx_cardinalities", "ssv2_OTAM", "TRX Table 1 (as quoted in STRM Table 1)", {"{2,3}": 64.6}),
    PublishedTable("trx_cardinalities", "kinetics_CMN", "TRX Table 1 (as quoted in STRM Table 1)", {"{2,3}": 85.9}),
    PublishedTable("mastaf_ablations", "ucf_ARN",
                   "MASTAF appendix Tables 1 (No-Global), 2 (NoML-Mean) and 3 (NoRes), UCF101",
                   {"MASTAF": 90.6, "No-Global": 89.4, "NoML-Mean": 89.9, "NoRes": 88.9}),
    PublishedTable("mastaf_ablations", "ssv2_OTAM",
                   "MASTAF appendix Tables 1 (No-Global), 2 (NoML-Mean) and 3 (NoRes), SSv2-all",
                   {"MASTAF": 50.3, "No-Global": 49.5, "NoML-Mean": 49.3, "NoRes": 49.2}),
)


def index_tables(tables: Sequence[PublishedTable]) -> dict[str, dict[str, dict[str, float]]]:
    """``{sweep: {dataset: {variant: accuracy}}}`` of ``tables``; two tables for the same
    sweep and dataset are refused (``ValueError`` naming both sources)."""
    index: dict[str, dict[str, dict[str, float]]] = {}
    sources: dict[tuple[str, str], str] = {}
    for table in tables:
        key = (table.sweep, table.dataset)
        if key in sources:
            raise ValueError(f"published numbers of sweep {table.sweep!r} on {table.dataset!r} are given twice: "
                             f"{sources[key]!r} and {table.source!r}")
        sources[key] = table.source
        index.setdefault(table.sweep, {})[table.dataset] = dict(table.accuracies)
    return index


#: Published accuracies (%), ``PUBLISHED[sweep][dataset][variant]``, from :data:`PUBLISHED_TABLES`.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = index_tables(PUBLISHED_TABLES)


def published(sweep: str, dataset: str, variant: str) -> float | None:
    """The paper's accuracy for ``variant`` of ``sweep`` on ``dataset``, or ``None``."""
    return PUBLISHED.get(sweep, {}).get(dataset, {}).get(variant)
