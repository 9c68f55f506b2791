"""Serving throughput and per-worker memory: ScheduledDataset against a plain StreamingDataset.

Same shards, same dataloader workers, side by side in one run, alternating rounds (this machine is
shared: single numbers vary by up to 2x, so compare within a round). Throughput counts samples yielded
by the dataloader with an identity collate (no decoding, no tensors): the cost of serving itself.

Memory: each dataloader worker reports the memory it wrote itself (Private_Dirty; the pages it shares with
the parent and the page cache behind the memory-mapped schedule are not its own), for schedules of
increasing length, resumed near their end so that the worker's share starts deep in the order.

Usage: ``python benchmarks/bench_serve.py [--samples 200000] [--rounds 3] [--out DIR]``; prints a
Markdown table and writes ``bench_serve.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "streaming_data"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def private_dirty_kib() -> int:
    """Memory this process wrote itself, in KiB (Linux ``Private_Dirty``): for a forked dataloader worker,
    what it added beyond the pages it shares with the parent (RSS would count the parent's too)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    return -1


def collate_with_memory(samples: list[dict]) -> tuple[int, int, int]:
    """(samples, worker pid, Private_Dirty KiB): run in the worker, so it reports the worker's memory."""
    return len(samples), os.getpid(), private_dirty_kib()


def make_data(root: Path, num_samples: int) -> list:
    """Two text-like sources (3/4 and 1/4 of the samples), written once and reused."""
    from serve_helpers import SourceRef, write_source

    spec = [("web", "text", num_samples * 3 // 4), ("chat", "instruction", num_samples // 4)]
    refs = []
    for tag, (name, kind, n) in enumerate(spec):
        out = root / name
        if not (out / "samples.parquet").exists():
            write_source(str(root), name, kind, tag, n, size_limit=1 << 20)
        refs.append(SourceRef(name, kind, str(out)))
    return refs


def compile_for(root: Path, refs: list, batch: int, num_batches: int) -> str:
    from serve_helpers import compile_mixture, trunk_then_mix

    out = root / f"schedule-{num_batches}"
    if not (out / "manifest.json").exists():
        compile_mixture(str(out), refs, batch, trunk_then_mix(num_batches // 10, num_batches - num_batches // 10,
                                                               [r.name for r in refs]), seed=0)
    return str(out)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (dataloader workers, once joined)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_loader(dataset, batch: int, num_workers: int) -> tuple[float, float, int, dict]:
    """(samples/s wall, CPU us/sample, samples, {worker pid: peak Private_Dirty KiB}) for one pass."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, num_workers=num_workers, collate_fn=collate_with_memory)
    start, cpu, count, memory = time.perf_counter(), cpu_seconds(), 0, {}
    for n, pid, dirty in loader:
        count += n
        memory[pid] = max(memory.get(pid, 0), dirty)
    wall = time.perf_counter() - start
    del loader  # joins the workers, so that their CPU time is counted
    gc.collect()
    return count / wall, 1e6 * (cpu_seconds() - cpu) / count, count, memory


def throughput(schedule: str, refs: list, rounds: int, workers: list[int]) -> list[dict]:
    from streaming import Stream, StreamingDataset

    from streaming_data.serve import ScheduledDataset

    def make(name: str):
        if name == "plain":
            return StreamingDataset(streams=[Stream(local=x.location) for x in refs], batch_size=256, shuffle=False)
        return ScheduledDataset(schedule)

    for name in ("plain", "scheduled"):  # warm-up, untimed: page cache, numba kernels of the schedule
        run_loader(make(name), 256, 0)
        gc.collect()
    rows = []
    for num_workers in workers:
        for r in range(rounds):
            for name in ("plain", "scheduled") if r % 2 == 0 else ("scheduled", "plain"):
                ds = make(name)
                rate, cpu_us, n, _ = run_loader(ds, 256, num_workers)
                rows.append({"dataset": name, "workers": num_workers, "round": r, "samples": n,
                             "samples_per_s": rate, "cpu_us_per_sample": cpu_us})
                print(f"  {name:9s} workers={num_workers} round={r}: {rate:,.0f} samples/s, "
                      f"{cpu_us:.1f} CPU us/sample over {n:,}", flush=True)
                del ds
                gc.collect()
    return rows


def memory(root: Path, refs: list, lengths: list[int], tail_batches: int) -> list[dict]:
    from streaming_data.serve import ScheduledDataset

    rows = []
    for num_batches in lengths:
        path = compile_for(root, refs, 256, num_batches)
        ds = ScheduledDataset(path)
        ds.load_state_dict({"samples_consumed": max(num_batches - tail_batches, 0) * 256,
                            "schedule_fingerprint": ds.schedule_fingerprint})
        _, _, n, mem = run_loader(ds, 256, 2)
        rows.append({"positions": num_batches * 256, "served": n, "worker_private_dirty_kib": sorted(mem.values()),
                     "full_order_copy_mib": num_batches * 256 * 12 / 2**20})
        print(f"  {num_batches * 256:>12,} positions: worker Private_Dirty {sorted(mem.values())} KiB", flush=True)
        del ds
        gc.collect()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000, help="samples in the sources")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_000, 10_000, 60_000],
                        help="schedule lengths in global batches of 256 for the memory check")
    parser.add_argument("--out", default="/tmp/bench_serve")
    args = parser.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    refs = make_data(root, args.samples)
    schedule = compile_for(root, refs, 256, args.samples // 256)
    print("throughput (one pass of the schedule, about one epoch of the data):")
    rows = throughput(schedule, refs, args.rounds, args.workers)
    print("memory per worker (2 workers, last 200 batches of each schedule):")
    mem = memory(root, refs, args.lengths, 200)
    (root / "bench_serve.json").write_text(json.dumps({"throughput": rows, "memory": mem}, indent=1))
    print("\n| workers | plain samples/s | scheduled samples/s | ratio (median of per-round ratios) "
          "| plain CPU us/sample | scheduled CPU us/sample | CPU ratio plain/scheduled |\n|---|---|---|---|---|---|---|")
    for w in args.workers:
        pick = {d: [r for r in rows if r["workers"] == w and r["dataset"] == d] for d in ("plain", "scheduled")}
        rate = {d: [r["samples_per_s"] for r in v] for d, v in pick.items()}
        cpu = {d: [r["cpu_us_per_sample"] for r in v] for d, v in pick.items()}
        ratio = np.median(np.array(rate["scheduled"]) / np.array(rate["plain"]))
        cpu_ratio = np.median(np.array(cpu["plain"]) / np.array(cpu["scheduled"]))
        print(f"| {w} | {np.median(rate['plain']):,.0f} | {np.median(rate['scheduled']):,.0f} | {ratio:.2f} "
              f"| {np.median(cpu['plain']):.1f} | {np.median(cpu['scheduled']):.1f} | {cpu_ratio:.2f} |")


if __name__ == "__main__":
    main()
