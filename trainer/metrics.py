"""Per-source metrics every step, and the run directory's files that reports read.

The run directory (the contract ``mixture report --run`` and ``mixture compare`` read):

- ``run.json``: name, schedule path and fingerprint, sweep variant, global batch size, world size, status
  (``running``, ``done``, ``failed``), last batch;
- ``metrics.jsonl``: one object per step (``batch``, ``samples``, ``lr``, ``loss/train``,
  ``loss/train/SRC``, cumulative ``samples/train/SRC`` and ``tokens/train/SRC``, and the step's wall
  clock: ``time/wall`` (Unix seconds at its end), ``time/step_s`` (from asking the loader for the batch to
  the end of the step) and ``throughput/tokens_per_s``, ``throughput/samples_per_s``) and one per evaluation
  (``batch`` and ``eval/...`` keys). A resumed run first drops the lines past its checkpoint, so the file
  always describes one consistent history;
- ``results.json``: the final evaluation.

Counts are what the ranks actually trained on (summed over ranks), not what the schedule planned; the
report compares the two. Cumulative counters live in the callback's state, which Composer saves in every
checkpoint, so a resumed or branched run continues them exactly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class RunLog:
    """Rank 0's writer of ``run.json``, ``metrics.jsonl`` and ``results.json`` (other ranks write nothing)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.active = dist.get_global_rank() == 0
        if self.active:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.active:
            tmp = self.run_dir / f".{name}.tmp"
            tmp.write_text(json.dumps(data, indent=1) + "\n")
            os.replace(tmp, self.run_dir / name)

    def update_run(self, **fields: Any) -> None:
        """Merge ``fields`` into ``run.json``."""
        if self.active:
            path = self.run_dir / "run.json"
            data = json.loads(path.read_text()) if path.exists() else {}
            self.write_json("run.json", {**data, **fields})

    def truncate_after(self, batch: int) -> None:
        """Drop metric lines past ``batch`` (left by a run that broke after its last checkpoint)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.active or not path.exists():
            return
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["batch"] <= batch]
        path.write_text("".join(line + "\n" for line in kept))

    def append(self, record: dict[str, Any]) -> None:
        if self.active:
            with open(self.run_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")


class SourceMetrics(Callback):
    """Logs total and per-source training loss, samples and budget tokens after every batch.

    Args:
        names: Source names by source id.
        run_log: The run directory writer.
        lr: The learning rate of each global batch (what the step just taken used).
    """

    def __init__(self, names: list[str], run_log: RunLog, lr: list[float]) -> None:
        self.names = names
        self.run_log = run_log
        self.lr = lr
        self.samples = [0] * len(names)
        self.tokens = [0] * len(names)
        self.step_start = time.time()
        self.last: dict[str, Any] = {}  # the newest record (the progress line reads its loss)

    def state_dict(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "tokens": list(self.tokens)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples, self.tokens = list(state["samples"]), list(state["tokens"])

    def fit_start(self, state: State, logger: Logger) -> None:
        self.run_log.truncate_after(int(state.timestamp.batch))
        state.model.reset_source_stats()

    def before_dataloader(self, state: State, logger: Logger) -> None:
        self.step_start = time.time()

    def batch_end(self, state: State, logger: Logger) -> None:
        before = sum(self.tokens), sum(self.samples)
        model = state.model
        stats = model.source_stats.clone()
        model.reset_source_stats()
        dist.all_reduce(stats, reduce_operation="SUM")
        loss_sum, label_tokens, samples, tokens = stats.tolist()
        batch = int(state.timestamp.batch)
        record: dict[str, Any] = {"batch": batch, "samples": int(state.timestamp.sample),
                                  "lr": self.lr[min(batch, len(self.lr)) - 1],
                                  "loss/train": sum(loss_sum) / max(sum(label_tokens), 1.0)}
        for i, name in enumerate(self.names):
            self.samples[i] += int(samples[i])
            self.tokens[i] += int(tokens[i])
            if label_tokens[i] > 0:
                record[f"loss/train/{name}"] = loss_sum[i] / label_tokens[i]
            record[f"samples/train/{name}"] = self.samples[i]
            record[f"tokens/train/{name}"] = self.tokens[i]
        now = time.time()
        step = max(now - self.step_start, 1e-9)
        record.update({"time/wall": now, "time/step_s": step,
                       "throughput/tokens_per_s": (sum(self.tokens) - before[0]) / step,
                       "throughput/samples_per_s": (sum(self.samples) - before[1]) / step})
        self.last = record
        self.run_log.append(record)
        logger.log_metrics({k: v for k, v in record.items() if k not in ("batch", "samples")})


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a list of floats over ranks (float64)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, reduce_operation="SUM")
    return tensor.tolist()
