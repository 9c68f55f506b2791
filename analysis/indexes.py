"""Opening sample indexes (``samples.parquet``) for statistics: local paths or fsspec URLs.

What is read here is cheap: the parquet footer (row count, columns, the ``mixture:*`` key-value metadata)
and, when it is beside the index, Streaming's ``index.json`` (samples and bytes per shard). The rows
themselves are scanned lazily by polars in :mod:`analysis.stats`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mixture.errors import MixtureError
from mixture.locations import is_remote, local_path, storage_options as default_options
from mixture.sources import INDEX_JSON, SAMPLE_INDEX

_REBUILD = "ingest the source with `mixture ingest`, or build its index with `mixture index DIR`"


@dataclass(frozen=True)
class IndexFile:
    """One source's sample index, as found on disk or in an object store.

    Attributes:
        name: The source's name in reports (its directory's name).
        location: Path or URL of the source directory (or of the parquet file itself).
        parquet: Path or URL of ``samples.parquet``.
        kind: ``mixture:kind`` from the metadata ("" when not recorded).
        num_rows: Rows in the file (from the footer).
        columns: Column names.
        dropped: Rows dropped at ingest, by reason (``mixture:dropped``).
        metadata: Every other ``mixture:*`` key, decoded from JSON where it is JSON.
        shard_files: Per shard of ``index.json`` (when present): ``samples`` and ``bytes``.
        storage_options: fsspec options for remote files.
    """

    name: str
    location: str
    parquet: str
    kind: str
    num_rows: int
    columns: tuple[str, ...]
    dropped: dict[str, int]
    metadata: dict[str, Any] = field(default_factory=dict)
    shard_files: list[dict[str, int]] | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        """True for a URL (read through fsspec), False for a local path."""
        return is_remote(self.parquet)

    def scan(self) -> Any:  # noqa: ANN401 - a polars LazyFrame (polars is imported lazily)
        """A lazy polars scan of the rows (remote files through an fsspec handle)."""
        import polars as pl

        if not self.remote:
            return pl.scan_parquet(local_path(self.parquet))
        import fsspec

        return pl.scan_parquet(fsspec.open(self.parquet, "rb", **self.storage_options).open())


def _decode(value: bytes) -> Any:  # noqa: ANN401 - metadata values are any JSON
    text = value.decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _paths(location: str) -> tuple[str, str, str]:
    """(name, parquet path, directory) of a source given as its directory or its parquet file."""
    trimmed = location.rstrip("/")
    if trimmed.endswith(".parquet"):
        directory = trimmed.rsplit("/", 1)[0] if "/" in trimmed else "."
        name = PurePosixPath(directory).name or PurePosixPath(trimmed).stem
        return name, trimmed, directory
    return PurePosixPath(trimmed).name or trimmed, f"{trimmed}/{SAMPLE_INDEX}", trimmed


def _shard_files(directory: str, options: dict[str, Any]) -> list[dict[str, int]] | None:
    import fsspec

    try:
        with fsspec.open(f"{directory}/{INDEX_JSON}", "rb", **options) as handle:
            shards = json.load(handle).get("shards", [])
    except (FileNotFoundError, ValueError, OSError):
        return None
    out = []
    for shard in shards:
        stored = shard.get("zip_data") or shard.get("raw_data") or {}
        out.append({"samples": int(shard.get("samples", 0)), "bytes": int(stored.get("bytes", 0))})
    return out


def open_index(location: str, storage_options: dict[str, Any] | None = None) -> IndexFile:
    """Read the footer of a source's ``samples.parquet`` (and its ``index.json`` when present).

    Args:
        location: The source directory (local path or fsspec URL) or the ``.parquet`` file itself.
        storage_options: fsspec options (endpoint URL of an S3-compatible store, ...).

    Raises:
        MixtureError: If the file is missing, is not parquet, or has no ``tokens`` column.
    """
    import fsspec
    import pyarrow.parquet as pq

    if storage_options is None:  # what Streaming and the ingest use (S3_ENDPOINT_URL for S3-compatible stores)
        storage_options = default_options(location)
    options = dict(storage_options)
    name, parquet, directory = _paths(location)
    try:
        with fsspec.open(parquet, "rb", **options) as handle:
            footer = pq.ParquetFile(handle)
            schema, num_rows = footer.schema_arrow, footer.metadata.num_rows
    except FileNotFoundError:
        raise MixtureError(f"{parquet} does not exist", hint=_REBUILD) from None
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for non-parquet bytes
        raise MixtureError(f"{parquet} cannot be read as parquet ({exc})", hint=_REBUILD) from None
    if "tokens" not in schema.names:
        raise MixtureError(f"{parquet} has no 'tokens' column (columns: {', '.join(schema.names) or 'none'})",
                           hint="rebuild it with `mixture index DIR`")
    meta = {k.decode()[len("mixture:"):]: _decode(v) for k, v in (schema.metadata or {}).items()
            if k.startswith(b"mixture:")}
    dropped = meta.pop("dropped", {})
    kind = meta.pop("kind", "")
    return IndexFile(name=name, location=location, parquet=parquet, kind=str(kind), num_rows=num_rows,
                     columns=tuple(schema.names), dropped={str(k): int(v) for k, v in dict(dropped).items()},
                     metadata=meta, shard_files=_shard_files(directory, options), storage_options=options)
