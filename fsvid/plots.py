"""The papers' tables and figures drawn from a sweep results CSV, and the analysis figures.

Results figures (one per sweep of :mod:`fsvid.sweeps`; each takes the results CSV path or a
list of row dicts, returns the matplotlib ``Figure`` and saves it when ``path`` is given):

    strm_table1          STRM Table 1     accuracy per benchmark (+ time reversal on synthetic data)
    strm_cardinalities   STRM Table 2     tuple cardinalities
    strm_joint           STRM Table 3     joint spatio-temporal self-attention
    strm_mechanisms      STRM Table 4     PLE / FLE mechanism
    strm_components      STRM Fig. 6 left adding each component
    strm_tuples          STRM Fig. 6 right fraction of the tuples kept
    strm_shots           STRM Fig. 7      1-5 and 10 shots
    strm_lambda          STRM Fig. 8      lambda
    strm_class_gain      STRM Fig. 9      per-class gain of STRM over TRM
    trx_cardinalities    TRX              cardinalities
    mastaf_ablations     MASTAF appendix Tables 1-3
    mastaf_scores        MASTAF           neighbour / self / cross / fused
    seed_spread          (ours)           TRM and STRM with three training seeds

Ours are bars (or lines) with their 95% confidence interval. The published numbers
(:data:`fsvid.sweeps.PUBLISHED`) stand beside ours on the same axes when the run used the
paper's dataset; for runs on another dataset (the synthetic one) they are drawn in a separate
panel, labelled with their dataset, to compare orderings rather than values.

Analysis figures (take tensors a notebook computes with a trained model):

    activation_magnitude + frame_activation_figure   feature magnitude over frames (STRM Fig. 1, 5)
    best_tuple_matches + tuple_matches_figure        best support tuples for query tuples (STRM Fig. 10-14)
    mastaf_angles + prototype_angles_figure          query-prototype angles, neighbour/self/cross/fused
                                                     (MASTAF appendix Fig. 1)
    project_2d + prototype_projection_figure         prototypes in 2-D (PCA or classical MDS, not t-SNE)
    per_class_gain_figure                            per-class gains of two evaluated runs

Only numpy, csv and matplotlib here (no pandas).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fsvid.sweeps import PAPER_DATASET, PUBLISHED, SWEEPS, get_sweep, read_csv

#: Readable names of the benchmarks (the ``data.dataset`` values).
DATASET_LABELS = {
    "synthetic": "synthetic",
    "ssv2_OTAM": "SSv2-full",
    "ssv2_CMN": "SSv2-small",
    "kinetics_CMN": "Kinetics-100",
    "hmdb_ARN": "HMDB51",
    "ucf_ARN": "UCF101",
}

#: Bar colours of STRM Fig. 6 (left): TRM red, PLE orange, FLE green, PLE+FLE light blue, STRM blue.
COMPONENT_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#7fb8e6", "#1f4e9c")

NUMERIC_FIELDS = (
    "accuracy", "ci95", "tasks", "reversal_accuracy", "reversal_ci95", "reversal_tasks", "published",
    "best_val_accuracy", "train_tasks", "train_seconds", "way", "shot", "paired_difference", "paired_ci95",
)


def _plt() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline") and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


# ----------------------------------------------------------------------------- reading results


def load_results(source: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a results CSV (a path, or rows already read) with numbers as floats (``None``
    for empty cells) and ``per_class_accuracy`` as a dict."""
    rows = read_csv(source) if isinstance(source, (str, Path)) else [dict(r) for r in source]
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise FileNotFoundError(f"no results CSV at {source}; run `fsvid sweep run ...` first")
    parsed = []
    for row in rows:
        row = dict(row)
        for key in NUMERIC_FIELDS:
            value = row.get(key)
            if value is None or value == "":
                row[key] = None
            else:
                try:
                    row[key] = float(value)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"results row {row.get('sweep')}/{row.get('variant')}: {key}={value!r} is not a number") from error
        per_class = row.get("per_class_accuracy") or {}
        row["per_class_accuracy"] = json.loads(per_class) if isinstance(per_class, str) else dict(per_class)
        parsed.append(row)
    return parsed


def sweep_rows(
    results: str | Path | Sequence[Mapping[str, Any]], sweep: str, scale: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """The evaluated rows of ``sweep`` (optionally one scale / dataset), in the sweep's variant
    order. Raises ``ValueError`` when there is none."""
    definition = get_sweep(sweep)
    order = {v.name: i for i, v in enumerate(definition.variants)}
    rows = [
        r for r in load_results(results)
        if r["sweep"] == sweep and r["accuracy"] is not None
        and (scale is None or r.get("scale") == scale) and (dataset is None or r.get("dataset") == dataset)
    ]
    if not rows:
        raise ValueError(f"the results hold no evaluated row of sweep {sweep!r}"
                         + (f" at scale {scale}" if scale else "") + (f" on {dataset}" if dataset else ""))
    return sorted(rows, key=lambda r: (r.get("dataset", ""), order.get(r["variant"], len(order))))


def _single_dataset(rows: list[dict[str, Any]], sweep: str) -> tuple[list[dict[str, Any]], str]:
    """Rows of one dataset (the paper's dataset if present, else the first one)."""
    datasets = sorted({r["dataset"] for r in rows})
    chosen = PAPER_DATASET.get(sweep) if PAPER_DATASET.get(sweep) in datasets else datasets[0]
    return [r for r in rows if r["dataset"] == chosen], chosen


def _label(dataset: str) -> str:
    return DATASET_LABELS.get(dataset, dataset)


def _finish(fig: Any, path: str | Path | None, dpi: int = 100) -> Any:
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _chance(rows: Sequence[Mapping[str, Any]]) -> float | None:
    ways = {r.get("way") for r in rows if r.get("way")}
    return 100.0 / ways.pop() if len(ways) == 1 else None


# ----------------------------------------------------------------------------- generic panels


def _bars(ax: Any, names: Sequence[str], values: Sequence[float], errors: Sequence[float] | None, colours: Any,
          title: str, chance: float | None = None, offset: float = 0.0, width: float = 0.8, label: str | None = None) -> Any:
    x = np.arange(len(names)) + offset
    bars = ax.bar(x, values, width, yerr=errors, capsize=3 if errors is not None else 0, color=colours, label=label)
    _tick_names(ax, names)
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=0.8, label=f"chance ({chance:.0f}%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    return bars


def _tick_names(ax: Any, names: Sequence[str]) -> None:
    long = max(len(n) for n in names) > 6
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)


