"""CLI of sweeps: `mixture sweep plan|run|status` (docs/sweeps.md), registered by :mod:`mixture.cli`.

Imports stay light at module level (argparse only); the planner itself is the compiler's (pure Python +
NumPy, :mod:`mixture.plan`). `run` and `status` import this package's modules inside their handlers; only
`run` training in-process imports composer.
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
    from trainer.sweep.status import RunRow, SweepStatus


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


def _state(row: RunRow) -> str:
    state = row.state
    colour = {"done": "green", "failed": "red", "stale": "red", "running": "yellow", "stopped": "yellow"}
    text = f"[{colour.get(state.status, 'white')}]{state.status}[/]"
    if state.status != "done" and state.last_batch:
        text += f" at {state.last_batch:,}"
    return text + (f": {state.error}" if state.error else "")


def _print_whole(console: object, table: object) -> None:
    """Print a table at the width its longest cells need: run and variant names are never cut or folded."""
    from rich.measure import Measurement

    wide = console.options.update(width=1 << 16)  # type: ignore[attr-defined]
    need = Measurement.get(console, wide, table).maximum  # type: ignore[arg-type]
    console.width = max(console.width, need)  # type: ignore[attr-defined]  # print() caps its width at this
    console.print(table)  # type: ignore[attr-defined]


def print_status(status: SweepStatus) -> None:
    """The runs with their states and final scores, the variants with their result directories, the saving."""
    from rich.markup import escape
    from rich.table import Table

    from mixture.commands import _console

    console = _console()
    table = Table(title=f"sweep {status.name}: runs, in dependency order", title_justify="left")
    for col in ("run", "starts from", "batches", "status", "final eval"):
        table.add_column(col, justify="right" if col == "batches" else "left")
    for row in status.runs:
        run = row.run
        origin = f"{run.after} @ {run.start_batch:,}" if run.after else "scratch"
        scores = ", ".join(f"{k.removeprefix('eval/')} {v:.4g}" for k, v in row.eval.items()
                           if not k.endswith("num_questions"))
        table.add_row(escape(run.id), escape(origin), f"{run.start_batch:,} -> {run.stop_batch:,}", _state(row), scores)
    _print_whole(console, table)
    table = Table(title="variants: final model and results", title_justify="left")
    for col in ("variant", "done", "at batch", "trained by run", "results in"):
        table.add_column(col, justify="right" if col == "at batch" else "left")
    for name, v in status.variants.items():
        where = v.results_dir if v.entry.at_run_end else "(a mid-run checkpoint: not evaluated)"
        table.add_row(escape(name), "yes" if v.done else "no", f"{v.entry.batch:,}", escape(v.entry.run), escape(where))
    _print_whole(console, table)
    t = status.totals
    console.print(f"planned {t['plan_batches']:,} batches, {_human(t['plan_tokens'])} tok instead of "
                  f"{t['scratch_batches']:,} from scratch: [bold]saved {t['saved_batches']:,} batches "
                  f"({100 * t['saved_batch_fraction']:.1f}%)[/]")


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
        print_plan(plan, schedules[plan.variants[0]].manifest.name)
    return 0


def _run(args: argparse.Namespace) -> int:
    from trainer.sweep.execute import launch_commands, run_sweep
    from trainer.sweep.prepare import prepare_sweep

    def told(name: str, reused: bool) -> None:
        print(f"{'reused' if reused else 'compiled'} {name}", file=sys.stderr)

    if args.nproc < 1:
        from mixture.errors import MixtureError

        raise MixtureError(f"--nproc {args.nproc}: a run needs at least one rank")
    sweep_dir, notes = prepare_sweep(args.file, args.run_config, args.out, told)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    from mixture.plan_files import PLAN_JSON
    from trainer.sweep.records import SWEEP_JSON

    print(f"wrote {sweep_dir / PLAN_JSON}, {sweep_dir / SWEEP_JSON} and a run config per run", file=sys.stderr)
    if args.print_commands:
        print("\n".join(launch_commands(sweep_dir, args.nproc)))
        return 0
    from mixture.progress import Board, count_lines
    from trainer.sweep.records import read_sweep

    with Board() as board:  # runs done / total, the current run, ETA (stderr); the lines stay on stdout
        count = count_lines(board.task("sweep", len(read_sweep(sweep_dir).runs), "runs"))

        def say(line: str) -> None:
            print(f"[sweep] {line}", flush=True)
            count(line)

        trained = run_sweep(sweep_dir, args.nproc, say=say)
    print(f"[sweep] all runs done ({len(trained)} trained now); `mixture sweep status {sweep_dir}` shows the results")
    return 0


def _status(args: argparse.Namespace) -> int:
    from trainer.sweep.prepare import default_sweep_dir
    from trainer.sweep.status import result_dirs, sweep_status

    target = Path(args.target)
    sweep_dir = target if target.is_dir() else Path(args.out) if args.out else default_sweep_dir(target)
    status = sweep_status(sweep_dir)
    if args.json:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(status), indent=1, default=str))
        return 0
    if args.results:
        print("\n".join(result_dirs(status)))
        return 0
    print_status(status)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sweep` with its subcommands `plan`, `run` and `status`."""
    sweep = subparsers.add_parser("sweep", help="plan, run and follow a sweep, sharing trunks between its variants")
    actions = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    p = actions.add_parser("plan", help="compile every variant and print the run tree with shared trunks")
    p.add_argument("file", help="mixture file (.yaml) with a sweep")
    p.add_argument("-o", "--out", help="sweep directory: schedules/ and plan.json (default: a temporary one)")
    p.set_defaults(func=_plan)
    p = actions.add_parser("run", help="train the run tree (resumable), or print one launch command per run",
                           description="Plan the sweep, write SWEEP_DIR/runs/<run>/run.yaml for every run and train "
                           "them parents first. Re-running skips finished runs and resumes a broken one.")
    p.add_argument("file", help="mixture file (.yaml) with a sweep")
    p.add_argument("--run-config", required=True, metavar="BASE.yaml",
                   help="base run config: model, optimizer, precision, eval, loggers (schedule and run_dir may "
                        "be left out: the sweep sets them per run)")
    p.add_argument("-o", "--out", help="sweep directory (default: out/sweeps/<name>)")
    p.add_argument("--print-commands", action="store_true",
                   help="train nothing: print `composer -n N -m mixture train RUN.yaml` per run, parents first")
    p.add_argument("--nproc", type=int, default=1,
                   help="ranks per run: 1 trains in this process, N > 1 launches `composer -n N` (FSDP2)")
    p.set_defaults(func=_run)
    p = actions.add_parser("status", help="which runs are done, running or failed, and the variants' results")
    p.add_argument("target", metavar="SWEEP_DIR|FILE", help="sweep directory, or the mixture file (with --sweep-dir, or "
                   "the default out/sweeps/<name>)")
    p.add_argument("--sweep-dir", "-o", "--out", dest="out", metavar="DIR",
                   help="sweep directory of FILE (the `-o` that `sweep run` wrote to)")
    p.add_argument("--results", action="store_true",
                   help="print only the run directories of finished variants, one a line (for `mixture compare`)")
    p.add_argument("--json", action="store_true", help="print the runs, their states and results as JSON")
    p.set_defaults(func=_status)
