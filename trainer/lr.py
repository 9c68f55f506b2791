"""The mixture file's learning rate as a Composer scheduler.

The compiler already turned the LR plan and the phase directives (continue, cooldown, re-warm, constant)
into one value per global batch (``lr.npy``); Composer schedulers return a multiplier of the optimiser's
base LR, so the base LR is the largest planned value and batch ``b`` trains with ``lr[b]`` exactly. A
branch or a resume needs nothing special: the multiplier is a pure function of the batch count, which
Composer restores from the checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class ScheduleLR:
    """A ComposerScheduler: ``lr[b] / base`` at batch ``b`` (the last value past the end).

    Args:
        lr: Learning rate per global batch (the schedule's ``lr.npy``).
    """

    def __init__(self, lr: NDArray[np.float64]) -> None:
        if len(lr) == 0 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
            raise ValueError("the schedule's learning rates must be finite, non-negative and not empty")
        self.lr = np.asarray(lr, np.float64)
        self.base = float(self.lr.max()) or 1.0

    def __call__(self, state: Any, ssr: float = 1.0) -> float:
        if ssr != 1.0:
            raise ValueError("scale_schedule_ratio does not apply: the schedule fixes the number of batches")
        batch = min(int(state.timestamp.batch), len(self.lr) - 1)
        return float(self.lr[batch] / self.base)
