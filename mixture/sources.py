"""Reading a source's sample index and fingerprint (the contract between ingest and compile).

A source is an MDS dataset directory (local path or fsspec URL) holding Streaming's ``index.json`` and,
beside it, the sample index ``samples.parquet``: one row per sample in MDS order. Required column:
``tokens`` (int64, what the sample costs in the token budget as ingested). Kind-specific columns the
compiler also reads when present: ``caption_tokens`` and ``num_images`` (image_caption, instruction)
and ``text_tokens`` (instruction), so that the mixture file can re-price visual tokens without re-ingest.
``shard`` (int32, position of the sample's shard in ``index.json``'s shard list) lets the compiler report
shard locality. The parquet key-value metadata holds ``mixture:kind``, ``mixture:dropped`` (JSON
object, reason -> count) and ``mixture:content_sha256`` (:func:`content_hash` of the compiler's columns,
written once at ingest).

The source fingerprint is cheap: ``index.json`` (which holds every shard's size and hash) plus the parquet
footer and file size, never the whole sample index; the content hash in that footer is checked against
the columns whenever the compiler reads them. A sample index without a content hash (written before it
existed) is fingerprinted by hashing the whole file, as before, so its fingerprint is unchanged.

Only fsspec, pyarrow and hashlib are used here: no torch, no streaming.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from mixture.errors import MixtureError

INDEX_JSON = "index.json"
SAMPLE_INDEX = "samples.parquet"
_CHUNK = 1 << 22
CONTENT_HASH_KEY = b"mixture:content_sha256"
_COMPILER_COLUMNS = ("tokens", "caption_tokens", "num_images", "text_tokens", "shard")


def _join(location: str, name: str) -> str:
    return location.rstrip("/") + "/" + name


def content_hash(columns: Mapping[str, Any]) -> str:
    """sha256 (hex) of the compiler's columns of a sample index, as little-endian int64, in a fixed order.

    Args:
        columns: Column name -> values (NumPy or Arrow arrays); columns the compiler does not read are ignored.
    """
    digest = hashlib.sha256()
    for name in _COMPILER_COLUMNS:
        if name in columns:
            values = np.ascontiguousarray(np.asarray(columns[name]), dtype="<i8")
            digest.update(f"{name}:{values.size};".encode())
            digest.update(values.data)
    return digest.hexdigest()


def _missing(path: str) -> MixtureError:
    return MixtureError(f"{path} does not exist",
                        hint="ingest the source with `mixture ingest`, or build its index with `mixture index`")


def _parquet_footer(path: str, storage_options: dict[str, object]) -> tuple[bytes, bool]:
    """The size and raw footer of a parquet file (read from its tail), and whether it holds a content hash."""
    fs, inner = fsspec.core.url_to_fs(path, **storage_options)
    fs.invalidate_cache(inner)  # a size cached by an earlier listing in this process may be stale
    try:
        size = int(fs.size(inner))
        with fs.open(inner, "rb") as handle:
            handle.seek(max(size - 8, 0))
            tail = handle.read(8)
            length = int.from_bytes(tail[:4], "little")
            if len(tail) < 8 or tail[4:] != b"PAR1" or length > size - 12:
                raise MixtureError(f"{path} is not a parquet file (truncated or damaged)",
                                   hint="rebuild it with `mixture index --overwrite`, or re-ingest the source")
            handle.seek(size - 8 - length)
            footer = handle.read(length)
    except FileNotFoundError:
        raise _missing(path) from None
    meta = pq.read_metadata(pa.BufferReader(b"PAR1" + footer + tail)).metadata or {}
    return size.to_bytes(8, "little") + footer, CONTENT_HASH_KEY in meta


def _hash_file(digest: Any, path: str, storage_options: dict[str, object]) -> None:
    try:
        with fsspec.open(path, "rb", **storage_options) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise _missing(path) from None


def source_fingerprint(location: str, storage_options: dict[str, object] | None = None) -> str:
    """Fingerprint of a source: sha256 (hex, 16 bytes shown) of its ``index.json`` and of the size and
    footer of its ``samples.parquet`` (whose metadata holds the content hash). Cheap at any size: reads
    ``index.json`` and the parquet footer only. A sample index without a content hash (written before
    there was one) is hashed whole, which keeps its earlier fingerprint.

    Args:
        location: The MDS directory, local path or fsspec URL.
        storage_options: Passed to fsspec (endpoint URL for S3-compatible stores, ...).

    Raises:
        MixtureError: If either file is missing or the sample index is not a parquet file.
    """
    opts = storage_options or {}
    digest = hashlib.sha256(INDEX_JSON.encode())
    _hash_file(digest, _join(location, INDEX_JSON), opts)
    digest.update(SAMPLE_INDEX.encode())
    footer, hashed = _parquet_footer(_join(location, SAMPLE_INDEX), opts)
    if hashed:
        digest.update(b"footer:" + footer)
    else:
        _hash_file(digest, _join(location, SAMPLE_INDEX), opts)
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class SampleIndex:
    """What the compiler needs from a source's ``samples.parquet``.

    Attributes:
        kind: ``text``, ``image_caption`` or ``instruction`` as recorded at ingest ("" if not recorded).
        columns: Column name -> values, for the columns the compiler reads.
        dropped: Rows dropped at ingest, by reason.
    """

    kind: str
    columns: dict[str, NDArray[np.int64]]
    dropped: dict[str, int]

    @property
    def num_samples(self) -> int:
        return len(self.columns["tokens"])


def read_sample_index(location: str, storage_options: dict[str, object] | None = None) -> SampleIndex:
    """Read the columns the compiler uses from a source's ``samples.parquet``.

    Raises:
        MixtureError: If the file is missing or lacks the ``tokens`` column.
    """
    path = _join(location, SAMPLE_INDEX)
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as handle:
            parquet = pq.ParquetFile(handle)
            names = [c for c in _COMPILER_COLUMNS if c in parquet.schema_arrow.names]
            table = parquet.read(columns=names)
            meta = parquet.schema_arrow.metadata or {}
    except FileNotFoundError:
        raise _missing(path) from None
    if "tokens" not in names:
        raise MixtureError(f"{path} has no 'tokens' column", hint="rebuild it with `mixture index`")
    columns = {n: table.column(n).to_numpy().astype(np.int64, copy=False) for n in names}
    stored = meta.get(CONTENT_HASH_KEY)
    if stored is not None and stored.decode() != content_hash(columns):
        raise MixtureError(f"{path} was changed after ingest: its columns do not match the content hash "
                           "written at ingest", hint="re-ingest the source, or rebuild its sample index with "
                           "`mixture index --overwrite`")
    dropped = json.loads(meta.get(b"mixture:dropped", b"{}"))
    return SampleIndex(kind=meta.get(b"mixture:kind", b"").decode(), columns=columns, dropped=dropped)
