"""Test helpers for serving: small MDS sources whose samples say who they are, and a stand-in schedule.

Every sample encodes its (source id, sample id) in its data (text: the first two ``input_ids``; image-
caption: the caption ids and the pixels of a 4x4 PNG; instruction: ``input_ids``), so a test can check
what was *read*, not only the labels serving attaches.

``FakeSchedule`` has the interface of ``mixture.schedule.Schedule`` that serving uses (fingerprint,
global_batch_size, sources, len, take, [], phase_at), backed by memory-mapped ``.npy`` arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
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

    out = os.path.join(root, name)
    tokens = []
    with MDSWriter(out=out, columns=KIND_COLUMNS[kind], size_limit=size_limit) as writer:
        for i in range(num_samples):
            sample = make_sample(kind, source_id, i)
            writer.write(sample)
            tokens.append(len(sample.get("input_ids", sample.get("caption_ids"))))
    table = pa.table({"tokens": pa.array(tokens, pa.int64())}).replace_schema_metadata({"mixture:kind": kind})
    pq.write_table(table, os.path.join(out, "samples.parquet"))
    return out


@dataclass(frozen=True)
class FakeSource:
    """Same fields as mixture.schedule.SourceRecord."""

    name: str
    kind: str
    location: str
    fingerprint: str
    num_samples: int


class FakeSchedule:
    """A compiled-schedule stand-in over memory-mapped arrays in ``path``."""

    def __init__(self, path: str) -> None:
        with open(os.path.join(path, "manifest.json")) as f:
            manifest = json.load(f)
        self.fingerprint: str = manifest["fingerprint"]
        self.global_batch_size: int = manifest["global_batch_size"]
        self.sources = [FakeSource(**s) for s in manifest["sources"]]
        self._source = np.load(os.path.join(path, "source.npy"), mmap_mode="r")
        self._sample = np.load(os.path.join(path, "sample.npy"), mmap_mode="r")

    def __len__(self) -> int:
        return len(self._source)

    def take(self, start: int, stop: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        return np.asarray(self._source[start:stop]), np.asarray(self._sample[start:stop])

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.sources[int(self._source[i])].name, int(self._sample[i])

    def phase_at(self, i: int) -> str:
        return "main"


def load_fake_schedule(path: str) -> FakeSchedule:
    """Module-level opener (picklable), the stand-in for mixture.schedule.load_schedule."""
    return FakeSchedule(path)


def fake_order(num_samples: list[int], num_positions: int, seed: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Sources drawn at random in proportion to size; each source read without replacement, cycling."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(num_samples)
    source = rng.choice(len(sizes), size=num_positions, p=sizes / sizes.sum()).astype(np.int32)
    sample = np.empty(num_positions, np.int64)
    for s, size in enumerate(sizes):
        where = np.flatnonzero(source == s)
        perm = np.concatenate([rng.permutation(size) for _ in range(-(-len(where) // size))])
        sample[where] = perm[: len(where)]
    return source, sample


def write_fake_schedule(path: str, sources: list[FakeSource], global_batch_size: int, num_batches: int,
                        seed: int = 0) -> str:
    """Write a FakeSchedule of ``num_batches`` global batches over ``sources``; return ``path``."""
    source, sample = fake_order([s.num_samples for s in sources], num_batches * global_batch_size, seed)
    return save_fake_schedule(path, sources, global_batch_size, source, sample)


def save_fake_schedule(path: str, sources: list[FakeSource], global_batch_size: int,
                       source: NDArray[np.int32], sample: NDArray[np.int64]) -> str:
    os.makedirs(path, exist_ok=True)
    np.save(os.path.join(path, "source.npy"), source)
    np.save(os.path.join(path, "sample.npy"), sample)
    digest = hashlib.sha256(source.tobytes() + sample.tobytes() + str(global_batch_size).encode())
    for s in sources:
        digest.update(s.fingerprint.encode())
    manifest = {"fingerprint": digest.hexdigest()[:32], "global_batch_size": global_batch_size,
                "sources": [asdict(s) for s in sources]}
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return path


def make_sources(root: str, spec: list[tuple[str, str, int]], location: str | None = None) -> list[FakeSource]:
    """Write MDS sources ``(name, kind, num_samples)`` under ``root``; records point at ``location``/name."""
    from mixture.sources import source_fingerprint

    records = []
    for source_id, (name, kind, n) in enumerate(spec):
        out = write_source(root, name, kind, source_id, n)
        where = f"{location.rstrip('/')}/{name}" if location else out
        records.append(FakeSource(name, kind, where, source_fingerprint(out), n))
    return records


def expected_batches(schedule: FakeSchedule, first_batch: int = 0) -> list[list[tuple[int, int]]]:
    """The global batches a schedule must serve from ``first_batch`` on, as (source id, sample id)."""
    b = schedule.global_batch_size
    out = []
    for g in range(first_batch, len(schedule) // b):
        src, smp = schedule.take(g * b, (g + 1) * b)
        out.append(list(zip(src.tolist(), smp.tolist())))
    return out


def decode_batch(samples: list[dict[str, Any]], kinds: dict[int, str]) -> list[list[int]]:
    """A collator for tests: [position, source id, sample id] per sample, from labels *and* data."""
    rows = []
    for s in samples:
        got = identity(s, kinds[s["source_id"]])
        assert got[0] == s["source_id"], (got, s["source_id"])
        rows.append([s["position"], got[0], got[1]])
    return rows
