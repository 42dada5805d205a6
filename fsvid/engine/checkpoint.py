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
file and the cause and says that the previous version is intact.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: ``format`` entry of a training checkpoint (``last.pt``: everything needed to resume).
TRAINING_FORMAT = "fsvid-checkpoint-1"
#: ``format`` entry of a model-only checkpoint (``best.pt``: weights, config, when).
MODEL_FORMAT = "fsvid-model-1"

_TEMPORARY_MARK = ".tmp-"

#: What a training checkpoint must hold to resume a run.
RESUME_ENTRIES = ("config", "model", "optimizer", "scheduler", "random_states", "state")


class WriteError(OSError):
    """A file could not be written (disk full, no permission); its previous version is intact."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot serve: unreadable, foreign, model-only where a run resumes, non-finite."""


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TEMPORARY_MARK}{os.getpid()}")


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path`` atomically.

    If ``write`` raises (disk full, interrupted), the temporary file is removed and ``path``
    keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # RuntimeError: torch.save's "unexpected pos" on a full disk
        failure = WriteError(_write_failure(path, error))
        failure.errno = getattr(error, "errno", None)
        raise failure from error
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_directory(path.parent)
    return path


def _write_failure(path: Path, error: BaseException) -> str:
    """Which file could not be written, why, and what is left of it (measured before the
    temporary file is removed, so that a full disk shows as full)."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        cause = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
    elif isinstance(error, OSError):
        cause = str(error)
    else:  # torch.save reports a short write as "[enforce fail at inline_container.cc:...] . unexpected pos ..."
        lines = str(error).strip().splitlines() or [type(error).__name__]
        cause = f"the write failed ({lines[0]})"
    if free is not None and free < 64 * 2**20:
        cause += f"; the disk is full ({free / 2**20:.1f} MiB free)"
    elif free is not None:
        cause += f" ({free / 2**30:.1f} GiB free)"
    kept = f"{path.name} keeps its previous content" if path.exists() else f"no {path.name} was written"
    return f"could not write {path}: {cause}; {kept}"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file (JSON, CSV, YAML) atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files left by saves that were killed (``.<name>.tmp-<pid>``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and _TEMPORARY_MARK in p.name]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
