"""The run context: what one invocation of ``mixture train`` trains on, decided once, frozen.

:func:`open_run` reads the run config's start facts: the run directory, the compiled schedule (compiling
the named mixture file into the run directory when ``schedule:`` is one), the number of batches, the
batch this invocation stops at and the world size. The builders of :mod:`trainer.build` take the context
(or the parts of it they need) and return what they build; nothing is attached to it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixture.errors import MixtureError
from mixture.run_dir import CHECKPOINTS
from mixture.schedule import Schedule
from mixture.units import Duration, Unit, parse_duration
from trainer.config import RunConfig, require, resolve_path


@dataclass(frozen=True)
class RunContext:
    """One run's start facts.

    Attributes:
        config: The run config.
        base: The directory the config's relative paths are relative to.
        run_dir: The run directory.
        schedule_path: The compiled schedule's directory.
        schedule: The compiled schedule.
        num_batches: Global batches (optimizer steps) in the schedule, over every phase's batch size.
        stop_batch: The batch count this invocation trains to (the schedule's end unless ``stop_at``).
        world_size: Ranks training.
    """

    config: RunConfig
    base: Path
    run_dir: Path
    schedule_path: str
    schedule: Schedule
    num_batches: int
    stop_batch: int
    world_size: int

    @property
    def global_batch_size(self) -> int:
        """Samples per global batch (the run's; a phase may have its own: ``schedule.segments``)."""
        return self.schedule.global_batch_size

    @property
    def device_batch_size(self) -> int:
        """The largest batch one rank trains in a step (the default microbatch: no accumulation)."""
        return self.schedule.max_batch_size // self.world_size

    def path(self, value: str | None) -> str | None:
        """A path from the config, relative to its file unless absolute or a URL."""
        return resolve_path(self.base, value)

    @property
    def checkpoint_folder(self) -> str:
        """Where checkpoints are saved: ``checkpoint.folder``, else ``RUN_DIR/checkpoints``."""
        return self.path(self.config.checkpoint.folder) or str(self.run_dir / CHECKPOINTS)


def open_run(config: RunConfig, base: Path) -> RunContext:
    """The context of a run (compiling its mixture file into the run directory first when it names one).

    Raises:
        MixtureError: For a missing schedule, an unknown variant or a ``stop_at`` outside the schedule.
    """
    from composer.utils import dist

    from mixture.schedule import load_schedule

    run_dir = run_dir_of(config, base)
    schedule_path = _schedule_dir(config, base, run_dir)
    schedule = load_schedule(schedule_path)
    world_size = dist.get_world_size()
    schedule.check_world_size(world_size)
    num_batches = schedule.num_batches
    stop = num_batches if config.stop_at is None else stop_batch(parse_duration(config.stop_at), schedule,
                                                                  num_batches)
    return RunContext(config, base, run_dir, schedule_path, schedule, num_batches, stop, world_size)


def run_dir_of(config: RunConfig, base: Path) -> Path:
    """The run directory a config names (relative to its file)."""
    return Path(resolve_path(base, config.run_dir) or ".")


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


def stop_batch(duration: Duration, schedule: Schedule, total: int) -> int:
    """``stop_at`` in batches: ``40ba``, ``50%`` of the batches, or tokens (the first batch reaching them).

    Raises:
        MixtureError: For another unit, or a batch outside ``1..total``.
    """
    if duration.unit is Unit.BATCHES:
        stop = int(duration.value)
    elif duration.unit is Unit.PERCENT and duration.ref is None:
        stop = int(np.ceil(float(duration.value) / 100 * total))
    elif duration.unit is Unit.TOKENS:
        stop = int(np.searchsorted(schedule.batch_tokens(), int(duration.value), side="left"))
    elif duration.unit is Unit.SAMPLES:
        stop = schedule.batches_before(int(duration.value))
    else:
        raise MixtureError(f"stop_at {duration.text!r}: write batches (`40ba`), a percentage (`50%`), tokens or "
                           "samples")
    require(0 < stop <= total, f"stop_at {duration.text!r} is batch {stop}, outside the schedule's 1..{total}")
    return stop
