"""Branch checks: may this run's schedule continue from a checkpoint of a trunk run over another schedule?

A branch starts from a trunk run's checkpoint with this run's schedule. It is allowed when the checkpoint
is the trunk schedule's (its scheduled-dataset state names the trunk's fingerprint) and both schedules agree
on every position, learning rate and batch size before the checkpoint's position
(:func:`mixture.plan.common_prefix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mixture.errors import MixtureError
from mixture.schedule import Schedule
from trainer.config import require


def branch_check(trunk_schedule: str, checkpoint: str, schedule: Schedule) -> int:
    """Check that ``schedule`` may continue from ``checkpoint`` of a run over ``trunk_schedule``.

    Returns:
        The checkpoint's position (samples consumed).

    Raises:
        MixtureError: If the checkpoint is not the trunk's, or the schedules differ before its position.
    """
    from mixture.plan import common_prefix
    from mixture.schedule import load_schedule

    trunk = load_schedule(trunk_schedule)
    state = _dataset_state(checkpoint)
    position = int(state["samples_consumed"])
    require(state.get("schedule_fingerprint") == trunk.fingerprint,
            f"{checkpoint} was made with schedule {state.get('schedule_fingerprint')}, not the trunk schedule "
            f"{trunk_schedule} ({trunk.fingerprint})", "name the schedule the trunk run trained on")
    agree = common_prefix(trunk, schedule) * schedule.global_batch_size
    require(agree >= position,
            f"cannot branch at position {position:,}: this run's schedule and the trunk's agree only on the "
            f"first {agree:,} positions (orders, learning rates and batch size must be identical before the "
            "branch point)", "branch from an earlier trunk checkpoint, at or before position "
            f"{agree:,}")
    return position


def _dataset_state(checkpoint: str) -> dict[str, Any]:
    require(Path(checkpoint).is_file(), f"checkpoint {checkpoint} does not exist")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    try:
        return state["state"]["dataset_state"]["train"]
    except (KeyError, TypeError):
        raise MixtureError(f"{checkpoint} has no scheduled-dataset state",
                           hint="branch from a checkpoint saved by `mixture train`") from None
