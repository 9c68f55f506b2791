"""Start-up cost of the integrity checks: the source fingerprint and the per-shard hash.

fingerprint  ``mixture.sources.source_fingerprint`` on a synthetic image-caption ``samples.parquet`` of
             ``--rows`` rows (int columns only; written once into ``--dir``) beside an ``index.json`` of
             one 20k-sample shard per entry, against the whole-file sha256 it replaced; alternating, each
             ``--rounds`` times. Also: the content-hash check the compiler runs (``read_sample_index``).
shard        ``streaming_data.shards.file_digest`` (xxh3_64, what serving checks per shard) on a 64 MB
             file, against reading it alone and hashing it from memory; alternating.

Times are from the page cache (this machine is shared; take the minimum and the median of the rounds).

Usage: .venv/bin/python benchmarks/bench_integrity.py [--rows 50000000] [--rounds 5] [--dir /tmp/bench-integrity]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixture.sources import INDEX_JSON, SAMPLE_INDEX, content_hash, read_sample_index, source_fingerprint  # noqa: E402
from streaming_data.shards import SHARD_HASH, file_digest  # noqa: E402

SHARD_SAMPLES = 20_000


def write_source(root: Path, rows: int) -> None:
    """A sample index with the compiler's columns plus width/height, and a matching index.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streaming_data.sample_index import with_index_metadata

    rng = np.random.default_rng(0)
    table = pa.table({"tokens": rng.integers(64, 400, rows, dtype=np.int64),
                      "caption_tokens": rng.integers(5, 80, rows).astype(np.int32),
                      "num_images": np.ones(rows, np.int32),
                      "width": rng.integers(64, 1024, rows).astype(np.int32),
                      "height": rng.integers(64, 1024, rows).astype(np.int32),
                      "shard": (np.arange(rows) // SHARD_SAMPLES).astype(np.int32)})
    pq.write_table(with_index_metadata(table, "image_caption", {}, {}), root / SAMPLE_INDEX)
    shards = [{"raw_data": {"basename": f"part-00000/shard.{i:05d}.mds", "bytes": 1 << 26,
                            "hashes": {SHARD_HASH: f"{i:016x}"}}, "samples": SHARD_SAMPLES}
              for i in range(-(-rows // SHARD_SAMPLES))]
    (root / INDEX_JSON).write_text(json.dumps({"version": 2, "shards": shards}))


def whole_file(root: Path) -> str:
    """The fingerprint as it was: sha256 over both files in full."""
    digest = hashlib.sha256()
    for name in (INDEX_JSON, SAMPLE_INDEX):
        digest.update(name.encode())
        with open(root / name, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def alternate(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, float]]:
    """Min and median seconds of each case, run in turn ``rounds`` times."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - start)
    return {k: {"min_s": min(v), "median_s": float(np.median(v))} for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/tmp/bench-integrity")
    args = parser.parse_args()
    root = Path(args.dir) / f"rows-{args.rows}"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / INDEX_JSON).exists():
        write_source(root, args.rows)
    shard = Path(args.dir) / "shard.mds"
    if not shard.exists():
        shard.write_bytes(os.urandom(1 << 26))
    data = shard.read_bytes()

    def read_only() -> None:
        with open(shard, "rb") as handle:
            while handle.read(1 << 24):
                pass

    import xxhash

    index = read_sample_index(str(root))
    results = {
        "fingerprint": alternate({"whole file (before)": lambda: whole_file(root),
                                  "footer (now)": lambda: source_fingerprint(str(root))}, args.rounds),
        "compile": alternate({"read_sample_index (with check)": lambda: read_sample_index(str(root)),
                              "content_hash alone": lambda: content_hash(index.columns)}, max(2, args.rounds // 2)),
        "shard": alternate({"file_digest xxh3_64": lambda: file_digest(SHARD_HASH, str(shard)),
                            "read only": read_only,
                            "xxh3_64 in memory": lambda: xxhash.xxh3_64(data).hexdigest()}, args.rounds),
    }
    sizes = {"samples_parquet_mb": (root / SAMPLE_INDEX).stat().st_size / 1e6,
             "index_json_kb": (root / INDEX_JSON).stat().st_size / 1e3, "rows": args.rows, "shard_mb": 64}
    for group, cases in results.items():
        for name, t in cases.items():
            print(f"{group:12s} {name:32s} min {t['min_s'] * 1e3:9.1f} ms   median {t['median_s'] * 1e3:9.1f} ms")
    print(json.dumps(sizes))


if __name__ == "__main__":
    main()
