"""CLI of the demo: ``mixture demo [-o OUT] [--scale S]`` (docs/demo.md).

Cheap to import (argparse only): the demo's data, the sweep and Composer are imported inside the handler.
"""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    from trainer.demo import run_demo, summary

    result = run_demo(args.out, scale=args.scale, questions=args.questions,
                      say=lambda line: print(line, flush=True))
    print()
    print(summary(result), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = subparsers.add_parser(
        "demo", help="the paper's introduction-point study in miniature: data, sweep, training, report",
        description="Make the embedded demo data, train a tiny VLM per image introduction point (0-100% of "
        "the text plan) from one shared text-only trunk, and write the comparison report. Re-running reuses "
        "the data and every finished run.")
    p.add_argument("-o", "--out", default="out/demo", help="demo directory (default: out/demo)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplier of the data and the text plan, in (0, 1] (default 1.0; CI runs 0.05)")
    p.add_argument("--questions", type=int, help="VQA questions per evaluation (default: examples/demo/run.yaml's)")
    p.set_defaults(func=_demo)
