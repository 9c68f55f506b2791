"""Shard integrity: every shard a schedule will read is present, of its recorded size and content, before
the first batch.

``mixture ingest`` records an :data:`SHARD_HASH` digest of every shard file in ``index.json`` (Streaming's
``MDSWriter(hashes=...)``). Before serving, :func:`check_source_shards` goes through a source's
``index.json`` and, for each shard:

- local source (read in place): the file exists, has the size ``index.json`` records and, when a hash is
  recorded, that hash (xxh3_64 reads at about 20 GB/s from memory, so disk speed sets the cost);
- remote source: the file is listed at the remote with its recorded size (one listing per source, no
  download), and a copy already in the local cache is hashed like a local shard; shards downloaded later
  are hashed by Streaming itself (its ``validate_hash``, which :func:`shard_hash_algorithm` selects).

A source written before shard hashes existed (an ``index.json`` with empty ``hashes``) is still served:
presence and sizes are checked, a flipped byte cannot be, and a warning says so once per source.

Every rank checks presence and sizes (a ``stat`` per shard); the hashing is split between the ranks of a
node (shard ``i`` is hashed by local rank ``i mod ranks_per_node``), so each node reads its data once,
whether every node has its own copy or all share one file system. A rank that finds a bad shard raises;
the launcher (Composer's, torchrun) then stops the others.

One problem per source names its first bad shard (and how many more there are), so a damaged or
incomplete source is refused before training rather than part-way through it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from mixture.errors import Problem
from mixture.sources import INDEX_JSON

SHARD_HASH = "xxh3_64"
"""The digest ``mixture ingest`` records for every shard file (fast, non-cryptographic: it detects
corruption; whoever can rewrite shards can rewrite ``index.json`` too)."""
_SECTIONS = ("raw_data", "zip_data")
_CHUNK = 1 << 24


@dataclass(frozen=True)
class ShardFile:
    """One file of a shard as ``index.json`` records it (``zip_data`` or ``raw_data``)."""

    basename: str
    num_bytes: int
    hashes: dict[str, str]


def shard_files(index: dict[str, Any]) -> list[list[ShardFile]]:
    """For each shard of a parsed ``index.json``, the files that can stand for it (raw first, then zip)."""
    shards = []
    for shard in index.get("shards", []):
        files = [ShardFile(shard[s]["basename"], int(shard[s]["bytes"]), dict(shard[s].get("hashes") or {}))
                 for s in _SECTIONS if shard.get(s)]
        shards.append(files)
    return shards


def shard_hash_algorithm(index: dict[str, Any]) -> str | None:
    """The digest every shard of ``index`` records (:data:`SHARD_HASH` preferred), or None if some lack one."""
    common: set[str] | None = None
    for files in shard_files(index):
        for file in files:
            common = set(file.hashes) if common is None else common & set(file.hashes)
    if not common:
        return None
    return SHARD_HASH if SHARD_HASH in common else sorted(common)[0]


def file_digest(algorithm: str, path: str) -> str:
    """The digest of a file as Streaming computes it (``streaming.base.hashing.get_hash``), read in chunks."""
    import hashlib

    import xxhash  # a dependency of Streaming

    state = getattr(xxhash, algorithm)() if hasattr(xxhash, algorithm) else hashlib.new(algorithm)
    buffer = bytearray(_CHUNK)  # reused: a fresh 16 MB bytes object per read costs more than the hash
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            state.update(view[:size])
    return state.hexdigest()


def _local_fault(root: str, file: ShardFile, algorithm: str | None) -> str | None:
    """Why the local copy of ``file`` under ``root`` is bad (None: it is good)."""
    path = os.path.join(root, file.basename)
    size = os.path.getsize(path)
    if size != file.num_bytes:
        return f"shard {file.basename} is {size} bytes, {INDEX_JSON} records {file.num_bytes} ({path})"
    if algorithm and algorithm in file.hashes and file_digest(algorithm, path) != file.hashes[algorithm]:
        return f"shard {file.basename} fails its {algorithm} check: its bytes changed after ingest ({path})"
    return None


def _local_faults(root: str, index: dict[str, Any], algorithm: str | None,
                  share: tuple[int, int]) -> Iterator[str]:
    for number, files in enumerate(shard_files(index)):
        present = [f for f in files if os.path.isfile(os.path.join(root, f.basename))]
        if not present:
            yield f"shard {files[0].basename} is missing ({os.path.join(root, files[0].basename)})"
            continue
        fault = _local_fault(root, present[0], algorithm if number % share[1] == share[0] else None)
        if fault:
            yield fault


def _remote_sizes(location: str, storage_options: dict[str, object]) -> Callable[[str], int | None]:
    """Size of a file under a remote directory by its relative name (None: absent), from one recursive
    listing; a name the listing lacks is asked for once more (stores that cannot list, or list lazily)."""
    fs, root = fsspec.core.url_to_fs(location, **storage_options)
    root = root.rstrip("/")
    fs.invalidate_cache(root)  # fsspec keeps listings per process: list what is there now
    listed = {str(path)[len(root) + 1:]: int(info.get("size") or 0)
              for path, info in fs.find(root, detail=True).items()}

    def size(name: str) -> int | None:
        if name not in listed:
            try:
                listed[name] = int(fs.info(f"{root}/{name}").get("size") or 0)
            except FileNotFoundError:
                return None
        return listed[name]

    return size


def _remote_faults(location: str, cache: str | None, index: dict[str, Any], algorithm: str | None,
                   storage_options: dict[str, object], share: tuple[int, int]) -> Iterator[str]:
    size_of = _remote_sizes(location, storage_options)
    for number, files in enumerate(shard_files(index)):
        cached = [f for f in files if cache and os.path.isfile(os.path.join(cache, f.basename))]
        if cached:
            mine = number % share[1] == share[0]
            fault = _local_fault(cache, cached[0], algorithm if mine else None)  # type: ignore[arg-type]
            if fault:
                yield f"{fault}; delete it to download it again"
            continue
        found = [(f, size) for f in files if (size := size_of(f.basename)) is not None]
        url = f"{location.rstrip('/')}/{(found[0][0] if found else files[0]).basename}"
        if not found:
            yield f"shard {files[0].basename} is missing ({url})"
        elif found[0][1] != found[0][0].num_bytes:
            yield (f"shard {found[0][0].basename} is {found[0][1]} bytes, {INDEX_JSON} records "
                   f"{found[0][0].num_bytes} ({url})")


def check_source_shards(name: str, location: str, *, remote: bool, cache: str | None = None,
                        storage_options: dict[str, object] | None = None,
                        read_index: Callable[[], dict[str, Any]] | None = None,
                        share: tuple[int, int] = (0, 1)) -> Problem | None:
    """Whether every shard of a source is present, of its recorded size and (if recorded) hash.

    Args:
        name: The source's name in the schedule (for the message).
        location: Its MDS directory, local path or URL.
        remote: Whether ``location`` is downloaded by Streaming (then ``cache`` is its local cache).
        cache: The source's local cache directory (remote sources).
        storage_options: fsspec options for a remote source.
        read_index: Returns the parsed ``index.json`` (default: read it from ``location``).
        share: ``(k, n)``: hash only shards ``i`` with ``i mod n == k`` (this rank's share of its node).

    Returns:
        One problem naming the first bad shard and counting the others, or None when all are good.
    """
    opts = storage_options or {}
    index = read_index() if read_index else _read_index(location, opts)
    algorithm = shard_hash_algorithm(index)
    if algorithm is None and index.get("shards"):
        warnings.warn(f"source '{name}' at {location} records no shard hashes (written before `mixture ingest` "
                      "recorded them): sizes are checked, contents cannot be; re-ingest it to verify them",
                      stacklevel=2)
    faults = (_remote_faults(location, cache, index, algorithm, opts, share) if remote
              else _local_faults(location, index, algorithm, share))
    found = list(faults)
    if not found:
        return None
    more = f" (and {len(found) - 1} more bad shards)" if len(found) > 1 else ""
    return Problem(f"source '{name}': {found[0]}{more}", path=f"sources.{name}",
                   hint="restore the source's shards, or re-ingest it and recompile the schedule")


def _read_index(location: str, storage_options: dict[str, object]) -> dict[str, Any]:
    with fsspec.open(f"{location.rstrip('/')}/{INDEX_JSON}", "rb", **storage_options) as handle:
        return json.load(handle)
