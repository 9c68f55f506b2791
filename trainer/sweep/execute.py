"""Train a sweep's run tree, parents first, resumably (``mixture sweep run``).

:func:`run_sweep` trains the runs of ``sweep.json`` (written by :func:`trainer.sweep.prepare.prepare_sweep`)
in order, in this process (one rank) or as ``composer -n N`` subprocesses. It is resumable because the
trainer is: a run whose ``run.json`` says it reached its last batch is skipped; any other is started again,
and ``checkpoint.autoresume`` continues it from its newest checkpoint (a run that broke before its first
checkpoint starts over). The first failure stops the sweep.

Composer and torch are imported only when a run is trained in this process.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from mixture.errors import MixtureError
from mixture.locations import is_url
from mixture.run_dir import TRAIN_LOG, checkpoint_batch
from trainer.sweep.records import SweepRun, read_sweep, write_sweep
from trainer.sweep.status import run_state, write_aliases

Say = Callable[[str], None]


def launch_commands(sweep_dir: str | Path, nproc: int = 1) -> list[str]:
    """One ``composer -n N -m mixture train RUN.yaml`` line per run, parents first, each saying what it waits for."""
    lines = []
    for run in read_sweep(sweep_dir).runs:
        wait = (f"after {run.after} (its checkpoint at batch {run.start_batch:,})" if run.after
                else "first: from scratch")
        lines.append(f"composer -n {nproc} -m mixture train {shlex.quote(run.config)}  # {run.id}: batches "
                     f"{run.start_batch:,} -> {run.stop_batch:,}, {wait}")
    return lines


def run_sweep(sweep_dir: str | Path, nproc: int = 1, say: Say = print) -> list[str]:
    """Train every run not finished yet, parents first; returns the ids of the runs trained.

    Args:
        sweep_dir: A sweep directory written by :func:`prepare_sweep`.
        nproc: Ranks per run: 1 trains in this process; more launch ``composer -n N`` subprocesses.
        say: Where progress lines go.

    Raises:
        MixtureError: At the first run that fails (naming it and its log), or a run directory trained with
            another schedule (the mixture file changed since).
    """
    root = Path(sweep_dir)
    trained = []
    for run in read_sweep(root).runs:
        state = run_state(run)
        if state.status == "done":
            say(f"skip {run.id}: done (batch {state.last_batch:,})")
            continue
        if state.status == "stale":
            raise MixtureError(f"{run.run_dir} was trained with another schedule than the sweep's {run.id} "
                               "(the mixture file changed since)", hint="delete that run directory to retrain it")
        how = _start_note(run, state.last_batch)
        say(f"train {run.id}: batches {run.start_batch:,} -> {run.stop_batch:,}, {how}")
        _set_failure(root, run.id, None)
        _train_one(root, run, nproc)
        after = run_state(run)
        if after.status != "done":
            _fail(root, run, f"stopped at batch {after.last_batch:,}, before its last batch {run.stop_batch:,}")
        say(f"done {run.id}: batch {after.last_batch:,}")
        trained.append(run.id)
    write_aliases(root)
    return trained


def _start_note(run: SweepRun, reached: int) -> str:
    """Where a run (re)starts, truthfully: its newest own checkpoint, else its parent's, else scratch."""
    folder = Path(run.checkpoint_folder())
    latest = folder / "latest-rank0.pt"
    origin = f"from {run.after} at batch {run.start_batch:,}" if run.after else "from scratch"
    saved = checkpoint_batch(latest.resolve().name) if not is_url(str(folder)) and latest.exists() else None
    if saved is not None:
        lost = ("" if reached <= saved else f"; batch {reached:,} is trained again" if reached == saved + 1
                else f"; batches {saved + 1:,}-{reached:,} are trained again")
        return f"resuming from its checkpoint at batch {saved:,}{lost}"
    return f"{origin} (it reached batch {reached:,} before, with no checkpoint saved)" if reached else origin


def _train_one(root: Path, run: SweepRun, nproc: int) -> None:
    log = Path(run.run_dir) / TRAIN_LOG
    if nproc > 1:
        cmd = [sys.executable, "-m", "composer.cli.launcher", "-n", str(nproc), "-m", "mixture", "train",
               run.config]
        with open(log, "a") as out:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        if code != 0:
            _fail(root, run, f"`{shlex.join(cmd)}` exited with {code}")
        return
    from trainer.run import train

    try:
        train(run.config)
    except Exception as exc:  # noqa: BLE001 - any failure is reported against the run, with its traceback logged
        with open(log, "a") as out:
            out.write(traceback.format_exc())
        message = str(exc) if isinstance(exc, MixtureError) else f"{type(exc).__name__}: {exc}"
        _fail(root, run, message)


def _fail(root: Path, run: SweepRun, why: str) -> None:
    log = Path(run.run_dir) / TRAIN_LOG
    _set_failure(root, run.id, why)
    raise MixtureError(f"sweep run {run.id} failed: {why}",
                       hint=f"its log is {log}; once fixed, `mixture sweep run` again skips the finished runs and "
                            "resumes this one from its newest checkpoint")


def _set_failure(root: Path, run_id: str, why: str | None) -> None:
    """Record (or clear) a failure in ``sweep.json``: a run that failed before writing run.json has no other trace."""
    sweep = read_sweep(root)
    if why is not None or run_id in sweep.failures:
        write_sweep(root, sweep.with_failure(run_id, why))
