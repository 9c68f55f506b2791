"""The loader settings and the CPU thread budget of a run (data: section)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainer.config import DataConfig
from trainer.loader import cpu_threads, loader_kwargs


@pytest.mark.parametrize(("workers", "ranks", "cores", "expected"), [
    (0, 1, 2, 2), (2, 1, 2, 1), (1, 1, 2, 1), (0, 2, 2, 1), (2, 2, 16, 6), (0, 1, 16, 16), (8, 1, 4, 1)])
def test_training_threads_are_the_rank_share_of_cores_minus_workers(workers: int, ranks: int, cores: int,
                                                                    expected: int) -> None:
    assert cpu_threads(DataConfig(num_workers=workers), ranks, cores) == expected


def test_explicit_threads_win() -> None:
    assert cpu_threads(DataConfig(num_workers=2, cpu_threads=3), 1, 2) == 3


def test_loader_kwargs_follow_the_data_section() -> None:
    assert loader_kwargs(DataConfig(pin_memory=True)) == {"pin_memory": True}
    kwargs = loader_kwargs(DataConfig(num_workers=2, prefetch_factor=4, pin_memory=False))
    assert kwargs == {"pin_memory": False, "persistent_workers": True, "prefetch_factor": 4}


def test_prefetch_without_workers_is_refused() -> None:
    with pytest.raises(ValidationError, match="prefetch_factor needs dataloader workers"):
        DataConfig(prefetch_factor=2)
