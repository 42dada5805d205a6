"""Files that survive a crash: atomic writes through a temporary file and a rename.

A write goes to a temporary file beside the target (``.<name>.tmp-<pid>``), which is flushed
and ``fsync``-ed, then ``os.replace`` renames it over the target (atomic on POSIX and
Windows) and the folder is ``fsync``-ed so the rename survives a power cut. A process killed
at any moment leaves either the previous file or the new one, never half a file; a killed
write can leave its temporary file behind, whose name never matches a real file's, and
:func:`remove_stale_temporaries` deletes such leftovers.

Used by checkpoints and run results (:mod:`fsvid.engine.checkpoint` re-exports these) and by
the feature store's shards and index (:mod:`fsvid.features.store`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

class WriteError(OSError):
    """A file could not be written (disk full, no permission); its previous version is intact."""


#: What marks a temporary file: ``.<name>.tmp-<pid>``.
TEMPORARY_MARK = ".tmp-"


def temporary_path(path: Path) -> Path:
    """The temporary name a write to ``path`` by this process goes through."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


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


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path`` atomically.

    If ``write`` raises (disk full, interrupted), the temporary file is removed and ``path``
    keeps its previous content; an ``OSError`` or torch's short-write ``RuntimeError`` becomes a
    :class:`WriteError` naming the file, the cause and what is left of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file (JSON, CSV, YAML) atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files left by writes that were killed (``.<name>.tmp-<pid>``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and TEMPORARY_MARK in p.name]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 16 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
