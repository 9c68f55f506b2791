"""What padding costs a schedule at its ``seq_len``, and what packing recovers (pure NumPy, no torch).

Unpacked, every sample is one row of ``seq_len`` token slots; the slots it does not fill are padding.
Packed, the samples of a global batch are placed, in order, into rows by **first fit** (each sample goes
into the first row that still has room for it; a new row is opened when none has), the same rule the
trainer's collator uses (:mod:`trainer.packing`), so the row counts here are the rows training will run.

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

MAX_BATCHES = 256
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
    """Token slots a schedule fills at its ``seq_len``, unpacked and packed."""

    seq_len: int
    batches_examined: int
    num_batches: int
    real_tokens: int
    unpacked_rows: int
    packed_rows: int

    @property
    def sampled(self) -> bool:
        """Whether only part of the schedule's batches was examined."""
        return self.batches_examined < self.num_batches

    @property
    def unpacked_padding(self) -> float:
        """Fraction of token slots that are padding with one sample per row."""
        return 1.0 - self.real_tokens / max(self.unpacked_rows * self.seq_len, 1)

    @property
    def packed_padding(self) -> float:
        """Fraction of token slots that are padding with first-fit packing per global batch."""
        return 1.0 - self.real_tokens / max(self.packed_rows * self.seq_len, 1)


def sample_lengths(schedule: Schedule, start: int, stop: int, seq_len: int) -> NDArray[np.int64]:
    """Row lengths of positions ``[start, stop)``: budget tokens (+1 EOS per caption), cut at ``seq_len``."""
    src, samples = schedule.take(start, stop)
    lengths = schedule.tokens(src, samples).astype(np.int64)
    caption = np.array([s.kind == "image_caption" for s in schedule.sources], bool)
    if len(caption):
        lengths = lengths + caption[src]
    return np.clip(lengths, 1, seq_len)


def estimate_padding(schedule: Schedule, max_batches: int = MAX_BATCHES) -> PaddingEstimate:
    """Padding of ``schedule`` at its ``seq_len``, over all its global batches or ``max_batches`` of them.

    Args:
        schedule: A compiled schedule.
        max_batches: Examine at most this many global batches, evenly spaced from the first to the last.
    """
    seq_len = int(schedule.manifest["seq_len"])
    size = schedule.global_batch_size
    num_batches = len(schedule) // size
    picked = np.unique(np.linspace(0, num_batches - 1, min(num_batches, max_batches)).round().astype(np.int64))
    real = rows = 0
    for b in picked.tolist():
        lengths = sample_lengths(schedule, b * size, (b + 1) * size, seq_len)
        real += int(lengths.sum())
        rows += int(first_fit(lengths, seq_len).max()) + 1
    return PaddingEstimate(seq_len, len(picked) if num_batches else 0, num_batches, real,
                           len(picked) * size if num_batches else 0, rows)
