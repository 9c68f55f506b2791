"""Running independent ingest parts in worker processes.

Parts write to their own directories and journal files, so they can run in any order and in parallel;
finalisation puts them back in order. Each part runs in its own forked process: it inherits the imported
modules (``import streaming`` alone takes ~10 s here) and the part readers, so it starts in milliseconds
where spawn would re-import everything. Where fork is unavailable, parts run one after another.

Why not ``multiprocessing.Pool``: its workers share one task queue guarded by a process-shared lock, and
``Pool.terminate()`` (on an error or an interrupt) waits on that lock and on workers that a signal handler
inherited from the parent may keep alive; under load the test suite hung there (a worker blocked on the
queue's lock while the parent waited for it, seen twice). Here a part's process shares nothing with the
others: it reports through its own pipe, and stopping early kills every part still running (SIGKILL, so no
inherited handler can keep one alive) and reaps it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any


def default_workers() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _run_one(task: Callable[[int], int], index: int, send: Connection) -> None:
    # A forked process inherits the parent's signal handlers; libraries imported earlier in the parent
    # (Streaming, torch, a test harness) may catch SIGTERM or SIGINT. A part takes the defaults back.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        result: tuple[str, Any] = ("ok", task(index))
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        result = ("error", error)
    try:
        send.send(result)
    except Exception as error:  # the exception itself does not pickle: send its text
        send.send(("error", RuntimeError(f"ingest part {index} failed: {type(result[1]).__name__}: "
                                         f"{result[1]}; (and could not be sent: {error})")))
    send.close()


def run_parts(indices: list[int], task: Callable[[int], int], workers: int) -> Iterator[int]:
    """Run ``task(index)`` for each index; yields each task's result (rows read) as it finishes.

    A part's exception is raised here (after every other running part is stopped); a part's process that
    dies without reporting (killed, out of memory) raises ``RuntimeError`` naming the part and exit code.

    Args:
        indices: Parts to run.
        task: Writes one part; returns the number of input rows it read (for progress).
        workers: Processes at once; 1 runs in this process.
    """
    if workers <= 1 or len(indices) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for index in indices:
            yield task(index)
        return
    ctx = multiprocessing.get_context("fork")
    waiting = list(reversed(indices))
    running: dict[Connection, tuple[int, Any]] = {}  # the receiving end -> (part, process)
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                index = waiting.pop()
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_run_one, args=(task, index, send), daemon=True)
                process.start()
                send.close()  # the child holds the only sending end: EOF here means it is gone
                running[receive] = (index, process)
            for receive in wait(list(running)):
                index, process = running.pop(receive)
                try:
                    status, value = receive.recv()
                except EOFError:
                    process.join()
                    raise RuntimeError(f"ingest part {index}: its worker process died without reporting "
                                       f"(exit code {process.exitcode}); run the command again to resume") from None
                finally:
                    receive.close()
                process.join()
                if status == "error":
                    raise value
                yield value
    finally:  # an error, an interrupt, or the caller closing the generator early: stop every part left
        for receive, (_, process) in running.items():
            if process.is_alive():
                process.kill()
            process.join()
            receive.close()
