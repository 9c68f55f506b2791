"""Ingest parts in forked workers: results complete, and workers can always be stopped."""

from __future__ import annotations

import signal

from streaming_data.parallel import run_parts


def _term_is_default(_: int) -> int:
    return int(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)


def test_workers_take_default_sigterm_even_when_the_parent_catches_it():
    # A library in the parent catching SIGTERM once made Pool.terminate() unable to end a worker that
    # waited on the task queue: the suite hung in CI. Workers must reset it.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        assert sorted(run_parts(list(range(6)), _term_is_default, workers=2)) == [1] * 6
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_every_part_runs_once_and_an_early_close_stops_the_pool():
    assert sorted(run_parts(list(range(7)), lambda i: i * i, workers=2)) == [i * i for i in range(7)]
    parts = run_parts(list(range(50)), lambda i: i, workers=2)
    next(parts)
    parts.close()  # must return, not hang in terminate/join
