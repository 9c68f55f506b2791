"""Small generated inputs for the analysis tests: sample indexes, compiled schedules, run directories.

Sample indexes are written the way the ingest writes them (``streaming_data.sample_index``'s schemas and
metadata writer, no Streaming import); run directories follow the trainer's contract (analysis/runs.py),
with per-source counts taken from `mixture export` of the schedule, so they are independent of analysis/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streaming_data.sample_index import INDEX_SCHEMAS, with_index_metadata


def random_rows(kind: str, n: int, seed: int = 0, hashes: int = 50, visual: int = 64) -> dict[str, np.ndarray]:
    """Columns of ``n`` plausible index rows of ``kind`` (content hashes drawn from ``hashes`` values)."""
    rng = np.random.default_rng(seed)
    if kind == "text":
        text = rng.integers(1, 300, n)
        return {"tokens": text, "text_tokens": text, "num_documents": rng.integers(1, 4, n).astype(np.int32)}
    if kind == "image_caption":
        cap = rng.integers(2, 40, n)
        return {"tokens": visual + cap, "caption_tokens": cap, "num_images": np.ones(n, np.int32),
                "width": rng.integers(16, 512, n).astype(np.int32), "height": rng.integers(16, 512, n).astype(np.int32),
                "content_hash": np.array([f"{h:064x}" for h in rng.integers(0, hashes, n)], dtype=object),
                "caption_chars": (cap * 5).astype(np.int32)}
    text, images = rng.integers(10, 400, n), rng.integers(0, 2, n).astype(np.int32)
    return {"tokens": text + visual * images, "text_tokens": text, "loss_tokens": text // 3,
            "num_turns": rng.integers(2, 8, n).astype(np.int32), "num_images": images}


def write_index(root: Path, name: str, kind: str, rows: dict[str, Any], dropped: dict[str, int] | None = None,
                shard_rows: int = 7, index_json: bool = True) -> Path:
    """Write ``root/name/samples.parquet`` (and an ``index.json`` with matching shard sizes); returns the dir."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    n = len(rows["tokens"])
    schema = INDEX_SCHEMAS[kind]
    fields = [f for f in schema if f.name in rows]
    table = pa.table({f.name: pa.array(rows[f.name], f.type) for f in fields})
    table = table.append_column(pa.field("shard", pa.int32()), pa.array(np.arange(n) // shard_rows, pa.int32()))
    extra = {"visual_tokens_per_image": 64} if kind != "text" else {}
    pq.write_table(with_index_metadata(table, kind, dropped or {}, extra), out / "samples.parquet")
    if index_json:
        sizes = np.bincount(np.arange(n) // shard_rows) if n else np.zeros(0, np.int64)
        shards = [{"samples": int(s), "raw_data": {"basename": f"shard.{i:05}.mds", "bytes": int(s) * 1000 + 17}}
                  for i, s in enumerate(sizes)]
        (out / "index.json").write_text(json.dumps({"version": 2, "shards": shards}))
    return out


def order_table(schedule: Any, tmp: Path) -> pa.Table:  # noqa: ANN401 - a Schedule
    """The whole order as `mixture export` writes it (position, phase, source, sample, tokens)."""
    from mixture.api import export_order

    path = tmp / "order.parquet"
    export_order(schedule, path)
    return pq.read_table(path)


def cumulative_by_batch(schedule: Any, order: pa.Table) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN401
    """Samples and tokens per source in the first b batches, ``[num_batches + 1, sources]``, from an export."""
    b, k = schedule.global_batch_size, len(schedule.source_names)
    src = np.array([schedule.source_names.index(s) for s in order.column("source").to_pylist()], np.int64)
    tok = order.column("tokens").to_numpy()
    nb = len(src) // b
    per_s = np.bincount(np.arange(len(src)) // b * k + src, minlength=nb * k).reshape(nb, k)
    per_t = np.bincount(np.arange(len(src)) // b * k + src, weights=tok, minlength=nb * k).reshape(nb, k)
    zero = np.zeros((1, k), np.int64)
    return np.vstack([zero, np.cumsum(per_s, 0)]), np.vstack([zero, np.cumsum(per_t, 0).astype(np.int64)])


def write_run(root: Path, schedule: Any, order: pa.Table, name: str = "run", every: int = 1,  # noqa: ANN401
              values: dict[str, Any] | None = None, scores: dict[str, float] | None = None,
              status: str = "done", fingerprint: str | None = None) -> Path:
    """A run directory that consumed ``schedule`` exactly, logging every ``every`` batches."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    samples, tokens = cumulative_by_batch(schedule, order)
    nb = len(samples) - 1
    names = schedule.source_names
    lines = []
    for b in range(every, nb + 1, every):
        line: dict[str, Any] = {"batch": b, "samples": b * schedule.global_batch_size, "lr": 1e-3 / b,
                                "loss/train": 3.0 / (1 + b / 10)}
        for j, n in enumerate(names):
            if samples[b, j] > samples[b - 1, j]:
                line[f"loss/train/{n}"] = 2.0 + j - b / (nb + 1)
            line[f"samples/train/{n}"] = int(samples[b, j])
            line[f"tokens/train/{n}"] = int(tokens[b, j])
        lines.append(line)
        if b % (5 * every) == 0:
            lines.append({"batch": b, **{f"eval/loss/{n}": 2.5 + j for j, n in enumerate(names)},
                          "eval/vqa/accuracy": 0.1 + b / (10 * nb), "eval/vqa/num_questions": 50})
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    info = {"name": name, "schedule": str(schedule.path), "global_batch_size": schedule.global_batch_size,
            "schedule_fingerprint": fingerprint or schedule.fingerprint, "world_size": 2, "status": status,
            "variant": {"name": name, "values": values or {}}, "last_batch": nb}
    (out / "run.json").write_text(json.dumps(info))
    if scores is not None:
        (out / "results.json").write_text(json.dumps({"batch": nb, "eval": scores}))
    return out


def assert_self_contained(html_path: Path) -> None:
    """The page needs nothing outside itself: no URL, no script, no linked file (inline PNGs aside)."""
    import re

    page = html_path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == page.count("<img")
    stripped = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    for banned in ("http", "src=\"//", "<link", "<script", "@import", "url("):
        assert banned not in stripped.lower(), banned
    assert re.findall(r'src="([^"]*)"', stripped) == [""] * page.count("<img")
