"""Plotting helpers for the notebooks: frame strips, episodes, heatmaps, attention overlays,
tuple matches, embeddings, training curves, and the ipywidgets viewers.

Everything here draws what the package computes; nothing here computes a method. Clips are
accepted in the package's layout, (L, 3, H, W) float in [0, 1] (or uint8), or as rendered by
:func:`fsvid.data.synthetic.render_clip`, (L, H, W, 3) uint8.

The widget builders (:func:`episode_browser`, :func:`tuple_match_viewer`,
:func:`attention_viewer`) return an ``ipywidgets`` widget to ``display``; the notebooks call
them only when their ``interactive`` parameter is true and draw static figures otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from fsvid.experiments.analysis import TupleMatch, best_tuple_matches, project_2d
from fsvid.experiments.drawing import pyplot, to_images

__all__ = [
    "to_images",
    "frame_strip",
    "episode_figure",
    "heatmap",
    "overlay_attention",
    "TupleMatch",
    "best_tuple_matches",
    "tuple_match_figure",
    "pairwise_angles",
    "pca_2d",
    "embedding_scatter",
    "training_curves",
    "markdown_table",
    "WIDGET_DPI",
    "interactive_figure",
    "episode_browser",
    "tuple_match_viewer",
    "attention_viewer",
]




# ----------------------------------------------------------------------------- clips




def frame_strip(
    clip: Tensor | np.ndarray,
    ax: Any = None,
    title: str | None = None,
    frame_labels: Sequence[Any] | None = None,
    highlight: Sequence[int] = (),
    gap: int = 2,
) -> Any:
    """Draw a clip's frames side by side on one axis; returns the axis.

    ``frame_labels``: a label under each frame (e.g. the sampled frame indices);
    ``highlight``: frames framed in red (e.g. the frames of a tuple).
    """
    plt = pyplot()
    images = to_images(clip)
    frames, height, width, _ = images.shape
    canvas = np.ones((height, frames * (width + gap) - gap, 3), dtype=np.float32)
    for i, image in enumerate(images):
        canvas[:, i * (width + gap) : i * (width + gap) + width] = image
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, 1.1 * frames), 1.4))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([])
    if frame_labels is not None:
        ax.set_xticks([i * (width + gap) + width / 2 for i in range(frames)])
        ax.set_xticklabels([str(label) for label in frame_labels], fontsize=7)
    else:
        ax.set_xticks([])
    for i in highlight:
        ax.add_patch(pyplot().Rectangle((i * (width + gap) - 0.5, -0.5), width, height, fill=False, edgecolor="red", linewidth=2))
    if title:
        ax.set_title(title, fontsize=8, loc="left")
    return ax


def episode_figure(
    episode: Any, max_shots: int | None = None, max_queries: int | None = None, by_class: bool = False
) -> Any:
    """The clips of an :class:`fsvid.data.Episode`, each titled with class name, role and video.
    Returns the figure.

    ``by_class=False``: one row per clip, each class's support videos, then the queries (a tall
    figure for reading down a notebook); ``True``: one column per class, its support videos then
    its queries below (a wide, short figure that fits a screen, as in the episode browser).
    """
    plt = pyplot()
    way = episode.way
    shots = episode.support.shape[0] // way
    queries = episode.query.shape[0] // way if episode.query.shape[0] else 0
    shown_shots = min(shots, max_shots or shots)
    shown_queries = min(queries, max_queries if max_queries is not None else queries)
    cells = [  # (class, row within the class, clip, title)
        *((c, k, episode.support[c * shots + k], f"support {k}: {episode.support_videos[c * shots + k]}")
          for c in range(way) for k in range(shown_shots)),
        *((c, shown_shots + k, episode.query[c * queries + k], f"query {k}: {episode.query_videos[c * queries + k]}")
          for c in range(way) for k in range(shown_queries)),
    ]
    frames = episode.support.shape[1]
    if by_class:
        rows, columns = shown_shots + shown_queries, way
        column_width = min(max(2.4, 0.5 * frames), 8.4 / columns)  # at most 8.4 in: an output area's width
        height, width = episode.support.shape[-2:]
        strip = column_width * height / (frames * width)  # the height of one frame strip
        figsize = (columns * column_width, rows * (strip + 0.3) + 0.4)
    else:
        rows, columns = len(cells), 1
        figsize = (max(3.0, 0.9 * frames), 1.05 * rows)
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    for n, (c, k, clip, title) in enumerate(cells):
        ax = axes[k, c] if by_class else axes[n, 0]
        if by_class:  # short titles: the columns are narrow
            title = title.split(":")[0] if k else f"{episode.class_names[c]} · {title.split(':')[0]}"
        else:
            title = f"{episode.class_names[c]} · {title}"
        frame_strip(clip, ax=ax, title=title)
    fig.suptitle(f"task {episode.task_index}: {way}-way {shots}-shot, {queries} queries per class", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- matrices and maps


def heatmap(
    matrix: Tensor | np.ndarray,
    ax: Any = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    xticklabels: Sequence[Any] | None = None,
    yticklabels: Sequence[Any] | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    annotate: bool = False,
    fmt: str = ".2f",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """A 2-D matrix as an image with optional tick labels and annotations; returns the axis."""
    plt = pyplot()
    values = matrix.detach().cpu().float().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {values.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(8.0, 1.5 + 0.35 * values.shape[1]), min(8.0, 1.2 + 0.35 * values.shape[0])))
    image = ax.imshow(values, cmap=cmap, aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax)
    for axis, setter, labels, size in ((ax.xaxis, ax.set_xticks, xticklabels, values.shape[1]),
                                       (ax.yaxis, ax.set_yticks, yticklabels, values.shape[0])):
        if labels is not None:
            setter(range(size), [str(label) for label in labels], fontsize=7)
        else:  # rows and columns are cells: ticks on whole indices only (never -0.5 or 0.5)
            axis.set_major_locator(MaxNLocator(nbins=min(size, 8), integer=True, min_n_ticks=1))
    if xticklabels is not None:
        plt.setp(ax.get_xticklabels(), rotation=60, ha="right")
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=6, color="white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


def overlay_attention(
    frame: Tensor | np.ndarray,
    attention: Tensor | np.ndarray,
    ax: Any = None,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "autumn",
) -> Any:
    """A frame (3, H, W) or (H, W, 3) with an (h, w) attention grid stretched over it.

    The grid is min-max scaled and drawn with an opacity that grows with the weight, up to
    ``alpha``: the frame stays visible where attention is low, and the cells that get most
    attention are tinted (``cmap``) and outlined, so the picture reads even at a few pixels.
    """
    plt = pyplot()
    image = to_images(frame[None] if isinstance(frame, Tensor) else np.asarray(frame)[None])[0]  # (H, W, 3)
    grid = attention.detach().cpu().float().numpy() if isinstance(attention, Tensor) else np.asarray(attention, dtype=float)
    if grid.ndim != 2:
        raise ValueError(f"attention must be an (h, w) grid, got shape {grid.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(2, 2))
    height, width = image.shape[:2]
    scaled = (grid - grid.min()) / max(float(grid.max() - grid.min()), 1e-8)  # (h, w) in [0, 1]
    tint = plt.get_cmap(cmap)(scaled)  # (h, w, 4) RGBA
    tint[..., 3] = alpha * scaled
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    ax.imshow(image, interpolation="nearest")
    ax.imshow(tint, extent=extent, interpolation="nearest")
    top = np.argwhere(scaled >= 0.75)  # the most attended cells, outlined
    cell_h, cell_w = height / grid.shape[0], width / grid.shape[1]
    for i, j in top:
        ax.add_patch(plt.Rectangle((j * cell_w - 0.5, i * cell_h - 0.5), cell_w, cell_h, fill=False,
                                   edgecolor="yellow", linewidth=1))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


# ----------------------------------------------------------------------------- tuple matches




def tuple_match_figure(query_clip: Tensor, support_clips: Tensor, matches: Sequence[TupleMatch], title: str | None = None) -> Any:
    """For each match: the query clip with its tuple's frames framed, and the matched support
    clip with its tuple framed. ``support_clips``: (shots, L, 3, H, W) of the class."""
    plt = pyplot()
    fig, axes = plt.subplots(len(matches), 2, figsize=(2 * max(3.0, 0.9 * query_clip.shape[0]), 1.3 * len(matches)), squeeze=False)
    for row, match in enumerate(matches):
        frame_strip(query_clip, ax=axes[row, 0], highlight=match.query_tuple, title=f"query tuple {match.query_tuple}")
        frame_strip(
            support_clips[match.shot], ax=axes[row, 1], highlight=match.support_tuple,
            title=f"support shot {match.shot}, tuple {match.support_tuple}, weight {match.weight:.2f}",
        )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- embeddings


def pairwise_angles(vectors: Tensor) -> Tensor:
    """(n, D) vectors -> (n, n) angles between them in degrees (0 on the diagonal)."""
    unit = torch.nn.functional.normalize(vectors.detach().double(), dim=-1)
    cosine = (unit @ unit.T).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosine)).float()


def pca_2d(x: Tensor) -> Tensor:
    """(n, D) -> (n, 2): the points projected on their two principal directions, each
    direction's sign fixed (largest loading positive) so the picture is reproducible
    (:func:`fsvid.experiments.analysis.project_2d` as a tensor)."""
    return torch.from_numpy(project_2d(x)).float()


def embedding_scatter(
    points: Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray | Tensor,
    names: Sequence[str],
    ax: Any = None,
    title: str | None = None,
    markers: Sequence[str] | None = None,
) -> Any:
    """A 2-D scatter of ``points`` (n, 2) coloured by ``labels`` (n,) with a legend of ``names``."""
    plt = pyplot()
    points = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    colours = plt.get_cmap("tab20")
    for k, name in enumerate(names):
        chosen = labels == k
        marker = markers[k] if markers is not None else "o"
        ax.scatter(points[chosen, 0], points[chosen, 1], s=18, color=colours(k % 20), marker=marker, label=name)
    ax.legend(fontsize=6, loc="best", ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


# ----------------------------------------------------------------------------- runs


def training_curves(history: Sequence[Mapping[str, Any]], title: str | None = None) -> Any:
    """Training loss, training accuracy and validation accuracy (with its 95% CI), in percent,
    against tasks, from a run's history (``TrainResult.history`` or the rows of ``metrics.csv``)."""
    plt = pyplot()

    def column(split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        rows = [r for r in history if r.get("split") == split and r.get(key) not in ("", None)]
        return np.array([float(r["task"]) for r in rows]), np.array([float(r[key]) for r in rows])

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    tasks, loss = column("train", "loss")
    left.plot(tasks, loss, marker=".")
    left.set_xlabel("tasks")
    left.set_ylabel("training loss")
    tasks, accuracy = column("train", "accuracy")
    right.plot(tasks, accuracy, marker=".", label="train (queries of the step)")
    val_tasks, val_accuracy = column("val", "accuracy")
    if len(val_tasks):
        _, ci = column("val", "ci95")
        ci = ci if len(ci) == len(val_tasks) else np.zeros_like(val_accuracy)
        right.errorbar(val_tasks, val_accuracy, yerr=ci, marker="o", capsize=3, label="validation")
    right.set_xlabel("tasks")
    right.set_ylabel("accuracy (%)")
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".2f") -> str:
    """Rows of dicts as a Markdown table (for ``IPython.display.Markdown``).

    The columns are ``columns``, or every key of any row in the order first seen (a key that
    only some rows have gets an empty cell in the others)."""
    if not rows:
        return "(no rows)"
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- widgets


