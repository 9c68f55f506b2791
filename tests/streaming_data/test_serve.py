"""Serving a schedule on one rank: exact order, stop/resume, refusals, mixed kinds (in-process, fast)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import (  # noqa: E402
    compile_mixture,
    expected_batches,
    make_sources,
    served_batches,
    source_table,
    trunk_then_mix,
)

from mixture.errors import MixtureError  # noqa: E402

import streaming_data.serve as serve  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402
from mixture.schedule_check import recomputed_fingerprint  # noqa: E402

B = 8
NUM_BATCHES = 30
SPEC = [("web", "text", 300), ("caps", "image_caption", 200), ("chat", "instruction", 120)]
PHASES = trunk_then_mix(8, NUM_BATCHES - 8, [name for name, _, _ in SPEC])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three sources (text, image-caption, instruction), a schedule over them and one with another seed."""
    root = str(tmp_path_factory.mktemp("serve"))
    sources = make_sources(root, SPEC)
    path = compile_mixture(os.path.join(root, "schedule"), sources, B, PHASES, seed=1)
    other = compile_mixture(os.path.join(root, "other"), sources, B, PHASES, seed=2)
    return {"root": root, "sources": sources, "path": path, "other": other,
            "kinds": source_table(load_schedule(path), sources)}


def dataset(path: str, **kwargs) -> serve.ScheduledDataset:
    return serve.ScheduledDataset(path, **kwargs)


def check_exact(got: list[list[list[int]]], path: str, first_batch: int = 0, complete: bool = True) -> None:
    """Batch k of ``got`` is global batch first_batch + k (positions, sources, samples); all of them."""
    want = expected_batches(load_schedule(path), first_batch)
    want = want if complete else want[: len(got)]
    assert [[(r[1], r[2]) for r in b] for b in got] == want
    for k, b in enumerate(got):
        start = (first_batch + k) * B
        assert [r[0] for r in b] == list(range(start, start + B))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_exact_order_one_rank(world: dict, num_workers: int) -> None:
    ds = dataset(world["path"])
    assert len(ds) == NUM_BATCHES * B
    check_exact(served_batches(ds, world["kinds"], num_workers), world["path"])


def test_mixed_batches_route_by_kind(world: dict) -> None:
    """A collator that routes by kind gets each sample's own columns, in schedule order."""
    kinds = {i: kind for i, (kind, _) in world["kinds"].items()}

    def route(samples: list[dict]) -> dict[str, list]:
        routed: dict[str, list] = {}
        for s in samples:
            routed.setdefault(kinds[s["source_id"]], []).append(s)
        return routed

    loader = serve.build_dataloader(dataset(world["path"]), collate_fn=route)
    sched = load_schedule(world["path"])
    mixed = 0
    for g, routed in enumerate(loader):
        src, _ = sched.take(g * B, (g + 1) * B)
        for kind, samples in routed.items():
            assert sum(kinds[int(s)] == kind for s in src) == len(samples)
            columns = {"text": {"input_ids"}, "instruction": {"input_ids", "loss_mask"},
                       "image_caption": {"image", "caption", "caption_ids", "width", "height"}}[kind]
            assert all(columns <= set(s) for s in samples)
        mixed += len(routed) > 1
    assert mixed > NUM_BATCHES // 2


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stop_resume_rest_identical(world: dict, num_workers: int) -> None:
    k = 7
    first = dataset(world["path"])
    assert len(served_batches(first, world["kinds"], num_workers, stop=k)) == k
    state = first.state_dict(k * B, from_beginning=True)
    assert state == {"samples_consumed": k * B, "schedule_fingerprint": first.schedule_fingerprint,
                     "global_batch_size": B}
    second = dataset(world["path"])
    second.load_state_dict(json.loads(json.dumps(state)))
    check_exact(served_batches(second, world["kinds"], num_workers), world["path"], first_batch=k)


def test_chained_stop_resume(world: dict) -> None:
    """0 workers for 5 batches, 2 workers for 4 more, then the rest: identical to one pass."""
    a = dataset(world["path"])
    got = served_batches(a, world["kinds"], 0, stop=5)
    b = dataset(world["path"])
    b.load_state_dict(a.state_dict(5 * B, from_beginning=True))
    got += served_batches(b, world["kinds"], 2, stop=4)
    state = b.state_dict(4 * B, from_beginning=False)  # counted from where b resumed
    assert state["samples_consumed"] == 9 * B
    c = dataset(world["path"])
    c.load_state_dict(state)
    got += served_batches(c, world["kinds"], 0)
    check_exact(got, world["path"])


def test_second_epoch_replays_and_resumes_like_one(world: dict) -> None:
    """Iterating again replays the schedule; a state past the end resumes inside that replay."""
    ds = dataset(world["path"])
    assert len(served_batches(ds, world["kinds"], 0)) == NUM_BATCHES
    check_exact(served_batches(ds, world["kinds"], 0, stop=3), world["path"], complete=False)  # epoch 1
    assert ds.state_dict(3 * B, from_beginning=True)["samples_consumed"] == (NUM_BATCHES + 3) * B
    resumed = dataset(world["path"])
    resumed.load_state_dict({"samples_consumed": (NUM_BATCHES + 3) * B, "schedule_fingerprint": ds.schedule_fingerprint})
    check_exact(served_batches(resumed, world["kinds"], 2), world["path"], first_batch=3)


