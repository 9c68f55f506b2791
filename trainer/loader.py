"""DataLoader settings of a run and the CPU thread budget of its processes.

On a GPU the loader's workers decode images while the GPU computes, so pinned memory and prefetching are
what matter. On CPU the workers and PyTorch's own OpenMP threads compete for the same cores: measured on a
2-core machine, 2 workers next to a training process that kept PyTorch's default thread count made steps
about 12x slower (OpenMP threads spin while waiting for a core). So on CPU each training process gets the
cores of its local rank minus its workers (at least 1); PyTorch already gives each DataLoader worker one
thread (workers only collate: Pillow decoding and NumPy). ``OMP_NUM_THREADS`` in the environment, or
``data.cpu_threads``, overrides the training process's count.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from trainer.config import DataConfig


def cpu_threads(data: DataConfig, local_world_size: int, available_cores: int) -> int:
    """Threads for one training process on CPU: ``data.cpu_threads``, else its share of the cores minus
    its workers, at least 1."""
    if data.cpu_threads is not None:
        return data.cpu_threads
    return max(1, available_cores // max(local_world_size, 1) - data.num_workers)


def set_cpu_threads(data: DataConfig, local_world_size: int) -> int | None:
    """Set this process's PyTorch thread count when training on CPU; returns it (``None``: left alone,
    because CUDA is used or ``OMP_NUM_THREADS`` is set)."""
    if torch.cuda.is_available() or ("OMP_NUM_THREADS" in os.environ and data.cpu_threads is None):
        return None
    threads = cpu_threads(data, local_world_size, len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    return threads


def loader_kwargs(data: DataConfig) -> dict[str, Any]:
    """``DataLoader`` arguments from the run config's ``data:`` section (workers persist across epochs)."""
    kwargs: dict[str, Any] = {"pin_memory": torch.cuda.is_available() if data.pin_memory is None else data.pin_memory}
    if data.num_workers > 0:
        kwargs["persistent_workers"] = True
        if data.prefetch_factor is not None:
            kwargs["prefetch_factor"] = data.prefetch_factor
    return kwargs
