"""The sweep planner's speed: `common_prefix` and `plan_sweep` against a naive chunked comparison.

Full scale is examples/intro_point.yaml (4 variants, 0.44B to 1.70B positions each). The naive baseline
reads both orders with ``Schedule.take`` in chunks of 4M positions and compares (source identity, sample id)
until the first difference, then compares LR and batch tokens: what one would write without the planner's
structure. At full scale it would take about 20 minutes for the plan, so it runs on the first 2^26 positions
of one pair and is extrapolated linearly (its cost is linear: a chunk's take costs the same anywhere in a
one-source phase); on a 1/100 cut-down of the same file (text_plan 43B tokens, cooldown 280M) both run in
full and the ratio is measured directly.

Usage: .venv/bin/python benchmarks/bench_plan.py [--repeats N] [--sweep-dir DIR]
Results: a table on stdout and benchmarks/results/plan.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile_common import ROOT, median, table, write_json  # noqa: E402

from mixture.plan import common_prefix, plan_sweep  # noqa: E402
from mixture.plan_files import compile_sweep  # noqa: E402
from mixture.schedule import Schedule  # noqa: E402

FILE = ROOT / "examples" / "intro_point.yaml"
CHUNK = 1 << 22
WINDOW = 1 << 26


def naive_prefix(a: Schedule, b: Schedule, stop_positions: int | None = None) -> int:
    """common_prefix the naive way: chunked ``take`` of both orders, then LR and batch tokens."""
    batch = a.global_batch_size
    ident = [{i: (s.name, s.fingerprint, s.num_samples, s.key, s.block) for i, s in enumerate(x.sources)}
             for x in (a, b)]
    registry = {v: k for k, v in enumerate(sorted(set(ident[0].values()) | set(ident[1].values())))}
    canon = [np.array([registry[d[i]] for i in range(len(d))]) for d in ident]
    stop = min(len(a), len(b)) // batch * batch if stop_positions is None else stop_positions
    k = stop // batch
    for x in range(0, stop, CHUNK):
        (sa, xa), (sb, xb) = a.take(x, min(x + CHUNK, stop)), b.take(x, min(x + CHUNK, stop))
        diff = np.flatnonzero((canon[0][sa] != canon[1][sb]) | (xa != xb))
        if len(diff):
            k = (x + int(diff[0])) // batch
            break
    la, lb = a.lr(), b.lr()
    if la is not None and lb is not None:
        bad = np.flatnonzero(la[:k] != lb[:k])
        k = int(bad[0]) if len(bad) else k
    ta, tb = a.batch_tokens()[: k + 1], b.batch_tokens()[: k + 1]
    bad = np.flatnonzero(ta != tb)
    return int(bad[0]) - 1 if len(bad) else k


def timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001 - any callable
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return median(times), out


def cut_down(directory: Path) -> Path:
    """intro_point.yaml at 1/100 of its text plan and cooldown."""
    data = yaml.safe_load(FILE.read_text())
    data["references"]["text_plan"] = "43B tok"
    data["phases"][1]["duration"] = "280M tok"
    path = directory / "intro_point_cut.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pairs_of(schedules: dict[str, Schedule]) -> list[tuple[str, str]]:
    names = list(schedules)
    return [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]


def full_scale(sweep_dir: Path, repeats: int) -> list[dict[str, object]]:
    t = time.perf_counter()
    _, schedules = compile_sweep(FILE, sweep_dir)
    print(f"full scale: {len(schedules)} variants ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    rows = []
    for x, y in pairs_of(schedules):
        seconds, k = timed(lambda: common_prefix(schedules[x], schedules[y]), repeats)
        rows.append({"case": f"full: common_prefix {x} / {y}", "prefix_batches": k, "planner_s": seconds,
                     "naive_s": None, "naive": ""})
    a, b = (schedules[n] for n in list(schedules)[:2])
    window_s, _ = timed(lambda: naive_prefix(a, b, WINDOW), 1)
    rate = WINDOW / window_s
    for row, (x, y) in zip(rows, pairs_of(schedules)):
        positions = min(row["prefix_batches"] + 1, len(schedules[x]) // 256) * 256
        row["naive_s"], row["naive"] = positions / rate, f"extrapolated from {WINDOW:,} positions"
    seconds, _ = timed(lambda: plan_sweep(schedules), repeats)
    rows.append({"case": "full: plan_sweep (4 variants, 6 pairs)", "prefix_batches": None, "planner_s": seconds,
                 "naive_s": sum(r["naive_s"] for r in rows), "naive": "sum of the pairs, extrapolated"})
    return rows


def cut_scale(directory: Path, repeats: int) -> list[dict[str, object]]:
    _, schedules = compile_sweep(cut_down(directory), directory / "cut")
    rows = []
    for x, y in pairs_of(schedules):
        planner_s, k = timed(lambda: common_prefix(schedules[x], schedules[y]), repeats)
        naive_s, k_naive = timed(lambda: naive_prefix(schedules[x], schedules[y]), 1)
        assert k == k_naive, (x, y, k, k_naive)
        rows.append({"case": f"1/100: common_prefix {x} / {y}", "prefix_batches": k, "planner_s": planner_s,
                     "naive_s": naive_s, "naive": "measured, same answer"})
    planner_s, _ = timed(lambda: plan_sweep(schedules), repeats)
    rows.append({"case": "1/100: plan_sweep", "prefix_batches": None, "planner_s": planner_s,
                 "naive_s": sum(r["naive_s"] for r in rows), "naive": "sum of the pairs, measured"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-dir", type=Path, help="keep the full-scale compiled variants here (reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        rows = full_scale(args.sweep_dir or Path(tmp) / "full", args.repeats) + cut_scale(Path(tmp), args.repeats)
    for row in rows:
        row["ratio"] = row["naive_s"] / row["planner_s"]
    print(table(rows, ["case", "prefix_batches", "planner_s", "naive_s", "ratio", "naive"]))
    print(write_json("plan", {"rows": rows, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
