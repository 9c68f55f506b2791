"""Serving a schedule whose phases have their own global batch sizes (the batch-start table).

The schedule: a text trunk of 6 batches of 8, a mix of 5 batches of 4 (fine-tuning-like), then 3 batches
of 12. Global batch g is the positions the table gives it; 1 rank with 0 and 2 workers, resume at any batch
(inside the second phase included), 2 ranks and elastic resume 1 <-> 2 across the batch-size change, and
world sizes that do not divide a phase's batch are refused naming the phase.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import compile_mixture, expected_batches, served_batches  # noqa: E402
from test_serve import dataset, world  # noqa: E402, F401
from test_serve_dist import global_batches, launch_two_ranks  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402

SIZES = [8] * 6 + [4] * 5 + [12] * 3


def phases() -> list[dict]:
    return [{"name": "trunk", "duration": "6ba", "mix": {"web": 1.0}, "unit": "samples"},
            {"name": "tune", "duration": "5ba", "mix": {"web": 0.25, "caps": 0.25, "chat": 0.5}, "unit": "samples",
             "global_batch_size": 4},
            {"name": "late", "duration": "36 sp", "mix": {"web": 0.5, "caps": 0.5}, "unit": "samples",
             "global_batch_size": 12}]


@pytest.fixture(scope="module")
def per_phase(world: dict) -> str:  # noqa: F811 - the fixture imported above
    return compile_mixture(os.path.join(world["root"], "per_phase"), world["sources"], 8, phases(), seed=3)


def check(got: list[list[list[int]]], path: str, first_batch: int = 0) -> None:
    """Batch k of ``got`` is global batch first_batch + k: its positions, sources and samples (read)."""
    schedule = load_schedule(path)
    assert [[(r[1], r[2]) for r in b] for b in got] == expected_batches(schedule, first_batch)
    for k, b in enumerate(got):
        start, stop = schedule.batch_bounds(first_batch + k)
        assert [r[0] for r in b] == list(range(start, stop))


def test_the_table_holds_each_phases_batches(per_phase: str) -> None:
    schedule = load_schedule(per_phase)
    assert schedule.num_batches == len(SIZES) and len(schedule) == sum(SIZES)
    assert [schedule.batch_size_at(g) for g in range(len(SIZES))] == SIZES
    assert [(s.phase, s.first_batch, s.start, s.batch_size) for s in schedule.segments] == \
        [("trunk", 0, 0, 8), ("tune", 6, 48, 4), ("late", 11, 68, 12)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_exact_order_with_per_phase_batches(world: dict, per_phase: str, num_workers: int) -> None:
    got = served_batches(dataset(per_phase), world["kinds"], num_workers)
    assert [len(b) for b in got] == SIZES
    check(got, per_phase)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("k", [3, 6, 8, 11, 13])
def test_resume_at_any_batch_serves_the_rest(world: dict, per_phase: str, num_workers: int, k: int) -> None:
    first = dataset(per_phase)
    assert len(served_batches(first, world["kinds"], num_workers, stop=k)) == k
    state = first.state_dict(sum(SIZES[:k]), from_beginning=True)
    assert state["samples_consumed"] == sum(SIZES[:k])
    second = dataset(per_phase)
    second.load_state_dict(json.loads(json.dumps(state)))
    check(served_batches(second, world["kinds"], num_workers), per_phase, first_batch=k)


def test_resume_off_the_batch_boundaries_is_refused(per_phase: str) -> None:
    ds = dataset(per_phase)
    fp = ds.schedule_fingerprint
    ds.load_state_dict({"samples_consumed": 52, "schedule_fingerprint": fp})  # 48 + 4: batch 7 starts there
    with pytest.raises(MixtureError, match="not a whole number of global batches of 4 and 8 and 12"):
        ds.load_state_dict({"samples_consumed": 56 + 2, "schedule_fingerprint": fp})
    with pytest.raises(MixtureError, match="not a whole number of global batches"):
        ds.load_state_dict({"samples_consumed": 70, "schedule_fingerprint": fp})  # inside batch 11


@pytest.mark.parametrize("ranks, phase", [("8", "tune"), ("3", "trunk")])
def test_world_size_must_divide_every_phases_batch(per_phase: str, monkeypatch: pytest.MonkeyPatch, ranks: str,
                                                   phase: str) -> None:
    for key, value in {"RANK": "0", "WORLD_SIZE": ranks, "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": ranks}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(MixtureError, match=f"phase '{phase}' .* not divisible by the {ranks} ranks") as error:
        dataset(per_phase)
    own = "phases.tune.global_batch_size" if phase == "tune" else "run.global_batch_size"
    assert own in str(error.value)


@pytest.mark.slow
def test_two_ranks_and_elastic_resume_across_batch_sizes(world: dict, per_phase: str, tmp_path: Path,
                                                         free_port: Callable[[], int]) -> None:
    """2 ranks serve every global batch (halves of 8, 4 and 12); a 1-rank state inside the second phase
    resumes on 2 ranks, and a 2-rank state there resumes on 1."""
    kinds = world["kinds"]
    one_rank = dataset(per_phase)
    assert len(served_batches(one_rank, kinds, 2, stop=8)) == 8
    state_one = tmp_path / "state_one_rank.json"
    state_one.write_text(json.dumps(one_rank.state_dict(sum(SIZES[:8]), from_beginning=True)))
    (tmp_path / "table.json").write_text(json.dumps(kinds))
    launch_two_ranks(free_port(), per_phase, str(tmp_path), str(state_one), "9")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for num_workers in (0, 2):
        check(global_batches([r[f"full_w{num_workers}"] for r in ranks]), per_phase)
    assert [len(b) for b in ranks[0]["full_w0"]] == [s // 2 for s in SIZES]
    check(global_batches([r["resume_from_one_rank"] for r in ranks]), per_phase, first_batch=8)
    two_to_one = dataset(per_phase)
    two_to_one.load_state_dict(json.loads((tmp_path / "state_two_ranks.json").read_text()))
    assert two_to_one._resume_samples == sum(SIZES[:9])
    check(served_batches(two_to_one, kinds, 2), per_phase, first_batch=9)
