"""Resumable, atomically finalised MDS output shared by every ingest kind.

An ingest is cut into *parts* (an input chunk: a tar of img2dataset output, N documents, N conversations).
Each part is written by its own Streaming ``MDSWriter`` into ``part-NNNNN/`` (uploaded to the remote as it
goes when the output is a URL), and its sample-index rows go to the work directory's journal. A part
counts as finished only once its rows file has been renamed into place, so a crash mid-part leaves
nothing that looks finished; a rerun deletes the unfinished part and starts there.

Every shard's ``xxh3_64`` digest is recorded in its ``index.json`` (serving checks it). Finalisation builds
``samples.parquet`` from the journal (with its content hash, which keeps the source fingerprint cheap),
merges the parts' ``index.json`` files with Streaming's ``merge_index``, and publishes ``samples.parquet``
first and ``index.json`` last (a rename on local disk, one PUT on an object store): a dataset directory
with an ``index.json`` is complete.

Layout while running (local output ``OUT``; for a URL the work directory is ``--work-dir`` or a cache
directory keyed by the URL)::

    OUT/part-00000/{shard.00000.mds, index.json}   the shards, kept in place at the end
    OUT/.ingest/journal.json                       the ingest's settings (a rerun must match them)
    OUT/.ingest/part-00000.parquet                 rows of finished part 0 (the "done" marker)
    OUT/.ingest/part-00000.carry.npy               state carried into part 1 (text packing)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from mixture.errors import MixtureError
from mixture.sources import INDEX_JSON, SAMPLE_INDEX
from streaming_data.sample_index import with_index_metadata
from streaming_data.locations import is_remote, local_path, publish, storage_options
from streaming_data.shards import SHARD_HASH

JOURNAL_VERSION = 1
_WORK = ".ingest"


def default_work_dir(out: str) -> str:
    """Where a remote ingest keeps its local shards and journal unless told otherwise."""
    key = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "mixture-ingest", key)


class Drop(Exception):
    """An input row that cannot become a sample; ``reason`` is what the sample index counts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PartResult:
    """What one finished part contributes to the sample index."""

    rows: dict[str, list[Any]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    stats: Counter[str] = field(default_factory=Counter)
    carry: NDArray[np.int32] | None = None

    def add(self, row: dict[str, Any]) -> None:
        """Append one sample's index row (columns must be the same for every row)."""
        for name, value in row.items():
            self.rows.setdefault(name, []).append(value)


class Ingest:
    """One resumable ingest into ``out`` (see the module docstring for the layout)."""

    def __init__(self, out: str, config: dict[str, Any], *, work_dir: str | None = None,
                 overwrite: bool = False) -> None:
        from streaming import MDSWriter  # noqa: F401 (imported once here, before any part worker forks)

        self.out = out.rstrip("/")
        self.remote = self.out if is_remote(self.out) else None
        base = work_dir or (default_work_dir(self.out) if self.remote else local_path(self.out))
        self.base = os.path.abspath(base)
        self.work = os.path.join(self.base, _WORK)
        self.config = json.loads(json.dumps(config, sort_keys=True))
        if self._published() and not overwrite:
            raise MixtureError(
                f"{self.out} already holds a complete dataset ({INDEX_JSON} exists)",
                hint="pass --overwrite to replace it, or choose another output",
            )
        if overwrite:
            self._clear()
        self._open_journal()

    # -- journal -----------------------------------------------------------------------------------
    def _published(self) -> bool:
        if self.remote is None:
            return os.path.exists(os.path.join(self.base, INDEX_JSON))
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.remote, **storage_options(self.remote))
        return bool(fs.exists(path + "/" + INDEX_JSON))

    def _clear(self) -> None:
        if self.remote is not None:
            import fsspec

            fs, path = fsspec.core.url_to_fs(self.remote, **storage_options(self.remote))
            for entry in fs.ls(path, detail=False) if fs.exists(path) else []:  # only what an ingest writes
                if _is_ours(entry.rstrip("/").rsplit("/", 1)[-1]):
                    fs.rm(entry, recursive=True)
        if os.path.isdir(self.base):
            for name in os.listdir(self.base):
                if _is_ours(name) or name == _WORK:
                    target = os.path.join(self.base, name)
                    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)

    def _open_journal(self) -> None:
        os.makedirs(self.work, exist_ok=True)
        path = os.path.join(self.work, "journal.json")
        if os.path.exists(path):
            with open(path) as handle:
                previous = json.load(handle)
            if previous.get("config") != self.config:
                raise MixtureError(
                    f"{self.out} holds an unfinished ingest made with other settings",
                    hint="rerun with the same command to resume it, or pass --overwrite to start again",
                )
            return
        _atomic_write(path, json.dumps({"version": JOURNAL_VERSION, "config": self.config}).encode())

    def _part_name(self, index: int) -> str:
        return f"part-{index:05d}"

    def is_done(self, index: int) -> bool:
        """Whether part ``index`` finished in this or an earlier run."""
        return os.path.exists(os.path.join(self.work, self._part_name(index) + ".parquet"))

    def done_parts(self) -> list[int]:
        """Indices of the finished parts, ascending."""
        names = [n for n in os.listdir(self.work) if n.startswith("part-") and n.endswith(".parquet")]
        return sorted(int(n[5:10]) for n in names)

    def carry(self, index: int) -> NDArray[np.int32] | None:
        """The state part ``index`` handed to the next part, if it saved one."""
        path = os.path.join(self.work, self._part_name(index) + ".carry.npy")
        return np.load(path) if os.path.exists(path) else None

    # -- writing -------------------------------------------------------------------------------------
    @contextmanager
    def part(self, index: int, columns: dict[str, str], *, size_limit: int | str = "64mb",
             compression: str | None = None) -> Iterator[tuple[Any, PartResult]]:
        """Write part ``index``: yields ``(MDSWriter, PartResult)``; the part is marked done on exit.

        An exception inside the block leaves the part unfinished (a rerun redoes it).
        """
        from streaming import MDSWriter

        name = self._part_name(index)
        local = os.path.join(self.base, name)
        shutil.rmtree(local, ignore_errors=True)  # leftovers of an interrupted attempt
        out: str | tuple[str, str] = (local, f"{self.remote}/{name}") if self.remote else local
        result = PartResult()
        writer = MDSWriter(columns=columns, out=out, size_limit=size_limit, compression=compression,
                           hashes=[SHARD_HASH], keep_local=self.remote is None, exist_ok=True)
        try:
            yield writer, result
        except BaseException:
            writer.cancel_future_jobs()
            raise
        writer.finish()
        if result.carry is not None:
            np.save(os.path.join(self.work, name + ".carry.npy"), result.carry)
        meta = {b"mixture:dropped": json.dumps(dict(result.dropped)).encode(),
                b"mixture:stats": json.dumps(dict(result.stats)).encode()}
        table = pa.Table.from_pydict(result.rows)
        _atomic_write_table(table.replace_schema_metadata(meta), os.path.join(self.work, name + ".parquet"))

    # -- finalisation --------------------------------------------------------------------------------
    def finalize(self, *, kind: str, schema: pa.Schema, metadata: dict[str, Any]) -> dict[str, Any]:
        """Publish ``samples.parquet`` then ``index.json``; returns a summary (samples, dropped, ...).

        Args:
            kind: ``text``, ``image_caption`` or ``instruction``.
            schema: Column types of the sample index (without ``shard``).
            metadata: Extra key-value metadata (``mixture:`` is prefixed; values JSON-encoded).
        """
        from streaming.base.util import merge_index

        parts = self.done_parts()
        if parts != list(range(len(parts))):
            raise MixtureError(f"{self.out}: parts {parts} are not contiguous; rerun the ingest to resume it")
        table, dropped, stats, index_files, num_shards = self._gather(parts, schema)
        table = with_index_metadata(table, kind, dict(dropped), {**metadata, "stats": dict(sorted(stats.items()))})
        staging = os.path.join(self.work, "publish")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        pq.write_table(table, os.path.join(staging, SAMPLE_INDEX))
        if index_files:
            with _quiet_logging():  # merge_index logs a warning per temp folder it makes
                merge_index(index_files, staging)
        else:  # no sample survived: an empty but valid Streaming index
            with open(os.path.join(staging, INDEX_JSON), "w") as handle:
                json.dump({"version": 2, "shards": []}, handle)
        publish(staging, self.out, (SAMPLE_INDEX, INDEX_JSON))  # index.json last: present == complete
        shutil.rmtree(self.work, ignore_errors=True)
        if self.remote:  # the shards are uploaded; drop the local copies
            for index in parts:
                shutil.rmtree(os.path.join(self.base, self._part_name(index)), ignore_errors=True)
        return {"out": self.out, "samples": table.num_rows, "shards": num_shards, "dropped": dict(dropped)}

    def _gather(self, parts: list[int], schema: pa.Schema) -> tuple[pa.Table, Counter[str], Counter[str], list[Any], int]:
        """The parts' rows as one table with ``shard`` positions, their drop and stat counts, the parts'
        index files to merge, and the number of shards."""
        tables, dropped, stats, index_files, shard_offset = [], Counter(), Counter(), [], 0
        for index in parts:
            name = self._part_name(index)
            part_table = pq.read_table(os.path.join(self.work, name + ".parquet"))
            part_meta = part_table.schema.metadata or {}
            dropped.update(json.loads(part_meta.get(b"mixture:dropped", b"{}")))
            stats.update(json.loads(part_meta.get(b"mixture:stats", b"{}")))
            shard_counts = _part_shard_counts(self.base, name, self.remote)
            if part_table.num_rows != sum(shard_counts):
                raise MixtureError(f"{self.out}/{name}: journal and shards disagree; pass --overwrite")
            shard = np.repeat(np.arange(len(shard_counts), dtype=np.int32) + shard_offset, shard_counts)
            shard_offset += len(shard_counts)
            if part_table.num_rows:
                tables.append(part_table.replace_schema_metadata(None).cast(schema).append_column(
                    pa.field("shard", pa.int32()), pa.array(shard, pa.int32())))
                index_files.append(_part_index_location(self.base, name, self.remote))
        full_schema = schema.append(pa.field("shard", pa.int32()))
        table = pa.concat_tables(tables) if tables else full_schema.empty_table()
        return table, dropped, stats, index_files, shard_offset


def _is_ours(name: str) -> bool:
    """Whether a dataset directory entry is one an ingest writes (what --overwrite may delete)."""
    return name.startswith("part-") or name in (INDEX_JSON, SAMPLE_INDEX)


@contextmanager
def _quiet_logging() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _part_index_location(base: str, name: str, remote: str | None) -> str | tuple[str, str]:
    local = os.path.join(base, name, INDEX_JSON)
    return (local, f"{remote}/{name}/{INDEX_JSON}") if remote else local


def _part_shard_counts(base: str, name: str, remote: str | None) -> list[int]:
    path = os.path.join(base, name, INDEX_JSON)
    if os.path.exists(path):
        with open(path) as handle:
            obj = json.load(handle)
    else:
        import fsspec

        with fsspec.open(f"{remote}/{name}/{INDEX_JSON}", "rb", **storage_options(remote)) as handle:
            obj = json.load(handle)
    return [int(shard["samples"]) for shard in obj["shards"]]


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_write_table(table: pa.Table, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
