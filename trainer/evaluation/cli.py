"""``mixture eval``: cheap to import (argparse only); the evaluation is imported inside the handler."""

from __future__ import annotations

import argparse
import json


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainer.evaluation.runner import evaluate, evaluate_sweep

    options = {"images": args.images, "limit": args.limit, "batch_size": args.batch_size,
               "max_new_tokens": args.max_new_tokens, "device": args.device, "suffix": args.suffix,
               "config": args.config}
    if args.model and (Path(args.model) / "sweep.json").is_file():
        for run, results in evaluate_sweep(args.model, args.bench, args.out, **options).items():
            print(f"== {run}")
            _print(results)
        print(f"wrote {args.out}/RUN/results.json per run and RUN_DIR/benchmarks.json (for `mixture compare`)")
        return 0
    results = evaluate(args.model, args.bench, args.out, predictions=args.predictions, **options)
    _print(results)
    print(f"wrote {args.out}/results.json and {args.out}/answers.jsonl")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def _print(results: dict) -> None:
    for name, metrics in results["benchmarks"].items():
        extra = "".join(f", {k} {metrics[k]:.4f}" for k in ("precision", "recall", "f1", "yes_ratio") if k in metrics)
        print(f"{name}: accuracy {metrics['accuracy']:.4f} ± {metrics['accuracy_se']:.4f} (n={metrics['n']}"
              f"{', ' + str(metrics['missing']) + ' unanswered' if metrics['missing'] else ''}){extra}; "
              f"baseline {metrics['baseline']['accuracy']:.4f} ({metrics['baseline']['answer']!r})")
    avg = results["average"]
    print(f"average: {avg['accuracy']:.4f} ± {avg['accuracy_se']:.4f} over {len(avg['benchmarks'])} benchmark(s)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval``."""
    p = subparsers.add_parser(
        "eval", help="score a model on VQAv2, TextVQA, GQA, POPE, VizWiz as their official scripts do",
        description="Answer the benchmarks' questions with a model (or take answers from --predictions) and "
        "score them as the official evaluation scripts do (docs/evaluation.md). Resumable: re-running with "
        "the same -o skips questions already answered.")
    p.add_argument("model", nargs="?", help="an export directory, a run directory (its export, else its "
                   "latest checkpoint with --config), or a sweep directory (every finished variant)")
    p.add_argument("--bench", action="append", default=[], metavar="NAME=DIR",
                   help="a benchmark in its official layout: vqav2, textvqa, gqa, pope, vizwiz (repeatable)")
    p.add_argument("--predictions", metavar="PRED.jsonl",
                   help='score these answers instead of running a model: {"benchmark", "question_id", "answer"}')
    p.add_argument("-o", "--out", required=True, help="output directory (results.json, answers.jsonl)")
    p.add_argument("--images", help="POPE's image folder (default: DIR/val2014)")
    p.add_argument("--limit", type=int, help="the first N questions of each benchmark")
    p.add_argument("--batch-size", type=int, default=8, help="questions per generation batch (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="answer length cap (default 16)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--suffix", default="", help="text appended to every question, e.g. a short-answer instruction")
    p.add_argument("--config", help="the run config, to evaluate a run that has a checkpoint but no export")
    p.add_argument("--json", action="store_true", help="also print results.json")
    p.set_defaults(func=_eval)
