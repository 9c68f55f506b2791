"""`mixture train RUN.yaml`: one training run over a compiled schedule, on any number of ranks.

The flow, in order: read the run config -> open (or compile) the schedule -> tokenizer and model ->
the scheduled dataset and its collator -> optimiser and the schedule's LR -> callbacks (per-source
metrics, evaluation) and loggers -> a Composer Trainer (FSDP2 when there is more than one rank) -> fit ->
export. Everything the order and the LR depend on is the schedule's; the run config only says how to train.

Start points: ``checkpoint.autoresume`` continues this run from its newest checkpoint (a re-run of a broken
run); ``checkpoint.load`` resumes from a checkpoint of the same schedule (the fingerprint is checked);
``branch`` starts from a trunk run's checkpoint with this run's schedule after checking that both schedules
agree on every position and learning rate before the checkpoint (:func:`mixture.plan.common_prefix`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixture.errors import MixtureError
from trainer.config import RunConfig, load_run_config, require, resolve_path


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
    config, base = load_run_config(config_path)
    if overrides:
        config = RunConfig.model_validate({**config.model_dump(), **overrides})
    return _Run(config, base).fit()


class _Run:
    """The pieces of one run, built in the order of the module docstring."""

    def __init__(self, config: RunConfig, base: Path) -> None:
        from composer.utils import dist

        from mixture.schedule import load_schedule
        from trainer.metrics import RunLog

        self.config, self.base = config, base
        self.run_dir = Path(resolve_path(base, config.run_dir) or ".")
        self.schedule_path = _schedule_dir(config, base, self.run_dir)
        self.schedule = load_schedule(self.schedule_path)
        self.batch = self.schedule.global_batch_size
        self.num_batches = len(self.schedule) // self.batch
        # The batch count this invocation trains to (the schedule's end unless ``stop_at``).
        self.stop_batch = (self.num_batches if config.stop_at is None
                           else _stop_batch(config.stop_at, self.schedule, self.num_batches))
        self.world = dist.get_world_size()
        self.log = RunLog(self.run_dir)

    def fit(self) -> RunResult:
        from composer import Trainer

        from trainer.interrupt import StopRequest

        args, stop = self.trainer_args(), StopRequest()
        trainer = Trainer(**{**args, "callbacks": [*args["callbacks"], stop]})
        manifest = self.schedule.manifest
        self.log.update_run(name=self.run_dir.name, schedule=str(Path(self.schedule_path).resolve()),
                            schedule_fingerprint=self.schedule.fingerprint,
                            variant=manifest.get("variant", {"name": "", "values": {}}),
                            global_batch_size=self.batch, status="running",
                            last_batch=int(trainer.state.timestamp.batch), stop_batch=self.stop_batch,
                            world_size=self.world, started=time.time())
        try:
            with stop.handling(self.world == 1):
                trainer.fit()
        except BaseException as exc:  # interrupted (Ctrl-C, or a SIGTERM turned into one): stopped, not failed
            status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.log.update_run(status=status, last_batch=int(trainer.state.timestamp.batch))
            raise
        batches = int(trainer.state.timestamp.batch)
        finished = batches == self.num_batches
        export = self.export(trainer) if self.config.export and finished else None
        final = {k: v for k, v in self.evaluation.last.items() if k != "batch"}
        status = "done" if finished else "stopped"
        self.log.update_run(status=status, last_batch=batches, finished=time.time(),
                            export=str(export) if export else None)
        trainer.close()
        stop.raise_if_requested()
        return RunResult(self.run_dir, batches, final, export)

    def trainer_args(self) -> dict[str, Any]:
        from trainer.build import build_pieces

        pieces = build_pieces(self)
        self.evaluation = pieces["evaluation"]
        return pieces["trainer_args"]

    def export(self, trainer: Any) -> Path | None:
        from trainer.export import export_run

        return export_run(trainer.state.model, self.run_dir / "export", self.tokenizer_dir)


def _schedule_dir(config: RunConfig, base: Path, run_dir: Path) -> str:
    """The compiled schedule: the configured directory, or the mixture file compiled into the run dir."""
    path = resolve_path(base, config.schedule) or ""
    if Path(path).is_dir():
        require(Path(path, "manifest.json").exists(), f"{path} is not a compiled schedule (no manifest.json)",
                "compile it with `mixture compile FILE -o DIR`")
        return path
    require(Path(path).is_file(), f"schedule {config.schedule!r}: no such directory or mixture file",
            "point `schedule:` at a compiled schedule directory or a mixture file")
    from composer.utils import dist

    target = run_dir / "schedule"
    if dist.get_local_rank() == 0:
        from mixture.api import compile_variant, variants

        every = variants(path)
        found = [v for v in every if v.name == (config.variant or "")]
        require(bool(found), f"{path}: no variant {config.variant!r}",
                f"variants are: {', '.join(v.name for v in every)}")
        compile_variant(found[0], target)
    dist.barrier()  # other ranks wait for the compiled directory (written atomically)
    return str(target)


def _stop_batch(text: str, schedule: Any, total: int) -> int:
    """``stop_at`` in batches: ``40ba``, ``50%`` of the batches, or tokens (the first batch reaching them)."""
    from mixture.units import Unit, parse_duration

    duration = parse_duration(text)
    if duration.unit is Unit.BATCHES:
        stop = int(duration.value)
    elif duration.unit is Unit.PERCENT and duration.ref is None:
        stop = int(np.ceil(float(duration.value) / 100 * total))
    elif duration.unit is Unit.TOKENS:
        stop = int(np.searchsorted(schedule.batch_tokens(), int(duration.value), side="left"))
    elif duration.unit is Unit.SAMPLES:
        stop = -(-int(duration.value) // schedule.global_batch_size)
    else:
        raise MixtureError(f"stop_at {text!r}: write batches (`40ba`), a percentage (`50%`), tokens or samples")
    require(0 < stop <= total, f"stop_at {text!r} is batch {stop}, outside the schedule's 1..{total}")
    return stop


def branch_check(trunk_schedule: str, checkpoint: str, schedule: Any) -> int:
    """Check that ``schedule`` may continue from ``checkpoint`` of a run over ``trunk_schedule``.

    Returns:
        The checkpoint's position (samples consumed).

    Raises:
        MixtureError: If the checkpoint is not the trunk's, or the schedules differ before its position.
    """
    from mixture.plan import common_prefix
    from mixture.schedule import load_schedule

    trunk = load_schedule(trunk_schedule)
    state = _dataset_state(checkpoint)
    position = int(state["samples_consumed"])
    require(state.get("schedule_fingerprint") == trunk.fingerprint,
            f"{checkpoint} was made with schedule {state.get('schedule_fingerprint')}, not the trunk schedule "
            f"{trunk_schedule} ({trunk.fingerprint})", "name the schedule the trunk run trained on")
    agree = common_prefix(trunk, schedule) * schedule.global_batch_size
    require(agree >= position,
            f"cannot branch at position {position:,}: this run's schedule and the trunk's agree only on the "
            f"first {agree:,} positions (orders, learning rates and batch size must be identical before the "
            "branch point)", "branch from an earlier trunk checkpoint, at or before position "
            f"{agree:,}")
    return position


def _dataset_state(checkpoint: str) -> dict[str, Any]:
    require(Path(checkpoint).is_file(), f"checkpoint {checkpoint} does not exist")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    try:
        return state["state"]["dataset_state"]["train"]
    except (KeyError, TypeError):
        raise MixtureError(f"{checkpoint} has no scheduled-dataset state",
                           hint="branch from a checkpoint saved by `mixture train`") from None
