"""Shared helpers for the ingest tests: small generated inputs and reading MDS back (imported by the
test_ingest_* modules; not a conftest, so that it cannot clash with other suites in this folder)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

WORDS = "the cat sat on a mat while dogs and birds flew over green fields near the old river bank".split()


def make_documents(num_docs: int, seed: int = 0, max_words: int = 120) -> list[str]:
    """Random documents (some empty, some with non-ASCII characters)."""
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, max_words))) for _ in range(num_docs)]
    docs[1] = "naïve café — 東京 " + docs[1]
    return docs


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_mds(location: str, remote: str | None = None) -> list[dict[str, Any]]:
    """Every sample of an MDS dataset, through StreamingDataset, in order."""
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    dataset = StreamingDataset(local=location, remote=remote, shuffle=False, batch_size=1)
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small BPE tokenizer trained on generated text."""
    from streaming_data.tokenizer import train_bpe

    return train_bpe(make_documents(300, seed=1), str(tmp_path_factory.mktemp("bpe")), vocab_size=320)


def make_image(width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """Encoded bytes of a small noisy image (noise keeps JPEG entropy data long enough to truncate)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def make_image_set(num_good: int) -> dict[str, tuple[bytes, str]]:
    """Name -> (bytes, caption): JPEGs and PNGs of varied sizes, plus three broken files."""
    images = {}
    for i in range(num_good):
        fmt = "PNG" if i % 3 == 0 else "JPEG"
        images[f"img{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"] = (
            make_image(16 + 3 * i, 12 + 2 * i, fmt, seed=i), f"a photo number {i} of {WORDS[i % len(WORDS)]}")
    good = make_image(64, 48, "JPEG", seed=99)
    images["broken_text.jpg"] = (b"<html>not an image</html>", "text pretending")
    images["broken_truncated.jpg"] = (good[: len(good) // 2], "cut in half")
    return images
