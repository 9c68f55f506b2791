"""Random access to the compiled full-scale 1B schedule: ``schedule[i]`` and ``schedule.take(a, a + B)``.

The schedule of examples/paper_1b.yaml (1.70B positions: a single-source text phase, a 3-source mixed
cooldown stored in order.bin, a single-source fine-tuning phase) is compiled once in-process into a
temporary directory (or given with --schedule DIR), then opened with ``load_schedule``. Each lookup is
timed on its own with ``time.perf_counter_ns`` (the timer's own cost is reported and not subtracted),
at uniformly random positions per phase, after an untimed warm-up of the same kind of lookups; the
order file is in the page cache (it was just written), as it is on a training node after the first epoch.
Goal: any position in under 10 microseconds.

``prototype scalar path`` rows time a sketch of the fix suggested in docs/benchmarks.md, outside
mixture/: the same lookup as one numba call (checkpoint row + count of the source in the <= 4095 ids
before i + the Feistel permutation of that one draw) behind a Python bisect over phase starts. It is
checked equal to ``schedule[i]`` at every timed position.
Usage: .venv/bin/python benchmarks/bench_compile.py access [--lookups N] [--schedule DIR]
"""

from __future__ import annotations

import argparse
import bisect
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_compile_common import ROOT, median, quantile, table  # noqa: E402

from mixture.permute import _permute_kernel  # noqa: E402

GOAL_US = 10.0


@njit(cache=True)
def _mixed_lookup(order: np.ndarray, ckpt: np.ndarray, order_off: int, ckpt_off: int, every: int, local: int,
                  nums: np.ndarray, blocks: np.ndarray, keys: np.ndarray) -> tuple[int, int]:
    sid = np.int64(order[order_off + local])
    block = local // every
    rank = ckpt[ckpt_off + block, sid]
    for j in range(order_off + block * every, order_off + local):
        if order[j] == sid:
            rank += 1
    out = np.empty(1, np.int64)
    _permute_kernel(np.array([rank], np.int64), nums[sid], min(blocks[sid], nums[sid]), keys[sid], out)
    return sid, out[0]


@njit(cache=True)
def _single_lookup(rank: int, sid: int, nums: np.ndarray, blocks: np.ndarray, keys: np.ndarray) -> int:
    out = np.empty(1, np.int64)
    _permute_kernel(np.array([rank], np.int64), nums[sid], min(blocks[sid], nums[sid]), keys[sid], out)
    return out[0]


class ScalarLookup:
    """Prototype of a scalar ``schedule[i]`` path (see the module docstring)."""

    def __init__(self, schedule: object) -> None:
        s = schedule
        self.names = s.source_names
        self.phases = [p for p in s.phases if p.stop > p.start]
        self.starts = [p.start for p in self.phases]
        self.order = np.asarray(s._order)
        self.ckpt = np.asarray(s._ckpt)
        self.every = s._every
        self.nums = np.array([r.num_samples for r in s.sources], np.int64)
        self.blocks = np.array([r.block for r in s.sources], np.int64)
        self.keys = np.array([r.key for r in s.sources], np.uint64)
        self.single = [(self.names.index(p.source), p.cursors[p.source]) if not p.mixed else None
                       for p in self.phases]

    def __getitem__(self, i: int) -> tuple[str, int]:
        idx = bisect.bisect_right(self.starts, i) - 1
        phase = self.phases[idx]
        local = i - phase.start
        single = self.single[idx]
        if single is not None:
            sid, base = single
            return self.names[sid], int(_single_lookup(base + local, sid, self.nums, self.blocks, self.keys))
        sid, sample = _mixed_lookup(self.order, self.ckpt, phase.order_offset, phase.ckpt_offset, self.every,
                                    local, self.nums, self.blocks, self.keys)
        return self.names[sid], int(sample)


def _per_call(fn: object, args: list[int], warmup: int) -> list[float]:
    for a in args[:warmup]:
        fn(a)  # type: ignore[operator]
    out = []
    clock = time.perf_counter_ns
    for a in args:
        t0 = clock()
        fn(a)  # type: ignore[operator]
        out.append((clock() - t0) / 1000.0)
    return out


def _row(name: str, phase: str, us: list[float], per: int = 1) -> dict[str, object]:
    return {"call": name, "phase": phase, "calls": len(us), "median_us": median(us), "p99_us": quantile(us, 0.99),
            "mean_us": sum(us) / len(us), "median_us_per_position": median(us) / per,
            "goal_met": quantile(us, 0.99) / per < GOAL_US if per == 1 else None}


def run(argv: list[str]) -> dict[str, object]:
    """Compile (or open) the 1B schedule and time single lookups and batch slices per phase."""
    parser = argparse.ArgumentParser(prog="bench_compile.py access")
    parser.add_argument("--lookups", type=int, default=20000, help="timed lookups per phase and call")
    parser.add_argument("--schedule", help="an already compiled schedule of examples/paper_1b.yaml")
    args = parser.parse_args(argv)
    from mixture.api import compile_variant, variants
    from mixture.schedule import load_schedule

    work = Path(tempfile.mkdtemp(prefix="bench-access-"))
    try:
        if args.schedule:
            schedule = load_schedule(args.schedule)
        else:
            t0 = time.perf_counter()
            schedule = compile_variant(variants(ROOT / "examples" / "paper_1b.yaml")[0], work / "schedule")
            print(f"  compiled in-process in {time.perf_counter() - t0:.1f} s", flush=True)
        batch = schedule.global_batch_size
        rng = np.random.default_rng(0)
        scalar = ScalarLookup(schedule)
        timer = _per_call(lambda _: None, list(range(args.lookups)), 100)
        rows: list[dict[str, object]] = [_row("timer only (perf_counter_ns pair)", "-", timer)]
        mismatches = 0
        for phase in schedule.phases:
            kind = "mixed" if phase.mixed else "single-source"
            label = f"{phase.name} ({kind}, {phase.positions:,} positions)"
            pos = rng.integers(phase.start, phase.stop, size=args.lookups).tolist()
            rows.append(_row("schedule[i]", label, _per_call(schedule.__getitem__, pos, 1000)))
            rows.append(_row("prototype scalar path [i]", label, _per_call(scalar.__getitem__, pos, 1000)))
            mismatches += sum(schedule[i] != scalar[i] for i in pos[:2000])
            first, last = phase.start // batch, phase.stop // batch
            starts = (rng.integers(first, last, size=min(args.lookups, 5000)) * batch).tolist()
            us = _per_call(lambda a: schedule.take(a, a + batch), starts, 200)
            rows.append(_row(f"take(a, a+{batch})", label, us, per=batch))
        print(table(rows, ["call", "phase", "calls", "median_us", "p99_us", "mean_us", "median_us_per_position",
                           "goal_met"]))
        print(f"  prototype equal to schedule[i] on every checked position: {mismatches == 0}")
        info = {"num_positions": len(schedule), "fingerprint": schedule.fingerprint,
                "checkpoint_every": schedule._every}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"goal": f"schedule[i] in < {GOAL_US} us for any i", "schedule": info, "rows": rows,
            "prototype_matches": mismatches == 0}


if __name__ == "__main__":
    run(sys.argv[1:])
