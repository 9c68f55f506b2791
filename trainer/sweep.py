"""`mixture sweep run|status`: train a sweep's run tree, resumably, and say where it stands.

:func:`prepare_sweep` compiles and plans the sweep (``plan.json``, as ``mixture sweep plan -o`` writes it),
then writes one full run config per planned run, ``SWEEP_DIR/runs/<run>/run.yaml``, derived from the
user's base run config (model, optimiser, precision, evaluation, loggers: everything but the start point,
the schedule and the run directory), and ``SWEEP_DIR/sweep.json``: the runs in dependency order and,
for every variant, the run directory that holds its final model and results (the one ``mixture compare``
reads). A run starts from scratch, or branches from its parent run's checkpoint at its first batch
(``branch:``: the trainer checks the two schedules agree before that batch); it keeps a checkpoint at every
branch point (``checkpoint.save_at``).

:func:`run_sweep` trains the runs in that order, in this process (one rank) or as ``composer -n N``
subprocesses. It is resumable because the trainer is: a run whose ``run.json`` says it reached its last
batch is skipped; any other is started again, and ``checkpoint.autoresume`` continues it from its newest
checkpoint (a run that broke before its first checkpoint starts over). The first failure stops the sweep.

Composer and torch are imported only when a run is trained in this process: status and planning stay light.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mixture.errors import MixtureError
from trainer.config import RunConfig, resolve_path
from trainer.sweep_status import SWEEP_FORMAT, read_sweep, run_state, write_aliases, write_sweep

# Fields of a run config that are paths, resolved relative to the base config's directory, as the trainer
# resolves them relative to the run config's.
_PATHS = (("model", "tokenizer"), ("model", "lm", "pretrained"), ("model", "vision", "pretrained"),
          ("checkpoint", "folder"), ("data", "cache_dir"), ("eval", "vqa", "file"))
# Fields the sweep sets for each run; a base config that sets them is told they are replaced.
_SWEPT = ("schedule", "variant", "run_dir", "stop_at", "branch", "checkpoint.load", "checkpoint.save_at",
          "checkpoint.autoresume")

Say = Callable[[str], None]


class _Base(RunConfig):
    """The base run config: a run config whose schedule and run directory the sweep fills in."""

    schedule: str = ""
    run_dir: str = ""


@dataclass(frozen=True)
class SweepRun:
    """One planned run, as written to ``sweep.json``.

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


def default_sweep_dir(file: str | Path) -> Path:
    """``out/sweeps/<name>`` for a mixture file named ``name``."""
    from mixture.load import read_spec

    return Path("out") / "sweeps" / read_spec(file)[0].name


