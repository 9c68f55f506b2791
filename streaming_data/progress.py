"""Ingest progress counters on the shared progress board (:mod:`mixture.progress`).

A rich bar per counter with rate (and ETA where the total is known) on a terminal; timestamped lines
otherwise; nothing with ``--no-progress`` or ``--quiet``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mixture.progress import Board, Task


class Counters:
    """Named progress counters; ``advance(name, n)`` moves one."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        self._tasks = tasks

    def advance(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        if name in self._tasks:
            self._tasks[name].advance(amount)


@contextmanager
def progress(counters: dict[str, int | None], *, enabled: bool = True) -> Iterator[Counters]:
    """Show one counter per name (name -> total, or None when unknown) while the block runs."""
    with Board(quiet=None if enabled else True) as board:
        yield Counters({name: board.task(f"ingest {name}", total, name) for name, total in counters.items()})