def _value_labels(ax: Any, x: Sequence[float], values: Sequence[float], errors: Sequence[float] | None = None) -> None:
    """The value above each bar and its error bar (call after the y-range is set)."""
    low, high = ax.get_ylim()
    errors = errors if errors is not None else [0.0] * len(values)
    for xi, value, error in zip(x, values, errors):
        if value is not None and not np.isnan(value):
            top = min(value + (error or 0.0), high)
            ax.text(xi, top + 0.01 * (high - low), f"{value:.1f}", ha="center", va="bottom", fontsize=6)


def _zoom(ax: Any, values: Sequence[float], errors: Sequence[float] | None = None, floor: float = 0.0) -> None:
    """A y-range around the values (as the papers do), keeping their error bars in view."""
    errors = errors if errors is not None else [0.0] * len(values)
    low = min(v - e for v, e in zip(values, errors))
    high = max(v + e for v, e in zip(values, errors))
    span = max(high - low, 2.0)
    ax.set_ylim(max(floor, low - 0.35 * span), min(100.0, high + 0.35 * span))


def _published_datasets(sweep: str) -> list[str]:
    """Datasets with published numbers for ``sweep``, the paper's main one first."""
    table = PUBLISHED.get(sweep, {})
    main = PAPER_DATASET.get(sweep)
    return sorted((d for d in table if table[d]), key=lambda d: (d != main, d))


def _published_panel(ax: Any, sweep: str, names: Sequence[str], dataset: str) -> None:
    """Bars of the published numbers of ``names`` on ``dataset`` (missing ones left empty)."""
    values = [PUBLISHED[sweep][dataset].get(n, np.nan) for n in names]
    ax.bar(np.arange(len(names)), values, 0.6, color="#bbbbbb")
    _tick_names(ax, names)
    _zoom(ax, [v for v in values if not np.isnan(v)])
    _value_labels(ax, np.arange(len(names)), values)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"published, {_label(dataset)}", fontsize=9)


def _table_panel(ax: Any, rows: Sequence[Mapping[str, Any]], sweep: str, dataset: str) -> Any:
    """The paper's table: variant, ours ± CI (rank), time reversal, published per dataset (rank)."""
    ours_rank = _ranks([r["accuracy"] for r in rows])
    has_reversal = any(r.get("reversal_accuracy") is not None for r in rows)
    reference = next((r.get("reference") for r in rows if r.get("paired_difference") is not None), None)
    header = ["variant", f"ours, {_label(dataset)} (rank)"] + ([f"ours - {reference}, paired"] if reference else []) + (
        ["ours, time reversal"] if has_reversal else [])
    columns = []
    for paper_dataset in _published_datasets(sweep):
        values = [PUBLISHED[sweep][paper_dataset].get(r["variant"]) for r in rows]
        if any(v is not None for v in values):
            header.append(f"published, {_label(paper_dataset)} (rank)")
            columns.append((values, _ranks(values)))
    cells = []
    for i, (r, o_rank) in enumerate(zip(rows, ours_rank)):
        line = [r["variant"], f"{r['accuracy']:.1f} ± {r['ci95']:.1f} ({o_rank})"]
        if reference:
            d = r.get("paired_difference")
            line.append("-" if d is None else ("reference" if r["variant"] == reference else f"{d:+.1f} ± {r['paired_ci95']:.1f}"))
        if has_reversal:
            line.append("-" if r.get("reversal_accuracy") is None else f"{r['reversal_accuracy']:.1f} ± {r['reversal_ci95']:.1f}")
        for values, ranks in columns:
            line.append("-" if values[i] is None else f"{values[i]:.1f} ({ranks[i]})")
        cells.append(line)
    ax.set_axis_off()
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.25)
    return table


def _ranks(values: Sequence[float | None]) -> list[str]:
    """1 = best; '' for missing values; ties share the rank."""
    present = sorted({v for v in values if v is not None}, reverse=True)
    return ["" if v is None else str(1 + sum(1 for p in present if p > v)) for v in values]


def comparison_figure(
    results: str | Path | Sequence[Mapping[str, Any]],
    sweep: str,
    path: str | Path | None = None,
    table: bool = True,
    colours: Sequence[str] | None = None,
    dpi: int = 100,
) -> Any:
    """Ours (bars with 95% CI) beside the published numbers, and below them the paper's table.

    When the runs used a dataset with published numbers, the published value is a grey bar
    beside ours in each group; otherwise each published dataset gets a panel of its own
    (other data: compare orderings, not values).
    """
    plt = _plt()
    rows, dataset = _single_dataset(sweep_rows(results, sweep), sweep)
    names = [r["variant"] for r in rows]
    values = [r["accuracy"] for r in rows]
    errors = [r["ci95"] for r in rows]
    same_data = bool(PUBLISHED.get(sweep, {}).get(dataset))
    others = [] if same_data else _published_datasets(sweep)
    columns = 1 + len(others)
    width = max(3.2, 0.75 * len(names) + 1.2)
    table_height = 0.28 * (len(rows) + 1) + 0.3 if table else 0.0
    fig = plt.figure(figsize=(max(width * columns, 7.0 if table else 0.0), 3.4 + table_height + 0.4))
    grid = fig.add_gridspec(2 if table else 1, columns, height_ratios=[3.4, table_height] if table else [1])
    ax = fig.add_subplot(grid[0, 0])
    colour = list(colours)[: len(names)] if colours is not None else "#4c72b0"
    if same_data:
        paper = [PUBLISHED[sweep][dataset].get(n, np.nan) for n in names]
        _bars(ax, names, values, errors, colour, f"{_label(dataset)}: ours vs published", offset=-0.2, width=0.4,
              label="ours")
        ax.bar(np.arange(len(names)) + 0.2, paper, 0.4, color="#bbbbbb", label="published")
        _zoom(ax, [v for v in values + paper if not np.isnan(v)], None)
        _value_labels(ax, np.arange(len(names)) - 0.2, values, errors)
        _value_labels(ax, np.arange(len(names)) + 0.2, paper)
        ax.legend(fontsize=7)
    else:
        chance = _chance(rows)
        _bars(ax, names, values, errors, colour, f"ours, {_label(dataset)} ({int(rows[0]['tasks'] or 0)} test tasks, 95% CI)",
              chance=chance)
        _zoom(ax, values, errors)
        _value_labels(ax, np.arange(len(names)), values, errors)
        if chance is not None and ax.get_ylim()[0] <= chance:
            ax.legend(fontsize=7, loc="lower right")
        for column, paper_dataset in enumerate(others, start=1):
            _published_panel(fig.add_subplot(grid[0, column]), sweep, names, paper_dataset)
    if table:
        _table_panel(fig.add_subplot(grid[1, :]), rows, sweep, dataset)
    fig.suptitle(SWEEPS[sweep].paper, fontsize=10)
    return _finish(fig, path, dpi)


