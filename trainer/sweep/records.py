"""The sweep directory's names and ``sweep.json`` as frozen records, read and written without torch.

A sweep directory holds ``plan.json`` and ``schedules/`` (the compiler's: :mod:`mixture.plan_files`),
``sweep.json`` (:class:`SweepFile`: the runs in dependency order, where each variant's final model is, the
failures recorded), ``runs/<run>/`` (each planned run's run directory, with its ``run.yaml``) and
``variants/<variant>/`` (alias run directories of variants trained by another variant's run).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mixture import run_dir as rd
from mixture.errors import MixtureError

SWEEP_FORMAT = "mixture-sweep/1"
SWEEP_JSON = "sweep.json"
RUNS = "runs"
VARIANTS = "variants"
RUN_YAML = "run.yaml"


def run_path(sweep_dir: str | Path, run_id: str) -> Path:
    """``SWEEP_DIR/runs/<run>``: a planned run's run directory (its ``run.yaml`` lies in it)."""
    return Path(sweep_dir) / RUNS / run_id


def alias_dir(sweep_dir: str | Path, variant: str) -> Path:
    """``SWEEP_DIR/variants/<variant>``: the results of a variant trained by another's run, under its own name."""
    return Path(sweep_dir).resolve() / VARIANTS / variant


@dataclass(frozen=True)
class SweepRun:
    """One planned run.

    Attributes:
        id: The run's name: the variant whose schedule it trains (``plan.json``'s run ``schedule``).
        config: Its run config, ``SWEEP_DIR/runs/<id>/run.yaml``.
        run_dir: Its run directory.
        start_batch: First batch it trains.
        stop_batch: Batch it ends at.
        after: The run whose checkpoint it starts from (None: from scratch).
        checkpoint: That checkpoint file (None: from scratch).
        finishes: Variants whose final model is this run's last checkpoint (they are evaluated and exported).
        fingerprint: Fingerprint of the schedule it trains.
    """

    id: str
    config: str
    run_dir: str
    start_batch: int
    stop_batch: int
    after: str | None
    checkpoint: str | None
    finishes: tuple[str, ...]
    fingerprint: str

    def checkpoint_folder(self, config: dict[str, Any] | None = None) -> str:
        """Where the run saves its checkpoints: its config's ``checkpoint.folder`` (local or remote), else
        ``RUN_DIR/checkpoints``. ``config``: the run config already read (default: read ``self.config``)."""
        import yaml

        if config is None:
            config = yaml.safe_load(Path(self.config).read_text()) or {}
        return (config.get("checkpoint") or {}).get("folder") or str(Path(self.run_dir) / rd.CHECKPOINTS)


@dataclass(frozen=True)
class VariantEntry:
    """Where one variant's final model is.

    Attributes:
        values: Its sweep axis values.
        run: The run that trains it.
        run_dir: That run's directory.
        batch: The batch its schedule ends at.
        at_run_end: Whether that is the run's last batch (then the run evaluates and exports it).
        same_as: The variant whose identical schedule serves it (None: its own).
    """

    values: dict[str, Any]
    run: str
    run_dir: str
    batch: int
    at_run_end: bool
    same_as: str | None


@dataclass(frozen=True)
class Failure:
    """A failure ``mixture sweep run`` recorded against a run (one that broke before writing run.json has no
    other trace)."""

    error: str
    time: float


@dataclass(frozen=True)
class SweepFile:
    """``sweep.json``.

    Attributes:
        name: The sweep's name (the mixture file's).
        file: The mixture file.
        base_config: The base run config.
        runs: The planned runs, parents first.
        variants: Variant name -> where its final model is.
        totals: ``plan.json``'s totals (batches and tokens planned, from scratch, saved).
        failures: Run id -> the failure recorded against it.
    """

    name: str
    file: str
    base_config: str
    runs: tuple[SweepRun, ...]
    variants: dict[str, VariantEntry]
    totals: dict[str, float]
    failures: dict[str, Failure] = field(default_factory=dict)

    def with_failure(self, run_id: str, why: str | None) -> SweepFile:
        """A copy with a failure recorded against ``run_id`` (or cleared, for ``why`` None)."""
        failures = {k: v for k, v in self.failures.items() if k != run_id}
        if why is not None:
            failures[run_id] = Failure(why, time.time())
        return replace(self, failures=failures)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``sweep.json``."""
        data = {"format": SWEEP_FORMAT, **asdict(self)}
        data["runs"] = [{**asdict(r), "finishes": list(r.finishes)} for r in self.runs]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepFile:
        """The record of a parsed ``sweep.json`` (format checked by :func:`read_sweep`)."""
        runs = tuple(SweepRun(**{**r, "finishes": tuple(r["finishes"])}) for r in data["runs"])
        return cls(data["name"], data["file"], data["base_config"], runs,
                   {name: VariantEntry(**v) for name, v in data["variants"].items()}, dict(data["totals"]),
                   {k: Failure(**v) for k, v in data.get("failures", {}).items()})


def read_sweep(sweep_dir: str | Path) -> SweepFile:
    """``SWEEP_DIR/sweep.json``.

    Raises:
        MixtureError: If it is missing, of another format, or not a sweep file.
    """
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        raise MixtureError(f"{path} does not exist: no sweep was prepared there",
                           hint="run `mixture sweep run FILE --run-config BASE.yaml -o SWEEP_DIR` (or with "
                                "--print-commands) first")
    data = rd.read_json(path)
    if data.get("format") != SWEEP_FORMAT:
        raise MixtureError(f"{path}: unsupported format {data.get('format')!r}",
                           hint="prepare the sweep again with `mixture sweep run`")
    try:
        return SweepFile.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise MixtureError(f"{path}: not a sweep file ({type(exc).__name__}: {exc})",
                           hint="prepare the sweep again with `mixture sweep run`") from None


def write_sweep(sweep_dir: str | Path, sweep: SweepFile) -> None:
    """Write ``sweep.json`` whole (through a rename)."""
    rd.write_json(Path(sweep_dir) / SWEEP_JSON, sweep.to_dict())
