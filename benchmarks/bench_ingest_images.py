"""Image-caption ingest throughput of img2dataset output -> MDS against the raw MDSWriter, side by side.

Input: an img2dataset-style webdataset folder (tars of ``key.jpg``, ``key.txt``, ``key.json`` plus the
per-shard status parquet) of generated JPEGs. Baseline: Streaming's ``MDSWriter`` writing the same image
bytes and captions, already in memory (``image: bytes``, ``caption: str``), nothing else. Ours:
``mixture ingest image-caption --img2dataset DIR`` end to end (read the tars, verify each image,
hash it, tokenize its caption, write MDS and samples.parquet) with each ``--verify`` mode, with the
default workers (one per core) and, for the default mode, with one worker. Runs alternate because this
shared machine drifts.
Goal: ours >= 0.5x baseline (samples/s).

Usage: .venv/bin/python benchmarks/bench_ingest_images.py [--images 4000] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from streaming_data.image_caption import ImageCaptionIngestConfig, ingest_image_caption  # noqa: E402


def make_img2dataset_folder(folder: str, num_images: int, size: int, per_shard: int = 1000) -> list[tuple[bytes, str]]:
    """Webdataset shards as img2dataset writes them; returns the (image, caption) pairs in order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    words = "a photo of the small red dog on green grass near an old house by the river".split()
    distinct = []
    for i in range(64):  # smooth images with some noise: JPEGs of realistic size (~10-25 KB at 256 px)
        base = np.linspace(0, 255, size, dtype=np.float32)
        pixels = (base[None, :, None] * (i % 4 + 1) / 4 + base[:, None, None] * ((i // 4) % 4) / 4) % 255
        pixels = np.clip(pixels + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        distinct.append(buffer.getvalue())
    pairs = []
    os.makedirs(folder, exist_ok=True)
    shuffle = random.Random(0)
    for shard, first in enumerate(range(0, num_images, per_shard)):
        keys = []
        with tarfile.open(os.path.join(folder, f"{shard:05d}.tar"), "w") as tar:
            for i in range(first, min(first + per_shard, num_images)):
                # vary bytes per sample (a comment segment) so content hashes are distinct, as in real data
                image = distinct[i % 64][:2] + b"\xff\xfe" + (8).to_bytes(2, "big") + i.to_bytes(6, "big") + distinct[i % 64][2:]
                caption = " ".join(shuffle.choices(words, k=shuffle.randint(5, 30)))
                key = f"{shard:05d}{i - first:04d}"
                for ext, data in (("jpg", image), ("txt", caption.encode()), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                keys.append(key)
                pairs.append((image, caption))
        pq.write_table(pa.table({"key": keys, "status": ["success"] * len(keys), "error_message": [None] * len(keys)}),
                       os.path.join(folder, f"{shard:05d}.parquet"))
    return pairs


def raw_writer(pairs: list[tuple[bytes, str]], out: str) -> float:
    """Seconds for MDSWriter to write the pairs (bytes + caption) from memory."""
    from streaming import MDSWriter

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with MDSWriter(columns={"image": "bytes", "caption": "str"}, out=out, size_limit="64mb") as writer:
        for image, caption in pairs:
            writer.write({"image": image, "caption": caption})
    return time.perf_counter() - start


def ours(folder: str, out: str, verify: str, workers: int = 0) -> float:
    """Seconds for a full image-caption ingest of the img2dataset folder."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    ingest_image_caption(ImageCaptionIngestConfig(out=out, img2dataset_dir=folder, verify=verify, workers=workers),
                         show_progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_ingest_images_")
    folder = os.path.join(work, "i2d")
    pairs = make_img2dataset_folder(folder, args.images, args.size)
    mean_kb = sum(len(p[0]) for p in pairs) / len(pairs) / 1024
    ours(folder, os.path.join(work, "warm"), "header")  # imports and caches warmed for both sides
    variants = {f"ingest --verify {mode}{' --workers 1' if workers == 1 else ''}": (mode, workers)
                for mode, workers in (("structure", 0), ("structure", 1), ("decode", 0), ("header", 0))}
    times: dict[str, list[float]] = {"raw MDSWriter": [], **{name: [] for name in variants}}
    for _ in range(args.repeats):
        times["raw MDSWriter"].append(raw_writer(pairs, os.path.join(work, "raw")))
        for name, (mode, workers) in variants.items():
            times[name].append(ours(folder, os.path.join(work, "ours"), mode, workers))
    rates = {name: args.images / statistics.median(t) for name, t in times.items()}
    base = rates["raw MDSWriter"]
    for name, rate in rates.items():
        print(f"{name:38s} {rate:9.0f} samples/s  {rate * mean_kb / 1024:7.1f} MB/s  {rate / base:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"images": args.images, "size": args.size, "mean_kb": mean_kb, "repeats": args.repeats,
                       "samples_per_s": rates, "ratio": {k: v / base for k, v in rates.items()},
                       "seconds": times}, handle, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
