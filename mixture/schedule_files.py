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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

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
        global_batch_size: Samples per global batch in this phase (its ``positions`` are a whole number of
            them). None in schedules compiled before per-phase batches: then the run's.
        batch_offset: Index of the phase's first global batch (None in those schedules: ``start`` over the
            run's batch). Read both through :meth:`Manifest.batch_segments`, which fills them in.
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
    global_batch_size: int | None = None
    batch_offset: int | None = None

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
                   dict(d.get("draws", {})), _int_or_none(d.get("global_batch_size")),
                   _int_or_none(d.get("batch_offset")))


def _int_or_none(value: Any) -> int | None:  # noqa: ANN401 - a JSON value
    return None if value is None else int(value)


@dataclass(frozen=True)
class BatchSegment:
    """A run of global batches of one size: one phase's batches (the batch-start table's row).

    Global batch ``first_batch + j`` (``0 <= j < num_batches``) is positions
    ``[start + j * batch_size, start + (j + 1) * batch_size)``.

    Attributes:
        phase: The phase's name.
        first_batch: Index of its first global batch.
        num_batches: Global batches in it.
        start: Its first position.
        batch_size: Samples per global batch in it.
    """

    phase: str
    first_batch: int
    num_batches: int
    start: int
    batch_size: int

    @property
    def stop_batch(self) -> int:
        """Index one past its last batch."""
        return self.first_batch + self.num_batches

    @property
    def stop(self) -> int:
        """Position one past its last."""
        return self.start + self.num_batches * self.batch_size

    def batch_start(self, batch: int) -> int:
        """First position of global batch ``batch`` (inside this segment)."""
        return self.start + (batch - self.first_batch) * self.batch_size


def batch_segments(phases: Sequence[PhaseRecord], run_batch: int) -> tuple[BatchSegment, ...]:
    """The batch-start table: one :class:`BatchSegment` per phase, in order (empty phases included).

    A phase record without its own batch size (schedules compiled before per-phase batches) has the run's,
    and its batches follow the previous phase's.
    """
    out, first = [], 0
    for p in phases:
        size = p.global_batch_size or run_batch
        offset = p.batch_offset if p.batch_offset is not None else first
        out.append(BatchSegment(p.name, offset, p.positions // size, p.start, size))
        first = offset + p.positions // size
    return tuple(out)


def batch_starts(segments: Sequence[BatchSegment], batches: NDArray[np.int64]) -> NDArray[np.int64]:
    """First position of each global batch in ``batches`` (indices up to the number of batches: the last
    gives the end of the schedule), vectorised over the table."""
    live = [s for s in segments if s.num_batches] or list(segments[:1])
    firsts = np.array([s.first_batch for s in live], np.int64)
    starts = np.array([s.start for s in live], np.int64)
    sizes = np.array([s.batch_size for s in live], np.int64)
    row = np.maximum(np.searchsorted(firsts, batches, side="right") - 1, 0)
    return starts[row] + (np.asarray(batches, np.int64) - firsts[row]) * sizes[row]


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: everything about a compiled schedule but its big arrays.

    Attributes:
        format: :data:`FORMAT`.
        algorithm: The mixing algorithm's version (a new version may reorder).
        toolkit_version: The toolkit that compiled it.
        name, seed: From the spec.
        fingerprint: Hash of exactly what determines the order.
        global_batch_size, seq_len: From the run (``global_batch_size``: the run's default; a phase may
            set its own, see :meth:`batch_segments`).
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

    def batch_segments(self) -> tuple[BatchSegment, ...]:
        """The batch-start table: one :class:`BatchSegment` per phase (see :func:`batch_segments`)."""
        return batch_segments(self.phases, self.global_batch_size)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The distinct global batch sizes of the phases that hold batches, in order of first use."""
        seen = [s.batch_size for s in self.batch_segments() if s.num_batches]
        return tuple(dict.fromkeys(seen)) or (self.global_batch_size,)

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
