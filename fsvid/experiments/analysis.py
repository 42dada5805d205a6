"""Analysis figures: what trained models attend to and how they place videos and prototypes.

Each pair takes tensors a notebook computes with a trained model; :func:`draw_analysis`
computes them from trained run folders and writes the ``analysis_*.png`` figures:

    activation_magnitude + frame_activation_figure   feature magnitude over frames (STRM Fig. 1, 5)
    best_tuple_matches + tuple_matches_figure        best support tuples for query tuples (STRM Fig. 10-14)
    mastaf_angles + prototype_angles_figure          query-prototype angles, neighbour/self/cross/fused
                                                     (MASTAF appendix Fig. 1)
    project_2d + prototype_projection_figure         prototypes in 2-D (PCA or classical MDS, not t-SNE)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fsvid.experiments.drawing import finish, pyplot, to_images




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
    plt = pyplot()
    images = to_images(clip)
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
    return finish(fig, path, dpi)


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
    plt = pyplot()
    if not isinstance(matches, Mapping):
        matches = {"": matches}
    query = to_images(query_clip)
    support = [to_images(c) for c in support_clips]
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
    return finish(fig, path, dpi)


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
    plt = pyplot()
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
    return finish(fig, path, dpi)


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
    plt = pyplot()
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
    return finish(fig, path, dpi)


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
    finish(fig, paths[-1], dpi)
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
    finish(fig, paths[-1], dpi)
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
        finish(fig, paths[-1], dpi)
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
    finish(fig, paths[-1], dpi)
    plt.close(fig)
    return paths
