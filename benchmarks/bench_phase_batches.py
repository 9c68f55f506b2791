"""What one fit per batch-size segment would cost over the one fit the trainer makes (docs/training.md).

Per-phase batch sizes are trained in one Composer fit: the DataLoader yields each global batch's slice
(of any size) and Composer's step counter stays the global batch index. The alternative, one fit per
batch-size segment, needs a new ScheduledDataset and DataLoader per segment. This measures, on a compiled
schedule with ingested sources, what such a restart costs: constructing the dataset (source fingerprints,
shard presence/size/hash checks), the DataLoader's time to its first batch (worker start-up), and the
steady time per batch, for each segment of the batch-start table, resuming at the segment's first batch.

Usage: ``python benchmarks/bench_phase_batches.py SCHEDULE_DIR [--workers 2] [--rounds 3]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def measure(path: str, workers: int, first: int, batches: int) -> dict[str, float]:
    """Seconds to build the dataset, to the first batch from ``first``, and per batch after it."""
    from streaming_data.serve import ScheduledDataset, build_dataloader

    t0 = time.perf_counter()
    dataset = ScheduledDataset(path)
    built = time.perf_counter()
    dataset.load_state_dict({"samples_consumed": dataset.schedule.batch_start(first),
                             "schedule_fingerprint": dataset.schedule_fingerprint})
    loader = iter(build_dataloader(dataset, num_workers=workers))
    next(loader)
    first_batch = time.perf_counter()
    count = 0
    for _ in range(batches - 1):
        if next(loader, None) is None:
            break
        count += 1
    done = time.perf_counter()
    del loader
    return {"construct_s": built - t0, "first_batch_s": first_batch - built,
            "per_batch_s": (done - first_batch) / max(count, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("schedule")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from mixture.schedule import load_schedule

    schedule = load_schedule(args.schedule)
    out = {}
    for seg in schedule.segments:
        if not seg.num_batches:
            continue
        runs = [measure(args.schedule, args.workers, seg.first_batch, seg.num_batches) for _ in range(args.rounds)]
        out[f"{seg.phase} (batch {seg.batch_size})"] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps({"workers": args.workers, "rounds": args.rounds, "load": os.getloadavg()[0],
                      "segments": out}, indent=1))


if __name__ == "__main__":
    main()
