"""Running independent ingest parts in worker processes.

Parts write to their own directories and journal files, so they can run in any order and in parallel;
finalisation puts them back in order. Workers are forked: they inherit the imported modules (``import
streaming`` alone takes ~10 s here) and the part readers, so they start in milliseconds where spawn would
re-import everything in every worker. Where fork is unavailable, parts run one after another.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator

_TASK: Callable[[int], int] | None = None


def _init_worker() -> None:
    # A forked worker inherits the parent's signal handlers; libraries imported earlier in the parent
    # (Streaming, torch, a test harness) may catch SIGTERM, and then Pool.terminate() can never end the
    # worker and joining it hangs. Workers take the default dispositions back.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _call(index: int) -> int:
    assert _TASK is not None, "run_parts sets the task before forking"
    return _TASK(index)


def default_workers() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_parts(indices: list[int], task: Callable[[int], int], workers: int) -> Iterator[int]:
    """Run ``task(index)`` for each index; yields each task's result (rows read) as it finishes.

    Args:
        indices: Parts to run.
        task: Writes one part; returns the number of input rows it read (for progress).
        workers: Processes to use; 1 runs in this process.
    """
    global _TASK
    if workers <= 1 or len(indices) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for index in indices:
            yield task(index)
        return
    _TASK = task
    try:
        pool = multiprocessing.get_context("fork").Pool(min(workers, len(indices)), initializer=_init_worker)
        try:
            yield from pool.imap_unordered(_call, indices)
        except BaseException:  # an error, an interrupt, or the caller closing the generator early
            pool.terminate()
            pool.join()
            raise
        pool.close()  # all parts done: the workers exit on their own
        pool.join()
    finally:
        _TASK = None
