"""Test helpers for serving: small MDS sources whose samples say who they are, compiled into schedules.

Every sample encodes its (source id, sample id) in its data (text: the first two ``input_ids``; image-
caption: the caption ids and the pixels of a 4x4 PNG; instruction: ``input_ids``), so a test can check
what was *read*, not only the labels serving attaches.

Schedules are compiled from a mixture file by the toolkit's own compiler (``mixture.api``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

KIND_COLUMNS = {
    "text": {"input_ids": "ndarray:int32"},
    "image_caption": {"image": "bytes", "caption": "str", "caption_ids": "ndarray:int32",
                      "width": "int", "height": "int"},
    "instruction": {"input_ids": "ndarray:int32", "loss_mask": "ndarray:uint8"},
}


def _png(source_id: int, i: int) -> bytes:
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = source_id, i % 256, i // 256
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_sample(kind: str, source_id: int, i: int) -> dict[str, Any]:
    """One sample of ``kind`` that encodes (source_id, i) in its data."""
    ids = np.array([source_id, i] + [7] * (i % 5), np.int32)
    if kind == "text":
        return {"input_ids": ids}
    if kind == "image_caption":
        return {"image": _png(source_id, i), "caption": f"caption {source_id} {i}", "caption_ids": ids,
                "width": 4, "height": 4}
    return {"input_ids": ids, "loss_mask": (np.arange(len(ids)) % 2).astype(np.uint8)}


def identity(sample: dict[str, Any], kind: str) -> tuple[int, int]:
    """(source id, sample id) as decoded from a served sample's data, per its kind."""
    if kind == "image_caption":
        pixels = np.asarray(Image.open(io.BytesIO(sample["image"])).convert("RGB"))
        from_pixels = (int(pixels[0, 0, 0]), int(pixels[0, 0, 1]) + 256 * int(pixels[0, 0, 2]))
        from_ids = (int(sample["caption_ids"][0]), int(sample["caption_ids"][1]))
        assert from_pixels == from_ids, (from_pixels, from_ids)
        assert sample["caption"] == f"caption {from_ids[0]} {from_ids[1]}"
        return from_ids
    return int(sample["input_ids"][0]), int(sample["input_ids"][1])


def write_source(root: str, name: str, kind: str, source_id: int, num_samples: int,
                 size_limit: int = 1 << 12) -> str:
    """Write an MDS source plus its samples.parquet; return its directory."""
    from streaming import MDSWriter

    from streaming_data.shards import SHARD_HASH

    out = os.path.join(root, name)
    tokens = []
    with MDSWriter(out=out, columns=KIND_COLUMNS[kind], size_limit=size_limit, hashes=[SHARD_HASH]) as writer:
        for i in range(num_samples):
            sample = make_sample(kind, source_id, i)
            writer.write(sample)
            tokens.append(len(sample.get("input_ids", sample.get("caption_ids"))))
    table = pa.table({"tokens": pa.array(tokens, pa.int64())}).replace_schema_metadata({"mixture:kind": kind})
    pq.write_table(table, os.path.join(out, "samples.parquet"))
    return out


@dataclass(frozen=True)
class SourceRef:
    """A written test source: its name, kind and where the schedule will find it."""

    name: str
    kind: str
    location: str


def make_sources(root: str, spec: list[tuple[str, str, int]], location: str | None = None) -> list[SourceRef]:
    """Write MDS sources ``(name, kind, num_samples)`` under ``root``; refs point at ``location``/name."""
    refs = []
    for source_id, (name, kind, n) in enumerate(spec):
        out = write_source(root, name, kind, source_id, n)
        refs.append(SourceRef(name, kind, f"{location.rstrip('/')}/{name}" if location else out))
    return refs


def trunk_then_mix(trunk_batches: int, mixed_batches: int, names: list[str]) -> list[dict[str, Any]]:
    """Phases like the study's: a text-only trunk (first source), then all sources mixed by samples."""
    weights = np.linspace(2, 1, len(names))
    return [{"name": "trunk", "duration": f"{trunk_batches}ba", "mix": {names[0]: 1.0}, "unit": "samples"},
            {"name": "mixed", "duration": f"{mixed_batches}ba", "unit": "samples",
             "mix": {n: float(w) for n, w in zip(names, weights / weights.sum())}, "normalize": True}]


def compile_mixture(out_dir: str, sources: list[SourceRef], global_batch_size: int, phases: list[dict[str, Any]],
                    seed: int = 0, storage_options: dict[str, str] | None = None) -> str:
    """Write a mixture file over ``sources`` and compile it with the toolkit's compiler; return the dir."""
    from mixture.api import compile_variant, variants

    spec = {"name": "serve-test", "seed": seed, "run": {"seq_len": 64, "global_batch_size": global_batch_size},
            "sources": {s.name: {"kind": s.kind, "location": s.location, "max_epochs": 1000,
                                 **({"storage_options": storage_options} if storage_options else {})}
                        for s in sources},
            "phases": phases}
    os.makedirs(out_dir, exist_ok=True)
    mixture_file = os.path.join(out_dir + ".yaml")
    with open(mixture_file, "w") as f:
        yaml.safe_dump(spec, f)
    compile_variant(variants(mixture_file)[0], out_dir)
    return out_dir


def expected_batches(schedule: Any, first_batch: int = 0) -> list[list[tuple[int, int]]]:
    """The global batches a schedule must serve from ``first_batch`` on, as (source id, sample id)."""
    out = []
    for g in range(first_batch, schedule.num_batches):  # per-phase batch sizes: the batch-start table
        src, smp = schedule.take(*schedule.batch_bounds(g))
        out.append(list(zip(src.tolist(), smp.tolist())))
    return out


def source_table(schedule: Any, refs: list[SourceRef]) -> dict[int, tuple[str, int]]:
    """Schedule source id -> (kind, the tag its data carries: its index in ``refs``)."""
    tags = {r.name: i for i, r in enumerate(refs)}
    return {i: (s.kind, tags[s.name]) for i, s in enumerate(schedule.sources)}


def decode_batch(samples: list[dict[str, Any]], table: dict[int, tuple[str, int]]) -> list[list[int]]:
    """A collator for tests: [position, source id, sample id] per sample, checked against the data read."""
    rows = []
    for s in samples:
        kind, tag = table[s["source_id"]]
        got = identity(s, kind)
        assert got[0] == tag, (got, s["source"], tag)
        rows.append([s["position"], s["source_id"], got[1]])
    return rows


def served_batches(ds: Any, kinds: dict, num_workers: int, stop: int | None = None) -> list[list[list[int]]]:
    """Batches a dataloader over ``ds`` serves, as [position, source id, sample id (read from the data)] rows."""
    import functools

    from streaming_data.serve import build_dataloader

    loader = build_dataloader(ds, num_workers=num_workers, collate_fn=functools.partial(decode_batch, table=kinds))
    out = []
    for batch in loader:
        out.append(batch)
        if stop is not None and len(out) == stop:
            break
    return out
