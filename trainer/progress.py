"""The training progress line: batches done/total, tokens/s, ETA and the last loss (rank 0 only).

On a terminal a rich bar; otherwise a timestamped line every ``MIXTURE_PROGRESS_INTERVAL`` seconds
(:mod:`mixture.progress`); nothing with ``--quiet``. A resumed run first says where it resumes.
"""

from __future__ import annotations

from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from mixture.progress import Board, Task, human
from trainer.metrics import SourceMetrics


class TrainProgress(Callback):
    """Shows training progress from the per-source metrics callback's newest record.

    Args:
        metrics: The run's :class:`SourceMetrics` (its ``last`` record holds loss and throughput).
        stop_batch: The batch this invocation trains to.
        label: The task's name (the run directory's name).
    """

    def __init__(self, metrics: SourceMetrics, stop_batch: int, label: str) -> None:
        self.metrics, self.stop_batch, self.label = metrics, stop_batch, label
        self.board: Board | None = None
        self.task: Task | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self.board = Board().__enter__()
        done = int(state.timestamp.batch)
        if done:
            self.board.line(f"{self.label}: resuming at batch {done:,} of {self.stop_batch:,}")
        self.task = self.board.task(f"train {self.label}", self.stop_batch, "batches")
        self.task.update(done)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.task is None:
            return
        record = self.metrics.last
        info = [f"{human(record.get('throughput/tokens_per_s', 0.0))} tok/s"]
        if "loss/train" in record:
            info.append(f"loss {record['loss/train']:.4f}")
        self.task.update(int(state.timestamp.batch), info=", ".join(info))

    def fit_end(self, state: State, logger: Logger) -> None:
        self.close()

    def close(self, *exc: Any) -> None:
        """Stop the display (also on failure: Composer calls ``close`` on every callback)."""
        if self.board is not None:
            self.board.__exit__(None, None, None)
            self.board, self.task = None, None

    def post_close(self) -> None:
        self.close()
