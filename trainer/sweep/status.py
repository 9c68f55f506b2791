"""Where a sweep stands: ``sweep.json`` and each run's ``run.json``, read without torch or composer.

A run is *pending* (no run.json), *running* (run.json says so: training now, or a process that was killed),
*stopped* at a batch before its last (``stop_at``, or an interrupted run), *failed* (run.json says so, or
the sweep recorded a failure before the trainer wrote anything), *done* (it reached its last batch), or
*stale* (its run.json names another schedule than the sweep's: the mixture file changed since it trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mixture import run_dir as rd
from mixture.errors import MixtureError

SWEEP_FORMAT = "mixture-sweep/1"
SWEEP_JSON = "sweep.json"
RUNS = "runs"  # SWEEP_DIR/runs/<run>/: each run's directory and its run.yaml
VARIANTS = "variants"  # SWEEP_DIR/variants/<variant>/: alias run directories
RUN_YAML = "run.yaml"


def run_path(sweep_dir: str | Path, run_id: str) -> Path:
    """``SWEEP_DIR/runs/<run>``: a planned run's run directory (its ``run.yaml`` lies in it)."""
    return Path(sweep_dir) / RUNS / run_id


def read_sweep(sweep_dir: str | Path, missing_ok: bool = False) -> dict[str, Any]:
    """``SWEEP_DIR/sweep.json`` ({} when missing and ``missing_ok``).

    Raises:
        MixtureError: If it is missing (unless ``missing_ok``) or of another format.
    """
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        if missing_ok:
            return {}
        raise MixtureError(f"{path} does not exist: no sweep was prepared there",
                           hint="run `mixture sweep run FILE --run-config BASE.yaml -o SWEEP_DIR` (or with "
                                "--print-commands) first")
    data = rd.read_json(path)
    if data.get("format") != SWEEP_FORMAT:
        raise MixtureError(f"{path}: unsupported format {data.get('format')!r}",
                           hint="prepare the sweep again with `mixture sweep run`")
    return data


def write_sweep(sweep_dir: str | Path, data: dict[str, Any]) -> None:
    """Write ``sweep.json`` whole (through a rename)."""
    rd.write_json(Path(sweep_dir) / SWEEP_JSON, data)


@dataclass(frozen=True)
class RunState:
    """One run's state (see the module docstring) and the last batch it reached (0: none)."""

    status: str
    last_batch: int = 0
    error: str = ""


def run_state(run: dict[str, Any], failures: dict[str, Any] | None = None) -> RunState:
    """The state of one ``sweep.json`` run, from its ``run.json`` (and the sweep's recorded failures)."""
    failure = (failures or {}).get(run["id"])
    info = rd.find_info(run["run_dir"])
    if info is None:
        return RunState("failed", 0, failure["error"]) if failure else RunState("pending")
    if info.schedule_fingerprint not in (None, run["fingerprint"]):
        return RunState("stale", info.last_batch)
    if failure:
        return RunState("failed", info.last_batch, failure["error"])
    status = info.status or "running"
    if status in ("done", "stopped"):
        status = "done" if info.last_batch >= run["stop_batch"] else "stopped"
    return RunState(status, info.last_batch)


@dataclass
class SweepStatus:
    """A sweep's runs with their states, its variants with where their results are, and what it saves.

    Attributes:
        name: The sweep's name (the mixture file's).
        runs: ``sweep.json`` runs, each with ``state`` (a :class:`RunState`) and ``eval`` (final evaluation of
            a finished run that finishes variants: results.json's ``eval``; {} otherwise).
        variants: Variant name -> ``sweep.json`` entry plus ``done`` (its final model exists) and
            ``results_dir`` (the run directory ``mixture compare`` should read: an alias for a ``same_as`` one).
        totals: ``plan.json``'s totals.
    """

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)


def sweep_status(sweep_dir: str | Path) -> SweepStatus:
    """Read a sweep directory's state.

    Raises:
        MixtureError: If it holds no ``sweep.json``.
    """
    data = read_sweep(sweep_dir)
    out = SweepStatus(data["name"], totals=data["totals"])
    states = {}
    for run in data["runs"]:
        state = run_state(run, data.get("failures"))
        states[run["id"]] = state
        results = _results(run["run_dir"]) if state.status == "done" and run["finishes"] else None
        out.runs.append({**run, "state": state, "eval": results.eval if results else {}})
    for name, entry in data["variants"].items():
        state = states[entry["run"]]
        done = state.status in ("done", "stopped", "running", "failed") and state.last_batch >= entry["batch"]
        alias = alias_dir(sweep_dir, name)
        results = str(alias) if entry["same_as"] and (alias / rd.RUN_JSON).is_file() else entry["run_dir"]
        out.variants[name] = {**entry, "done": done, "results_dir": results}
    return out


def alias_dir(sweep_dir: str | Path, variant: str) -> Path:
    """``SWEEP_DIR/variants/<variant>``: the results of a variant trained by another's run, under its own name."""
    return Path(sweep_dir).resolve() / VARIANTS / variant


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
    data, written = read_sweep(sweep_dir), []
    for name, entry in data["variants"].items():
        source = Path(entry["run_dir"])
        info = rd.find_info(source)
        if not entry["same_as"] or not entry["at_run_end"] or info is None or info.status != "done":
            continue
        target = alias_dir(sweep_dir, name)
        target.mkdir(parents=True, exist_ok=True)
        rd.write_info(target, replace(info, name=name, variant=rd.Variant(name, entry["values"]),
                                      same_as=entry["same_as"], trained_in=str(source)))
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
    return list(dict.fromkeys(v["results_dir"] for v in status.variants.values() if v["done"] and v["at_run_end"]))
