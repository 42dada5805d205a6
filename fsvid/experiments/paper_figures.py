"""The papers' tables and figures drawn from a sweep results CSV, in the papers' form.

One figure per sweep of :data:`~fsvid.experiments.definitions.SWEEPS` (each takes the results
CSV path or a list of row dicts, returns the matplotlib ``Figure`` and saves it when ``path``
is given):

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
(:mod:`fsvid.experiments.published`) stand beside ours on the same axes when the run used the
paper's dataset; for runs on another dataset (the synthetic one) they are drawn in a separate
panel, labelled with their dataset, to compare orderings rather than values.

The analysis figures of trained runs are in :mod:`fsvid.experiments.analysis`. Only numpy,
csv and matplotlib here (no pandas).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fsvid.experiments.definitions import SWEEPS, get_sweep
from fsvid.experiments.drawing import finish, pyplot
from fsvid.experiments.published import PUBLISHED
from fsvid.experiments.results import load_results

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

#: The paper dataset each sweep's published numbers are drawn against by default.
PAPER_DATASET: dict[str, str] = {
    name: ("ucf_ARN" if name.startswith("mastaf") else "ssv2_OTAM") for name in SWEEPS
}


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
    plt = pyplot()
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
    return finish(fig, path, dpi)


# ----------------------------------------------------------------------------- one per sweep


def strm_table1(results: Any, path: str | Path | None = None, dpi: int = 100) -> Any:
    """STRM Table 1: TRX and STRM per benchmark. On synthetic data: test accuracy and
    time-reversal accuracy per method; beside it the published table (TRX vs STRM per benchmark)."""
    plt = pyplot()
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
    return finish(fig, path, dpi)


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
    plt = pyplot()
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
    return finish(fig, path, dpi)


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
    plt = pyplot()
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
    return finish(fig, path, dpi)


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
    return finish(fig, path, dpi)


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
    plt = pyplot()
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fsvid.experiments.paper_figures --csv results/results.csv --out results``: every figure."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fsvid.experiments.paper_figures", description=main.__doc__)
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
