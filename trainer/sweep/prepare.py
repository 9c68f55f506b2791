"""Prepare a sweep for training: every run's config and ``sweep.json``.

:func:`prepare_sweep` compiles and plans the sweep (``plan.json``, as ``mixture sweep plan -o`` writes it),
then writes one full run config per planned run, ``SWEEP_DIR/runs/<run>/run.yaml``, derived from the
user's base run config (model, optimiser, precision, evaluation, loggers: everything but the start point,
the schedule and the run directory), and ``SWEEP_DIR/sweep.json``: the runs in dependency order and,
for every variant, the run directory that holds its final model and results (the one ``mixture compare``
reads). A run starts from scratch, or branches from its parent run's checkpoint at its first batch
(``branch:``: the trainer checks the two schedules agree before that batch); it keeps a checkpoint at every
branch point (``checkpoint.save_at``).

Composer and torch are never imported here: preparing stays light (:mod:`trainer.sweep.execute` trains).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mixture.run_dir import CHECKPOINTS, checkpoint_file
from trainer.config import RunConfig, resolve_path
from trainer.sweep.records import RUN_YAML, SWEEP_JSON, SweepFile, SweepRun, VariantEntry, read_sweep, run_path, write_sweep

# Fields of a run config that are paths, resolved relative to the base config's directory, as the trainer
# resolves them relative to the run config's.
_PATHS = (("model", "tokenizer"), ("model", "lm", "pretrained"), ("model", "vision", "pretrained"),
          ("checkpoint", "folder"), ("data", "cache_dir"), ("eval", "vqa", "file"))
# Fields the sweep sets for each run; a base config that sets them is told they are replaced.
_SWEPT = ("schedule", "variant", "run_dir", "stop_at", "branch", "checkpoint.load", "checkpoint.save_at",
          "checkpoint.autoresume")


class _Base(RunConfig):
    """The base run config: a run config whose schedule and run directory the sweep fills in."""

    schedule: str = ""
    run_dir: str = ""


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
    return f"{folder.rstrip('/')}/{checkpoint_file(batch)}"


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
    folders = {r.schedule: f"{folder.rstrip('/')}/{r.schedule}" if folder else str(run_path(root, r.schedule) /
                                                                                    CHECKPOINTS) for r in plan.runs()}
    runs = [_write_run(root, base, plan, planned, schedules, run_of, folders) for planned in plan.runs()]
    _write_index(root, content, runs, plan, run_of, base_config)
    return root, notes


def _write_run(root: Path, base: dict[str, Any], plan: Any, planned: Any, schedules: dict[str, Any],
               run_of: dict[str, str], folders: dict[str, str]) -> SweepRun:
    """Write ``runs/<run>/run.yaml`` for one planned run (a :class:`~mixture.plan.PlanRun`)."""
    run_dir = run_path(root, planned.schedule)
    after = run_of[planned.parent] if planned.parent else None
    run = SweepRun(planned.schedule, str(run_dir / RUN_YAML), str(run_dir), planned.start_batch,
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
    variants = {}
    for name in plan.variants:
        node = plan.served_by(name)
        run = by_id[run_of[node.id]]
        variants[name] = VariantEntry(values[name], run.id, run.run_dir, node.stop_batch,
                                      node.stop_batch == run.stop_batch, plan.same_as(name))
    failures = read_sweep(root).failures if (root / SWEEP_JSON).is_file() else {}
    write_sweep(root, SweepFile(content["name"], content["file"], str(Path(base_config).resolve()), tuple(runs),
                                variants, content["totals"], failures))
