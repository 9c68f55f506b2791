"""The source fingerprint: cheap (index.json + parquet footer) yet any change to the data is detected,
either by the fingerprint or by the content hash the compiler checks when it reads the columns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture.errors import MixtureError
from mixture.sources import CONTENT_HASH_KEY, content_hash, read_sample_index, source_fingerprint

COLUMNS = {"tokens": np.arange(40, 240, dtype=np.int64), "caption_tokens": np.arange(200, dtype=np.int64) % 17,
           "num_images": np.ones(200, np.int64), "shard": np.arange(200, dtype=np.int64) // 50}


def _write(root: Path, columns: dict[str, np.ndarray], stored_hash: str | None) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.json").write_text(json.dumps({"version": 2, "shards": [{"samples": 50}] * 4}))
    table = pa.table({n: pa.array(v, pa.int32() if n == "shard" else pa.int64()) for n, v in columns.items()})
    meta = {b"mixture:kind": b"image_caption"}
    if stored_hash is not None:
        meta[CONTENT_HASH_KEY] = stored_hash.encode()
    pq.write_table(table.replace_schema_metadata(meta), root / "samples.parquet")
    return str(root)


def test_content_hash_keys_the_fingerprint_and_is_checked_on_read(tmp_path: Path) -> None:
    location = _write(tmp_path / "a", COLUMNS, content_hash(COLUMNS))
    first = source_fingerprint(location)
    assert source_fingerprint(location) == first
    assert read_sample_index(location).num_samples == 200
    Path(location, "index.json").write_text(json.dumps({"version": 2, "shards": [{"samples": 100}] * 2}))
    assert source_fingerprint(location) != first


def test_old_sample_index_without_content_hash_keeps_its_whole_file_fingerprint(tmp_path: Path) -> None:
    location = _write(tmp_path / "old", COLUMNS, None)
    whole = hashlib.sha256()
    for name in ("index.json", "samples.parquet"):
        whole.update(name.encode() + Path(location, name).read_bytes())
    assert source_fingerprint(location) == whole.hexdigest()[:32]


@given(column=st.sampled_from(sorted(COLUMNS)), row=st.integers(0, 199), delta=st.integers(1, 1000))
def test_any_changed_value_is_detected(tmp_path_factory: pytest.TempPathFactory, column: str, row: int,
                                       delta: int) -> None:
    """A value changed after ingest, whether the stale content hash is kept (a pyarrow rewrite keeps
    schema metadata) or not: the fingerprint differs, or reading the columns refuses the file."""
    root = tmp_path_factory.mktemp("fp")
    before = source_fingerprint(_write(root / "before", COLUMNS, content_hash(COLUMNS)))
    changed = {n: v.copy() for n, v in COLUMNS.items()}
    changed[column][row] += delta
    stale = _write(root / "stale", changed, content_hash(COLUMNS))
    with pytest.raises(MixtureError, match="was changed after ingest"):
        read_sample_index(stale)
    rehashed = _write(root / "rehashed", changed, content_hash(changed))
    assert source_fingerprint(rehashed) != before


@pytest.mark.parametrize("damage", ["missing", "truncated", "not parquet"])
def test_missing_or_damaged_sample_index_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    location = _write(tmp_path / "d", COLUMNS, content_hash(COLUMNS))
    target = Path(location, "samples.parquet")
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-5])
    else:
        target.write_text("tokens\n1\n2\n")
    expected = "does not exist" if damage == "missing" else "is not a parquet file"
    with pytest.raises(MixtureError, match=expected) as error:
        source_fingerprint(location)
    assert str(target) in str(error.value)
