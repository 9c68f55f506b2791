"""Where a sweep stands: ``sweep.json`` and each run's ``run.json``, read without torch or composer.

A run is *pending* (no run.json), *running* (run.json says so: training now, or a process that was killed),
*stopped* at a batch before its last (``stop_at``, or an interrupted run), *failed* (run.json says so, or
the sweep recorded a failure before the trainer wrote anything), *done* (it reached its last batch), or
*stale* (its run.json names another schedule than the sweep's: the mixture file changed since it trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from mixture import run_dir as rd
from mixture.errors import MixtureError
from trainer.sweep.records import Failure, SweepRun, VariantEntry, alias_dir, read_sweep


@dataclass(frozen=True)
class RunState:
    """One run's state (see the module docstring) and the last batch it reached (0: none)."""

    status: str
    last_batch: int = 0
    error: str = ""


def run_state(run: SweepRun, failure: Failure | None = None) -> RunState:
    """The state of one planned run, from its ``run.json`` (and the failure the sweep recorded, if any)."""
    info = rd.find_info(run.run_dir)
    if info is None:
        return RunState("failed", 0, failure.error) if failure else RunState("pending")
    if info.schedule_fingerprint not in (None, run.fingerprint):
        return RunState("stale", info.last_batch)
    if failure:
        return RunState("failed", info.last_batch, failure.error)
    status = info.status or "running"
    if status in ("done", "stopped"):
        status = "done" if info.last_batch >= run.stop_batch else "stopped"
    return RunState(status, info.last_batch)


@dataclass(frozen=True)
class RunRow:
    """A planned run, its state and its final evaluation (results.json's, for a finished run that finishes
    variants; {} otherwise)."""

    run: SweepRun
    state: RunState
    eval: dict[str, float]


@dataclass(frozen=True)
class VariantRow:
    """A variant's entry, whether its final model exists, and the run directory ``mixture compare`` should
    read for it (an alias for a variant served by another's run)."""

    entry: VariantEntry
    done: bool
    results_dir: str


@dataclass
class SweepStatus:
    """A sweep's runs with their states, its variants with where their results are, and what it saves.

    Attributes:
        name: The sweep's name (the mixture file's).
        runs: The runs, parents first.
        variants: Variant name -> its row.
        totals: ``plan.json``'s totals.
    """

    name: str
    runs: list[RunRow] = field(default_factory=list)
    variants: dict[str, VariantRow] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)


def sweep_status(sweep_dir: str | Path) -> SweepStatus:
    """Read a sweep directory's state.

    Raises:
        MixtureError: If it holds no ``sweep.json``.
    """
    sweep = read_sweep(sweep_dir)
    out = SweepStatus(sweep.name, totals=sweep.totals)
    states = {}
    for run in sweep.runs:
        state = states[run.id] = run_state(run, sweep.failures.get(run.id))
        results = _results(run.run_dir) if state.status == "done" and run.finishes else None
        out.runs.append(RunRow(run, state, results.eval if results else {}))
    for name, entry in sweep.variants.items():
        state = states[entry.run]
        done = state.status in ("done", "stopped", "running", "failed") and state.last_batch >= entry.batch
        alias = alias_dir(sweep_dir, name)
        results_dir = str(alias) if entry.same_as and (alias / rd.RUN_JSON).is_file() else entry.run_dir
        out.variants[name] = VariantRow(entry, done, results_dir)
    return out


def _results(run_dir: str | Path) -> rd.Results | None:
    """A run's ``results.json``, or None when absent or unreadable (status shows what it can)."""
    try:
        return rd.read_results(run_dir)
    except MixtureError:
        return None


def write_aliases(sweep_dir: str | Path) -> list[Path]:
    """Give each finished variant served by another variant's run (``same_as``) a run directory of its own.

    ``mixture compare`` places a run by its ``run.json`` variant, so a variant identical to another would
    otherwise not appear. The alias holds the serving run's ``run.json`` with this variant's name and values
    (plus ``same_as`` and ``trained_in``), a copy of its ``results.json`` and a link to its ``metrics.jsonl``.

    Returns:
        The alias directories written.
    """
    written = []
    for name, entry in read_sweep(sweep_dir).variants.items():
        source = Path(entry.run_dir)
        info = rd.find_info(source)
        if not entry.same_as or not entry.at_run_end or info is None or info.status != "done":
            continue
        target = alias_dir(sweep_dir, name)
        target.mkdir(parents=True, exist_ok=True)
        rd.write_info(target, replace(info, name=name, variant=rd.Variant(name, entry.values),
                                      same_as=entry.same_as, trained_in=str(source)))
        results = _results(source)
        if results is not None:
            rd.write_results(target, results)
        link = target / rd.METRICS
        if not link.is_symlink() and (source / rd.METRICS).exists():
            link.symlink_to(source / rd.METRICS)
        written.append(target)
    return written


def result_dirs(status: SweepStatus) -> list[str]:
    """One run directory per finished variant, evaluated at its end, for ``mixture compare``."""
    return list(dict.fromkeys(v.results_dir for v in status.variants.values() if v.done and v.entry.at_run_end))
