"""Text ingest throughput (tokens/s) against the tokenizer's own batch-encode rate on the same text.

Baseline: ``tokenizers.Tokenizer.encode_batch_fast`` over the same documents in the same batches, ids
discarded. Ours: ``mixture ingest text`` end to end (read JSONL, tokenize, pack to 2048, write MDS and
samples.parquet). Runs alternate (baseline, ours, baseline, ...) because this shared machine drifts.
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


def baseline(tokenizer_spec: str, docs: list[str], batch: int) -> tuple[float, int]:
    """Seconds and tokens of the tokenizer's own batch encode over ``docs``."""
    tokenizer = load_tokenizer(tokenizer_spec)
    start, tokens = time.perf_counter(), 0
    for chunk in batched(docs, batch):
        tokens += sum(len(ids) for ids in tokenizer.encode_batch(chunk))
    return time.perf_counter() - start, tokens


def ours(tokenizer_spec: str, src: str, out: str, batch: int) -> tuple[float, int]:
    """Seconds and tokens written of a full text ingest."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    config = TextIngestConfig(inputs=(src,), out=out, tokenizer=tokenizer_spec, seq_len=2048, batch_docs=batch)
    summary = ingest_text(config, show_progress=False)
    elapsed = time.perf_counter() - start
    import pyarrow.parquet as pq

    assert summary["samples"] > 0
    return elapsed, int(pq.read_table(f"{out}/samples.parquet").column("tokens").to_numpy().sum())


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
    results = {}
    for name, spec in (("bpe-8192", bpe), ("bytes", "bytes")):
        base, mine = [], []
        for _ in range(args.repeats):
            seconds, tokens = baseline(spec, docs, args.batch)
            base.append(tokens / seconds)
            seconds, written = ours(spec, src, os.path.join(work, "mds"), args.batch)
            mine.append(written / seconds)
            assert written == tokens + len(docs), "ingest must keep every token (+1 EOS per document)"
        results[name] = {"baseline_tokens_per_s": statistics.median(base), "ingest_tokens_per_s": statistics.median(mine),
                         "ratio": statistics.median(mine) / statistics.median(base), "tokens": tokens}
        print(f"{name}: baseline {results[name]['baseline_tokens_per_s'] / 1e6:.2f} M tok/s, ingest "
              f"{results[name]['ingest_tokens_per_s'] / 1e6:.2f} M tok/s, ratio {results[name]['ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"docs": args.docs, "repeats": args.repeats, **results}, handle, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
