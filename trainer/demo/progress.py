"""Progress while a sweep trains: a line every ~15 s with the run, its batch, speed, ETA and last loss.

The trainer writes one ``metrics.jsonl`` line per batch; a background thread reads the newest line of the
run being trained (the run directory whose metrics file changed last) and prints, e.g.::

    intro=40pctoftext_plan: batch 120/438, 0.24 s/batch, run ETA 1:16, sweep ETA 4:02, loss 3.912

so nobody waits minutes in silence. Speed is measured over the last interval, not assumed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from mixture.run_dir import METRICS, find_info
from trainer.demo import clock
from trainer.sweep.records import SweepRun

INTERVAL_S = 15.0


def last_line(path: Path, chunk: int = 8192) -> dict[str, Any] | None:
    """The last complete JSON line of a file that has a training loss (None when there is none yet)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - chunk))
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "loss/train" in record:  # not an evaluation line
            return record
    return None


class Progress:
    """A context manager that prints a sweep's training progress every ``interval`` seconds.

    Args:
        sweep_dir: The sweep directory (``sweep.json`` lists the runs).
        say: Where lines go.
        interval: Seconds between lines.
    """

    def __init__(self, sweep_dir: Path, say: Callable[[str], None], interval: float = INTERVAL_S) -> None:
        from trainer.sweep.records import read_sweep

        self.runs = list(read_sweep(sweep_dir).runs)
        self.say, self.interval = say, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-progress", daemon=True)
        self._seen: tuple[str, int, float] | None = None

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.line()
            if line:
                self.say(line)

    def line(self) -> str | None:
        """The progress line for now (None while no run has logged a batch since the last line)."""
        active = self._active()
        if active is None:
            return None
        run, record = active
        batch, now = int(record["batch"]), time.monotonic()
        seen, self._seen = self._seen, (run.id, batch, now)
        loss = record["loss/train"]
        if seen is None or seen[0] != run.id or batch <= seen[1]:
            return f"{run.id}: batch {batch:,}/{run.stop_batch:,}, loss {loss:.3f}"
        pace = (now - seen[2]) / (batch - seen[1])
        left = run.stop_batch - batch
        later = sum(r.stop_batch - r.start_batch for r in self.runs[self.runs.index(run) + 1:] if not _finished(r))
        return (f"{run.id}: batch {batch:,}/{run.stop_batch:,}, {pace:.2f} s/batch, run ETA "
                f"{clock(left * pace)}, sweep ETA {clock((left + later) * pace)}, "
                f"loss {loss:.3f}")

    def _active(self) -> tuple[SweepRun, dict[str, Any]] | None:
        newest, found = -1.0, None
        for run in self.runs:
            path = Path(run.run_dir) / METRICS
            if path.is_file() and path.stat().st_mtime > newest:
                record = last_line(path)
                if record is not None:
                    newest, found = path.stat().st_mtime, (run, record)
        return found


def _finished(run: SweepRun) -> bool:
    info = find_info(run.run_dir)
    return info is not None and info.status == "done"