def test_refuses_state_of_another_schedule(world: dict) -> None:
    state = dataset(world["path"]).state_dict(3 * B, from_beginning=True)
    other = dataset(world["other"])
    with pytest.raises(MixtureError, match="ignore_schedule_fingerprint=True") as error:
        other.load_state_dict(state)
    assert state["schedule_fingerprint"] in str(error.value) and other.schedule_fingerprint in str(error.value)
    switched = dataset(world["other"], ignore_schedule_fingerprint=True)
    switched.load_state_dict(state)
    check_exact(served_batches(switched, world["kinds"], 0), world["other"], first_batch=3)


@pytest.mark.parametrize("state, message", [
    ({"samples_consumed": B + 1}, "not a whole number of global batches"),
    ({"samples_consumed": -B}, "negative"),
    ({"epoch": 0, "sample_in_epoch": 8, "num_canonical_nodes": 1, "shuffle_seed": 9176}, "Streaming's own"),
])
def test_refuses_bad_state(world: dict, state: dict, message: str) -> None:
    ds = dataset(world["path"])
    state = {k: v for k, v in state.items()}
    if "samples_consumed" in state:
        state["schedule_fingerprint"] = ds.schedule_fingerprint
    with pytest.raises(MixtureError, match=message):
        ds.load_state_dict(state)


def _copy_world(world: dict, tmp_path: Path) -> tuple[str, list]:
    """Sources copied under tmp_path and a schedule compiled over the copies (so the test may damage them)."""
    sources = []
    for s in world["sources"]:
        where = str(tmp_path / s.name)
        shutil.copytree(s.location, where)
        sources.append(type(s)(s.name, s.kind, where))
    return compile_mixture(str(tmp_path / "schedule"), sources, B, PHASES, seed=1), sources


def test_refuses_changed_and_missing_sources(world: dict, tmp_path: Path) -> None:
    path, sources = _copy_world(world, tmp_path)
    dataset(path)  # intact copies serve
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"tokens": pa.array([1] * 300, pa.int64())}), os.path.join(sources[0].location, "samples.parquet"))
    shutil.rmtree(sources[1].location)
    with pytest.raises(MixtureError) as error:
        dataset(path)
    message = str(error.value)
    assert "source 'web'" in message and "changed since the schedule was compiled" in message
    assert "source 'caps' is missing" in message
    assert "chat" not in message


def test_refuses_wrong_sample_count(world: dict, tmp_path: Path) -> None:
    path, _ = _copy_world(world, tmp_path)
    manifest = json.loads(Path(path, "manifest.json").read_text())
    next(s for s in manifest["sources"] if s["name"] == "chat")["num_samples"] = 999
    np.save(Path(path, "tokens", "chat.npy"), np.ones(999, np.int32))  # the directory agrees with itself ...
    manifest["fingerprint"] = recomputed_fingerprint(path, manifest)  # ... but not with the source
    Path(path, "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MixtureError, match="source 'chat' has 120 samples in its index.json"):
        dataset(path)


def test_refuses_streaming_ordering_options(world: dict) -> None:
    with pytest.raises(MixtureError, match="num_canonical_nodes, shuffle: not an option"):
        dataset(world["path"], shuffle=True, num_canonical_nodes=4)


def test_refuses_ranks_not_dividing_batch(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "3"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(MixtureError, match="global batch size 8 .* is not divisible by the 3 ranks"):
        dataset(world["path"])


def test_pickled_dataset_carries_no_order(world: dict, tmp_path: Path) -> None:
    """Workers get the schedule's path, not its arrays: the pickle does not grow with the schedule."""
    long_path = compile_mixture(str(tmp_path / "long"), world["sources"], B, trunk_then_mix(8, 3000, ["web", "caps", "chat"]))
    short, long = dataset(world["path"]), dataset(long_path)
    assert len(long) == 3008 * B
    _ = short.schedule, long.schedule  # opened in this process
    size_short, size_long = len(pickle.dumps(short)), len(pickle.dumps(long))
    assert abs(size_long - size_short) < 200, (size_short, size_long)
    assert pickle.loads(pickle.dumps(long))._schedule is None


def test_refuses_dataloader_options_fixed_by_schedule(world: dict) -> None:
    with pytest.raises(MixtureError, match="batch_size, shuffle: fixed by the schedule"):
        serve.build_dataloader(dataset(world["path"]), batch_size=3, shuffle=True)


def test_resume_does_not_depend_on_streaming_shared_memory(world: dict) -> None:
    """Streaming keeps its resume state in a shm block its creator unlinks at exit (then silently restarts
    at 0); ours travels with the dataset, so a spawned worker's copy resumes at the same point."""
    from streaming.base.constant import RESUME
    from streaming.base.shared.prefix import _get_path

    ds = dataset(world["path"])
    ds.load_state_dict({"samples_consumed": 5 * B, "schedule_fingerprint": ds.schedule_fingerprint})
    assert not os.path.exists(f"/dev/shm/{_get_path(ds._shm_prefix_int, RESUME)}")
    assert pickle.loads(pickle.dumps(ds))._resume_point(0) == (0, 5 * B)
    check_exact(served_batches(ds, world["kinds"], 2), world["path"], first_batch=5)


def test_a_dropped_dataset_releases_its_shared_memory(world: dict) -> None:
    """The suite's shared-memory fixture (tests/conftest.py): a dataset nobody holds any more gives back its
    file descriptors when collected, so a long test run does not run out of them."""
    import gc

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    dataset(world["path"])  # the first one may open lasting handles (index files, locks)
    gc.collect()
    before = open_fds()
    for _ in range(5):
        ds = dataset(world["path"])
        assert len(ds) == NUM_BATCHES * B
        del ds
    gc.collect()
    assert open_fds() == before