def _as_figure(drawn: Any) -> Any:
    """The figure of whatever a drawing function returned (a figure, an axis, or nothing)."""
    if drawn is None:
        return pyplot().gcf()
    return getattr(drawn, "figure", drawn) if not hasattr(drawn, "savefig") else drawn


#: Resolution of the widgets' pictures: CSS pixels per inch, so a figure is shown at the size drawn.
WIDGET_DPI = 96


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from a PNG's header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def interactive_figure(draw: Callable[..., Any], **controls: Any) -> Any:
    """Sliders and a picture: ``draw(**values)`` draws a matplotlib figure (returning the figure
    or an axis), redrawn whenever a control changes.

    ``controls`` are widgets or ``(min, max)`` tuples (integer sliders). The figure is shown as
    a PNG in an ``ipywidgets.Image`` rather than through an ``Output`` widget, so it works the
    same in every frontend and never waits on output capture. The PNG is drawn at
    :data:`WIDGET_DPI` and shown at its own pixel size (shrunk, never stretched, to a narrower
    output area), so what the figure's ``figsize`` says is what the student sees.
    """
    import io

    import ipywidgets as widgets

    plt = pyplot()
    sliders = {}
    for name, control in controls.items():
        if isinstance(control, tuple):
            low, high = control
            control = widgets.IntSlider(value=low, min=low, max=high, description=name)
        sliders[name] = control
    image = widgets.Image(format="png", layout=widgets.Layout(height="auto", max_width="100%"))

    def render(*_: Any) -> None:
        figure = _as_figure(draw(**{name: control.value for name, control in sliders.items()}))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=WIDGET_DPI, bbox_inches="tight")
        plt.close(figure)
        png = buffer.getvalue()
        width, _ = _png_size(png)
        image.layout.width = f"{width}px"
        image.value = png

    for control in sliders.values():
        control.observe(render, names="value")
    render()
    return widgets.VBox([*sliders.values(), image], layout=widgets.Layout(align_items="flex-start"))