def _base_dict(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The base config as written, with relative paths made absolute, and notes on fields the sweep sets."""
    from mixture.load import read_model

    config, _ = read_model(path, _Base, "run config", "model:, optimizer:, eval:, ...")
    data = config.model_dump(mode="json", exclude_unset=True)
    base = Path(path).resolve().parent
    for keys in _PATHS:
        *parents, last = keys
        node = data
        for key in parents:
            node = node.get(key) or {}
        if isinstance(node.get(last), str):
            node[last] = resolve_path(base, node[last])
    for heldout in data.get("eval", {}).get("heldout", {}).values():
        heldout["location"] = resolve_path(base, heldout["location"])
    notes = [f"{path}: {field} is set per run by the sweep; the base's value is not used" for field in _SWEPT
             if _get(data, field.split(".")) is not None]
    for field in _SWEPT:
        *parents, last = field.split(".")
        (_get(data, parents) or {}).pop(last, None)
    return data, notes


def _get(data: dict[str, Any], keys: list[str]) -> Any:  # noqa: ANN401 - any YAML value
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _derive(base: dict[str, Any], run: SweepRun, schedule: str, save_at: list[int], has_children: bool,
            num_batches: int, branch: dict[str, str] | None) -> dict[str, Any]:
    """The full run config of one planned run."""
    # autoresume is what makes a re-run of the sweep continue a broken run from its newest checkpoint.
    checkpoint = {**base.get("checkpoint", {}), "save_at": save_at, "autoresume": True}
    if "folder" in checkpoint:  # each run needs its own folder: autoresume reads the newest checkpoint in it
        checkpoint["folder"] = f"{checkpoint['folder'].rstrip('/')}/{run.id}"
    if has_children:
        checkpoint["keep"] = -1  # a rotation could delete a branch point before its branches start
    out: dict[str, Any] = {**base, "schedule": schedule, "run_dir": run.run_dir, "checkpoint": checkpoint}
    if run.stop_batch < num_batches:
        out["stop_at"] = f"{run.stop_batch}ba"
    if branch is not None and "load" in branch:
        out["checkpoint"]["load"] = branch["load"]
    elif branch is not None:
        out["branch"] = branch
    if not run.finishes:  # a pure trunk: nobody reads its scores or its export
        out["eval"], out["export"] = {}, False
    RunConfig.model_validate(out)
    return out


def _checkpoint(folder: str, batch: int) -> str:
    return f"{folder.rstrip('/')}/ba{batch}-rank0.pt"


def prepare_sweep(file: str | Path, base_config: str | Path, sweep_dir: str | Path | None = None,
                  on_variant: Callable[[str, bool], None] | None = None) -> tuple[Path, list[str]]:
    """Compile and plan a sweep, write every run's config and ``sweep.json``.

    Args:
        file: The mixture file with a sweep.
        base_config: The base run config (YAML): how to train; schedule and run directory may be left out.
        sweep_dir: Where the sweep lives (default ``out/sweeps/<name>``).
        on_variant: Told each variant's name and whether its compiled schedule was reused.

    Returns:
        The sweep directory, and notes for the user (base fields the sweep replaces).

    Raises:
        MixtureError: For a bad mixture file or base config.
    """
    from mixture.plan import plan_sweep
    from mixture.plan_files import compile_sweep, plan_dict, write_plan

    root = Path(sweep_dir or default_sweep_dir(file)).resolve()
    base, notes = _base_dict(base_config)
    found, schedules = compile_sweep(file, root, on_variant)
    plan = plan_sweep(schedules)
    content = plan_dict(plan, found, schedules, file, root)
    write_plan(content, root)
    run_of = {node: r.schedule for r in plan.runs() for node in r.nodes}
    folder = base.get("checkpoint", {}).get("folder")
    folders = {r.schedule: f"{folder.rstrip('/')}/{r.schedule}" if folder else str(root / "runs" / r.schedule /
                                                                                    "checkpoints") for r in plan.runs()}
    runs = [_write_run(root, base, plan, planned, schedules, run_of, folders) for planned in plan.runs()]
    _write_index(root, content, runs, plan, run_of, base_config)
    return root, notes


def _write_run(root: Path, base: dict[str, Any], plan: Any, planned: Any, schedules: dict[str, Any],
               run_of: dict[str, str], folders: dict[str, str]) -> SweepRun:
    """Write ``runs/<run>/run.yaml`` for one planned run (a :class:`~mixture.plan.PlanRun`)."""
    run_dir = root / "runs" / planned.schedule
    after = run_of[planned.parent] if planned.parent else None
    run = SweepRun(planned.schedule, str(run_dir / "run.yaml"), str(run_dir), planned.start_batch,
                   planned.stop_batch, after, _checkpoint(folders[after], planned.start_batch) if after else None,
                   plan.node(planned.nodes[-1]).finishes, schedules[planned.schedule].fingerprint)
    branch = None
    if after is not None and run.checkpoint is not None:
        same = schedules[after].fingerprint == run.fingerprint  # a resume, not a branch: the trainer checks it
        branch = {"load": run.checkpoint} if same else {"checkpoint": run.checkpoint,
                                                         "schedule": str(schedules[after].path)}
    has_children = any(n.parent in planned.nodes for n in plan.nodes if run_of[n.id] != planned.schedule)
    config = _derive(base, run, str(schedules[planned.schedule].path), list(planned.save_at), has_children,
                     plan.num_batches[planned.schedule], branch)
    run_dir.mkdir(parents=True, exist_ok=True)
    Path(run.config).write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def _write_index(root: Path, content: dict[str, Any], runs: list[SweepRun], plan: Any, run_of: dict[str, str],
                 base_config: str | Path) -> None:
    """``sweep.json``: the runs, and where each variant's final model and results are."""
    by_id = {r.id: r for r in runs}
    values = {v["name"]: v["values"] for v in content["variants"]}
    out_variants = {}
    for name in plan.variants:
        node = plan.served_by(name)
        run = by_id[run_of[node.id]]
        out_variants[name] = {"values": values[name], "run": run.id, "run_dir": run.run_dir, "batch": node.stop_batch,
                              "at_run_end": node.stop_batch == run.stop_batch, "same_as": plan.same_as(name)}
    old = read_sweep(root, missing_ok=True)
    write_sweep(root, {"format": SWEEP_FORMAT, "name": content["name"], "file": content["file"],
                       "base_config": str(Path(base_config).resolve()),
                       "runs": [asdict(r) | {"finishes": list(r.finishes)} for r in runs],
                       "variants": out_variants, "totals": content["totals"],
                       "failures": (old or {}).get("failures", {})})


def launch_commands(sweep_dir: str | Path, nproc: int = 1) -> list[str]:
    """One ``composer -n N -m mixture train RUN.yaml`` line per run, parents first, each saying what it waits for."""
    lines = []
    for run in read_sweep(sweep_dir)["runs"]:
        wait = (f"after {run['after']} (its checkpoint at batch {run['start_batch']:,})" if run["after"]
                else "first: from scratch")
        lines.append(f"composer -n {nproc} -m mixture train {shlex.quote(run['config'])}  # {run['id']}: batches "
                     f"{run['start_batch']:,} -> {run['stop_batch']:,}, {wait}")
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
    for run in read_sweep(root)["runs"]:
        state = run_state(run)
        if state.status == "done":
            say(f"skip {run['id']}: done (batch {state.last_batch:,})")
            continue
        if state.status == "stale":
            raise MixtureError(f"{run['run_dir']} was trained with another schedule than the sweep's {run['id']} "
                               "(the mixture file changed since)", hint="delete that run directory to retrain it")
        how = _start_note(run, state.last_batch)
        say(f"train {run['id']}: batches {run['start_batch']:,} -> {run['stop_batch']:,}, {how}")
        _set_failure(root, run["id"], None)
        _train_one(root, run, nproc)
        after = run_state(run)
        if after.status != "done":
            _fail(root, run, f"stopped at batch {after.last_batch:,}, before its last batch {run['stop_batch']:,}")
        say(f"done {run['id']}: batch {after.last_batch:,}")
        trained.append(run["id"])
    write_aliases(root)
    return trained


def _start_note(run: dict[str, Any], reached: int) -> str:
    """Where a run (re)starts, truthfully: its newest own checkpoint, else its parent's, else scratch."""
    config = yaml.safe_load(Path(run["config"]).read_text()) or {}
    folder = Path((config.get("checkpoint") or {}).get("folder") or Path(run["run_dir"]) / "checkpoints")
    latest = folder / "latest-rank0.pt"
    origin = f"from {run['after']} at batch {run['start_batch']:,}" if run["after"] else "from scratch"
    if latest.exists() and "://" not in str(folder):
        saved = int(latest.resolve().name.split("-")[0].removeprefix("ba"))
        lost = f"; batches {saved + 1:,}-{reached:,} are trained again" if reached > saved else ""
        return f"resuming from its checkpoint at batch {saved:,}{lost}"
    return f"{origin} (it reached batch {reached:,} before, with no checkpoint saved)" if reached else origin


def _train_one(root: Path, run: dict[str, Any], nproc: int) -> None:
    log = Path(run["run_dir"]) / "train.log"
    if nproc > 1:
        cmd = [sys.executable, "-m", "composer.cli.launcher", "-n", str(nproc), "-m", "mixture", "train",
               run["config"]]
        with open(log, "a") as out:
            code = subprocess.run(cmd, env={**os.environ, "FSDP_VERSION": "2"}, stdout=out, stderr=subprocess.STDOUT,
                                  check=False).returncode
        if code != 0:
            _fail(root, run, f"`{shlex.join(cmd)}` exited with {code}")
        return
    from trainer.run import train

    try:
        train(run["config"])
    except Exception as exc:  # noqa: BLE001 - any failure is reported against the run, with its traceback logged
        with open(log, "a") as out:
            out.write(traceback.format_exc())
        message = str(exc) if isinstance(exc, MixtureError) else f"{type(exc).__name__}: {exc}"
        _fail(root, run, message)


def _fail(root: Path, run: dict[str, Any], why: str) -> None:
    log = Path(run["run_dir"]) / "train.log"
    _set_failure(root, run["id"], why)
    raise MixtureError(f"sweep run {run['id']} failed: {why}",
                       hint=f"its log is {log}; once fixed, `mixture sweep run` again skips the finished runs and "
                            "resumes this one from its newest checkpoint")


def _set_failure(root: Path, run_id: str, why: str | None) -> None:
    """Record (or clear) a failure in ``sweep.json``: a run that failed before writing run.json has no other trace."""
    data = read_sweep(root)
    failures = data.setdefault("failures", {})
    if why is None and run_id not in failures:
        return
    if why is None:
        failures.pop(run_id)
    else:
        failures[run_id] = {"error": why, "time": time.time()}
    write_sweep(root, data)
