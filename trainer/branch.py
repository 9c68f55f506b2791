"""Branch checks: may this run's schedule continue from a checkpoint of a trunk run over another schedule?

A branch starts from a trunk run's checkpoint with this run's schedule. It is allowed when the checkpoint
is the trunk schedule's (its scheduled-dataset state names the trunk's fingerprint) and both schedules agree
on every position, learning rate and batch boundary before the checkpoint's position
(:func:`mixture.plan.common_prefix`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
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
    agree = schedule.batch_start(common_prefix(trunk, schedule))
    require(agree >= position,
            f"cannot branch at position {position:,}: this run's schedule and the trunk's agree only on the "
            f"first {agree:,} positions (orders, learning rates and batch size must be identical before the "
            "branch point)", "branch from an earlier trunk checkpoint, at or before position "
            f"{agree:,}")
    return position


def _checkpoint_globals() -> list[Any]:
    """What a Composer checkpoint holds besides tensors and plain containers: wall-clock times, the torch
    version, NumPy arrays (the RNG state). Nothing that runs code when unpickled."""
    import datetime

    from torch.torch_version import TorchVersion

    dtypes = [getattr(np.dtypes, n) for n in ("BoolDType", "Int32DType", "Int64DType", "UInt32DType",
                                               "UInt64DType", "Float32DType", "Float64DType")]
    return [datetime.timedelta, TorchVersion, np._core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def _dataset_state(checkpoint: str) -> dict[str, Any]:
    """The serving state in a trunk checkpoint, unpickled with ``weights_only=True`` and an allow-list:
    the path comes from a run config, and a pickle can run any code while it loads."""
    require(Path(checkpoint).is_file(), f"checkpoint {checkpoint} does not exist")
    try:
        with torch.serialization.safe_globals(_checkpoint_globals()):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message: advice, the line saying what it refused, a link
        lines = [line.strip().partition("WeightsUnpickler error: ")[2] or line.strip()
                 for line in str(error).split("\n")]
        what = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0])
        what = what.split(" Please use")[0]  # torch's advice to allow-list it is not ours to give
        raise MixtureError(f"refused to load branch checkpoint {checkpoint}: {what} (only tensors, plain values "
                           "and an allow-list of types are unpickled)",
                           hint="branch only from a checkpoint saved by `mixture train`") from None
    except (RuntimeError, OSError, EOFError) as error:
        raise MixtureError(f"branch checkpoint {checkpoint} cannot be read ({error})",
                           hint="branch from an intact checkpoint saved by `mixture train`") from None
    try:
        return state["state"]["dataset_state"]["train"]
    except (KeyError, TypeError):
        raise MixtureError(f"{checkpoint} has no scheduled-dataset state",
                           hint="branch from a checkpoint saved by `mixture train`") from None
