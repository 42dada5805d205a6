"""One training per run folder: the ``train.lock`` file.

Two trainings writing the same ``last.pt``, ``metrics.csv`` and ``best.pt`` would leave a
mix of both. A training therefore holds ``<run folder>/train.lock`` while it runs; the file
says who holds it (process id, host, start time, command, ``torchrun`` job) and a second
training is refused with that description. Under ``torchrun`` only rank 0 holds it (the
other ranks are the same training, not rivals).

How a lock is known to be held:

- where ``fcntl`` exists (Linux, macOS), the holder keeps an exclusive ``flock`` on the file;
  the kernel drops it when the process ends in any way (SIGKILL included), so the lock of a
  crashed training is free again at once;
- besides (and alone on Windows, or on a file system that ignores ``flock``), the recorded
  process must be alive on this host: a lock whose process is gone is stale and is taken over,
  with a warning. A lock recorded by another host cannot be checked from here and is refused;
  the message says to delete the file if that training is gone.

The holder deletes the file when it releases the lock (on exit, also after an exception).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: the process check alone
    fcntl = None

LOCK_NAME = "train.lock"


class RunFolderBusy(RuntimeError):
    """Another training holds the run folder."""


class RunFolderLock:
    """``<directory>/train.lock``, held from :meth:`acquire` to :meth:`release` (or as a context manager)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.taken_over: dict[str, Any] | None = None
        """The record of a stale lock this one replaced (its process was gone)."""
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> RunFolderLock:
        """Take the lock (creating the run folder), or raise :class:`RunFolderBusy` naming its holder."""
        self._created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _flock(fd):
                    raise RunFolderBusy(self._busy(_read(fd), checked=True))
                if not _same_file(fd, self.path):  # released and deleted meanwhile: try the new file
                    os.close(fd)
                    continue
                holder = _read(fd)
                if holder and _running(holder):
                    raise RunFolderBusy(self._busy(holder, checked=holder.get("host") == socket.gethostname()))
            except BaseException:
                os.close(fd)
                raise
            break
        if holder:
            self.taken_over = holder
            warnings.warn(f"{self.path}: taking over the lock of {_describe(holder)}, which is no longer running",
                          RuntimeWarning, stacklevel=2)
        record = json.dumps(_own_record(), indent=2).encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, record)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file (if it is still this lock's) and drop the lock; a run folder that
        :meth:`acquire` created and nothing else used is removed too."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self._fd)  # drops the flock, after the file is gone
            self._fd = None
        if self._created:
            try:
                self.path.parent.rmdir()  # only if empty
            except OSError:
                pass

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _busy(self, holder: dict[str, Any], checked: bool) -> str:
        message = (
            f"run folder {self.path.parent} is in use by another training ({_describe(holder)}; lock file {self.path}): "
            "wait for it to finish or stop it, or train into another output_dir"
        )
        if not checked:
            message += f". If that training is no longer running, delete {self.path}"
        return message


def _flock(fd: int) -> bool:
    """Take an exclusive ``flock`` without waiting: ``False`` when another process holds it
    (``True`` also where file locks are not available, leaving the process check alone)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _read(fd: int) -> dict[str, Any]:
    """The holder's record, ``{}`` when the file is empty or not (yet) a complete record."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _own_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(sys.argv),
        "torchrun_job": os.environ.get("TORCHELASTIC_RUN_ID"),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its details yet"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
    if holder.get("torchrun_job"):
        text += f", torchrun job {holder['torchrun_job']} of {holder.get('world_size')} processes"
    if holder.get("command"):
        text += f", command: {holder['command']}"
    return text


def _running(holder: dict[str, Any]) -> bool:
    """Whether the holder may still run: always for another host (it cannot be checked from here)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if os.name == "nt":  # os.kill(pid, 0) would interrupt the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)  # a new process reusing the pid is not it


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux), telling a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
