"""Plots: every figure function draws from a small results file the test writes; analysis figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fsvid import plots  # noqa: E402
from fsvid.heads import MASTAFHead  # noqa: E402
from fsvid.sweeps import PUBLISHED, SWEEPS, write_rows  # noqa: E402

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
    return [r for r in plots.load_results(path) if r["scale"] == "synthetic"]


def _bar_heights(ax) -> list[float]:
    return [round(p.get_height(), 6) for p in ax.patches if p.get_width() > 0 and hasattr(p, "get_height")]


# ----------------------------------------------------------------------------- reading


def test_load_results_parses_numbers_and_per_class(results_csv):
    rows = plots.load_results(results_csv)
    first = rows[0]
    assert first["accuracy"] == _accuracy(first["sweep"], 0) and isinstance(first["ci95"], float)
    assert first["published"] is None and first["per_class_accuracy"]["approach"] == 50.0
    with pytest.raises(FileNotFoundError, match="no results CSV"):
        plots.load_results(results_csv.parent / "missing.csv")
    with pytest.raises(ValueError, match="accuracy='high' is not a number"):
        plots.load_results([{"sweep": "s", "variant": "v", "accuracy": "high"}])
    with pytest.raises(ValueError, match="no evaluated row of sweep 'strm_joint'"):
        plots.sweep_rows([r for r in rows if r["sweep"] != "strm_joint"], "strm_joint")


# ----------------------------------------------------------------------------- one figure per sweep


@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_every_sweep_figure_draws_and_saves(results_csv, tmp_path, sweep):
    path = tmp_path / f"{sweep}.png"
    fig = plots.FIGURES[SWEEPS[sweep].figure](_synthetic(results_csv), path)
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    assert len(fig.axes) >= 1
    plt.close(fig)


def test_comparison_figure_draws_our_values_and_the_published_panel(results_csv):
    fig = plots.strm_mechanisms(_synthetic(results_csv))
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
    full = [r for r in plots.load_results(results_csv) if r["scale"] == "full"]
    fig = plots.strm_components(full)
    ax = fig.axes[0]
    heights = _bar_heights(ax)
    assert heights == [60.0, 61.0, 62.0, 63.0, 64.0, 62.1, 63.7, 65.3, 66.8, 68.1]  # ours, then published
    assert "ours vs published" in ax.get_title() and len(fig.axes) == 2  # bars + table, no separate panel
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in fig.axes[1].tables[0].get_celld().items()}
    assert cells[(0, 2)] == "ours - TRM, paired" and cells[(1, 2)] == "reference" and cells[(3, 2)] == "+2.0 ± 0.4"
    plt.close(fig)


def test_line_figures_plot_accuracy_against_the_setting(results_csv):
    rows = _synthetic(results_csv)
    fig = plots.strm_shots(rows)
    series = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}  # errorbar containers
    assert set(series) == {"TRM (ours)", "TRX (ours)", "STRM (ours)"}
    strm = series["STRM (ours)"]
    variants = [v.name for v in SWEEPS["strm_shots"].variants]
    expected = [_accuracy("strm_shots", variants.index(f"STRM K={k}")) for k in (1, 2, 3, 4, 5, 10)]
    assert list(strm.get_xdata()) == [1, 2, 3, 4, 5, 10] and list(strm.get_ydata()) == expected
    published = {line.get_label() for line in fig.axes[1].get_lines()}
    assert "STRM (published, SSv2-full)" in published
    plt.close(fig)
    fig = plots.strm_tuples(rows)
    line = {c.get_label(): c.lines[0] for c in fig.axes[0].containers}["STRM (ours)"]
    assert list(line.get_xdata()) == [20.0, 40.0, 60.0, 80.0, 100.0]
    plt.close(fig)


def test_class_gain_bars_are_sorted_differences(results_csv):
    fig = plots.strm_class_gain(_synthetic(results_csv))
    ax = fig.axes[0]
    # STRM per class: 50, 60, 70, 75 (move_down: 80 - 5); TRM: 50, 50, 50, 45
    assert _bar_heights(ax) == [30.0, 20.0, 10.0, 0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["move down", "move up", "recede", "approach"]
    assert "better on 3 of 4" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="share no class"):
        plots.per_class_gain_figure({"a": 1.0}, {"b": 2.0})


def test_draw_all_and_markdown(results_csv, tmp_path):
    paths = plots.draw_all(results_csv, tmp_path, dpi=50)
    names = {p.name for p in paths}
    assert {"strm_components_full.png", "strm_components_synthetic.png", "mastaf_ablations.png"} <= names
    assert len(paths) == len(SWEEPS) + 1 and all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    table = plots.markdown_summary(results_csv)
    assert "| STRM Fig. 6 (left) | PLE+TRM | 63.7 (SSv2-full) | 61.0 ± 0.9 (SSv2-full) | +1.0 ± 0.4 (vs TRM) | - |" in table
    assert "| MASTAF appendix Tables 1-3 | NoRes | 88.9 (UCF101) |" in table


# ----------------------------------------------------------------------------- analysis figures


def test_activation_magnitude_is_the_normalised_channel_norm():
    torch.manual_seed(0)
    patches = torch.randn(2, 3, 4, 5)  # (videos, L, P=4, D)
    maps = plots.activation_magnitude(patches)
    assert maps.shape == (2, 3, 2, 2)
    expected = patches.norm(dim=-1).view(2, 3, 2, 2)
    assert torch.allclose(maps[0], expected[0] / expected[0].max())
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2))
    volumes = torch.randn(2, 6, 3, 2, 2)  # (videos, D, T, h, w)
    assert plots.activation_magnitude(volumes).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="square P"):
        plots.activation_magnitude(torch.randn(1, 3, 5, 4))
    fig = plots.frame_activation_figure(torch.rand(3, 3, 16, 16), {"backbone": maps[0], "after PLE": maps[1]})
    assert len(fig.axes) == 3 * 3 and fig.axes[3].get_ylabel() == "backbone"
    plt.close(fig)


def test_best_tuple_matches_picks_the_largest_attention():
    tuples = torch.tensor([[0, 1], [0, 2], [1, 2]])  # T = 3
    attention = torch.full((3, 2, 3), 0.05)  # (T, shots, T)
    attention[0, 1, 2] = 0.9  # query tuple (0,1) -> shot 1, tuple (1,2)
    attention[2, 0, 1] = 0.6  # query tuple (1,2) -> shot 0, tuple (0,2)
    matches = plots.best_tuple_matches(attention, tuples, k=2)
    assert [(m.query_tuple, m.shot, m.support_tuple) for m in matches] == [((0, 1), 1, (1, 2)), ((1, 2), 0, (0, 2))]
    assert matches[0].weight == pytest.approx(0.9)
    chosen = plots.best_tuple_matches(attention, tuples, query_tuples=[2])
    assert chosen[0].query_tuple == (1, 2)
    with pytest.raises(ValueError, match="outside 0..2"):
        plots.best_tuple_matches(attention, tuples, query_tuples=[5])
    with pytest.raises(ValueError, match=r"\(T, shots, T\)"):
        plots.best_tuple_matches(attention[:2], tuples)
    clips = torch.rand(3, 4, 3, 8, 8)  # query + 2 support clips of 4 frames
    fig = plots.tuple_matches_figure(clips[0], clips[1:], {"TRM": matches, "STRM": matches})
    assert len(fig.axes) == (1 + 2 * 2) * 4
    plt.close(fig)


def test_mastaf_angles_match_the_head_scores():
    torch.manual_seed(0)
    head = MASTAFHead(positions=6, channels=4).eval()
    support = torch.rand(3, 4, 1, 2, 3)  # (support videos, D, T, h, w), N = 6: 3-way 1-shot
    query = torch.rand(2, 4, 1, 2, 3)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        output = head(support, labels, query)
    angles = plots.mastaf_angles(output, query, support)
    assert set(angles) == {"neighbor", "self", "cross", "fused"} and all(a.shape == (2, 3) for a in angles.values())
    gap_query, gap_support = query.flatten(2).mean(-1), support.flatten(2).mean(-1)  # (videos, D)
    cosine = torch.nn.functional.cosine_similarity(gap_query[:, None], gap_support[None], dim=-1)
    assert torch.allclose(torch.cos(torch.deg2rad(angles["neighbor"])), cosine.float(), atol=1e-5)
    mean_cos = (torch.cos(torch.deg2rad(angles["self"])) + torch.cos(torch.deg2rad(angles["cross"]))) / 2
    assert torch.allclose(torch.cos(torch.deg2rad(angles["fused"])), mean_cos, atol=1e-5)
    # the fused angle ranks classes as the fused logits do
    assert torch.equal(angles["fused"].argmin(1), output.logits.argmax(1))
    fig = plots.prototype_angles_figure({k: v[0] for k, v in angles.items()}, ["a", "b", "c"], true_class=1)
    assert fig.axes[0].get_xlabel() == "cos(angle)"
    plt.close(fig)
    with pytest.raises(ValueError, match="one angle per class"):
        plots.prototype_angles_figure({"self": [10.0, 20.0]}, ["a", "b", "c"])


def test_project_2d_pca_and_mds():
    rng = np.random.default_rng(0)
    planar = rng.normal(size=(10, 2)) @ rng.normal(size=(2, 6))  # 10 points on a plane in 6-D
    for method in ("pca", "mds"):
        xy = plots.project_2d(planar, method)
        assert xy.shape == (10, 2)
        original = np.linalg.norm(planar[:, None] - planar[None], axis=-1)
        projected = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        assert np.allclose(original, projected, atol=1e-8)  # a plane keeps its distances
    line = np.outer(np.arange(5.0), np.ones(3))
    assert np.allclose(plots.project_2d(line)[:, 1], 0.0)
    with pytest.raises(ValueError, match="'pca' or 'mds'"):
        plots.project_2d(planar, "tsne")
    fig = plots.prototype_projection_figure({"TRM": planar, "STRM": planar * 2}, np.arange(10) % 2, ["x", "y"])
    assert [ax.get_title() for ax in fig.axes] == ["TRM (PCA projection)", "STRM (PCA projection)"]
    plt.close(fig)
