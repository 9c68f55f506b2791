"""CLI subcommands of the compiler: validate, compile, explain, export.

Imports stay light at module level (argparse only): `mixture validate` must start in well under a
second, and none of these commands ever imports torch, streaming or composer.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path


def _console():  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    return Console(stderr=False, highlight=False, width=max(160, Console().width))


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[object]:
    """Progress over positions (mixture.progress: a bar on a terminal, log lines otherwise)."""
    from mixture.progress import track

    with track(label, total or None, "positions") as task:
        yield task.advance


@contextlib.contextmanager
def _compile_progress(label: str) -> Iterator[tuple[object, object, object]]:
    """Progress of one compile over positions: ``(advance, expect, finish)``. ``expect`` sets the expected
    total (known once the sources are read), ``finish`` the count and total that the compile wrote, so the
    last line says 100% even where the expectation (a phase measured in tokens) was off."""
    from mixture.progress import track

    with track(label, None, "positions") as task:
        yield (task.advance, lambda total: task.update(task.completed, total=total),
               lambda positions: task.update(positions, total=positions))


def _validate(args: argparse.Namespace) -> int:
    from mixture.api import variants
    from mixture.cli import validate_run_config  # the one module that reaches into the trainer
    from mixture.load import read_yaml

    if args.json:  # mixture files (a run config is checked by the plain command)
        from mixture.summaries import validate_summary

        return _json(validate_summary(args.file))
    located = read_yaml(args.file, "mixture file or run config", "sources:, phases:, ... or schedule:, run_dir:, ...")
    summary = validate_run_config(args.file, located.data)  # type: ignore[arg-type]
    if summary is not None:
        print(summary)
        return 0
    found = variants(args.file)
    names = [v.name for v in found if v.name]
    detail = f", {len(names)} sweep variants" if names else ""
    phases = len(found[0].resolved.phases)
    print(f"{args.file}: ok ({phases} phases, {len(found[0].resolved.spec.sources)} sources{detail})")
    return 0


def _compile(args: argparse.Namespace) -> int:
    from mixture.api import compile_variant, variants

    found = variants(args.file)
    if args.variant:
        found = [v for v in found if v.name == args.variant]
        if not found:
            from mixture.errors import MixtureError

            raise MixtureError(f"--variant: no variant named {args.variant!r}",
                               hint="list them with `mixture validate`")
    out = Path(args.out)
    for variant in found:
        target = out / variant.name if variant.name else out
        _check_output_dir(target, args.out)
        with _compile_progress(f"compiling {variant.name or args.file}") as (advance, expect, finish):
            schedule = compile_variant(variant, target, advance, expect)
            finish(schedule.manifest.num_positions)
        m = schedule.manifest
        print(f"{target}: {m.num_positions:,} positions, {m.num_batches:,} batches, "
              f"{m.total_tokens:,} tokens, fingerprint {m.fingerprint}")
    return 0


def _check_output_dir(target: Path, given: str) -> None:
    """Compile replaces a schedule directory, never a file or a directory holding something else."""
    from mixture.errors import MixtureError

    for path in (*reversed(target.parents), target):
        if path.exists() and not path.is_dir():
            raise MixtureError(f"-o {given}: {path} is a file, not a directory",
                               hint="give a new directory, or an existing schedule directory to replace")
    if target.is_dir() and any(target.iterdir()) and not (target / "manifest.json").is_file():
        raise MixtureError(f"-o {given}: {target} is a directory that is not a compiled schedule",
                           hint="give a new directory: compile replaces only a schedule directory")


def _explain(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mixture.api import explain_rows, open_or_compile

    if args.json:
        from mixture.summaries import explain_summary

        return _json(explain_summary(args.target))
    console = _console()
    for name, schedule in open_or_compile(args.target):
        m = schedule.manifest
        title = f"{m.name}{' / ' + name if name else ''}  fingerprint {m.fingerprint}"
        table = Table(title=title, title_justify="left")
        for col in ("phase", "positions", "source", "samples", "tokens", "share", "target", "epochs"):
            table.add_column(col, justify="left" if col in ("phase", "source") else "right")
        spans = {p.name: f"{p.start:,}-{p.stop:,}" for p in m.phases}
        last = None
        for row in explain_rows(schedule):
            share = row["sample_share"] if row["unit"] == "samples" else row["share"]
            target = f"{row['target']:.4f} {'smp' if row['unit'] == 'samples' else 'tok'}"
            first = row["phase"] != last
            table.add_row(row["phase"] if first else "", spans[row["phase"]] if first else "", row["source"],
                          f"{row['samples']:,}", f"{row['tokens']:,}", f"{share:.4f}", target, f"{row['epochs']:.4f}")
            last = row["phase"]
        console.print(table)
        console.print(f"total: {m.num_positions:,} positions in {m.num_batches:,} batches of "
                      f"{' then '.join(map(str, m.batch_sizes))}, {m.total_tokens:,} tokens")
        from mixture.padding import describe, estimate_padding

        for line in describe(estimate_padding(schedule)):
            console.print(line)
    return 0


def _export(args: argparse.Namespace) -> int:
    from mixture.api import export_order
    from mixture.errors import MixtureError
    from mixture.schedule import load_schedule

    out = Path(args.out)
    if out.is_dir():
        raise MixtureError(f"-o {args.out}: is a directory", hint="give a file name, e.g. order.parquet")
    if not out.parent.is_dir():
        raise MixtureError(f"-o {args.out}: no directory {str(out.parent)!r}", hint="create it first")
    schedule = load_schedule(args.dir)
    start, stop = _range(args.range, len(schedule))
    with _progress(stop - start, "exporting") as advance:
        n = export_order(schedule, args.out, start, stop, advance)
    print(f"{args.out}: {n:,} positions")
    return 0


def _json(data: object) -> int:
    import json

    print(json.dumps(data, indent=1))
    return 2 if isinstance(data, dict) and data.get("ok") is False else 0


def _range(text: str | None, length: int) -> tuple[int, int]:
    """Positions ``A:B`` of ``--range``, inside ``[0, length]`` (past the end is refused, not clamped)."""
    from mixture.errors import MixtureError

    if not text:
        return 0, length
    try:
        a, b = text.split(":")
        start, stop = int(a or 0), int(b) if b else length
    except ValueError:
        raise MixtureError(f"--range: cannot read {text[:40]!r}", hint="write A:B, e.g. 0:1000000") from None
    if not 0 <= start < stop <= length:
        raise MixtureError(f"--range: {start}:{stop} is not inside the schedule's {length:,} positions",
                           hint=f"write A:B with 0 <= A < B <= {length}")
    return start, stop


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add validate, compile, explain and export."""
    p = subparsers.add_parser("validate", help="check a mixture file (and its sweep variants)",
                              description="Check a mixture file without compiling it: schema, units, references, "
                              "mixes, sources and every sweep variant; all problems at once, as FILE:LINE:COL. "
                              "A run config (schedule:, run_dir:, ...) is checked as one.")
    p.add_argument("file", help="mixture file (.yaml)")
    p.add_argument("--json", action="store_true", help="print the result (or the problems) as JSON")
    p.set_defaults(func=_validate)

    p = subparsers.add_parser("compile", help="compile a mixture file into a schedule directory",
                              description="Compile a mixture file into a schedule directory: the exact order of "
                              "(source, sample) per position, the learning rate per batch and a manifest with "
                              "the fingerprint. A sweep compiles to one subdirectory per variant.")
    p.add_argument("file", help="mixture file (.yaml)")
    p.add_argument("-o", "--out", required=True, help="output directory (one subdirectory per sweep variant)")
    p.add_argument("--variant", help="compile only this sweep variant")
    p.set_defaults(func=_compile)

    p = subparsers.add_parser("explain", help="table of planned samples, tokens, shares and epochs",
                              description="Print what a schedule plans, per phase and source: samples, tokens, "
                              "share against its target, and epochs over the source.")
    p.add_argument("target", help="compiled schedule directory, or a mixture file (compiled on the fly)")
    p.add_argument("--json", action="store_true", help="print the table as JSON (one object per variant)")
    p.set_defaults(func=_explain)

    p = subparsers.add_parser("export", help="write the order as parquet (position, phase, source, sample, tokens)",
                              description="Write positions of a compiled schedule as a parquet file, one row per "
                              "position: position, phase, source, sample index and tokens.")
    p.add_argument("dir", help="compiled schedule directory")
    p.add_argument("-o", "--out", required=True, help="output .parquet file")
    p.add_argument("--range", help="positions A:B (default: all)")
    p.set_defaults(func=_export)
