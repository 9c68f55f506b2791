"""`mixture stats` over a 10M-row sample index against a hand-written polars scan of the same aggregates.

The index is an image-caption ``samples.parquet`` (the kind with the most columns: tokens, caption tokens,
images, width, height, a 64-character content hash, caption characters, shard), 10M rows in row groups
of 1M, generated once into ``--dir`` (default /tmp/bench-stats). Three configurations, each in its own
process, alternating A, B, C, A, B, C, ... because this machine is shared and drifts:

  library  ``analysis.stats.source_stats`` (what `mixture stats` computes), timed inside the process.
  plain    the same aggregates written by hand: one lazy scan, a value-count ``group_by`` per column, the
           per-shard group, the duplicate-hash groups, one ``collect_all`` on the streaming engine.
  cli      the whole `mixture stats SOURCE -o DIR` command (start-up, statistics, plots, HTML), wall time.

Reported: median seconds, the library/plain ratio per round (goal: at most 1.5x), and each process's
peak RSS (``ru_maxrss`` of exactly that child, as ``/usr/bin/time -v`` reports it).

Usage: .venv/bin/python benchmarks/bench_stats.py [--rows 10000000] [--rounds 3] [--dir /tmp/bench-stats]
Results: a table on stdout and benchmarks/results/stats.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile_common import MIXTURE, PYTHON, ROOT, machine, median, run_process, table, write_json  # noqa: E402

_HEX = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashes(ids: np.ndarray) -> object:
    """64-character hex strings, one per id (equal ids give equal strings: duplicates on purpose)."""
    import pyarrow as pa

    words = np.stack([_splitmix(ids.astype(np.uint64) * np.uint64(4) + np.uint64(k)) for k in range(4)], axis=1)
    hexed = _HEX[words.view(np.uint8)].reshape(len(ids), 64)
    return pa.array(hexed.view("S64").ravel(), pa.binary(64)).cast(pa.string())


def make_index(directory: Path, rows: int, seed: int = 0) -> Path:
    """Write ``directory/images/samples.parquet`` (unless it exists with ``rows`` rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    from streaming_data.sample_index import INDEX_SCHEMAS, with_index_metadata

    out = directory / "images" / "samples.parquet"
    if out.exists() and pq.ParquetFile(out).metadata.num_rows == rows:
        return out.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    schema = with_index_metadata(INDEX_SCHEMAS["image_caption"].empty_table().append_column(
        pa.field("shard", pa.int32()), pa.array([], pa.int32())), "image_caption",
        {"not_an_image": 1234, "download_http_404": 56789}, {"visual_tokens_per_image": 729}).schema
    with pq.ParquetWriter(out, schema) as writer:
        for start in range(0, rows, 1 << 20):
            n = min(1 << 20, rows - start)
            cap = rng.integers(3, 78, n)
            writer.write_table(pa.table({
                "tokens": 729 + cap, "caption_tokens": cap, "num_images": np.ones(n, np.int32),
                "width": rng.integers(64, 2048, n).astype(np.int32),
                "height": rng.integers(64, 2048, n).astype(np.int32),
                "content_hash": _hashes(rng.integers(0, int(rows * 0.95), n)),
                "caption_chars": (cap * 4 + rng.integers(0, 4, n)).astype(np.int32),
                "shard": (np.arange(start, start + n) // 5000).astype(np.int32)}, schema=schema))
    return out.parent


def plain(path: str) -> None:
    """The same aggregates as `mixture stats`, by hand, in one collect_all."""
    import polars as pl

    lf = pl.scan_parquet(path)
    w, h = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
    exprs = [pl.col(c) for c in ("tokens", "caption_tokens", "caption_chars", "width", "height")]
    exprs += [pl.when((w > 0) & (h > 0)).then((w / h).round(2)).otherwise(None), pl.col("num_images")]
    queries = [lf.select(e.alias("v")).drop_nulls().group_by("v").agg(pl.len().alias("n")) for e in exprs]
    queries.append(lf.group_by("shard").agg(pl.len().alias("n"), pl.col("tokens").sum().alias("tokens")))
    groups = lf.select(pl.col("content_hash").drop_nulls().hash().alias("h"), pl.lit(0, pl.Int32).alias("src")) \
        .group_by("h", "src").agg(pl.len().alias("n"))
    queries.append(groups.group_by("src").agg(pl.len().alias("distinct"), (pl.col("n") > 1).sum().alias("hashes"),
                                              (pl.col("n") - 1).sum().alias("extra")))
    queries.append(groups.group_by("h").agg(pl.len().alias("k")).select((pl.col("k") > 1).sum().alias("hashes"),
                                                                        pl.len().alias("distinct")))
    pl.collect_all(queries, engine="streaming")


def _child(config: str, source: str) -> None:
    start = time.perf_counter()
    if config == "plain":
        plain(f"{source}/samples.parquet")
    else:
        sys.path.insert(0, str(ROOT))
        from analysis.stats import source_stats

        source_stats([source])
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main(argv: list[str] | None = None) -> int:
    """Generate the index, run the alternating rounds, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/bench-stats")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    source = make_index(Path(args.dir), args.rows)
    size = (source / "samples.parquet").stat().st_size
    print(f"index: {source} ({args.rows:,} rows, {size / 2**20:.0f} MiB), ready in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    out_dir = Path(args.dir) / "report"
    argv_of = {"library": [PYTHON, __file__, "--child", "library", str(source)],
               "plain": [PYTHON, __file__, "--child", "plain", str(source)],
               "cli": [MIXTURE, "stats", str(source), "-o", str(out_dir)]}
    run_process(argv_of["plain"])  # untimed: warms the page cache
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in argv_of}
    for rnd in range(args.rounds):
        for name, cmd in argv_of.items():
            result = run_process(cmd)
            result["seconds"] = (json.loads(str(result["stdout"]).splitlines()[-1])["seconds"]
                                 if name != "cli" else result["wall_s"])
            runs[name].append(result)
            print(f"  round {rnd + 1} {name}: {result['seconds']:.2f} s, {result['max_rss_mib']:.0f} MiB peak",
                  flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    ratios = [float(a["seconds"]) / float(b["seconds"]) for a, b in zip(runs["library"], runs["plain"])]
    rows = [{"config": name, "runs": len(r), "seconds_median": median([float(x["seconds"]) for x in r]),
             "seconds_min": min(float(x["seconds"]) for x in r), "seconds_max": max(float(x["seconds"]) for x in r),
             "cpu_s_median": median([float(x["cpu_s"]) for x in r]),
             "max_rss_mib_median": median([float(x["max_rss_mib"]) for x in r]),
             "max_rss_mib_max": max(float(x["max_rss_mib"]) for x in r)} for name, r in runs.items()]
    print(table(rows, list(rows[0])))
    print(f"library / plain, per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {median(ratios):.2f} "
          f"(goal <= 1.5)")
    path = write_json("stats", {"goal": "mixture stats over a 10M-row index in at most 1.5x a plain polars scan",
                                "rows": args.rows, "parquet_mib": size / 2**20, "ratio_per_round": ratios,
                                "ratio_median": median(ratios), "results": rows,
                                "raw": {k: [{kk: vv for kk, vv in x.items() if kk != "stdout"} for x in v]
                                        for k, v in runs.items()}})
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
