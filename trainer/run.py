"""`mixture train RUN.yaml`: one training run over a compiled schedule, on any number of ranks.

The flow, in order: read the run config -> open (or compile) the schedule -> tokenizer and model ->
the scheduled dataset and its collator -> optimiser and the schedule's LR -> callbacks (per-source
metrics, evaluation) and loggers -> a Composer Trainer (FSDP2 when there is more than one rank) -> fit ->
export. Everything the order and the LR depend on is the schedule's; the run config only says how to train.

Start points: ``checkpoint.autoresume`` continues this run from its newest checkpoint (a re-run of a broken
run; a run killed after its final checkpoint only evaluates, writes results.json and exports; a finished
run is left as it is); ``checkpoint.load`` resumes from a checkpoint of the same schedule (the fingerprint is checked);
``branch`` starts from a trunk run's checkpoint with this run's schedule after checking that both schedules
agree on every position and learning rate before the checkpoint (:mod:`trainer.branch`).

One trainer at a time: the run directory is locked for the invocation (:mod:`trainer.run_guard`).
The run's start facts are one frozen :class:`~trainer.context.RunContext`; :mod:`trainer.build` turns it
into the Trainer's arguments.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixture.faults import kill_point
from mixture.run_dir import EXPORT, RunInfo, Variant
from trainer.config import check_run_config, require
from trainer.context import RunContext


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run produced.

    Attributes:
        run_dir: The run directory.
        batches: Batches trained.
        final_eval: The final evaluation's scores.
        export_dir: The Hugging Face export (None: not exported).
        unchanged: The run directory already held all of this; nothing was done.
    """

    run_dir: Path
    batches: int
    final_eval: dict[str, float]
    export_dir: Path | None
    unchanged: bool = False


def train(config_path: str | os.PathLike[str], **overrides: Any) -> RunResult:
    """Run (or continue, or finish) the training run described by a run config file.

    Args:
        config_path: The run config (YAML).
        **overrides: Top-level fields replacing the file's (e.g. ``stop_at="40ba"``, ``run_dir=...``).

    Raises:
        MixtureError: For bad configs, schedules, checkpoints or branch points, with what to do, and when
            another trainer holds the run directory.
    """
    config, base = check_run_config(config_path, overrides)
    from trainer.context import open_run, run_dir_of
    from trainer.run_guard import finished_result, locked

    with locked(run_dir_of(config, base)):
        ctx = open_run(config, base)
        done = finished_result(ctx)
        if done is not None:  # rerunning a finished run changes nothing
            return RunResult(ctx.run_dir, *done, unchanged=True)
        return _fit(ctx)


def _fit(ctx: RunContext) -> RunResult:
    """Build the pieces, write run.json, fit (or only finish: see :func:`_finish`), export, record the end."""
    from composer import Trainer

    from trainer.build import build_pieces
    from trainer.metrics import RunLog

    from trainer.interrupt import StopRequest

    log = RunLog(ctx.run_dir)
    pieces, stop = build_pieces(ctx, log), StopRequest()
    trainer = Trainer(**{**pieces.trainer_args, "callbacks": [*pieces.trainer_args["callbacks"], stop]})
    start = int(trainer.state.timestamp.batch)
    require(start <= ctx.stop_batch, f"{ctx.run_dir}: its newest checkpoint is at batch {start}, past this "
            f"invocation's stop at batch {ctx.stop_batch}", "a run cannot go back: stop later, or use another run_dir")
    variant = ctx.schedule.manifest.variant
    log.start(RunInfo(name=ctx.run_dir.name, status="running", schedule=str(Path(ctx.schedule_path).resolve()),
                      schedule_fingerprint=ctx.schedule.fingerprint, variant=Variant(variant["name"], variant["values"]),
                      global_batch_size=ctx.global_batch_size, world_size=ctx.world_size,
                      last_batch=start, stop_batch=ctx.stop_batch, started=time.time()))
    try:
        with stop.handling(ctx.world_size == 1):
            if start < ctx.stop_batch:
                trainer.fit()
            else:  # killed after its final checkpoint: only the steps after training are left
                _finish(ctx, trainer, pieces.evaluation)
            batches = int(trainer.state.timestamp.batch)
            finished = batches == ctx.num_batches
            export = _export(ctx, trainer, pieces.tokenizer_dir, again=start < ctx.stop_batch) if finished else None
    except BaseException as exc:  # an interrupt (Ctrl-C or kill, trainer.interrupt) stops the run; else it fails
        log.end("stopped" if isinstance(exc, KeyboardInterrupt) else "failed", int(trainer.state.timestamp.batch))
        raise
    final = {k: v for k, v in pieces.evaluation.last.items() if k != "batch"}
    log.end("done" if finished else "stopped", batches, finished=time.time(), export=export)
    trainer.close()
    stop.raise_if_requested()
    return RunResult(ctx.run_dir, batches, final, export)


def _finish(ctx: RunContext, trainer: Any, evaluation: Any) -> None:  # noqa: ANN401 - composer objects
    """The final evaluation and results.json of a run whose final checkpoint is loaded (Composer refuses to
    fit past ``max_duration``); an evaluation already logged at that batch is reused, not repeated."""
    from trainer.run_guard import final_eval_line

    line = final_eval_line(ctx.run_dir, int(trainer.state.timestamp.batch))
    if line is not None:
        evaluation.last = dict(line)
    evaluation.fit_end(trainer.state, trainer.logger)


def _export(ctx: RunContext, trainer: Any, tokenizer_dir: str, *, again: bool) -> Path | None:  # noqa: ANN401
    """Export the trained model (unless the config says not to); ``again=False`` keeps an existing export."""
    if not ctx.config.export:
        return None
    from trainer.export import export_run

    kill_point("before_export")
    out = ctx.run_dir / EXPORT
    if not again and (out / "config.json").exists():  # exports are renamed into place whole
        return out
    return export_run(trainer.state.model, out, tokenizer_dir)
