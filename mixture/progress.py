"""Progress of long commands: a rich bar with rate and ETA on a terminal, timestamped lines otherwise.

One board per command holds its tasks (``compile``: positions; ``ingest``: documents and samples;
``train``: batches). Where stderr is a terminal, the board is a rich progress display (bar, done/total,
rate, ETA, a free-text field such as the last loss); where it is not (CI, ``nohup``, a pipe to a log file),
each task prints a plain line at most every ``interval`` seconds and once when it ends::

    2026-12-02 07:41:09 train: 120/480 batches (25.0%), 3.1 batches/s, 1.2k tokens/s, ETA 1m56s, loss 4.812

``mixture --quiet`` (or ``-q`` after any subcommand) sets ``MIXTURE_QUIET=1`` in the environment, which
silences every board of that process and of the processes it starts (sweep runs, Composer's ranks).
``MIXTURE_PROGRESS_INTERVAL`` overrides the seconds between plain lines (default 10).

No clock, environment or terminal is read by the compiler itself: commands create boards and pass a
task's ``advance`` as the compiler's progress callback.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

QUIET_ENV = "MIXTURE_QUIET"
INTERVAL_ENV = "MIXTURE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def is_quiet() -> bool:
    """Whether progress is switched off for this process (``--quiet``)."""
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


def human(value: float, digits: int = 3) -> str:
    """A count with an SI suffix: ``3.44T``, ``28B``, ``1.2k``; exact below 1,000."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:.{digits}g}" if value != int(value) else f"{int(value)}"


