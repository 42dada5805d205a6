"""Run one function over many videos in worker processes, with a tqdm progress bar."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _one_thread_each() -> None:
    """Worker start-up: one torch thread per worker (the workers already share the CPUs, and a
    forked child must not reuse the parent's thread pool)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 1,
    desc: str = "",
    progress: bool = True,
    unit: str = "video",
) -> list[R]:
    """``[fn(item) for item in items]``, in order, over ``workers`` processes.

    ``workers <= 1`` runs in this process (no pickling, easy to debug). Otherwise a process
    pool is used; on Linux the workers are forked, so they start at once without importing
    torch again. ``fn`` must be a module-level function. An exception raised by ``fn`` stops
    the run at once (pending items are cancelled) and is raised here.
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, desc=desc, unit=unit, disable=not progress)]
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread_each)
    try:
        futures = [pool.submit(fn, item) for item in items]
        with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress) as bar:
            for future in as_completed(futures):
                future.result()  # raise a worker's exception now, not after the last video
                bar.update()
        results = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return results
