"""The compiled schedule directory's one owner: format version, file names and frozen typed records.

The compiler writes these records (:func:`write_manifest`) and :class:`mixture.schedule.Schedule` reads them
(:func:`read_manifest`); nothing else parses ``manifest.json`` or names the directory's files. Layout:

* ``manifest.json``: :class:`Manifest` (sources, phases, totals, the canonical spec, the fingerprint).
* ``order.bin``: one source id (``order_dtype``) per position of *mixed* phases, in order; one-source
  phases store nothing (their cursor describes them).
* ``checkpoints.npy``: int64 ``[rows, sources]``, absolute draws per source every ``checkpoint_every``
  positions of each mixed phase (random access counts at most that many ids).
* ``batch_tokens.npy``: int64, cumulative budget tokens at every global-batch boundary.
* ``lr.npy``: float64 learning rate per global batch, when the run has an LR plan.
* ``tokens/NAME.npy``: int32 budget tokens per sample of a source priced from its sample index.

:func:`expected_sizes` gives every file's size in bytes from the manifest alone, for verifying a directory.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mixture-schedule/1"
MANIFEST = "manifest.json"
ORDER = "order.bin"
CHECKPOINTS = "checkpoints.npy"
BATCH_TOKENS = "batch_tokens.npy"
LR = "lr.npy"
TOKENS_DIR = "tokens"


def token_array(name: str) -> str:
    """Relative path of a source's per-sample budget tokens (array-priced sources only)."""
    return f"{TOKENS_DIR}/{name}.npy"


@dataclass(frozen=True)
class SourceRecord:
    """A source of a compiled schedule (its id is its index in :attr:`Manifest.sources`).

    Attributes:
        id: Source id as stored in ``order.bin``.
        name: Source name (sources are sorted by name).
        kind: text, image_caption or instruction.
        location: Where its MDS data lives (None for a declared source).
        fingerprint: Hash of its index.json and samples.parquet (or of its declaration).
        num_samples: Samples in one epoch.
        key: 64-bit key of its permutation.
        block: Shuffle block in samples.
        pricing: How a sample's budget tokens are computed (``{"array": true}``: ``tokens/NAME.npy``).
        max_epochs: Cap on epochs, if any.
        epochs_used: Epochs the whole schedule reads.
        dropped: Rows ingest dropped, by reason.
    """

    id: int
    name: str
    kind: str
    location: str | None
    fingerprint: str
    num_samples: int
    key: int
    block: int
    pricing: dict[str, Any]
    max_epochs: float | None
    epochs_used: float
    dropped: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form (keys as written since format 1)."""
        out = asdict(self)
        out["key"], out["shuffle_block_samples"] = str(self.key), out.pop("block")
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceRecord:
        """Read :meth:`to_json`'s form."""
        return cls(int(d["id"]), d["name"], d["kind"], d["location"], d["fingerprint"], int(d["num_samples"]),
                   int(d["key"]), int(d["shuffle_block_samples"]), dict(d["pricing"]), d.get("max_epochs"),
                   float(d.get("epochs_used", 0.0)), dict(d.get("dropped", {})))


@dataclass(frozen=True)
class RampRecord:
    """A ramp into a phase's mix: from ``weights_from`` over ``length`` clock units of ``shape``."""

    weights_from: dict[str, float]
    length: float
    shape: str


