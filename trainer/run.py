"""`mixture train RUN.yaml`: one training run over a compiled schedule, on any number of ranks.

The flow, in order: read the run config -> open (or compile) the schedule -> tokenizer and model ->
the scheduled dataset and its collator -> optimiser and the schedule's LR -> callbacks (per-source
metrics, evaluation) and loggers -> a Composer Trainer (FSDP2 when there is more than one rank) -> fit ->
export. Everything the order and the LR depend on is the schedule's; the run config only says how to train.

Start points: ``checkpoint.autoresume`` continues this run from its newest checkpoint (a re-run of a broken
run); ``checkpoint.load`` resumes from a checkpoint of the same schedule (the fingerprint is checked);
``branch`` starts from a trunk run's checkpoint with this run's schedule after checking that both schedules
agree on every position and learning rate before the checkpoint (:mod:`trainer.branch`).

The run's start facts are one frozen :class:`~trainer.context.RunContext`; :mod:`trainer.build` turns it
into the Trainer's arguments.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixture.run_dir import EXPORT, RunInfo, Variant
from trainer.config import check_run_config
from trainer.context import RunContext


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    batches: int
    final_eval: dict[str, float]
    export_dir: Path | None


def train(config_path: str | os.PathLike[str], **overrides: Any) -> RunResult:
    """Run (or continue) the training run described by a run config file.

    Args:
        config_path: The run config (YAML).
        **overrides: Top-level fields replacing the file's (e.g. ``stop_at="40ba"``, ``run_dir=...``).

    Raises:
        MixtureError: For bad configs, schedules, checkpoints or branch points, with what to do.
    """
    config, base = check_run_config(config_path, overrides)
    from trainer.context import open_run

    return _fit(open_run(config, base))


def _fit(ctx: RunContext) -> RunResult:
    """Build the pieces, write run.json, fit, export, and record how the run ended."""
    from composer import Trainer

    from trainer.build import build_pieces
    from trainer.metrics import RunLog

    log = RunLog(ctx.run_dir)
    pieces = build_pieces(ctx, log)
    trainer = Trainer(**pieces.trainer_args)
    variant = ctx.schedule.manifest.get("variant", {"name": "", "values": {}})
    log.start(RunInfo(name=ctx.run_dir.name, status="running", schedule=str(Path(ctx.schedule_path).resolve()),
                      schedule_fingerprint=ctx.schedule.fingerprint, variant=Variant(variant["name"], variant["values"]),
                      global_batch_size=ctx.global_batch_size, world_size=ctx.world_size,
                      last_batch=int(trainer.state.timestamp.batch), stop_batch=ctx.stop_batch, started=time.time()))
    try:
        trainer.fit()
    except BaseException:
        log.end("failed", int(trainer.state.timestamp.batch))
        raise
    batches = int(trainer.state.timestamp.batch)
    finished = batches == ctx.num_batches
    export = None
    if ctx.config.export and finished:
        from trainer.export import export_run

        export = export_run(trainer.state.model, ctx.run_dir / EXPORT, pieces.tokenizer_dir)
    final = {k: v for k, v in pieces.evaluation.last.items() if k != "batch"}
    log.end("done" if finished else "stopped", batches, finished=time.time(), export=export)
    trainer.close()
    return RunResult(ctx.run_dir, batches, final, export)
