"""Training step time: the scheduled Streaming loader against the same Composer step fed from memory.

Both arms are the same `mixture train` pieces (model, optimiser, LR, per-source metrics, token-weighted
accumulation); only the train dataloader differs:

- ``scheduled``: ScheduledDataset over the demo's MDS sources + the Collator (image decode and resize,
  sequence building), with ``--workers`` dataloader workers, as `mixture train` runs it;
- ``memory``: the very same collated batches, built beforehand and served from a Python list.

A step's time is the wall time between consecutive BATCH_END events (so it includes waiting for data);
the first ``--warmup`` steps of each fit are dropped. Arms alternate A B A B (this machine is shared:
compare within a round). The schedule is the demo's 40% variant from its cooldown on (text + 10% image
tokens), the mixed part of the study where decoding costs most.

Usage: ``python benchmarks/bench_train_step.py [--steps 40] [--rounds 3] [--workers 2] [--preset tiny]``;
prints a Markdown table and writes ``bench_train_step.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def prepare(root: Path, scale: float) -> tuple[Path, Path]:
    """Demo data at ``scale`` and its 40% variant compiled; returns (schedule dir, run config)."""
    import yaml

    from mixture.api import compile_variant, variants
    from streaming_data.demo_data import make_demo_data

    data = make_demo_data(root / "data", scale=scale)
    variant = next(v for v in variants(data.mixture) if v.name.startswith("intro=40"))
    schedule = root / "schedule"
    if not (schedule / "manifest.json").exists():
        compile_variant(variant, schedule)
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"schedule": str(schedule), "run_dir": str(root / "run"),
                                      "model": {"tokenizer": str(data.tokenizer)}, "export": False,
                                      "checkpoint": {"autoresume": False}, "loggers": {"console": False}}))
    return schedule, config


class StepTimer:
    """A Composer callback recording the time of every BATCH_END."""

    def __init__(self) -> None:
        from composer.core import Callback

        class _Timer(Callback):
            def __init__(self, times: list[float]) -> None:
                self.times = times

            def batch_end(self, state, logger) -> None:  # noqa: ANN001
                self.times.append(time.perf_counter())

        self.times: list[float] = []
        self.callback = _Timer(self.times)


def fit(config: Path, first: int, steps: int, preset: str, workers: int, batches: list | None) -> list[float]:
    """Step times of one fit of ``steps`` batches starting at batch ``first`` of the schedule."""
    from composer import Trainer
    from composer.core import DataSpec

    from trainer.build import build_pieces, num_tokens
    from trainer.config import RunConfig, load_run_config
    from trainer.context import open_run
    from trainer.metrics import RunLog

    cfg, base = load_run_config(config)
    data = cfg.data.model_copy(update={"num_workers": workers})
    model = cfg.model.model_copy(update={"lm": cfg.model.lm.model_copy(update={"preset": preset})})
    run = open_run(RunConfig.model_validate({**cfg.model_dump(), "data": data.model_dump(),
                                             "model": model.model_dump(), "stop_at": f"{first + steps}ba"}), base)
    args = build_pieces(run, RunLog(run.run_dir)).trainer_args
    timer = StepTimer()
    args["callbacks"] = [timer.callback]
    args.update(save_folder=None, autoresume=False, load_path=None, max_duration=f"{steps}ba")
    if batches is not None:
        args["train_dataloader"] = DataSpec(batches, get_num_tokens_in_batch=num_tokens)
    else:
        args["train_dataloader"].dataloader.dataset.load_state_dict(
            {"samples_consumed": first * run.global_batch_size, "schedule_fingerprint": run.schedule.fingerprint,
             "global_batch_size": run.global_batch_size})
    trainer = Trainer(**args)
    trainer.fit()
    trainer.close()
    return timer.times


def collated(config: Path, first: int, steps: int) -> list:
    """The batches the scheduled loader serves for batches [first, first + steps), collated, in memory."""
    from trainer.config import load_run_config
    from trainer.context import open_run

    cfg, base = load_run_config(config)
    return batches_of(open_run(cfg, base), first, steps)


def batches_of(run: Any, first: int, steps: int) -> list:
    """The collated batches ``[first, first + steps)`` of a run's scheduled loader (``run``: a RunContext)."""
    from trainer.build import build_pieces
    from trainer.metrics import RunLog

    loader = build_pieces(run, RunLog(run.run_dir)).trainer_args["train_dataloader"].dataloader
    loader.dataset.load_state_dict({"samples_consumed": first * run.global_batch_size,
                                    "schedule_fingerprint": run.schedule.fingerprint,
                                    "global_batch_size": run.global_batch_size})
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == steps:
            return out
    raise SystemExit(f"the schedule has fewer than {first + steps} batches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "79m"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench_train_step"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    schedule, config = prepare(args.root, args.scale)
    from mixture.schedule import load_schedule

    sched = load_schedule(schedule)
    first = next(p["start"] for p in sched.phases if p["name"] == "cooldown") // sched.global_batch_size
    memory = collated(config, first, args.steps)
    rounds = []
    for r in range(args.rounds):
        row = {}
        for arm in ("scheduled", "memory"):
            times = fit(config, first, args.steps, args.preset, args.workers, memory if arm == "memory" else None)
            steps = [b - a for a, b in zip(times[args.warmup:], times[args.warmup + 1:])]
            row[arm] = statistics.median(steps)
        row["ratio"] = row["scheduled"] / row["memory"]
        rounds.append(row)
        print(f"round {r + 1}: scheduled {row['scheduled'] * 1e3:.1f} ms, memory {row['memory'] * 1e3:.1f} ms, "
              f"ratio {row['ratio']:.3f}", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "preset": args.preset,
              "workers": args.workers, "steps": args.steps, "warmup": args.warmup, "batch": sched.global_batch_size,
              "seq_len": sched.manifest["seq_len"], "rounds": rounds,
              "median_ratio": statistics.median(r["ratio"] for r in rounds)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_step_{args.preset}_w{args.workers}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n| model | workers | scheduled ms/step | memory ms/step | ratio |\n|---|---|---|---|---|")
    for row in rounds:
        print(f"| {args.preset} | {args.workers} | {row['scheduled'] * 1e3:.1f} | {row['memory'] * 1e3:.1f} | "
              f"{row['ratio']:.3f} |")
    print(f"median ratio {result['median_ratio']:.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