def episode_browser(dataset: Any, max_shots: int | None = None, max_queries: int | None = None) -> Any:
    """A slider over the tasks of an episode dataset that draws each task's clips."""
    import ipywidgets as widgets

    slider = widgets.IntSlider(value=0, min=0, max=max(0, len(dataset) - 1), description="task")
    return interactive_figure(lambda task: episode_figure(dataset[task], max_shots, max_queries, by_class=True), task=slider)


def tuple_match_viewer(query_clip: Tensor, support_clips: Tensor, attention: Tensor, tuples: Tensor) -> Any:
    """Sliders over the query tuples: the chosen query tuple's attention over the class's
    support tuples, and the support tuple it attends to most (see :func:`best_tuple_matches`)."""
    import ipywidgets as widgets

    n_tuples = tuples.shape[0]

    def draw(query_tuple: int) -> Any:
        plt = pyplot()
        weights = attention[query_tuple]  # (shots, T)
        shot, best = divmod(int(weights.flatten().argmax()), n_tuples)
        fig, axes = plt.subplots(3, 1, figsize=(8, 4.5))
        frame_strip(query_clip, ax=axes[0], highlight=tuple(tuples[query_tuple].tolist()), title=f"query tuple {tuples[query_tuple].tolist()}")
        heatmap(weights, ax=axes[1], colorbar=False, ylabel="shot", title="attention over the support tuples")
        frame_strip(support_clips[shot], ax=axes[2], highlight=tuple(tuples[best].tolist()),
                    title=f"best match: shot {shot}, tuple {tuples[best].tolist()} ({float(weights[shot, best]):.2f})")
        fig.tight_layout()
        return fig

    return interactive_figure(draw, query_tuple=widgets.IntSlider(value=0, min=0, max=n_tuples - 1, description="tuple"))


def attention_viewer(clip: Tensor, maps: Tensor, title: str = "attention") -> Any:
    """A slider over the frames of ``clip`` (L, 3, H, W) showing ``maps`` (L, h, w) over each."""
    import ipywidgets as widgets

    if maps.shape[0] != clip.shape[0]:
        raise ValueError(f"one map per frame needed: clip has {clip.shape[0]} frames, maps {tuple(maps.shape)}")
    def draw(frame: int) -> Any:
        _, ax = pyplot().subplots(figsize=(3.2, 3.2))
        return overlay_attention(clip[frame], maps[frame], ax=ax, title=f"{title}, frame {frame}")

    return interactive_figure(
        draw,
        frame=widgets.IntSlider(value=0, min=0, max=clip.shape[0] - 1, description="frame"),
    )
