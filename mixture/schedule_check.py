"""Verify a compiled schedule directory before it is used: a damaged one is refused in one line.

Checked, in order: the manifest is a JSON object with the fields readers use; every file the manifest
implies is present (``order.bin``, ``checkpoints.npy``, ``batch_tokens.npy``, ``lr.npy`` when the run has
an LR plan, ``tokens/NAME.npy`` for array-priced sources); each file's size matches the manifest (the
order holds one id per position of the mixed phases; each ``.npy`` has the shape the manifest implies and
the bytes its header promises); and the fingerprint recomputed from the order, the checkpoints and the
manifest equals the recorded one. The last step hashes ``order.bin`` (SHA-256, one byte per position of a
mixed phase); a directory is verified once per process (keyed by its files' sizes and modification times),
so dataloader workers that reopen it pay nothing. The compiler vouches for the directory it has just
written (:func:`vouch`: it hashed ``order.bin`` as it wrote it), so ``mixture compile`` does not read its
own output back; a directory read by another process, or changed since, is verified as above.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mixture.errors import MixtureError
from mixture.verified import is_verified, state_key, vouch_key

_HINT = "recompile it with `mixture compile FILE -o DIR`"
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "fingerprint": str, "num_positions": int, "num_batches": int, "global_batch_size": int,
    "order_dtype": str, "checkpoint_every": int, "phases": list, "sources": list, "has_lr": bool,
}
_SOURCE_FIELDS = ("name", "num_samples", "key", "shuffle_block_samples", "fingerprint", "pricing")
_PHASE_FIELDS = ("name", "start", "stop", "mixed")


class _Damaged(Exception):
    """What is wrong with the directory (turned into one MixtureError line)."""


def verify_schedule(path: str | Path) -> None:
    """Refuse a schedule directory whose files disagree with its manifest or its fingerprint.

    Args:
        path: The compiled schedule directory.

    Raises:
        MixtureError: One line naming the directory and what is wrong with it.
    """
    path = Path(path)
    if not path.is_dir():
        what = "no such directory" if not path.exists() else "it is a file"
        raise MixtureError(f"{path}: not a compiled schedule ({what})",
                           hint="compile one with `mixture compile FILE -o DIR`")
    if not (path / "manifest.json").is_file():
        raise MixtureError(f"{path}: not a compiled schedule (no manifest.json)",
                           hint="compile one with `mixture compile FILE -o DIR`")
    try:
        key = state_key(path)
        if is_verified(key):
            return
        manifest = _manifest(path)
        if manifest["format"] != _format():
            return  # the reader refuses an unknown format with its own message
        _check_files(path, manifest)
        _check_fingerprint(path, manifest)
    except _Damaged as exc:
        raise MixtureError(f"{path}: damaged schedule: {exc}", hint=_HINT) from None
    except OSError as exc:
        raise MixtureError(f"{path}: cannot read the schedule: {exc.strerror or exc}", hint=_HINT) from None
    vouch_key(key)


def _format() -> str:
    from mixture.schedule_files import FORMAT

    return FORMAT


def _manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Damaged(f"manifest.json is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict):
        raise _Damaged("manifest.json is not a JSON object")
    for name, kind in _FIELDS.items():
        if not isinstance(manifest.get(name), kind) or (kind is int and isinstance(manifest[name], bool)):
            raise _Damaged(f"manifest.json: field {name!r} is missing or not a {getattr(kind, '__name__', kind)}")
    for what, fields in (("sources", _SOURCE_FIELDS), ("phases", _PHASE_FIELDS)):
        for i, item in enumerate(manifest[what]):
            if not isinstance(item, dict) or any(f not in item for f in fields):
                raise _Damaged(f"manifest.json: {what}[{i}] lacks one of {', '.join(fields)}")
    if manifest["global_batch_size"] < 1 or manifest["checkpoint_every"] < 1:
        raise _Damaged("manifest.json: global_batch_size and checkpoint_every must be positive")
    if manifest["order_dtype"] not in ("uint8", "uint16"):
        raise _Damaged(f"manifest.json: unknown order_dtype {manifest['order_dtype']!r}")
    return manifest


def _npy_shape(file: Path) -> tuple[int, ...]:
    """Shape in an ``.npy`` header, after checking that the file holds all the bytes the header promises."""
    if not file.is_file():
        raise _Damaged(f"{file.name} is missing")
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as exc:
        raise _Damaged(f"{file.name} is not a NumPy array file ({exc.__class__.__name__})") from None
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if file.stat().st_size != expected:
        raise _Damaged(f"{file.name} has {file.stat().st_size:,} bytes, its header promises {expected:,}")
    return tuple(shape)


def _expect(file: Path, shape: tuple[int, ...]) -> None:
    found = _npy_shape(file)
    if found != shape:
        raise _Damaged(f"{file.name} has shape {found}, the manifest implies {shape}")


def _check_files(path: Path, m: dict) -> None:
    mixed = [p["stop"] - p["start"] for p in m["phases"] if p["mixed"]]
    order = path / "order.bin"
    if not order.is_file():
        raise _Damaged("order.bin is missing")
    expected = sum(mixed) * np.dtype(m["order_dtype"]).itemsize
    if order.stat().st_size != expected:
        raise _Damaged(f"order.bin has {order.stat().st_size:,} bytes, the manifest implies {expected:,} "
                       f"({sum(mixed):,} positions of mixed phases)")
    _check_batches(m)
    every = m["checkpoint_every"]
    _expect(path / "checkpoints.npy", (sum(-(-n // every) for n in mixed), len(m["sources"])))
    _expect(path / "batch_tokens.npy", (m["num_batches"] + 1,))
    if m["has_lr"]:
        _expect(path / "lr.npy", (m["num_batches"],))
    for s in m["sources"]:
        if isinstance(s["pricing"], dict) and s["pricing"].get("array"):
            _expect(path / "tokens" / f"{s['name']}.npy", (s["num_samples"],))


def _check_batches(m: dict) -> None:
    """Every phase is a whole number of its global batches, laid end to end, adding up to ``num_batches``."""
    run_batch, count = m["global_batch_size"], 0
    for p in m["phases"]:
        size = p.get("global_batch_size", run_batch)
        offset = p.get("batch_offset", count)
        if not isinstance(size, int) or size < 1 or (p["stop"] - p["start"]) % size or offset != count:
            raise _Damaged(f"manifest.json: phase {p.get('name')!r} is not a whole number of its global batches "
                           "starting where the previous phase's end")
        count += (p["stop"] - p["start"]) // size
    if m["num_batches"] != count:
        raise _Damaged("manifest.json: num_batches disagrees with the phases' positions and global batch sizes")


def recomputed_fingerprint(path: str | Path, manifest: dict | None = None) -> str:
    """The fingerprint of a schedule directory computed from its files (``manifest``: default, its own).

    Raises:
        KeyError, TypeError: If the manifest lacks what the fingerprint covers.
    """
    from mixture.compiler import _fingerprint

    path = Path(path)
    m = manifest if manifest is not None else json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    with open(path / "order.bin", "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    from mixture.schedule_files import PhaseRecord, SourceRecord

    sources = [SourceRecord.from_json(s) for s in m["sources"]]
    phases = [PhaseRecord.from_json(p) for p in m["phases"]]
    return _fingerprint(sources, phases, digest.hexdigest(), np.load(path / "checkpoints.npy"),
                        int(m["global_batch_size"]))


def _check_fingerprint(path: Path, m: dict) -> None:
    try:
        found = recomputed_fingerprint(path, m)
    except (KeyError, TypeError) as exc:
        raise _Damaged(f"manifest.json lacks what the fingerprint covers ({exc})") from None
    if found != m["fingerprint"]:
        raise _Damaged(f"its contents give fingerprint {found}, the manifest records {m['fingerprint']}")
