"""What padding costs a schedule at its ``seq_len``, and what packing recovers (pure NumPy, no torch).

Unpacked, every sample is one row of ``seq_len`` token slots; the slots it does not fill are padding.
Packed, the samples of a global batch are placed, in order, into rows by **first fit** (each sample goes
into the first row that still has room for it; a new row is opened when none has), the same rule the
trainer's collator uses (:mod:`trainer.batch`), so the row counts here are the rows training will run.

A sample's length is what the trainer will lay out: its budget tokens from the schedule (text tokens;
visual plus caption tokens for an image-caption sample) plus the EOS the collator appends to a caption,
capped at ``seq_len`` (longer samples are cut). Where a source's price leaves out tokens the collator
adds (a recipe that prices an image without its caption), the real fill is higher than this estimate.

For a huge schedule only a bounded number of global batches, spread evenly over the run, is examined;
:class:`PaddingEstimate` says how many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mixture.schedule import Schedule

MAX_BATCHES = 64
"""Global batches examined by :func:`estimate_padding` when the schedule has more (evenly spaced)."""


def first_fit(lengths: NDArray[np.int64], capacity: int) -> NDArray[np.int64]:
    """Row of each item when items are placed in order into rows of ``capacity`` by first fit.

    Args:
        lengths: Item lengths, each in ``1..capacity``.
        capacity: Room in one row.

    Returns:
        The row index of every item; rows are numbered in the order they are opened.

    Raises:
        ValueError: If an item is empty or longer than ``capacity``.
    """
    lengths = np.asarray(lengths, np.int64)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"item lengths must be in 1..{capacity}, got {lengths.min()}..{lengths.max()}")
    free = np.zeros(len(lengths), np.int64)  # room left in each opened row (at most one row per item)
    rows = np.empty(len(lengths), np.int64)
    opened = 0
    for i, n in enumerate(lengths.tolist()):
        fits = np.flatnonzero(free[:opened] >= n)
        row = int(fits[0]) if len(fits) else opened
        if row == opened:
            free[opened] = capacity
            opened += 1
        free[row] -= n
        rows[i] = row
    return rows


@dataclass(frozen=True)
class PaddingEstimate:
    """Token slots a span of global batches (a phase, or the whole run) fills at ``seq_len``."""

    name: str
    seq_len: int
    batches_examined: int
    num_batches: int
    real_tokens: int
    unpacked_rows: int
    packed_rows: int

    @property
    def sampled(self) -> bool:
        """Whether only part of the span's batches was examined."""
        return self.batches_examined < self.num_batches

    @property
    def unpacked_padding(self) -> float:
        """Fraction of token slots that are padding with one sample per row."""
        return 1.0 - self.real_tokens / max(self.unpacked_rows * self.seq_len, 1)

    @property
    def packed_padding(self) -> float:
        """Fraction of token slots that are padding with first-fit packing per global batch."""
        return 1.0 - self.real_tokens / max(self.packed_rows * self.seq_len, 1)

    @property
    def rows_saved(self) -> float:
        """Fraction of rows (steps' sequence work) packing saves."""
        return 1.0 - self.packed_rows / max(self.unpacked_rows, 1)


def sample_lengths(schedule: Schedule, start: int, stop: int, seq_len: int) -> NDArray[np.int64]:
    """Row lengths of positions ``[start, stop)``: budget tokens (+1 EOS per caption), cut at ``seq_len``."""
    src, samples = schedule.take(start, stop)
    lengths = schedule.tokens(src, samples).astype(np.int64)
    caption = np.array([s.kind == "image_caption" for s in schedule.sources], bool)
    if len(caption):
        lengths = lengths + caption[src]
    return np.clip(lengths, 1, seq_len)


def estimate_span(schedule: Schedule, name: str, first: int, stop: int, max_batches: int) -> PaddingEstimate:
    """Padding of global batches ``[first, stop)``, examining at most ``max_batches`` evenly spaced ones."""
    seq_len = int(schedule.manifest.seq_len)
    count = max(stop - first, 0)
    picked = np.unique(np.linspace(first, stop - 1, min(count, max_batches)).round().astype(np.int64))
    real = rows = samples = 0
    for b in picked.tolist():
        a, z = schedule.batch_bounds(b)
        lengths = sample_lengths(schedule, a, z, seq_len)
        real += int(lengths.sum())
        rows += int(first_fit(lengths, seq_len).max()) + 1
        samples += z - a
    return PaddingEstimate(name, seq_len, len(picked), count, real, samples, rows)


def estimate_padding(schedule: Schedule, max_batches: int = MAX_BATCHES) -> list[PaddingEstimate]:
    """Padding per phase of ``schedule`` at its ``seq_len`` (a phase's batches are those starting in it),
    then the whole run weighted by each phase's batches.

    Args:
        schedule: A compiled schedule.
        max_batches: Examine at most this many global batches per phase, evenly spaced over the phase.
    """
    out = []
    for seg in schedule.segments:
        if seg.num_batches:
            out.append(estimate_span(schedule, seg.phase, seg.first_batch, seg.stop_batch, max_batches))
    return out + [_weighted(out, schedule.num_batches)]


def _weighted(phases: list[PaddingEstimate], num_batches: int) -> PaddingEstimate:
    """The whole run: each phase's examined batches scaled to its share of the run's batches."""
    scale = [p.num_batches / max(p.batches_examined, 1) for p in phases]
    total = [round(sum(getattr(p, f) * k for p, k in zip(phases, scale))) for f in
             ("real_tokens", "unpacked_rows", "packed_rows")]
    seq_len = phases[0].seq_len if phases else 0
    return PaddingEstimate("run", seq_len, sum(p.batches_examined for p in phases), num_batches, *total)


def describe(estimates: list[PaddingEstimate]) -> list[str]:
    """Lines for ``mixture explain``: padding per phase and for the run, unpacked and packed."""
    if not estimates:
        return []
    run = estimates[-1]
    scope = (f"up to {MAX_BATCHES} evenly spaced batches per phase, {run.batches_examined:,} of "
             f"{run.num_batches:,}" if run.sampled else f"all {run.num_batches:,} batches")
    lines = [f"padding at seq_len {run.seq_len:,} ({scope}); packed = data.packing, first fit per global batch:"]
    for e in estimates:
        lines.append(f"  {e.name:<12} {e.unpacked_padding:6.1%} of token slots one sample per row, "
                     f"{e.packed_padding:6.1%} packed ({e.rows_saved:.1%} fewer rows)")
    return lines