@dataclass(frozen=True)
class PhaseRecord:
    """A compiled phase: where it lies in the order and what it mixed, as the kernel saw it.

    Attributes:
        name: Phase name.
        unit: samples or tokens (what its weights and clock count).
        start, stop: Positions ``[start, stop)`` (whole global batches).
        weights: Its mix (normalised, by source name).
        mixed: Whether it draws from more than one source (then its ids are in ``order.bin``).
        source: The one source of an unmixed phase.
        order_offset: Where a mixed phase's ids start in ``order.bin``.
        ckpt_offset: Its first row in ``checkpoints.npy``.
        sources: Sources the phase draws from (sorted; a ramp includes those it ramps out).
        ramp: The ramp in from the previous mix, if any.
        lag0: Target minus realised per source at its start (the rounding the previous mixed phase of the
            same unit carried over; empty if none).
        tokens: Budget tokens of the phase.
        start_tokens: Budget tokens before it.
        source_tokens: Budget tokens per source it drew.
        cursors: Draws per source before it (every source of the schedule).
        draws: Draws per source in it (every source of the schedule).
    """

    name: str
    unit: str
    start: int
    stop: int
    weights: dict[str, float]
    mixed: bool
    source: str | None = None
    order_offset: int | None = None
    ckpt_offset: int | None = None
    sources: tuple[str, ...] = ()
    ramp: RampRecord | None = None
    lag0: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    start_tokens: int = 0
    source_tokens: dict[str, int] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    draws: dict[str, int] = field(default_factory=dict)

    @property
    def positions(self) -> int:
        """Positions in the phase."""
        return self.stop - self.start

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form (unset optional fields left out)."""
        out = asdict(self)
        out["sources"] = list(self.sources)
        if self.ramp is not None:
            out["ramp"] = {"from": self.ramp.weights_from, "length": self.ramp.length, "shape": self.ramp.shape}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PhaseRecord:
        """Read :meth:`to_json`'s form."""
        ramp = d.get("ramp")
        return cls(d["name"], d["unit"], int(d["start"]), int(d["stop"]), dict(d["weights"]), bool(d["mixed"]),
                   d.get("source"), d.get("order_offset"), d.get("ckpt_offset"), tuple(d.get("sources", ())),
                   RampRecord(dict(ramp["from"]), float(ramp["length"]), ramp["shape"]) if ramp else None,
                   dict(d.get("lag0", {})), int(d.get("tokens", 0)), int(d.get("start_tokens", 0)),
                   {k: int(v) for k, v in d.get("source_tokens", {}).items()}, dict(d.get("cursors", {})),
                   dict(d.get("draws", {})))


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: everything about a compiled schedule but its big arrays.

    Attributes:
        format: :data:`FORMAT`.
        algorithm: The mixing algorithm's version (a new version may reorder).
        toolkit_version: The toolkit that compiled it.
        name, seed: From the spec.
        fingerprint: Hash of exactly what determines the order.
        global_batch_size, seq_len: From the run.
        num_positions, num_batches, total_tokens: Totals.
        order_dtype: NumPy dtype name of ``order.bin``'s ids.
        checkpoint_every: Positions between rows of ``checkpoints.npy`` (a power of two).
        sources, phases: The records.
        has_lr: Whether ``lr.npy`` exists.
        spec: The canonical spec (JSON form of :class:`mixture.spec.MixtureSpec`).
        variant: Sweep variant name and axis values (not part of the fingerprint).
    """

    format: str
    algorithm: str
    toolkit_version: str
    name: str
    seed: int
    fingerprint: str
    global_batch_size: int
    seq_len: int
    num_positions: int
    num_batches: int
    total_tokens: int
    order_dtype: str
    checkpoint_every: int
    sources: tuple[SourceRecord, ...]
    phases: tuple[PhaseRecord, ...]
    has_lr: bool
    spec: dict[str, Any]
    variant: dict[str, Any] = field(default_factory=lambda: {"name": "", "values": {}})

    @property
    def source_names(self) -> list[str]:
        """Source names in id order."""
        return [s.name for s in self.sources]

    @property
    def order_length(self) -> int:
        """Ids in ``order.bin``: the positions of mixed phases."""
        return sum(p.positions for p in self.phases if p.mixed)

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``manifest.json`` holds."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["sources"] = [s.to_json() for s in self.sources]
        out["phases"] = [p.to_json() for p in self.phases]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        """Read :meth:`to_json`'s form."""
        plain = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k not in ("sources", "phases")}
        return cls(**plain, sources=tuple(SourceRecord.from_json(s) for s in d["sources"]),
                   phases=tuple(PhaseRecord.from_json(p) for p in d["phases"]))


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` into ``directory``."""
    (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The JSON object in ``directory/manifest.json`` (checked and typed by :class:`mixture.schedule.Schedule`)."""
    return json.loads((directory / MANIFEST).read_text())


def _npy_size(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of ``np.save`` of an array of ``shape`` and ``dtype`` (header included)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
    return len(header.getvalue()) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def expected_sizes(manifest: Manifest) -> dict[str, int]:
    """Size in bytes of every file of the schedule directory, by relative path, from the manifest alone.

    ``lr.npy`` is listed when :attr:`Manifest.has_lr`; ``manifest.json`` itself is not listed.
    """
    every = manifest.checkpoint_every
    rows = sum(-(-p.positions // every) for p in manifest.phases if p.mixed)
    sizes = {ORDER: manifest.order_length * np.dtype(manifest.order_dtype).itemsize,
             CHECKPOINTS: _npy_size((rows, len(manifest.sources)), "int64"),
             BATCH_TOKENS: _npy_size((manifest.num_batches + 1,), "int64")}
    if manifest.has_lr:
        sizes[LR] = _npy_size((manifest.num_batches,), "float64")
    for s in manifest.sources:
        if s.pricing.get("array"):
            sizes[token_array(s.name)] = _npy_size((s.num_samples,), "int32")
    return sizes
