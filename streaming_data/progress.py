"""Progress bars with rates (rich), on stderr, quiet when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Items per second of a task, with its unit (``12.3k tokens/s``)."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
            if speed >= scale:
                return Text(f"{speed / scale:.1f}{suffix} {task.fields.get('unit', '')}/s")
        return Text(f"{speed:.2f} {task.fields.get('unit', '')}/s")


class Counters:
    """Named progress counters; ``advance(name, n)`` moves one."""

    def __init__(self, progress: Progress | None, names: dict[str, int | None]) -> None:
        self._progress = progress
        self._tasks = {name: progress.add_task(name, total=total, unit=name) for name, total in names.items()} \
            if progress else {}

    def advance(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        if self._progress is not None:
            self._progress.advance(self._tasks[name], amount)


@contextmanager
def progress(counters: dict[str, int | None], *, enabled: bool = True) -> Iterator[Counters]:
    """Show one bar per counter (name -> total, or None when unknown) while the block runs."""
    if not enabled:
        yield Counters(None, counters)
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield Counters(bar, counters)