# ----------------------------------------------------------------------------- one per sweep


def strm_table1(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Table 1: TRX and STRM per benchmark. On synthetic data: test accuracy and
    time-reversal accuracy per method; beside it the published table (TRX vs STRM per benchmark)."""
    plt = _plt()
    rows = sweep_rows(results, "strm_table1")
    synthetic = [r for r in rows if r["dataset"] == "synthetic"]
    real = [r for r in rows if r["dataset"] != "synthetic"]
    panels = (2 if synthetic else 0) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.6), squeeze=False)
    axes = list(axes[0])
    if synthetic:
        names = [r["variant"] for r in synthetic]
        colours = ["#9e9e9e", "#4c72b0", "#dd8452", "#55a868"][: len(names)]
        _bars(axes[0], names, [r["accuracy"] for r in synthetic], [r["ci95"] for r in synthetic], colours,
              f"synthetic, 5-way {int(synthetic[0]['shot'])}-shot", chance=_chance(synthetic))
        axes[0].set_ylim(0, 105)
        _value_labels(axes[0], np.arange(len(names)), [r["accuracy"] for r in synthetic], [r["ci95"] for r in synthetic])
        reversal = [r for r in synthetic if r.get("reversal_accuracy") is not None]
        if reversal:
            _bars(axes[1], [r["variant"] for r in reversal], [r["reversal_accuracy"] for r in reversal],
                  [r["reversal_ci95"] for r in reversal], colours, "synthetic, time-reversed pairs (2-way)", chance=50.0)
            axes[1].set_ylim(0, 105)
            _value_labels(axes[1], np.arange(len(reversal)), [r["reversal_accuracy"] for r in reversal],
                          [r["reversal_ci95"] for r in reversal])
            axes[1].legend(fontsize=7, loc="lower right")
        else:
            axes[1].set_axis_off()
    ax = axes[-1]
    benchmarks = ["Kinetics", "SSv2", "HMDB", "UCF"]
    datasets = ["kinetics_CMN", "ssv2_OTAM", "hmdb_ARN", "ucf_ARN"]
    ours = {(r["dataset"], r["method"]): r for r in real}
    for i, method in enumerate(("TRX", "STRM")):
        paper = [PUBLISHED["strm_table1"][d].get(f"{method} ({b})", np.nan) for d, b in zip(datasets, benchmarks)]
        x = np.arange(4) + (i - 0.5) * 0.4
        ax.bar(x, paper, 0.2 if real else 0.4, color=["#4c72b0", "#dd8452"][i], alpha=0.45 if real else 0.9,
               label=f"{method} published")
        if real:
            mine = [ours.get((d, method.lower())) for d in datasets]
            ax.bar(x + 0.2, [m["accuracy"] if m else np.nan for m in mine], 0.2,
                   yerr=[m["ci95"] if m else 0 for m in mine], color=["#4c72b0", "#dd8452"][i], label=f"{method} ours")
    ax.set_xticks(np.arange(4))
    ax.set_xticklabels(benchmarks)
    ax.set_ylim(50, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("benchmarks, 5-way 5-shot" + ("" if real else " (published)"), fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(SWEEPS["strm_table1"].paper, fontsize=10)
    return _finish(fig, path, dpi)


def strm_cardinalities(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Table 2: accuracy for each set of tuple cardinalities Omega."""
    return comparison_figure(results, "strm_cardinalities", path, dpi=dpi)


def strm_joint(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Table 3: TRM, joint spatio-temporal self-attention (1 or 2 layers), STRM."""
    return comparison_figure(results, "strm_joint", path, dpi=dpi)


def strm_mechanisms(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Table 4: PLE / FLE each self-attention (SA) or MLP-mixer (MLP)."""
    return comparison_figure(results, "strm_mechanisms", path, dpi=dpi)


def strm_components(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Fig. 6 (left): TRM, PLE+TRM, FLE+TRM, PLE+FLE+TRM, STRM, in the paper's colours."""
    return comparison_figure(results, "strm_components", path, table=True, colours=COMPONENT_COLOURS, dpi=dpi)


def trx_cardinalities(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """TRX with each set of tuple cardinalities."""
    return comparison_figure(results, "trx_cardinalities", path, dpi=dpi)


def mastaf_ablations(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """MASTAF appendix Tables 1-3: MASTAF vs No-Global, NoML-Mean, NoRes (5-way 1-shot)."""
    return comparison_figure(results, "mastaf_ablations", path, colours=("#1f4e9c", "#8c8c8c", "#b07aa1", "#e15759"),
                             dpi=dpi)


def mastaf_scores(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """MASTAF: nearest prototype (neighbour), self-attention only, cross-attention only, fused."""
    return comparison_figure(results, "mastaf_scores", path, dpi=dpi)


def _line_figure(
    results: Any, sweep: str, x_of: Callable[[str], tuple[str, float]], xlabel: str, title: str,
    path: str | Path | None, dpi: int, log_x: bool = False, reference: Mapping[str, float] | None = None,
) -> Any:
    """Accuracy against a numeric setting, one line per series (``x_of(variant) -> (series, x)``),
    95% CI as error bars; published points as hollow markers on a second axis when the data differ."""
    plt = _plt()
    rows, dataset = _single_dataset(sweep_rows(results, sweep), sweep)
    same_data = bool(PUBLISHED.get(sweep, {}).get(dataset))
    fig, axes = plt.subplots(1, 1 if same_data else 2, figsize=(4.6 if same_data else 8.6, 3.6), squeeze=False)
    axes = axes[0]
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for r in rows:
        name, x = x_of(r["variant"])
        series.setdefault(name, []).append((x, r))
    for i, (name, points) in enumerate(series.items()):
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        axes[0].errorbar(xs, [p[1]["accuracy"] for p in points], yerr=[p[1]["ci95"] for p in points], marker="o",
                         capsize=3, color=f"C{i}", label=f"{name} (ours)")
    paper = PUBLISHED.get(sweep, {}).get(dataset if same_data else PAPER_DATASET.get(sweep, ""), {})
    target = axes[0] if same_data else axes[1]
    for i, name in enumerate(series or {"": []}):
        points = [(x_of(v)[1], value) for v, value in paper.items() if x_of(v)[0] == name]
        if points:
            target.plot(*zip(*sorted(points)), marker="s", linestyle=":", color=f"C{i}", fillstyle="none",
                        label=f"{name} (published, {_label(dataset if same_data else PAPER_DATASET[sweep])})")
    for label, value in (reference or {}).items():
        target.axhline(value, color="grey", linestyle="--", linewidth=0.8, label=label)
    chance = _chance(rows)
    if chance is not None:
        axes[0].axhline(chance, color="black", linestyle="--", linewidth=0.8, label=f"chance ({chance:.0f}%)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        if log_x:
            ax.set_xscale("log")
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[0].set_title(f"ours, {_label(dataset)}", fontsize=9)
    if not same_data:
        axes[1].set_title("published (other data)", fontsize=9)
        if not paper:
            axes[1].text(0.5, 0.5, "no published numbers", ha="center", va="center", transform=axes[1].transAxes)
        else:
            axes[1].set_xlim(axes[0].get_xlim())
    fig.suptitle(title, fontsize=10)
    return _finish(fig, path, dpi)


def strm_tuples(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Fig. 6 (right): accuracy against the percentage of tuples kept; TRX (Omega={2,3},
    all tuples) as a reference line, published 64.6 on SSv2."""
    return _line_figure(results, "strm_tuples", lambda v: ("STRM", float(v.rstrip("%"))), "tuples kept (%)",
                        SWEEPS["strm_tuples"].paper, path, dpi, reference={"TRX {2,3}, published (SSv2)": 64.6})


def strm_shots(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Fig. 7: accuracy against the number of shots K, one line per method."""

    def x_of(variant: str) -> tuple[str, float]:
        method, k = variant.split(" K=")
        return method, float(k)

    return _line_figure(results, "strm_shots", x_of, "shots K", SWEEPS["strm_shots"].paper, path, dpi)


def strm_lambda(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Fig. 8: accuracy against lambda, the weight of the query-class loss."""
    return _line_figure(results, "strm_lambda", lambda v: ("STRM", float(v.split("=")[1])), "lambda",
                        SWEEPS["strm_lambda"].paper, path, dpi, log_x=True)


def per_class_gain_figure(
    per_class_a: Mapping[str, float],
    per_class_b: Mapping[str, float],
    label_a: str = "STRM",
    label_b: str = "TRM",
    title: str | None = None,
    path: str | Path | None = None,
    dpi: int = 100,
) -> Any:
    """Per-class accuracy gain ``a - b`` (percentage points), sorted, as STRM Fig. 9.

    ``per_class_*``: class name -> accuracy (%), e.g. ``eval_test.json["per_class_accuracy"]``
    of two runs evaluated on the same tasks. Only classes present in both are drawn."""
    plt = _plt()
    classes = sorted(set(per_class_a) & set(per_class_b), key=lambda c: per_class_a[c] - per_class_b[c], reverse=True)
    if not classes:
        raise ValueError("the two per-class accuracy tables share no class")
    gains = np.array([per_class_a[c] - per_class_b[c] for c in classes])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.42 * len(classes) + 1.5), 3.8))
    ax.bar(range(len(classes)), gains, color=np.where(gains >= 0, "#1f77b4", "#d62728"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels([c.replace("_", " ") for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"{label_a} - {label_b} (points)")
    improved = int((gains > 0).sum())
    ax.set_title(title or f"per-class gain of {label_a} over {label_b}: better on {improved} of {len(classes)} classes",
                 fontsize=9)
    return _finish(fig, path, dpi)


def strm_class_gain(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Fig. 9: per-class gain of STRM over TRM, from the per-class accuracies in the CSV
    (published: gains on 21 of 24 SSv2 test classes)."""
    rows, dataset = _single_dataset(sweep_rows(results, "strm_class_gain"), "strm_class_gain")
    by_variant = {r["variant"]: r for r in rows}
    missing = [v for v in ("STRM", "TRM") if v not in by_variant or not by_variant[v]["per_class_accuracy"]]
    if missing:
        raise ValueError(f"strm_class_gain needs the per-class accuracies of {', '.join(missing)}")
    a, b = by_variant["STRM"], by_variant["TRM"]
    title = (f"STRM Fig. 9, {_label(dataset)}: STRM {a['accuracy']:.1f} vs TRM {b['accuracy']:.1f} "
             "(published, SSv2: better on 21 of 24 classes)")
    fig = per_class_gain_figure(a["per_class_accuracy"], b["per_class_accuracy"], "STRM", "TRM", path=None)
    fig.axes[0].set_title(fig.axes[0].get_title() + "\n" + title, fontsize=8)
    return _finish(fig, path, dpi)


def seed_spread(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """TRM and STRM trained with several seeds: how far training randomness alone moves the
    accuracy (the CI of one run covers the test tasks only)."""
    return comparison_figure(results, "seed_spread", path, colours=["#d62728"] * 3 + ["#1f4e9c"] * 3, dpi=dpi)


#: The figure function of each sweep (``Sweep.figure`` names one of these).
FIGURES: dict[str, Callable[..., Any]] = {
    "strm_table1": strm_table1,
    "strm_cardinalities": strm_cardinalities,
    "strm_joint": strm_joint,
    "strm_mechanisms": strm_mechanisms,
    "strm_components": strm_components,
    "strm_tuples": strm_tuples,
    "strm_shots": strm_shots,
    "strm_lambda": strm_lambda,
    "strm_class_gain": strm_class_gain,
    "trx_cardinalities": trx_cardinalities,
    "mastaf_ablations": mastaf_ablations,
    "mastaf_scores": mastaf_scores,
    "seed_spread": seed_spread,
}


def draw_all(results: str | Path | Sequence[Mapping[str, Any]], out: str | Path, dpi: int = 100) -> list[Path]:
    """Draw the figure of every sweep the results hold evaluated rows for, as ``<out>/<sweep>.png``
    (``<out>/<sweep>_<scale>.png`` when several scales are present). Returns the paths."""
    plt = _plt()
    rows = load_results(results)
    out = Path(out)
    paths = []
    for name, sweep in SWEEPS.items():
        scales = sorted({r.get("scale") for r in rows if r["sweep"] == name and r["accuracy"] is not None})
        for scale in scales:
            scoped = [r for r in rows if r.get("scale") == scale]
            path = out / (f"{name}.png" if len(scales) == 1 else f"{name}_{scale}.png")
            fig = FIGURES[sweep.figure](scoped, path, dpi=dpi)
            plt.close(fig)
            paths.append(path)
    return paths


def markdown_summary(results: str | Path | Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of every evaluated row: paper item, variant, published, ours ± CI,
    time reversal ± CI."""
    rows = load_results(results)
    lines = ["| experiment | variant | published (dataset) | ours (dataset) | ours - reference, paired | time reversal, 2-way |",
             "|---|---|---|---|---|---|"]
    for name, sweep in SWEEPS.items():
        order = {v.name: i for i, v in enumerate(sweep.variants)}
        chosen = sorted((r for r in rows if r["sweep"] == name and r["accuracy"] is not None),
                        key=lambda r: (r.get("dataset", ""), order.get(r["variant"], 99)))
        for r in chosen:
            paper_dataset = r["dataset"] if PUBLISHED.get(name, {}).get(r["dataset"]) else PAPER_DATASET.get(name, "")
            value = PUBLISHED.get(name, {}).get(paper_dataset, {}).get(r["variant"])
            paper = "-" if value is None else f"{value:.1f} ({_label(paper_dataset)})"
            reversal = "-" if r.get("reversal_accuracy") is None else f"{r['reversal_accuracy']:.1f} ± {r['reversal_ci95']:.1f}"
            paired = "-"
            if r.get("paired_difference") is not None and r["variant"] != r.get("reference"):
                paired = f"{r['paired_difference']:+.1f} ± {r['paired_ci95']:.1f} (vs {r['reference']})"
            lines.append(f"| {sweep.paper.split(':')[0]} | {r['variant']} | {paper} | "
                         f"{r['accuracy']:.1f} ± {r['ci95']:.1f} ({_label(r['dataset'])}) | {paired} | {reversal} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- analysis figures


def _images(clip: Tensor | np.ndarray) -> np.ndarray:
    """(L, 3, H, W) or (L, H, W, 3), float in [0, 1] or uint8 -> (L, H, W, 3) float in [0, 1]."""
    array = clip.detach().cpu().float().numpy() if isinstance(clip, Tensor) else np.asarray(clip)
    if array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        raise ValueError(f"expected a clip (L, 3, H, W) or (L, H, W, 3), got shape {array.shape}")
    if array.shape[1] == 3 and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)
    array = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    if array.min() < 0.0 or array.max() > 1.0:
        array = (array - array.min()) / max(float(array.max() - array.min()), 1e-8)
    return array


def activation_magnitude(features: Tensor) -> Tensor:
    """The L2 norm over channels at every position, as the papers' activation maps.

    ``features``: STRM patch features (videos, L, P, D) with P a square number, or MASTAF-style
    maps (videos, D, T, h, w). Returns (videos, L, g, g) or (videos, T, h, w), each video's
    maps scaled to [0, 1] (by its maximum)."""
    x = features.detach().float()
    if x.dim() == 4:  # (videos, L, P, D)
        videos, seq_len, patches, _ = x.shape
        grid = math.isqrt(patches)
        if grid * grid != patches:
            raise ValueError(f"patch features (videos, L, P, D) need a square P, got P={patches}")
        magnitude = x.norm(dim=-1).view(videos, seq_len, grid, grid)
    elif x.dim() == 5:  # (videos, D, T, h, w)
        magnitude = x.norm(dim=1)
    else:
        raise ValueError(f"expected (videos, L, P, D) or (videos, D, T, h, w) features, got shape {tuple(x.shape)}")
    peak = magnitude.flatten(1).amax(dim=1).clamp_min(1e-12)
    return magnitude / peak.view(-1, 1, 1, 1)


def frame_activation_figure(
    clip: Tensor | np.ndarray,
    maps: Mapping[str, Tensor | np.ndarray],
    title: str | None = None,
    alpha: float = 0.5,
    path: str | Path | None = None,
    dpi: int = 100,
) -> Any:
    """The clip's frames (top row), then one row per map ``name -> (L, h, w)`` overlaid on the
    frames (bilinear upsampling), as the activation maps of STRM Fig. 1 and 5 (e.g. the
    backbone's features vs after PLE). Maps with fewer time steps than frames are spread
    evenly over the frames."""
    plt = _plt()
    images = _images(clip)
    frames, height, width = images.shape[:3]
    fig, axes = plt.subplots(1 + len(maps), frames, figsize=(1.25 * frames, 1.3 * (1 + len(maps))), squeeze=False)
    for t in range(frames):
        axes[0, t].imshow(images[t], interpolation="nearest")
        axes[0, t].set_title(f"t={t}", fontsize=7)
    for row, (name, grid) in enumerate(maps.items(), start=1):
        values = torch.as_tensor(np.asarray(grid.detach().cpu()) if isinstance(grid, Tensor) else np.asarray(grid),
                                 dtype=torch.float32)
        if values.dim() != 3:
            raise ValueError(f"map {name!r} must be (time, h, w), got shape {tuple(values.shape)}")
        upsampled = torch.nn.functional.interpolate(values[None], size=(height, width), mode="bilinear",
                                                    align_corners=False)[0].numpy()
        for t in range(frames):
            step = min(values.shape[0] - 1, t * values.shape[0] // frames)
            axes[row, t].imshow(images[t], interpolation="nearest")
            axes[row, t].imshow(upsampled[step], cmap="jet", alpha=alpha, vmin=0.0, vmax=max(1e-6, float(upsampled.max())))
        axes[row, 0].set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return _finish(fig, path, dpi)


@dataclass(frozen=True)
class TupleMatch:
    """A query tuple, the support video (shot) and tuple it attends to most, and the weight."""

    query_tuple: tuple[int, ...]
    shot: int
    support_tuple: tuple[int, ...]
    weight: float


def best_tuple_matches(attention: Tensor, tuples: Tensor, query_tuples: Sequence[int] | None = None,
                       k: int = 3) -> list[TupleMatch]:
    """For chosen query tuples (indices into ``tuples``; default: the ``k`` with the most
    confident match), the support tuple with the largest cross-attention weight.

    ``attention``: (T, shots, T), one query against one class's support tuples (TRX/TRM
    ``extras["attention"][i][query, class]`` with ``keep_attention = True``); ``tuples``: (T, w)."""
    if attention.dim() != 3 or attention.shape[0] != tuples.shape[0] or attention.shape[2] != tuples.shape[0]:
        raise ValueError(f"attention must be (T, shots, T) with T = {tuples.shape[0]}, got {tuple(attention.shape)}")
    flat = attention.detach().float().flatten(1)  # (T, shots*T)
    weight, where = flat.max(dim=1)  # (T,)
    n_tuples = tuples.shape[0]
    chosen = list(query_tuples) if query_tuples is not None else weight.argsort(descending=True)[:k].tolist()
    bad = [t for t in chosen if not 0 <= t < n_tuples]
    if bad:
        raise ValueError(f"query tuple indices {bad} are outside 0..{n_tuples - 1}")
    return [
        TupleMatch(tuple(int(i) for i in tuples[t]), int(where[t]) // n_tuples,
                   tuple(int(i) for i in tuples[int(where[t]) % n_tuples]), float(weight[t]))
        for t in chosen
    ]


def tuple_matches_figure(
    query_clip: Tensor | np.ndarray,
    support_clips: Tensor | np.ndarray,
    matches: Mapping[str, Sequence[TupleMatch]] | Sequence[TupleMatch],
    title: str | None = None,
    path: str | Path | None = None,
    dpi: int = 100,
    shot_names: Sequence[str] | None = None,
) -> Any:
    """STRM Fig. 10-14: the query's frames with up to three query tuples marked (red, green,
    blue), then the support videos of the class with the frames of each tuple's best match
    marked in the same colour; one block of support rows per model (``{"TRM": matches,
    "STRM": matches}``) to compare what two models match. ``shot_names``: row labels of the
    support videos (default ``s0, s1, ...``)."""
    plt = _plt()
    if not isinstance(matches, Mapping):
        matches = {"": matches}
    query = _images(query_clip)
    support = [_images(c) for c in support_clips]
    frames = query.shape[0]
    colours = ("#e41a1c", "#4daf4a", "#377eb8", "#984ea3", "#ff7f00")
    rows = 1 + len(matches) * len(support)
    fig, axes = plt.subplots(rows, frames, figsize=(0.85 * frames, 0.9 * rows + 0.3), squeeze=False)

    def mark(ax: Any, colour: str, slot: int) -> None:
        ax.add_patch(plt.Rectangle((0.04 + 0.3 * slot, 0.04), 0.28, 0.14, transform=ax.transAxes, color=colour))
        for side in ax.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(2.5)

    first = next(iter(matches.values()))
    for t in range(frames):
        axes[0, t].imshow(query[t], interpolation="nearest")
    for slot, match in enumerate(first[: len(colours)]):
        for t in match.query_tuple:
            mark(axes[0, t], colours[slot], slot)
    axes[0, 0].set_ylabel("query", fontsize=7)
    for block, (model, model_matches) in enumerate(matches.items()):
        if [m.query_tuple for m in model_matches] != [m.query_tuple for m in first]:
            raise ValueError("every model's matches must be for the same query tuples, in the same order")
        for shot, clip in enumerate(support):
            row = 1 + block * len(support) + shot
            for t in range(frames):
                axes[row, t].imshow(clip[t], interpolation="nearest")
            axes[row, 0].set_ylabel(f"{model} {shot_names[shot] if shot_names else f's{shot}'}".strip(), fontsize=7)
        for slot, match in enumerate(model_matches[: len(colours)]):
            row = 1 + block * len(support) + match.shot
            for t in match.support_tuple:
                mark(axes[row, t], colours[slot], slot)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "query tuples (top) and their best support matches", fontsize=9)
    return _finish(fig, path, dpi)


def mastaf_angles(output: Any, query_maps: Tensor, prototype_maps: Tensor, scale: float = 7.0,
                  alpha: float = 1.0) -> dict[str, Tensor]:
    """Angles (degrees) between each query and each class prototype, as each MASTAF score sees
    them (MASTAF appendix Fig. 1): ``neighbor`` (plain GAP features, no attention), ``self``,
    ``cross``, and ``fused`` (the angle whose cosine is the fused score's mean cosine,
    ``(cross + alpha * self) / (scale * (1 + alpha))``).

    ``output``: the ``HeadOutput`` of a MASTAF head in ``fused`` mode (``extras`` has
    ``self_logits`` and ``cross_logits``, ``scale * cos``); ``query_maps`` (queries, D, T, h, w) and ``prototype_maps``
    (way, D, T, h, w) in the maps layout (channels second; the mean of each class's support
    maps) for the neighbour angle. Returns (queries, way) each."""
    extras = output.extras
    missing = [k for k in ("self_logits", "cross_logits") if k not in extras]
    if missing:
        raise ValueError(f"the MASTAF output lacks {', '.join(missing)}: use a head with model.mastaf_mode=fused")

    def angle(cosine: Tensor) -> Tensor:
        return torch.rad2deg(torch.arccos(cosine.detach().double().clamp(-1.0, 1.0))).float()

    query_gap = query_maps.detach().flatten(2).mean(-1).double()  # (queries, D)
    proto_gap = prototype_maps.detach().flatten(2).mean(-1).double()  # (way, D)
    neighbor = torch.nn.functional.normalize(query_gap, dim=-1) @ torch.nn.functional.normalize(proto_gap, dim=-1).T
    self_cos, cross_cos = extras["self_logits"] / scale, extras["cross_logits"] / scale
    return {
        "neighbor": angle(neighbor),
        "self": angle(self_cos),
        "cross": angle(cross_cos),
        "fused": angle((cross_cos + alpha * self_cos) / (1 + alpha)),
    }


def prototype_angles_figure(
    angles: Mapping[str, Tensor | np.ndarray | Sequence[float]],
    class_names: Sequence[str],
    true_class: int | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    dpi: int = 100,
) -> Any:
    """MASTAF appendix Fig. 1: the query on the horizontal axis (0 degrees), each class
    prototype on the unit arc at its angle to the query, one marker per score kind. The
    horizontal is "same direction" (similarity 1), the vertical 90 degrees (similarity 0).

    ``angles``: score kind -> (way,) angles of ONE query (e.g. ``mastaf_angles(...)[k][q]``)."""
    plt = _plt()
    markers = {"neighbor": "o", "self": "^", "cross": "s", "fused": "*"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    arc = np.linspace(0, np.pi / 2, 100)
    ax.plot(np.cos(arc), np.sin(arc), color="#cccccc", linewidth=1)
    ax.plot([0, 1.05], [0, 0], color="black", linewidth=0.8)
    ax.plot([0, 0], [0, 1.05], color="black", linewidth=0.8)
    ax.annotate("query", (1.02, 0.01), fontsize=8)
    way = len(class_names)
    for kind, values in angles.items():
        values = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=float)
        if values.shape != (way,):
            raise ValueError(f"angles[{kind!r}] must hold one angle per class ({way}), got shape {values.shape}")
        theta = np.deg2rad(np.clip(values, 0, 180))
        for c in range(way):
            edge = "red" if c == true_class else "none"
            ax.scatter(np.cos(theta[c]), np.sin(theta[c]), marker=markers.get(kind, "D"), s=70, color=f"C{c}",
                       edgecolors=edge, linewidths=1.5, label=kind if c == 0 else None, zorder=3)
        best = int(np.argmin(values))
        ax.annotate(f"{kind} predicts S{best + 1}", (0.02, 0.95 - 0.06 * list(angles).index(kind)),
                    xycoords="axes fraction", fontsize=7, color="green" if best == true_class else "red")
    for c, name in enumerate(class_names):
        ax.scatter([], [], color=f"C{c}", marker="o", label=f"S{c + 1}: {name}" + (" (true)" if c == true_class else ""))
    widest = np.deg2rad(min(90.0, max(float(np.max(np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v)))
                                          for v in angles.values()) + 8.0))
    ax.set_xlim(min(np.cos(widest), 0.9) - 0.05, 1.12)  # zoomed on the arc where the prototypes lie
    ax.set_ylim(-0.03, max(np.sin(widest), 0.1) + 0.05)
    ax.set_aspect("equal")
    ax.set_xlabel("cos(angle)")
    ax.set_ylabel("sin(angle)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_title(title or "angle between the query and each class prototype", fontsize=9)
    return _finish(fig, path, dpi)


def project_2d(x: Tensor | np.ndarray, method: str = "pca") -> np.ndarray:
    """(n, D) points -> (n, 2): ``pca`` (the two principal directions) or ``mds`` (classical
    multidimensional scaling of the Euclidean distances; equal to PCA for Euclidean data up to
    signs, offered for distance matrices via ``method="mds"`` with square input). Signs are
    fixed (largest loading positive) so pictures are reproducible. Not t-SNE: no extra
    dependency, and a linear map keeps distances honest."""
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    if method == "pca":
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"pca needs (n >= 2, D) points, got shape {x.shape}")
        centred = x - x.mean(axis=0, keepdims=True)
        _, _, vh = np.linalg.svd(centred, full_matrices=False)
        directions = vh[:2]
        signs = np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])
        projected = centred @ (directions * signs[:, None]).T
    elif method == "mds":
        if x.ndim != 2 or x.shape[0] != x.shape[1] or not np.allclose(x, x.T):
            distances = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))  # points -> their distances
        else:
            distances = x  # already a symmetric distance matrix
        n = distances.shape[0]
        centring = np.eye(n) - np.ones((n, n)) / n
        gram = -0.5 * centring @ (distances**2) @ centring
        values, vectors = np.linalg.eigh(gram)
        top = np.argsort(values)[::-1][:2]
        projected = vectors[:, top] * np.sqrt(np.clip(values[top], 0, None))
        signs = np.sign(projected[np.abs(projected).argmax(axis=0), np.arange(projected.shape[1])])
        projected = projected * np.where(signs == 0, 1, signs)
    else:
        raise ValueError(f"method must be 'pca' or 'mds', got {method!r}")
    if projected.shape[1] < 2:  # fewer than 2 dimensions: pad with zeros
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected


def prototype_projection_figure(
    points: Mapping[str, Tensor | np.ndarray] | Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray | Tensor,
    class_names: Sequence[str],
    method: str = "pca",
    title: str | None = None,
    path: str | Path | None = None,
    dpi: int = 100,
    prototypes: bool = True,
) -> Any:
    """Video embeddings (or prototypes) in 2-D, coloured by class, one panel per model
    (``{"TRM": (n, D), "STRM": (n, D)}``), projected with :func:`project_2d`; with
    ``prototypes`` each class's prototype (the mean of its points) is a large cross. The
    title names the projection (PCA or MDS), not t-SNE."""
    plt = _plt()
    if not isinstance(points, Mapping):
        points = {"": points}
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    fig, axes = plt.subplots(1, len(points), figsize=(4.4 * len(points), 4.0), squeeze=False)
    colours = plt.get_cmap("tab20")
    for ax, (model, x) in zip(axes[0], points.items()):
        xy = project_2d(x, method)
        if xy.shape[0] != labels.shape[0]:
            raise ValueError(f"{model or 'points'}: {xy.shape[0]} points but {labels.shape[0]} labels")
        for k, name in enumerate(class_names):
            chosen = labels == k
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=14 if prototypes else 28, color=colours(k % 20), label=name,
                       alpha=0.6 if prototypes and chosen.sum() > 1 else 1.0)
            if prototypes and chosen.any():  # the class prototype: the mean of its points (a linear projection keeps it)
                centre = xy[chosen].mean(axis=0)
                ax.scatter(centre[0], centre[1], s=140, marker="X", color=colours(k % 20), edgecolors="black", zorder=3)
        ax.set_title(f"{model} ({method.upper()} projection)".strip(), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path, dpi)


# ----------------------------------------------------------------------------- analysis of trained runs


def _reversal_task(config: Any, seed: int, tasks: int = 60) -> Any:
    """The first test task (of ``tasks`` seeded ones) holding a time-reversed pair of classes,
    else the first task."""
    from fsvid.engine import episode_dataset
    from fsvid.engine.data import time_reversed_pairs

    dataset = episode_dataset(config, "test", tasks, seed, False, progress=False)
    pairs = [set(p) for p in time_reversed_pairs(config, "test")]
    for index in range(len(dataset)):
        episode = dataset[index]
        if any(pair <= set(episode.class_names) for pair in pairs):
            return episode
    return dataset[0]


def draw_analysis(
    strm_run: str | Path,
    trm_run: str | Path | None,
    mastaf_run: str | Path | None,
    out: str | Path,
    dpi: int = 60,
    seed: int | None = None,
) -> list[Path]:
    """The analysis figures of trained runs, on a test task with a time-reversed pair:

    - ``analysis_activations.png``: a query's frames with the STRM backbone's feature magnitude
      and the magnitude after PLE (STRM Fig. 1 and 5);
    - ``analysis_tuple_matches.png``: three query pairs and their best support pairs under the
      TRM (when ``trm_run``) and STRM (STRM Fig. 10-14);
    - ``analysis_mastaf_angles.png``: the angle between a query and each class prototype for
      the neighbour, self, cross and fused scores (MASTAF appendix Fig. 1);
    - ``analysis_projection.png``: every test video's frame-mean feature under TRM and STRM
      (PCA; not t-SNE), coloured by class.

    ``strm_run`` etc. are run folders (``best.pt``); ``trm_run`` a STRM-head run without PLE,
    FLE and classifier. Returns the written paths."""
    import matplotlib.pyplot as plt

    from fsvid.engine.runs import load_trained_model

    out = Path(out)
    paths: list[Path] = []
    strm, config = load_trained_model(strm_run)
    seed = config.eval.seed if seed is None else seed
    episode = _reversal_task(config, seed)
    n_support = episode.support.shape[0]
    q = 0
    true_class = int(episode.query_labels[q])
    shots = n_support // episode.way
    with torch.no_grad():
        features = strm.features(torch.cat([episode.support, episode.query]))  # (videos, L, P, D)
        maps = {"backbone |x|": activation_magnitude(features)[n_support + q]}
        if strm.head.patch_enrichment is not None:
            videos, seq_len, patches, dim = features.shape
            tokens, _ = strm.head.patch_enrichment(features.reshape(videos * seq_len, patches, dim))
            maps["after PLE |x|"] = activation_magnitude(tokens.view(videos, seq_len, patches, dim))[n_support + q]
    fig = frame_activation_figure(episode.query[q], maps, title=f"STRM, query of class {episode.class_names[true_class]}: "
                                  "feature magnitude per patch (1 = the clip's largest)")
    paths.append(out / "analysis_activations.png")
    _finish(fig, paths[-1], dpi)
    plt.close(fig)

    matches: dict[str, list[TupleMatch]] = {}
    chosen: list[int] | None = None
    for name, run in (("STRM", strm_run), ("TRM", trm_run)):
        if run is None:
            continue
        model, _ = load_trained_model(run)
        model.head.keep_attention = True
        with torch.no_grad():
            output = model(episode.support, episode.support_labels, episode.query)
        attention, tuples = output.extras["attention"][0][q, true_class], output.extras["tuples"][0]
        found = best_tuple_matches(attention, tuples, query_tuples=chosen, k=3)
        chosen = chosen or [[tuple(int(i) for i in t) for t in tuples].index(m.query_tuple) for m in found]
        matches[name] = found
    matches = dict(reversed(list(matches.items())))  # TRM first, as in the paper
    class_clips = episode.support[true_class * shots:(true_class + 1) * shots]
    used = sorted({m.shot for found in matches.values() for m in found})  # only the support videos matched
    matches = {name: [dataclasses.replace(m, shot=used.index(m.shot)) for m in found] for name, found in matches.items()}
    fig = tuple_matches_figure(episode.query[q], class_clips[used], matches, shot_names=[f"s{k}" for k in used],
                               title=f"query pairs (top), best matches in the\n{episode.class_names[true_class]} "
                                     f"support videos: {' vs '.join(matches)}")
    paths.append(out / "analysis_tuple_matches.png")
    _finish(fig, paths[-1], dpi)
    plt.close(fig)

    if mastaf_run is not None:
        mastaf, mastaf_config = load_trained_model(mastaf_run)
        mastaf_episode = _reversal_task(mastaf_config, seed)
        with torch.no_grad():
            support_maps = mastaf.features(mastaf_episode.support)  # (support, D, T, h, w)
            query_maps = mastaf.features(mastaf_episode.query)
            output = mastaf.head(support_maps, mastaf_episode.support_labels, query_maps)
        way = mastaf_episode.way
        prototypes = support_maps.view(way, -1, *support_maps.shape[1:]).mean(1)  # (way, D, T, h, w)
        angles = mastaf_angles(output, query_maps, prototypes, mastaf.head.scale, mastaf.head.alpha)
        label = int(mastaf_episode.query_labels[0])
        fig = prototype_angles_figure({k: v[0] for k, v in angles.items()}, mastaf_episode.class_names, label,
                                      title="MASTAF: angle between a query and each class prototype")
        paths.append(out / "analysis_mastaf_angles.png")
        _finish(fig, paths[-1], dpi)
        plt.close(fig)

    from fsvid.data import load_clip
    from fsvid.engine import episode_dataset

    test = episode_dataset(config, "test", 1, seed, False, progress=False)
    names = sorted({v.class_name for v in test.videos})
    clips = torch.stack([load_clip(v, config.data.frames, False, test.transform) for v in test.videos])
    labels = np.array([names.index(v.class_name) for v in test.videos])
    embeddings = {}
    for name, run in (("TRM", trm_run), ("STRM", strm_run)):
        if run is None:
            continue
        model, _ = load_trained_model(run)
        with torch.no_grad():
            embeddings[name] = torch.cat([model.features(c).flatten(1, -2).mean(1) for c in clips.split(32)])
    fig = prototype_projection_figure(embeddings, labels, names,
                                      title="test videos (dots) and class prototypes (crosses): frame-mean backbone features")
    paths.append(out / "analysis_projection.png")
    _finish(fig, paths[-1], dpi)
    plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fsvid.plots --csv results/results.csv --out results``: every figure."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fsvid.plots", description=main.__doc__)
    parser.add_argument("--csv", type=Path, default=Path("results/results.csv"))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--markdown", action="store_true", help="also print the summary table")
    args = parser.parse_args(argv)
    for path in draw_all(args.csv, args.out, args.dpi):
        print(path)
    if args.markdown:
        print(markdown_summary(args.csv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
