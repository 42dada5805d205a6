"""Plotting helpers of the notebooks (``fsvid.notebook_plots``): what they draw and compute, headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fsvid import notebook_plots as nbplots
from fsvid.data import Episode


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_to_images_accepts_both_layouts_and_dtypes() -> None:
    clip = torch.rand(3, 3, 8, 10)  # (L, 3, H, W)
    images = nbplots.to_images(clip)
    assert images.shape == (3, 8, 10, 3) and np.allclose(images[1, 2, 4], clip[1, :, 2, 4].numpy())
    uint8 = (np.arange(3 * 8 * 10 * 3) % 256).astype(np.uint8).reshape(3, 8, 10, 3)
    assert np.allclose(nbplots.to_images(uint8), uint8 / 255.0)
    normalised = nbplots.to_images(torch.randn(2, 3, 4, 4) * 3)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    with pytest.raises(ValueError, match=r"\(L, 3, H, W\)"):
        nbplots.to_images(torch.rand(3, 8, 10))


def test_frame_strip_lays_frames_side_by_side() -> None:
    clip = torch.rand(4, 3, 8, 8)
    ax = nbplots.frame_strip(clip, frame_labels=[0, 2, 4, 6], highlight=(1, 2), title="t")
    image = ax.get_images()[0].get_array()
    assert image.shape == (8, 4 * 8 + 3 * 2, 3)  # 4 frames, 3 gaps of 2 pixels
    assert np.allclose(image[:, 10:18], clip[1].permute(1, 2, 0).numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2", "4", "6"]
    assert len(ax.patches) == 2


def _episode(way: int = 2, shot: int = 2, queries: int = 1, frames: int = 3) -> Episode:
    return Episode(
        support=torch.rand(way * shot, frames, 3, 8, 8),
        support_labels=torch.arange(way).repeat_interleave(shot),
        query=torch.rand(way * queries, frames, 3, 8, 8),
        query_labels=torch.arange(way).repeat_interleave(queries),
        class_names=[f"class{c}" for c in range(way)],
        class_indices=torch.arange(way),
        support_videos=[f"class{c}/v{k}" for c in range(way) for k in range(shot)],
        query_videos=[f"class{c}/q{k}" for c in range(way) for k in range(queries)],
        task_index=7,
    )


def test_episode_figure_has_a_row_per_clip() -> None:
    fig = nbplots.episode_figure(_episode(way=2, shot=3, queries=2), max_shots=2)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert len(titles) == 2 * 2 + 2 * 2
    assert titles[0] == "class0 · support 0: class0/v0" and titles[-1].startswith("class1 · query 1")
    grid = nbplots.episode_figure(_episode(way=3, shot=2, queries=1), by_class=True)  # a column per class
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in grid.axes][0] == (3, 3)
    titles = [ax.get_title(loc="left") for ax in grid.axes]  # row-major: row 0 holds each class's first support
    assert titles[:3] == [f"class{c} · support 0" for c in range(3)]
    assert titles[3] == "support 1" and titles[6] == "query 0"
    width, height = grid.get_size_inches()
    assert width > height and width <= 8.4  # a column per class, within an output area's width
    wide = nbplots.episode_figure(_episode(way=5, shot=1, queries=1, frames=8), by_class=True)
    assert wide.get_size_inches()[0] <= 8.4 < 5 * 0.5 * 8  # 5 classes of 8 frames squeezed to fit


def test_heatmap_and_overlay() -> None:
    matrix = torch.arange(6.0).view(2, 3)
    ax = nbplots.heatmap(matrix, xticklabels=["a", "b", "c"], yticklabels=["x", "y"], annotate=True)
    assert np.allclose(ax.get_images()[0].get_array(), matrix.numpy())
    assert len(ax.texts) == 6
    with pytest.raises(ValueError, match="2-D"):
        nbplots.heatmap(torch.zeros(2, 2, 2))
    one_row = nbplots.heatmap(torch.rand(1, 6), colorbar=False)
    plt.gcf().canvas.draw()
    visible = [t for t in one_row.get_yticks() if -0.5 <= t <= 0.5]
    assert visible == [0.0]  # a row is a cell: no ticks at -0.5 or 0.5
    assert all(float(t).is_integer() for t in one_row.get_xticks())
    attention = torch.zeros(4, 4)
    attention[1, 2] = 1.0
    ax = nbplots.overlay_attention(torch.rand(3, 16, 16), attention)
    frame, tint = ax.get_images()
    assert frame.get_array().shape == (16, 16, 3) and tint.get_array().shape == (4, 4, 4)
    assert tint.get_extent() == [-0.5, 15.5, 15.5, -0.5]  # stretched over the frame
    opacity = tint.get_array()[..., 3]
    assert opacity[1, 2] == pytest.approx(0.5) and opacity.sum() == pytest.approx(0.5)  # the frame shows elsewhere
    assert [p.get_xy() for p in ax.patches] == [(7.5, 3.5)]  # the most attended cell, outlined


def test_top_tuple_matches_finds_the_strongest_weights() -> None:
    tuples = torch.tensor([[0, 1], [0, 2], [1, 2]])  # (T, 2)
    attention = torch.full((3, 2, 3), 0.01)  # (T, shots, T)
    attention[2, 1, 0] = 0.9  # query tuple (1, 2) -> shot 1, tuple (0, 1)
    attention[0, 0, 2] = 0.5  # query tuple (0, 1) -> shot 0, tuple (1, 2)
    matches = nbplots.best_tuple_matches(attention, tuples, k=2)
    assert matches[0] == nbplots.TupleMatch((1, 2), 1, (0, 1), pytest.approx(0.9))
    assert (matches[1].query_tuple, matches[1].shot, matches[1].support_tuple) == ((0, 1), 0, (1, 2))
    with pytest.raises(ValueError, match="T, shots, T"):
        nbplots.best_tuple_matches(torch.rand(3, 2, 4), tuples)
    fig = nbplots.tuple_match_figure(torch.rand(3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8), matches)
    assert len(fig.axes) == 4


def test_pairwise_angles_and_pca() -> None:
    angles = nbplots.pairwise_angles(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]]))
    assert torch.allclose(angles, torch.tensor([[0.0, 90, 45, 180], [90, 0, 45, 90], [45, 45, 0, 135], [180, 90, 135, 0]]), atol=1e-3)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.meshgrid(torch.linspace(-5, 5, 11), torch.linspace(-1, 1, 3), indexing="ij")
    points = torch.stack([x.flatten(), y.flatten()], dim=1) + 3.0  # (33, 2): most variance along x, then y
    rotation = torch.linalg.qr(torch.randn(5, 5, generator=generator))[0]
    lifted = torch.cat([points, torch.zeros(33, 3)], dim=1) @ rotation.T  # the plane, turned in 5-D
    projected = nbplots.pca_2d(lifted)
    assert projected.shape == (33, 2)
    assert torch.allclose(projected.abs(), (points - 3.0).abs(), atol=1e-4)  # recovered up to sign
    assert torch.allclose(nbplots.pca_2d(-lifted), -nbplots.pca_2d(lifted), atol=1e-4)  # signs follow the data, not the SVD


def test_embedding_scatter_training_curves_and_table() -> None:
    ax = nbplots.embedding_scatter(torch.rand(6, 2), [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    history = [{"task": 4, "split": "train", "loss": 1.0, "accuracy": 50.0},
               {"task": 8, "split": "train", "loss": 0.5, "accuracy": 75.0},
               {"task": 8, "split": "val", "loss": "", "accuracy": 60.0, "ci95": 5.0}]
    fig = nbplots.training_curves(history)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), [1.0, 0.5])
    assert np.allclose(fig.axes[1].lines[0].get_ydata(), [50.0, 75.0])
    table = nbplots.markdown_table([{"run": "a|b", "acc": 0.5}, {"run": "c", "acc": None}])
    assert table.splitlines() == ["| run | acc |", "|---|---|", "| a\\|b | 0.50 |", "| c |  |"]
    assert nbplots.markdown_table([]) == "(no rows)"
    later_key = nbplots.markdown_table([{"run": "ref"}, {"run": "b", "vs ref": "+1.0"}])  # 08's paired column
    assert later_key.splitlines() == ["| run | vs ref |", "|---|---|", "| ref |  |", "| b | +1.0 |"]


def test_widgets_are_built_without_a_frontend() -> None:
    import ipywidgets

    class Tasks(list):
        pass

    browser = nbplots.episode_browser(Tasks([_episode(), _episode(way=3)]))
    slider, image = browser.children
    assert isinstance(browser, ipywidgets.Widget) and slider.max == 1
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"  # drawn at once, as a PNG
    slider.value = 1  # a 3-way task: a taller picture
    assert image.value[:8] == first[:8] and image.value != first
    assert plt.get_fignums() == []  # the figures were closed, nothing left for the inline backend
    width, height = nbplots._png_size(image.value)
    assert image.layout.width == f"{width}px" and image.layout.max_width == "100%"  # shown at its drawn size
    assert browser.layout.align_items == "flex-start"  # not stretched to the output's width
    assert width > height  # the episode browser lays classes side by side
    tuples = torch.tensor([[0, 1], [0, 2], [1, 2]])
    viewer = nbplots.tuple_match_viewer(torch.rand(3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8), torch.rand(3, 2, 3), tuples)
    assert viewer.children[0].max == 2
    maps = nbplots.attention_viewer(torch.rand(3, 3, 8, 8), torch.rand(3, 2, 2))
    assert maps.children[0].max == 2
    with pytest.raises(ValueError, match="one map per frame"):
        nbplots.attention_viewer(torch.rand(3, 3, 8, 8), torch.rand(2, 2, 2))
