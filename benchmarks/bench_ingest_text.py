"""Text ingest throughput (tokens/s) against the tokenizer's own batch-encode rate on the same text.

Baseline: ``tokenizers.Tokenizer.encode_batch_fast`` over the same documents in the same batches, ids
discarded. Ours: ``mixture ingest text`` end to end (read JSONL, tokenize, pack to 2048, write MDS and
samples.parquet). Runs alternate (baseline, ours, baseline, ...) because this shared machine drifts; rates are reported
per wall-clock second and per CPU second (the latter is steadier when other jobs share the cores).
Goal: ours >= 0.8x baseline.

Usage: .venv/bin/python benchmarks/bench_ingest_text.py [--docs 20000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from streaming_data.inputs import batched  # noqa: E402
from streaming_data.text import TextIngestConfig, ingest_text  # noqa: E402
from streaming_data.tokenizer import load_tokenizer, train_bpe  # noqa: E402


def make_corpus(path: str, num_docs: int, seed: int = 0) -> list[str]:
    """Documents of 50-800 words drawn from a Zipf-like vocabulary of 5000 made-up words."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    docs = [" ".join(rng.choices(vocab, weights, k=rng.randint(50, 800))) + "." for _ in range(num_docs)]
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    return docs


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its finished children: less sensitive than wall time
    to the other jobs sharing this machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def baseline(tokenizer_spec: str, docs: list[str], batch: int) -> int:
    """Tokens of the tokenizer's own batch encode over ``docs``."""
    tokenizer = load_tokenizer(tokenizer_spec)
    return sum(len(ids) for chunk in batched(docs, batch) for ids in tokenizer.encode_batch(chunk))


def ours(tokenizer_spec: str, src: str, out: str, batch: int) -> int:
    """Tokens written by a full text ingest."""
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    config = TextIngestConfig(inputs=(src,), out=out, tokenizer=tokenizer_spec, seq_len=2048, batch_docs=batch)
    ingest_text(config, show_progress=False)
    return int(pq.read_table(f"{out}/samples.parquet").column("tokens").to_numpy().sum())


def measure(fn: Callable[[], int]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and result of ``fn()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


def compare(name: str, spec: str, docs: list[str], src: str, out: str, repeats: int, batch: int) -> dict[str, Any]:
    """Alternate baseline and ingest ``repeats`` times; rates in tokens per wall and per CPU second."""
    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "ingest": []}
    for _ in range(repeats):
        wall, cpu, tokens = measure(lambda: baseline(spec, docs, batch))
        runs["baseline"].append((tokens / wall, tokens / cpu))
        wall, cpu, written = measure(lambda: ours(spec, src, out, batch))
        runs["ingest"].append((written / wall, written / cpu))
        assert written == tokens + len(docs), "ingest must keep every token (+1 EOS per document)"
    result: dict[str, Any] = {"tokens": tokens, "runs": runs}
    for i, unit in ((0, "wall"), (1, "cpu")):
        base = statistics.median(r[i] for r in runs["baseline"])
        mine = statistics.median(r[i] for r in runs["ingest"])
        result[unit] = {"baseline_tokens_per_s": base, "ingest_tokens_per_s": mine, "ratio": mine / base}
        print(f"{name:9s} per {unit} s: baseline {base / 1e6:8.2f} M tok/s, ingest {mine / 1e6:8.2f} M tok/s, "
              f"ratio {mine / base:.2f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_ingest_text_")
    src = os.path.join(work, "docs.jsonl")
    docs = make_corpus(src, args.docs)
    bpe = train_bpe(docs[:2000], os.path.join(work, "bpe"), vocab_size=8192)
    ours("bytes", src, os.path.join(work, "warm"), args.batch)  # one-time imports (streaming, pandas via pyarrow)
    results = {name: compare(name, spec, docs, src, os.path.join(work, "mds"), args.repeats, args.batch)
               for name, spec in (("bpe-8192", bpe), ("bytes", "bytes"))}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"docs": args.docs, "repeats": args.repeats, **results}, handle, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
