"""Paper figures: every figure function draws from a small results file the test writes."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from fsvid.experiments import paper_figures  # noqa: E402
from fsvid.experiments.definitions import SWEEPS  # noqa: E402
from fsvid.experiments.published import PUBLISHED  # noqa: E402
from fsvid.experiments.results import load_results, write_rows  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["approach", "recede", "move_up", "move_down"]


def _accuracy(sweep: str, index: int) -> float:
    return 40.0 + 3.0 * index + (len(sweep) % 5)


def _rows() -> list[dict]:
    """One synthetic row per synthetic variant of every sweep, and full-scale SSv2 rows for the
    components sweep (the same-dataset case)."""
    rows = []
    for name, sweep in SWEEPS.items():
        for i, variant in enumerate(sweep.variants_at("synthetic")):
            rows.append({
                "sweep": name, "variant": variant.name, "scale": "synthetic", "base": "synthetic_strm",
                "method": "trx" if variant.name.startswith("TRX") else "strm", "dataset": "synthetic",
                "way": 5, "shot": 5, "accuracy": _accuracy(name, i), "ci95": 2.0, "tasks": 300,
                "reversal_accuracy": 60.0 + i, "reversal_ci95": 5.0, "reversal_tasks": 150,
                "per_class_accuracy": json.dumps({c: 50.0 + (10.0 * k if variant.name == "STRM" else 0.0) - 5 * (k == 3)
                                                  for k, c in enumerate(CLASSES)}),
                "status": "finished",
            })
    for i, variant in enumerate(SWEEPS["strm_components"].variants):
        rows.append({"sweep": "strm_components", "variant": variant.name, "scale": "full", "base": "strm_ssv2_full",
                     "method": "strm", "dataset": "ssv2_OTAM", "way": 5, "shot": 5, "accuracy": 60.0 + i,
                     "ci95": 0.9, "tasks": 10000, "per_class_accuracy": "{}", "status": "finished",
                     "reference": "TRM", "paired_difference": float(i), "paired_ci95": 0.4})
    return rows


@pytest.fixture(scope="module")
def results_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plots") / "results.csv"
    write_rows(path, _rows())
    return path


def _synthetic(path: Path) -> list[dict]:
    return [r for r in load_results(path) if r["scale"] == "synthetic"]


def _bar_heights(ax) -> list[float]:
    return [round(p.get_height(), 6) for p in ax.patches if p.get_width() > 0 and hasattr(p, "get_height")]


# ----------------------------------------------------------------------------- reading


def test_load_results_parses_numbers_and_per_class(results_csv):
    rows = load_results(results_csv)
    first = rows[0]
    assert first["accuracy"] == _accuracy(first["sweep"], 0) and isinstance(first["ci95"], float)
    assert first["published"] is None and first["per_class_accuracy"]["approach"] == 50.0
    with pytest.raises(FileNotFoundError, match="no results CSV"):
        load_results(results_csv.parent / "missing.csv")
    with pytest.raises(ValueError, match="accuracy='high' is not a number"):
        load_results([{"sweep": "s", "variant": "v", "accuracy": "high"}])
    with pytest.raises(ValueError, match="no evaluated row of sweep 'strm_joint'"):
        paper_figures.sweep_rows([r for r in rows if r["sweep"] != "strm_joint"], "strm_joint")


# ----------------------------------------------------------------------------- one figure per sweep


@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_every_sweep_figure_draws_and_saves(results_csv, tmp_path, sweep):
    path = tmp_path / f"{sweep}.png"
    fig = paper_figures.FIGURES[SWEEPS[sweep].figure](_synthetic(results_csv), path)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    assert len(fig.axes) >= 1
    plt.close(fig)


def test_comparison_figure_draws_our_values_and_the_published_panel(results_csv):
    fig = paper_figures.strm_mechanisms(_synthetic(results_csv))
    names = [v.name for v in SWEEPS["strm_mechanisms"].variants]
    ours = fig.axes[0]
    assert [t.get_text() for t in ours.get_xticklabels()] == names
    assert _bar_heights(ours) == [_accuracy("strm_mechanisms", i) for i in range(len(names))]
    published = fig.axes[1]  # synthetic data: the SSv2 numbers in a panel of their own
    assert "SSv2" in published.get_title()
    assert _bar_heights(published) == [PUBLISHED["strm_mechanisms"]["ssv2_OTAM"][n] for n in names]
    table = fig.axes[-1].tables[0]  # the paper's table: ours with rank, reversal, published with rank
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in table.get_celld().items()}
    assert cells[(5, 0)] == "SA/MLP" and cells[(5, 3)] == "68.1 (1)" and cells[(2, 3)] == "64.2 (3)"
    assert cells[(1, 1)] == f"{_accuracy('strm_mechanisms', 0):.1f} ± 2.0 (5)"
    plt.close(fig)


def test_same_dataset_puts_published_beside_ours(results_csv):
    full = [r for r in load_results(results_csv) if r["scale"] == "full"]
    fig = paper_figures.strm_components(full)
    ax = fig.axes[0]
    heights = _bar_heights(ax)
    assert heights == [60.0, 61.0, 62.0, 63.0, 64.0, 62.1, 63.7, 65.3, 66.8, 68.1]  # ours, then published
    assert "ours vs published" in ax.get_title() and len(fig.axes) == 2  # bars + table, no separate panel
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in fig.axes[1].tables[0].get_celld().items()}
    assert cells[(0, 2)] == "ours - TRM, paired" and cells[(1, 2)] == "reference" and cells[(3, 2)] == "+2.0 ± 0.4"
    plt.close(fig)


def test_line_figures_plot_accuracy_against_the_setting(results_csv):
    rows = _synthetic(results_csv)
    fig = paper_figures.strm_shots(rows)
    series = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}  # errorbar containers
    assert set(series) == {"TRM (ours)", "TRX (ours)", "STRM (ours)"}
    strm = series["STRM (ours)"]
    variants = [v.name for v in SWEEPS["strm_shots"].variants]
    expected = [_accuracy("strm_shots", variants.index(f"STRM K={k}")) for k in (1, 2, 3, 4, 5, 10)]
    assert list(strm.get_xdata()) == [1, 2, 3, 4, 5, 10] and list(strm.get_ydata()) == expected
    published = {line.get_label() for line in fig.axes[1].get_lines()}
    assert "STRM (published, SSv2-full)" in published
    plt.close(fig)
    fig = paper_figures.strm_tuples(rows)
    line = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}["STRM (ours)"]
    assert list(line.get_xdata()) == [20.0, 40.0, 60.0, 80.0, 100.0]
    plt.close(fig)


def test_class_gain_bars_are_sorted_differences(results_csv):
    fig = paper_figures.strm_class_gain(_synthetic(results_csv))
    ax = fig.axes[0]
    # STRM per class: 50, 60, 70, 75 (move_down: 80 - 5); TRM: 50, 50, 50, 45
    assert _bar_heights(ax) == [30.0, 20.0, 10.0, 0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["move down", "move up", "recede", "approach"]
    assert "better on 3 of 4" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="share no class"):
        paper_figures.per_class_gain_figure({"a": 1.0}, {"b": 2.0})


def test_draw_all_and_markdown(results_csv, tmp_path):
    paths = paper_figures.draw_all(results_csv, tmp_path, dpi=50)
    names = {p.name for p in paths}
    assert {"strm_components_full.png", "strm_components_synthetic.png", "mastaf_ablations.png"} <= names
    assert len(paths) == len(SWEEPS) + 1 and all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    table = paper_figures.markdown_summary(results_csv)
    assert "| STRM Fig. 6 (left) | PLE+TRM | 63.7 (SSv2-full) | 61.0 ± 0.9 (SSv2-full) | +1.0 ± 0.4 (vs TRM) | - |" in table
    assert "| MASTAF appendix Tables 1-3 | NoRes | 88.9 (UCF101) |" in table
