"""What cached features depend on, recorded with them and compared before a cache is reused.

A cache's ``index.json`` records the backbone (name, class, output form, its simple
attributes, a SHA-256 of all its parameters and buffers, and the weights file's path, size and
modification time when given), frames, frame sampling, resize / crop / flip / normalisation,
dtype, number of views, view seed and a hash of the video list. Building into a folder whose
cache has other settings raises :class:`CacheMismatchError` naming every differing setting
(:func:`describe_differences`), never mixing features.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsvid.files import file_sha256

#: How many names (videos, classes) an error message lists.
NAMES_SHOWN = 5


class CacheMismatchError(ValueError):
    """A cache folder holds features computed with other settings than the ones requested."""


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (names, dtypes, shapes, values).

    Buffers include non-persistent ones such as a backbone's input mean and std, which are
    not in its state dict but change its output.
    """
    digest = hashlib.sha256()
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_settings(
    backbone: nn.Module,
    name: str | None = None,
    weights_file: str | os.PathLike | None = None,
    hash_weights_file: bool = False,
) -> dict[str, Any]:
    """The backbone part of a cache's settings.

    ``backbone``: its ``name`` (default: the class name), class, the simple attributes that
    shape its output (``output``, ``feature_dim``, ``patch_grid``, ``patch_pool``,
    ``frame_feature``, ... but not ``trainable``, which does not change eval-mode features)
    and ``weights_sha256``, a hash of all its parameters and buffers. ``weights_file`` adds
    the file's path, size and modification time (and its SHA-256 with
    ``hash_weights_file=True``), so replacing the file counts as a change too.
    """
    ignored = {"training", "trainable", "missing_file_help"}
    attributes = {
        key: value
        for key, value in sorted(vars(backbone).items())
        if not key.startswith("_") and key not in ignored and isinstance(value, (bool, int, float, str, tuple, type(None)))
    }
    settings: dict[str, Any] = {
        "backbone": name if name is not None else type(backbone).__name__,
        "backbone_class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "backbone_attributes": attributes,
        "weights_sha256": module_sha256(backbone),
        "weights_file": None,
    }
    if weights_file is not None:
        path = Path(weights_file).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        stat = path.stat()
        settings["weights_file"] = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if hash_weights_file:
            settings["weights_file"]["sha256"] = file_sha256(path)
    return settings


def video_list_settings(video_keys: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """The video-list part of the settings: counts and a hash of the ordered keys and classes."""
    digest = hashlib.sha256("\n".join(video_keys).encode() + b"\0" + "\n".join(class_names).encode())
    return {"count": len(video_keys), "classes": len(class_names), "sha256": digest.hexdigest()}


def jsonable(value: Any) -> Any:
    """What ``value`` becomes after a JSON round trip (tuples -> lists), to compare settings."""
    return json.loads(json.dumps(value))


def describe_differences(
    cached: Mapping[str, Any],
    requested: Mapping[str, Any],
    cached_videos: Sequence[str] | None = None,
    requested_videos: Sequence[str] | None = None,
) -> list[str]:
    """One line per setting that differs, ``name: cache has X, requested Y``; for the video
    list, which videos are in one but not the other (when the lists are given)."""
    lines = []
    for key in sorted(set(cached) | set(requested)):
        old, new = cached.get(key, "<not set>"), requested.get(key, "<not set>")
        if old == new:
            continue
        if key == "videos" and cached_videos is not None and requested_videos is not None:
            lines.append("videos: " + describe_video_lists(cached_videos, requested_videos))
        elif isinstance(old, dict) and isinstance(new, dict):
            for sub in sorted(set(old) | set(new)):
                before, after = old.get(sub, "<not set>"), new.get(sub, "<not set>")
                if before != after:
                    lines.append(f"{key}.{sub}: cache has {before!r}, requested {after!r}")
        else:
            hint = " (the backbone's parameters or buffers differ)" if key == "weights_sha256" else ""
            lines.append(f"{key}: cache has {old!r}, requested {new!r}{hint}")
    return lines


def describe_video_lists(cached: Sequence[str], requested: Sequence[str]) -> str:
    """How two video lists differ: their sizes and a few videos only in one of them."""
    cached_set, requested_set = set(cached), set(requested)
    only_cached = [v for v in cached if v not in requested_set]
    only_requested = [v for v in requested if v not in cached_set]
    parts = [f"the cache holds {len(cached)} videos, the request has {len(requested)}"]
    if only_cached:
        parts.append(f"{len(only_cached)} only in the cache (e.g. {only_cached[:NAMES_SHOWN]})")
    if only_requested:
        parts.append(f"{len(only_requested)} only in the request (e.g. {only_requested[:NAMES_SHOWN]})")
    if not only_cached and not only_requested:
        parts.append("the same videos in another order, or other class names")
    return "; ".join(parts)

