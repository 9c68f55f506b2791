"""Per-source metrics every step, and rank 0's writer of the run directory that reports read.

A train line of ``metrics.jsonl`` also carries the step's wall clock: ``time/wall`` (Unix seconds at its
end), ``time/step_s`` (from asking the loader for the batch to the end of the step) and
``throughput/tokens_per_s``, ``throughput/samples_per_s`` over that time.

The run directory's names and records are :mod:`mixture.run_dir`'s (run.json, metrics.jsonl, results.json).
Counts are what the ranks actually trained on (summed over ranks), not what the schedule planned; the
report compares the two. Cumulative counters live in the callback's state, which Composer saves in every
checkpoint, so a resumed or branched run continues them exactly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from mixture import run_dir as rd


class RunLog:
    """Rank 0's writer of ``run.json``, ``metrics.jsonl`` and ``results.json`` (other ranks write nothing)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.active = dist.get_global_rank() == 0
        if self.active:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def start(self, info: rd.RunInfo) -> None:
        """Write ``run.json`` at the start of an invocation, keeping what an earlier one recorded after it."""
        if self.active:
            old = rd.find_info(self.run_dir) or rd.RunInfo()
            rd.write_info(self.run_dir, info.updated(finished=old.finished, export=old.export))

    def end(self, status: rd.RunStatus, last_batch: int, *, finished: float | None = None,
            export: Path | None = None) -> None:
        """Record how the invocation ended in ``run.json``."""
        if self.active:
            info = rd.find_info(self.run_dir) or rd.RunInfo(name=self.run_dir.name)
            changes: dict[str, Any] = {"status": status, "last_batch": last_batch}
            if finished is not None:
                changes |= {"finished": finished, "export": str(export) if export else None}
            rd.write_info(self.run_dir, info.updated(**changes))

    def results(self, results: rd.Results) -> None:
        """Write ``results.json``."""
        if self.active:
            rd.write_results(self.run_dir, results)

    def truncate_after(self, batch: int) -> None:
        """Drop metric lines past ``batch`` (left by a run that broke after its last checkpoint)."""
        if self.active:
            rd.truncate_metrics(self.run_dir, batch)

    def append(self, record: rd.Line) -> None:
        """Append one line to ``metrics.jsonl``."""
        if self.active:
            rd.append_metrics(self.run_dir, record)


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