def duration(seconds: float) -> str:
    """``3s``, ``4m05s``, ``2h07m``."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Task:
    """One counter of a board (``advance`` it, or ``update`` it to a value); see :class:`Board`."""

    def __init__(self, board: Board, label: str, total: int | None, unit: str) -> None:
        self.board, self.label, self.total, self.unit = board, label, total, unit
        self.completed = 0
        self.info = ""
        self._first: tuple[float, int] | None = None  # (time, count) at the first advance: rates exclude start-up
        self._last_line = board.clock()
        self._rich_id: Any = (board._rich.add_task(label, total=total, info="", rate="", eta="")
                              if board._rich is not None else None)

    def advance(self, amount: int = 1, info: str | None = None) -> None:
        """Count ``amount`` more; ``info`` replaces the free-text field (e.g. ``loss 4.81``)."""
        self.update(self.completed + amount, info=info)

    def update(self, completed: int, total: int | None = None, info: str | None = None) -> None:
        """Set the count (and the total, the free-text field) and show it if it is time to."""
        now = self.board.clock()
        self.completed = completed
        if self._first is None and completed:  # a total set before any work (update(0, total=N)) is no start
            self._first = (now, completed)
        self.total = total if total is not None else self.total
        self.info = info if info is not None else self.info
        if self.board._rich is not None:
            rate = self.rate(now)
            self.board._rich.update(self._rich_id, completed=completed, total=self.total, info=self.info,
                                    rate=f"{human(rate)} {self.unit}/s" if rate else "", eta=self.eta(now))
        elif self.board.plain and now - self._last_line >= self.board.interval:
            self._last_line = now
            self.board.line(self.summary(now))

    def rate(self, now: float | None = None) -> float | None:
        """Units per second since the first advance (None before there is a measurable interval)."""
        now = self.board.clock() if now is None else now
        if self._first is None or now <= self._first[0] or self.completed <= self._first[1]:
            return None
        return (self.completed - self._first[1]) / (now - self._first[0])

    def eta(self, now: float | None = None) -> str:
        """``ETA 1m56s`` at the rate since the first advance (the same text on a terminal and in a log), or
        ``""`` without a total or a rate."""
        rate = self.rate(now)
        if not rate or not self.total or self.completed >= self.total:
            return ""
        return f"ETA {duration((self.total - self.completed) / rate)}"

    def summary(self, now: float | None = None) -> str:
        """``label: done/total unit (pct), rate, ETA, info`` as plain text."""
        rate = self.rate(now)
        parts = [f"{self.label}: {self.completed:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
                 + (f" ({100 * self.completed / self.total:.1f}%)" if self.total else "")]
        if rate:
            parts.append(f"{human(rate)} {self.unit}/s")
            parts.append(self.eta(now))
        if self.info:
            parts.append(self.info)
        return ", ".join(p.strip() for p in parts if p)

    def done(self) -> None:
        """Print the final plain line (terminal bars stay on screen by themselves): ``- done``, or
        ``- stopped`` short of a known total (an interrupted run)."""
        if self.board.plain:
            short = self.total is not None and self.completed < self.total
            self.board.line(self.summary() + (" - stopped" if short else " - done"))


class Board:
    """The progress display of one command.

    Args:
        quiet: Show nothing (default: ``--quiet`` / ``MIXTURE_QUIET``).
        stream: Where to write (default stderr).
        interval: Seconds between plain lines of a task (default ``MIXTURE_PROGRESS_INTERVAL`` or 10).
        terminal: Force (True) or forbid (False) the rich display; default: whether ``stream`` is a terminal.
        clock: Seconds (monotonic), injectable for tests.
    """

    def __init__(self, *, quiet: bool | None = None, stream: TextIO | None = None, interval: float | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = is_quiet() if quiet is None else quiet
        env_interval = os.environ.get(INTERVAL_ENV)
        self.interval = interval if interval is not None else float(env_interval or DEFAULT_INTERVAL_S)
        self.clock = clock
        on_terminal = terminal if terminal is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.plain = not self.quiet and not on_terminal
        self._rich = None if self.quiet or not on_terminal else _rich_progress(self.stream)
        self.tasks: list[Task] = []

    def task(self, label: str, total: int | None = None, unit: str = "") -> Task:
        """A new counter on this board."""
        task = Task(self, label, total, unit)
        self.tasks.append(task)
        return task

    def line(self, text: str) -> None:
        """One timestamped line (plain mode), or a line above the bars (terminal); nothing when quiet."""
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.console.print(text, highlight=False)
            return
        self.stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        self.stream.flush()

    def __enter__(self) -> Board:
        end_starting()  # a command's first progress display replaces its start-up spinner
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif exc[0] is None:
            for task in self.tasks:
                task.done()


def count_lines(task: Task, done: tuple[str, ...] = ("done ", "skip "),
                current: tuple[str, ...] = ("train ",)) -> Callable[[str], None]:
    """A ``say(line)`` for code that reports by lines (the sweep runner): a line starting with one of
    ``done`` advances ``task`` by one; one starting with ``current`` becomes its free-text field."""

    def say(line: str) -> None:
        if line.startswith(done):
            task.advance(1, info="")
        elif line.startswith(current):
            task.update(task.completed, info=line.split(":", 1)[0])

    return say


@contextmanager
def busy(label: str, **board: Any) -> Iterator[Board]:
    """Show that a step with no countable units is running: a spinner with the elapsed time on a terminal,
    otherwise a line at the start, one every ``interval`` seconds (``label: running, 40s``) and one at the
    end with the time it took. The block may add lines with ``board.line``."""
    import threading

    with Board(**board) as shown:
        start, stop = shown.clock(), threading.Event()
        rich_id = shown._rich.add_task(label, total=None, info="", rate="", eta="") if shown._rich is not None else None
        if shown.plain:
            shown.line(f"{label}: started")

        def beat() -> None:
            while not stop.wait(max(shown.interval, 0.05)):
                if shown.plain:
                    shown.line(f"{label}: running, {duration(shown.clock() - start)}")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield shown
        finally:
            stop.set()
            thread.join()
            if rich_id is not None:
                shown._rich.update(rich_id, total=1, completed=1)
        if shown.plain:
            shown.line(f"{label}: done in {duration(shown.clock() - start)}")


_STARTING: list[Callable[[], None]] = []


def starting(label: str, **board: Any) -> None:
    """Show that a command is starting (imports, building) as :func:`busy` does, until the next progress
    board opens (the first training batch's) or :func:`end_starting` is called, whichever comes first."""
    shown = busy(label, **board)
    shown.__enter__()
    _STARTING.append(lambda: shown.__exit__(None, None, None))


def end_starting() -> None:
    """End the start-up display of :func:`starting`, if one is shown."""
    while _STARTING:
        _STARTING.pop()()


@contextmanager
def track(label: str, total: int | None = None, unit: str = "", **board: Any) -> Iterator[Task]:
    """A one-task board: ``with track("compile", unit="positions") as task: work(task.advance)``."""
    with Board(**board) as shown:
        yield shown.task(label, total, unit)


def _rich_progress(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn)

    # The ETA is the task's own (rate since the first advance), not rich's recent-speed estimate: a compile
    # counts a one-source phase's positions in one step, which would make rich's estimate near zero.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                    TextColumn("{task.fields[info]}"), console=Console(file=stream), transient=False)
