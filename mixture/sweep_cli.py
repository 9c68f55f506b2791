"""CLI of sweeps: `mixture sweep plan FILE [-o SWEEP_DIR]` (run and status build on the same plan).

Imports stay light at module level (argparse only); the planner itself is pure Python + NumPy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.tree import Tree

    from mixture.plan import PlanNode, SweepPlan


def _human(tokens: float) -> str:
    """``860.2B`` for 860,160,000,000: budget tokens at a glance."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(tokens) >= size:
            return f"{tokens / size:.1f}{suffix}"
    return f"{tokens:.0f}"


def _label(plan: SweepPlan, node: PlanNode) -> str:
    kind = "trunk" if plan.children(node.id) else "leaf"
    shared = f", shared by {len(node.variants)} variants" if len(node.variants) > 1 else ""
    label = (f"[bold]{node.id} {kind}[/] batches {node.start_batch:,} -> {node.stop_batch:,} "
             f"({node.batches:,} ba, {_human(node.tokens)} tok) with schedule [cyan]{node.schedule}[/]{shared}")
    if node.parent is not None:
        pct = 100 * node.start_batch / max(plan.num_batches[node.schedule], 1)
        label += (f"\n  branches from {node.parent} at batch {node.start_batch:,} = {_human(node.start_tokens)} tok "
                  f"= {pct:.1f}% of {node.schedule}")
    for name in node.finishes:
        twin = "" if name == node.schedule else f" (its schedule agrees with {node.schedule} to its end)"
        label += f"\n  [green]finishes {name}[/]{twin}"
    return label


def _tree(plan: SweepPlan, title: str) -> Tree:
    from rich.tree import Tree

    tree = Tree(title)
    stack = [(tree, n) for n in reversed(plan.children(None))]
    while stack:
        parent, node = stack.pop()
        branch = parent.add(_label(plan, node))
        stack += [(branch, c) for c in reversed(plan.children(node.id))]
    return tree


def print_plan(plan: SweepPlan, name: str) -> None:
    """The run tree, the runs with their lengths and checkpoints, and the compute saved."""
    from rich.table import Table

    from mixture.commands import _console

    console = _console()
    runs = plan.runs()
    console.print(_tree(plan, f"sweep [bold]{name}[/]: {len(plan.variants)} variants, {len(runs)} runs, "
                              f"global batch {plan.global_batch_size}"))
    table = Table(title="runs, in dependency order", title_justify="left")
    for col in ("run (schedule)", "starts from", "batches", "length", "tokens", "checkpoints at batch"):
        table.add_column(col, justify="left" if col in ("run (schedule)", "starts from") else "right")
    for run in runs:
        tokens = sum(plan.node(n).tokens for n in run.nodes)
        origin = f"{run.parent} @ {run.start_batch:,}" if run.parent else "scratch"
        table.add_row(run.schedule, origin, f"{run.start_batch:,} -> {run.stop_batch:,}",
                      f"{run.stop_batch - run.start_batch:,}", _human(tokens), ", ".join(f"{b:,}" for b in run.save_at))
    console.print(table)
    t = plan.totals()
    console.print(f"from scratch: {t['scratch_batches']:,} batches, {_human(t['scratch_tokens'])} tok; planned: "
                  f"{t['plan_batches']:,} batches, {_human(t['plan_tokens'])} tok; [bold]saved {t['saved_batches']:,} "
                  f"batches ({100 * t['saved_batch_fraction']:.1f}%), {_human(t['saved_tokens'])} tok "
                  f"({100 * t['saved_token_fraction']:.1f}%)[/]")


def _plan(args: argparse.Namespace) -> int:
    from mixture.plan import plan_sweep
    from mixture.plan_files import compile_sweep, plan_dict, write_plan

    def told(name: str, reused: bool) -> None:
        print(f"{'reused' if reused else 'compiled'} {name}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="mixture-sweep-") as tmp:
        sweep_dir = Path(args.out) if args.out else Path(tmp)
        found, schedules = compile_sweep(args.file, sweep_dir, told)
        plan = plan_sweep(schedules)
        if args.out:
            path = write_plan(plan_dict(plan, found, schedules, args.file, sweep_dir), sweep_dir)
            print(f"wrote {path}", file=sys.stderr)
        print_plan(plan, schedules[plan.variants[0]].manifest["name"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sweep` with its subcommand `plan`."""
    sweep = subparsers.add_parser("sweep", help="plan a sweep's runs, sharing trunks between its variants")
    actions = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    p = actions.add_parser("plan", help="compile every variant and print the run tree with shared trunks")
    p.add_argument("file", help="mixture file (.yaml) with a sweep")
    p.add_argument("-o", "--out", help="sweep directory: schedules/ and plan.json (default: a temporary one)")
    p.set_defaults(func=_plan)
