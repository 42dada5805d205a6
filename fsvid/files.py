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

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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
    keeps its previous content.
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
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_directory(path.parent)
    return path


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
