"""Reruns of a run directory: its lock across ranks, and what an earlier invocation left to do.

- :func:`locked`: global rank 0 takes the run directory's lock (:mod:`mixture.run_lock`) before anything
  is written (the schedule compiled into the run directory included) and every rank learns the outcome,
  so a refused start stops all ranks at once with the same one-line message, and the ranks of one run
  never refuse each other.
- :func:`finished_result`: the run directory already holds what this invocation would produce (run.json
  ``done`` or ``stopped`` at the batch it trains to, results.json at that batch, export/ when due): nothing
  to do, nothing is written.
- :func:`final_eval_line`: the evaluation an earlier invocation logged at the final batch before it was
  killed (it is reused, not repeated, so metrics.jsonl has one evaluation per batch as an uninterrupted
  run's has).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mixture import run_dir as rd
from mixture.errors import MixtureError
from trainer.context import RunContext


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (in global rank 0) for the block.

    Raises:
        MixtureError: On every rank, when another trainer holds the directory.
    """
    from composer.utils import dist

    from mixture.run_lock import acquire

    if dist.get_world_size() > 1:
        from trainer.build import train_device

        # The ranks agree on the lock before the Trainer exists; it reuses this process group.
        dist.initialize_dist(train_device())
    lock, refusal = None, [None]  # rank 0's problems, if refused, broadcast to every rank
    if dist.get_global_rank() == 0:
        try:
            lock = acquire(run_dir)
        except MixtureError as exc:
            refusal = [exc.problems]
    dist.broadcast_object_list(refusal, src=0)
    if refusal[0] is not None:
        raise MixtureError(list(refusal[0]))
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def finished_result(ctx: RunContext) -> tuple[int, dict[str, float], Path | None] | None:
    """``(batch, final scores, export)`` of a run directory that already ends where this invocation would,
    or None when there is something to do (no file is read but run.json and results.json)."""
    info = rd.find_info(ctx.run_dir)
    if info is None or info.status not in ("done", "stopped") or info.schedule_fingerprint != ctx.schedule.fingerprint:
        return None
    if info.last_batch != ctx.stop_batch:
        return None
    try:
        results = rd.read_results(ctx.run_dir)
    except MixtureError:
        return None
    if results is None or results.batch != info.last_batch:
        return None
    export = ctx.run_dir / rd.EXPORT
    due = ctx.config.export and info.last_batch == ctx.num_batches
    if due and not (export / "config.json").exists():
        return None
    return info.last_batch, results.eval, export if due else None


def final_eval_line(run_dir: Path, batch: int) -> rd.Line | None:
    """The last evaluation line logged at ``batch`` in metrics.jsonl, if any."""
    lines, _ = rd.read_metrics(run_dir)
    found = [line for line in lines if line["batch"] == batch and rd.is_eval_line(line)]
    return found[-1] if found else None
