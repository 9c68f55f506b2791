"""A sweep on disk: every variant compiled under ``SWEEP_DIR/schedules/``, and the plan in ``plan.json``.

``compile_sweep`` compiles each variant of a mixture file, reusing a compiled directory whose manifest
says it was compiled from the same spec, the same source data (by fingerprint), the same algorithm and the
same toolkit version. ``plan_dict`` is what ``plan.json`` holds (its schema is in docs/sweeps.md) and
``read_plan`` turns it back into a :class:`~mixture.plan.SweepPlan` for whoever runs the sweep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mixture import __version__
from mixture.api import Variant, compile_variant, variants
from mixture.compiler import ALGORITHM, FORMAT
from mixture.errors import MixtureError
from mixture.plan import PlanNode, SweepPlan
from mixture.schedule import Schedule, load_schedule

PLAN_FORMAT = "mixture-sweep-plan/1"
PLAN_JSON = "plan.json"

# Called once per variant with its name and whether its compiled directory was reused.
OnVariant = Callable[[str, bool], None]


def _up_to_date(variant: Variant, target: Path) -> bool:
    """Whether ``target`` holds this variant compiled from the same spec, data, algorithm and toolkit."""
    from mixture.sourcedata import load_source

    try:
        manifest = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    spec = variant.resolved.spec
    same = (manifest.get("format") == FORMAT and manifest.get("algorithm") == ALGORITHM
            and manifest.get("toolkit_version") == __version__
            and manifest.get("spec") == json.loads(json.dumps(spec.model_dump(mode="json", by_alias=True))))
    if not same:
        return False
    recorded = {s["name"]: s["fingerprint"] for s in manifest["sources"]}
    current = {n: load_source(n, spec.sources[n], spec.seed, variant.base_dir).fingerprint
               for n in variant.resolved.used_sources}
    return recorded == current


def compile_sweep(path: str | Path, sweep_dir: str | Path,
                  on_variant: OnVariant | None = None) -> tuple[list[Variant], dict[str, Schedule]]:
    """Compile every variant of a mixture file's sweep into ``sweep_dir/schedules/<variant name>``.

    Args:
        path: The mixture file.
        sweep_dir: Where the sweep lives; created if missing.
        on_variant: Told each variant's name and whether its existing compiled directory was reused.

    Returns:
        The variants and their schedules, in sweep order.

    Raises:
        MixtureError: If the file has no sweep, or any variant is invalid or infeasible.
    """
    found = variants(path)
    if len(found) == 1 and not found[0].name:
        raise MixtureError(f"{path} has no sweep: there is nothing to plan",
                           hint="add `sweep: {axes: {NAME: {field: ..., values: [...]}}}` (docs/dsl.md), "
                                "or compile the one run with `mixture compile`")
    schedules = {}
    for variant in found:
        target = Path(sweep_dir) / "schedules" / variant.name
        reused = _up_to_date(variant, target)
        schedules[variant.name] = load_schedule(target) if reused else compile_variant(variant, target)
        if on_variant:
            on_variant(variant.name, reused)
    return found, schedules


def _node_dict(plan: SweepPlan, node: PlanNode) -> dict[str, object]:
    return {"id": node.id, "schedule": node.schedule, "start_batch": node.start_batch,
            "stop_batch": node.stop_batch, "parent": node.parent, "children": [c.id for c in plan.children(node.id)],
            "variants": list(node.variants), "finishes": list(node.finishes), "batches": node.batches,
            "start_tokens": node.start_tokens, "stop_tokens": node.stop_tokens, "tokens": node.tokens}


def plan_dict(plan: SweepPlan, found: list[Variant], schedules: dict[str, Schedule],
              file: str | Path, sweep_dir: str | Path) -> dict[str, object]:
    """The content of ``plan.json`` (schema: docs/sweeps.md); schedule paths are relative to ``sweep_dir``."""
    runs = plan.runs()
    run_of = {node: run.schedule for run in runs for node in run.nodes}
    out_variants = []
    for variant in found:
        schedule, served = schedules[variant.name], plan.served_by(variant.name)
        out_variants.append({
            "name": variant.name, "values": variant.values,
            "schedule_dir": str(Path(schedule.path).resolve().relative_to(Path(sweep_dir).resolve())),
            "fingerprint": schedule.fingerprint, "num_batches": plan.num_batches[variant.name],
            "num_tokens": plan.num_tokens[variant.name], "served_by": served.id, "run": run_of[served.id],
            "same_as": plan.same_as(variant.name)})
    first = schedules[plan.variants[0]].manifest
    return {"format": PLAN_FORMAT, "file": str(Path(file).resolve()), "name": first["name"],
            "global_batch_size": plan.global_batch_size, "variants": out_variants,
            "nodes": [_node_dict(plan, n) for n in plan.nodes],
            "runs": [{"schedule": r.schedule, "nodes": list(r.nodes), "start_batch": r.start_batch,
                      "stop_batch": r.stop_batch, "parent": r.parent, "save_at": list(r.save_at)} for r in runs],
            "totals": plan.totals()}


def write_plan(content: dict[str, object], sweep_dir: str | Path) -> Path:
    """Write ``plan.json`` into ``sweep_dir`` (whole, via a rename); returns its path."""
    out = Path(sweep_dir) / PLAN_JSON
    tmp = out.with_name(f"{PLAN_JSON}.partial")
    tmp.write_text(json.dumps(content, indent=1) + "\n")
    tmp.replace(out)
    return out


def read_plan(sweep_dir: str | Path) -> tuple[SweepPlan, dict[str, Path]]:
    """The plan in ``sweep_dir/plan.json`` and each variant's compiled schedule directory.

    Raises:
        MixtureError: If there is no plan, or it was written in another format.
    """
    path = Path(sweep_dir) / PLAN_JSON
    if not path.is_file():
        raise MixtureError(f"{path} does not exist", hint="write it with `mixture sweep plan FILE -o SWEEP_DIR`")
    data = json.loads(path.read_text())
    if data.get("format") != PLAN_FORMAT:
        raise MixtureError(f"{path}: unsupported plan format {data.get('format')!r}",
                           hint="plan the sweep again with this version of the toolkit")
    nodes = tuple(PlanNode(n["id"], n["schedule"], n["start_batch"], n["stop_batch"], n["parent"],
                           tuple(n["variants"]), tuple(n["finishes"]), n["start_tokens"], n["stop_tokens"])
                  for n in data["nodes"])
    found = data["variants"]
    plan = SweepPlan(tuple(v["name"] for v in found), nodes, {v["name"]: v["num_batches"] for v in found},
                     {v["name"]: v["num_tokens"] for v in found}, data["global_batch_size"])
    return plan, {v["name"]: Path(sweep_dir) / v["schedule_dir"] for v in found}
