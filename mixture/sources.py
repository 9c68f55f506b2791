"""Reading a source's sample index and fingerprint (the contract between ingest and compile).

A source is an MDS dataset directory (local path or fsspec URL) holding Streaming's ``index.json`` and,
beside it, the sample index ``samples.parquet``: one row per sample in MDS order. Required column:
``tokens`` (int64, what the sample costs in the token budget as ingested). Kind-specific columns the
compiler also reads when present: ``caption_tokens`` and ``num_images`` (image_caption, instruction)
and ``text_tokens`` (instruction), so that the mixture file can re-price visual tokens without re-ingest.
``shard`` (int32, position of the sample's shard in ``index.json``'s shard list) lets the compiler report
shard locality. The parquet key-value metadata holds ``mixture:kind`` and ``mixture:dropped`` (JSON
object, reason -> count).

Only fsspec, pyarrow and hashlib are used here: no torch, no streaming.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from mixture.errors import MixtureError

INDEX_JSON = "index.json"
SAMPLE_INDEX = "samples.parquet"
_CHUNK = 1 << 22


def _join(location: str, name: str) -> str:
    return location.rstrip("/") + "/" + name


def source_fingerprint(location: str, storage_options: dict[str, object] | None = None) -> str:
    """Hash of a source's ``index.json`` and ``samples.parquet`` (sha256, hex, 16 bytes shown).

    Args:
        location: The MDS directory, local path or fsspec URL.
        storage_options: Passed to fsspec (endpoint URL for S3-compatible stores, ...).

    Raises:
        MixtureError: If either file is missing.
    """
    digest = hashlib.sha256()
    for name in (INDEX_JSON, SAMPLE_INDEX):
        path = _join(location, name)
        try:
            with fsspec.open(path, "rb", **(storage_options or {})) as handle:
                digest.update(name.encode())
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            raise MixtureError(
                f"{path} does not exist",
                hint="ingest the source with `mixture ingest`, or build its index with `mixture index`",
            ) from None
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


_COMPILER_COLUMNS = ("tokens", "caption_tokens", "num_images", "text_tokens", "shard")


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
        raise MixtureError(
            f"{path} does not exist",
            hint="ingest the source with `mixture ingest`, or build its index with `mixture index`",
        ) from None
    if "tokens" not in names:
        raise MixtureError(f"{path} has no 'tokens' column", hint="rebuild it with `mixture index`")
    columns = {n: table.column(n).to_numpy().astype(np.int64, copy=False) for n in names}
    dropped = json.loads(meta.get(b"mixture:dropped", b"{}"))
    return SampleIndex(kind=meta.get(b"mixture:kind", b"").decode(), columns=columns, dropped=dropped)
