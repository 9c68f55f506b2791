"""CLI subcommands of the trainer: ``mixture train`` and ``mixture eval-text``.

Cheap to import (argparse only): composer, torch and transformers are imported inside the handlers.
Multi-rank: ``composer -n N -m mixture train RUN.yaml`` (Composer's launcher sets the ranks; FSDP2 is used
when there is more than one, chosen by :func:`trainer.build.fsdp_config`).
"""

from __future__ import annotations

import argparse
import json
import os


def _train(args: argparse.Namespace) -> int:
    from trainer.config import check_run_config

    overrides = {k: v for k, v in (("stop_at", args.stop_at), ("run_dir", args.run_dir)) if v is not None}
    check_run_config(args.config, overrides)  # bad input is refused before torch and composer load
    from mixture.progress import end_starting, starting

    if os.environ.get("RANK", "0") == "0":  # until the first batch: torch, composer, schedule, model, data
        starting(f"train {args.config}: starting (torch and composer, the schedule, the model, the data)")
    try:
        from trainer.run import train

        result = train(args.config, **overrides)
    finally:
        end_starting()
    from composer.utils import dist

    if dist.get_global_rank() == 0:
        if result.unchanged:
            print(f"{result.run_dir}: already trained to batch {result.batches} with its final evaluation"
                  f"{' and export' if result.export_dir else ''}; nothing to do (a new run needs another run_dir)")
        else:
            print(f"{result.run_dir}: trained to batch {result.batches}")
        for key, value in sorted(result.final_eval.items()):
            print(f"  {key} = {value:.4f}" if isinstance(value, float) else f"  {key} = {value}")
        if result.export_dir:
            print(f"  exported (Hugging Face format): {result.export_dir}")
    return 0


def _eval_text(args: argparse.Namespace) -> int:
    from trainer.text_eval import evaluate_text

    results = evaluate_text(args.model, args.tasks.split(","), include=args.include, limit=args.limit,
                            batch_size=args.batch_size, device=args.device)
    text = json.dumps(results, indent=1)
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``eval-text``."""
    p = subparsers.add_parser("train", help="train a VLM on a compiled schedule (run config YAML)",
                              description="Train on a compiled schedule. One process: `mixture train RUN.yaml`; "
                              "N ranks with FSDP2: `composer -n N -m mixture train RUN.yaml`.")
    p.add_argument("config", help="run config (YAML); see docs/training.md")
    p.add_argument("--stop-at", help="stop early: `40ba`, `50%%` of the schedule, `2M tok`")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.set_defaults(func=_train)
    p = subparsers.add_parser("eval-text", help="text benchmarks of an exported model (EleutherAI lm-eval)",
                              description="Evaluate RUN_DIR/export/language_model with EleutherAI's lm-eval "
                              "harness (the optional `eval` extra; datasets are read offline: see "
                              "docs/evaluation.md for a local ARC-Easy-format task).")
    p.add_argument("model", help="a run directory or an export (RUN_DIR/export or its language_model/)")
    p.add_argument("--tasks", default="arc_easy", help="comma-separated lm-eval task names")
    p.add_argument("--include", help="a directory (or one file) of harness task YAML to add")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.add_argument("-o", "--out", help="also write the results to this JSON file")
    p.add_argument("--limit", type=int, help="examples per task")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=_eval_text)
