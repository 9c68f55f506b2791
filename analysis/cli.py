"""CLI subcommands of the analysis package: stats, report, compare.

Cheap to import (argparse only at module level): `mixture` imports this at every start. Each handler
parses, calls one library function, prints a terminal summary (rich) and the paths it wrote.
"""

from __future__ import annotations

import argparse
from typing import Any


def _print_table(title: str, rows: list[dict[str, Any]], left: tuple[str, ...] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    from analysis.html import fmt

    if not rows:
        return
    table = Table(title=title, title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in left else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row.values()))
    Console(highlight=False, width=max(140, Console().width)).print(table)


def _print_written(paths: dict[str, Any], notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")
    for role, path in paths.items():
        print(f"{role}: {path}")


def busy(label: str) -> Any:  # noqa: ANN401 - a context manager
    """Progress of a report being computed (mixture.progress: a spinner, or timestamped lines)."""
    from mixture.progress import busy as shown

    return shown(label)


def _stats(args: argparse.Namespace) -> int:
    from analysis.stats_page import notes, overview_rows, stats_report

    with busy(f"stats of {len(args.sources)} source{'s' * (len(args.sources) > 1)}"):
        data, paths = stats_report(args.sources, args.out, args.figures)
    _print_table("sources", overview_rows(data), left=("source", "kind"))
    _print_written(paths, notes(data))
    return 0


def _report(args: argparse.Namespace) -> int:
    from analysis.report import report, summary_rows

    with busy(f"report of {args.schedule}"):
        data, paths = report(args.schedule, args.out, run_dir=args.run, figures=args.figures)
    _print_table("planned vs realised", summary_rows(data), left=("phase", "source", "unit"))
    if data.get("run"):
        _print_table("run against the schedule", data["run"]["consumed"], left=("source",))
    _print_written(paths, data["notes"])
    return 0


def _compare(args: argparse.Namespace) -> int:
    from analysis.compare import baseline_cell, compare

    with busy(f"compare of {len(args.runs)} runs"):
        data, paths = compare(args.runs, args.out, figures=args.figures)
    _print_table("runs", data["table"], left=("run", "status", *data["axes"]))
    for key, base in data["baselines"].items():
        print(f"baseline {key}: {baseline_cell(base)}: {base['what']}")
    _print_written(paths, data["notes"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add stats, report and compare."""
    p = subparsers.add_parser("stats", help="statistics report of ingested sources (HTML + JSON)")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="source directory (local or URL) holding samples.parquet, or the parquet file")
    p.add_argument("-o", "--out", required=True, help="output directory (report.html, report.json)")
    p.add_argument("--figures", action="store_true", help="also write each plot as figures/NAME.png")
    p.set_defaults(func=_stats)

    p = subparsers.add_parser("report", help="planned vs realised report of a compiled schedule (and a run)")
    p.add_argument("schedule", metavar="SCHEDULE_DIR", help="compiled schedule directory")
    p.add_argument("--run", metavar="RUN_DIR", help="a training run of this schedule (run.json, metrics.jsonl)")
    p.add_argument("-o", "--out", required=True, help="output directory (report.html, report.json)")
    p.add_argument("--figures", action="store_true", help="also write each plot as figures/NAME.png")
    p.set_defaults(func=_report)

    p = subparsers.add_parser("compare", help="results of several runs side by side (a sweep)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (run.json, results.json)")
    p.add_argument("-o", "--out", required=True, help="output directory (report.html, report.json)")
    p.add_argument("--figures", action="store_true", help="also write each plot as figures/NAME.png")
    p.set_defaults(func=_compare)
