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


def _fail_on_three(i: int) -> int:
    if i == 3:
        raise ValueError("part three is bad")
    return i


def test_a_part_error_is_raised_here_and_stops_the_others():
    import multiprocessing

    import pytest

    with pytest.raises(ValueError, match="part three is bad"):
        list(run_parts(list(range(8)), _fail_on_three, workers=2))
    assert multiprocessing.active_children() == []


def _die_on_two(i: int) -> int:
    import os

    if i == 2:
        os._exit(9)  # a worker killed mid-part reports nothing
    return i


def test_a_worker_that_dies_without_reporting_is_an_error_naming_its_part():
    import pytest

    with pytest.raises(RuntimeError, match=r"ingest part 2: .*exit code 9"):
        list(run_parts(list(range(4)), _die_on_two, workers=2))


def test_a_part_that_ignores_sigterm_is_still_stopped_on_close():
    import multiprocessing
    import time

    def stubborn(i: int) -> int:
        if i:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(600)
        return i

    parts = run_parts([0, 1, 2], stubborn, workers=3)
    assert next(parts) == 0
    parts.close()  # returns at once: the sleeping parts are killed, not asked
    assert multiprocessing.active_children() == []
