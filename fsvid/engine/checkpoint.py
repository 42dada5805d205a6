"""Checkpoints that survive a crash.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)``: never unpickle arbitrary objects from a file that may
come from a stranger. It is written atomically:

1. ``torch.save`` into a temporary file in the same folder (``.last.pt.tmp-<pid>``), which
   is flushed and ``fsync``-ed;
2. ``os.replace`` renames it over the old file (atomic on POSIX and Windows);
3. the folder itself is ``fsync``-ed so the rename survives a power cut.

A run killed at any moment therefore leaves either the previous ``last.pt`` or the new one,
never half a file. A killed save can leave its temporary file behind; its name never
matches a checkpoint name, and :func:`remove_stale_temporaries` deletes it when the run
starts again. A write that fails (a full disk) raises :class:`WriteError`, which names the
file and the cause and says that the previous version is intact. The atomic writes themselves
live in :mod:`fsvid.files` (shared with the feature store); ``atomic_write``,
``atomic_write_text``, ``remove_stale_temporaries`` and ``WriteError`` are re-exported here.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fsvid.files import WriteError, atomic_write, atomic_write_text, remove_stale_temporaries

#: ``format`` entry of a training checkpoint (``last.pt``: everything needed to resume).
TRAINING_FORMAT = "fsvid-checkpoint-1"
#: ``format`` entry of a model-only checkpoint (``best.pt``: weights, config, when).
MODEL_FORMAT = "fsvid-model-1"

#: What a training checkpoint must hold to resume a run.
RESUME_ENTRIES = ("config", "model", "optimizer", "scheduler", "random_states", "state")

__all__ = [
    "MODEL_FORMAT",
    "RESUME_ENTRIES",
    "TRAINING_FORMAT",
    "CheckpointError",
    "WriteError",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "check_finite_weights",
    "check_resumable",
    "check_state_dict_matches",
    "load_checkpoint",
    "non_finite_tensors",
    "random_states",
    "remove_stale_temporaries",
    "restore_random_states",
]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot serve: unreadable, foreign, model-only where a run resumes, non-finite."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), with a clear error when it is missing
    or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"could not read checkpoint {path}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in (TRAINING_FORMAT, MODEL_FORMAT):
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not an fsvid checkpoint (format {found!r}, expected {TRAINING_FORMAT!r} or "
            f"{MODEL_FORMAT!r}); released TRX/STRM/MASTAF weights are converted with `fsvid convert`"
        )
    return checkpoint


def check_resumable(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raise a :class:`CheckpointError` naming ``path`` when a run cannot resume from it: a
    model-only checkpoint (``best.pt``-like), missing entries or non-finite weights."""
    path = Path(path)
    again = "or start again with `fsvid train --no-resume` (resume=False), which sets the old files aside"
    if checkpoint.get("format") == MODEL_FORMAT:
        raise CheckpointError(
            f"{path} is a model-only checkpoint (format {MODEL_FORMAT!r}, like best.pt: weights and configuration), "
            "not a training checkpoint: it lacks the optimiser, learning-rate schedule, random states and progress "
            f"that resuming needs. Put the run's own {path.name} back, evaluate these weights with "
            f"`fsvid evaluate {path}`, {again}"
        )
    missing = [entry for entry in RESUME_ENTRIES if entry not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}, which resuming needs: {again}")
    check_finite_weights(checkpoint, path, f"resuming it cannot work; {again}")


def check_finite_weights(checkpoint: dict[str, Any], path: str | Path, advice: str) -> None:
    """Raise a :class:`CheckpointError` naming ``path`` and its first non-finite tensors, then ``advice``."""
    bad = non_finite_tensors(checkpoint["model"])
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}), "
            f"written by a run that diverged: {advice}"
        )


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``tensors`` holding a NaN or an infinity."""
    names = [name for name, t in tensors.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not names:
        return []
    # x * 0 is 0 for every finite x and NaN for NaN and +-inf, and a sum of zeros cannot overflow:
    # one pass per tensor, one synchronisation for all (6x faster than isfinite(x).all() on a CPU)
    finite = torch.stack([tensors[name].detach().mul(0).sum() for name in names]).isfinite().tolist()
    return [name for name, ok in zip(names, finite) if not ok]


# ----------------------------------------------------------------------------- random states


def random_states() -> dict[str, Any]:
    """Every random number generator of this process (torch, CUDA, numpy, python)."""
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Put back what :func:`random_states` saved."""
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(_numpy_state_from_plain(states["numpy"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in states["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _numpy_state_to_plain(state: tuple) -> list:
    """numpy's legacy MT19937 state as a list of plain values (a tensor for the key)."""
    name, key, pos, has_gauss, cached_gaussian = state
    return [name, torch.from_numpy(np.asarray(key, dtype=np.int64)), int(pos), int(has_gauss), float(cached_gaussian)]


def _numpy_state_from_plain(state: list) -> tuple:
    name, key, pos, has_gauss, cached_gaussian = state
    return (name, np.asarray(key.numpy() if isinstance(key, torch.Tensor) else key, dtype=np.uint32), pos, has_gauss, cached_gaussian)


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


# ----------------------------------------------------------------------------- weights


def check_state_dict_matches(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` and listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:10])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:10])}")
        if mis_shaped:
            parts.append(f"shape mismatches ({len(mis_shaped)}): {'; '.join(mis_shaped[:10])}")
        raise ValueError(f"checkpoint {source} does not match the model: " + "; ".join(parts))
