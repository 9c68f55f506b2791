"""Finding input files (paths, globs, fsspec URLs) and reading records from them.

Text comes from JSONL (a text field per line), parquet (a text column) or plain text (a whole file per
document, or one document per line). Tables of records (URL lists, caption files) come from CSV, JSONL or
parquet. Everything opens through fsspec, so ``s3://...`` and ``*.jsonl.gz`` work as local paths do.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from mixture.errors import MixtureError

TEXT_FORMATS = ("jsonl", "parquet", "txt")
T = TypeVar("T")


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file matched by ``patterns`` (paths, globs, URLs), sorted within each pattern, deduplicated.

    Raises:
        MixtureError: If a pattern matches nothing.
    """
    import fsspec

    from streaming_data.locations import is_url, storage_options

    files: list[str] = []
    for pattern in patterns:
        fs, _, paths = fsspec.core.get_fs_token_paths(pattern, storage_options=storage_options(pattern))
        paths = sorted(p for p in paths if fs.isfile(p))  # a plain path comes back even when missing
        if not paths:
            raise MixtureError(f"input {pattern!r} matches no file", hint="check the path or glob")
        files.extend(fs.unstrip_protocol(p) if is_url(pattern) else p for p in paths)
    return list(dict.fromkeys(files))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def text_format(path: str, forced: str | None = None) -> str:
    """``jsonl``, ``parquet`` or ``txt``: ``forced`` if given, else from the file name."""
    if forced:
        return forced
    name = path.lower().removesuffix(".gz").removesuffix(".zst").removesuffix(".bz2")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "txt"


def iter_documents(files: Sequence[str], *, text_field: str = "text", fmt: str | None = None,
                   line_documents: bool = False) -> Iterator[str]:
    """Every document of ``files`` in order.

    Args:
        files: From :func:`expand_inputs`.
        text_field: JSONL field or parquet column holding the text.
        fmt: Force one of :data:`TEXT_FORMATS` (else from each file's name).
        line_documents: For plain text, one document per non-empty line instead of one per file.
    """
    for path in files:
        kind = text_format(path, fmt)
        if kind == "parquet":
            yield from (str(t) for t in _parquet_column(path, text_field) if t is not None)
        elif kind == "jsonl":
            for line_no, record in _jsonl(path):
                if text_field not in record:
                    raise MixtureError(f"{path}:{line_no}: no field {text_field!r}",
                                       hint=f"name the text field with --text-field (fields: {sorted(record)})")
                yield str(record[text_field])
        else:
            with open_text(path) as handle:
                if line_documents:
                    yield from (line.rstrip("\n") for line in handle if line.strip())
                else:
                    yield handle.read()


def iter_records(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a CSV/TSV, JSONL, JSON (a list of objects) or parquet table as dicts (URL lists, captions)."""
    name = path.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with _open_binary(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches():
                yield from batch.to_pylist()
    elif name.endswith((".jsonl", ".ndjson")):
        yield from (record for _, record in _jsonl(path))
    elif name.endswith(".json"):
        try:
            with open_text(path) as handle:
                records = json.load(handle)
        except json.JSONDecodeError as exc:
            raise MixtureError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(records, list):
            raise MixtureError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        yield from records
    else:
        delimiter = "\t" if name.endswith(".tsv") else ","
        with open_text(path) as handle:
            yield from csv.DictReader(handle, delimiter=delimiter)


def _parquet_column(path: str, column: str) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with _open_binary(path) as handle:
        parquet = pq.ParquetFile(handle)
        if column not in parquet.schema_arrow.names:
            raise MixtureError(f"{path}: no column {column!r}",
                               hint=f"name the text column with --text-field (columns: {parquet.schema_arrow.names})")
        for batch in parquet.iter_batches(columns=[column], batch_size=4096):
            yield from batch.column(0).to_pylist()


def _jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MixtureError(f"{path}:{line_no}:{exc.colno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise MixtureError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def _open_binary(path: str) -> Any:
    import fsspec

    from streaming_data.locations import storage_options

    return fsspec.open(path, "rb", compression="infer", **storage_options(path)).open()


def open_text(path: str) -> io.TextIOWrapper:
    """A text handle on a local path or fsspec URL (compression inferred from the name)."""
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace")
