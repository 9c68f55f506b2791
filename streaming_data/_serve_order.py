"""Which positions of a compiled schedule each rank and dataloader worker serves, computed lazily.

Global batch ``g`` is positions ``[g*B, (g+1)*B)`` of the schedule; with per-phase batch sizes, ``B`` and
the batch's first position come from the schedule's batch-start table (one row per phase: first batch,
first position, batch size), and everything below holds per batch with that batch's ``B``. Rank ``r`` of ``W`` (``W`` divides
``B``) serves the contiguous slice ``[g*B + r*b, g*B + (r+1)*b)``, ``b = B/W``, of every global batch, so
concatenating the ranks' batches in rank order gives the global batch whatever ``W`` is. A PyTorch
DataLoader with ``N`` workers over an IterableDataset takes its ``k``-th batch from worker ``k mod N``, so
worker ``w`` serves the rank's slice of global batches ``g0 + w, g0 + w + N, ...`` where ``g0`` is the
first global batch not yet consumed.

A worker never materialises its share: :class:`WorkerOrder` is a sequence that asks the schedule for one
chunk of its batches at a time (one ``schedule.take`` of the span holding them, or one per batch when that
span would be mostly other ranks' and workers' positions) and keeps one chunk per reading thread. Memory per
worker is ``O(chunk)``, independent of the schedule's length (8,192 samples by default: about 1 MB of
Python lists per reading thread).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError

Take = Callable[[int, int], tuple[NDArray[np.int32], NDArray[np.int64]]]
"""``schedule.take(start, stop) -> (source ids, sample ids)`` for positions ``[start, stop)``."""
SPAN_WASTE = 16
"""Read one span per chunk while it holds at most this many positions per position needed."""


@dataclass(frozen=True)
class WorkerShare:
    """The global batches one worker of one rank serves, and the slice of each it owns.

    Attributes:
        global_batch_size: ``B``, samples per global batch (all ranks together).
        num_ranks: ``W``; must divide ``B``.
        rank: This rank, ``0 <= rank < W``.
        num_workers: Dataloader workers of this rank (1 when the dataloader has none).
        worker: This worker, ``0 <= worker < num_workers``.
        first_batch: First global batch not yet consumed (the batch the resume point starts).
        num_batches: Global batches in the schedule.
        segments: The batch-start table, ``(first batch, first position, batch size)`` per run of batches of
            one size, in order; empty: every batch has ``global_batch_size``. ``W`` must divide each size.
    """

    global_batch_size: int
    num_ranks: int
    rank: int
    num_workers: int
    worker: int
    first_batch: int
    num_batches: int
    segments: tuple[tuple[int, int, int], ...] = ()

    @cached_property
    def _rows(self) -> tuple[tuple[int, int, int], ...]:
        return self.segments or ((0, 0, self.global_batch_size),)

    @cached_property
    def _firsts(self) -> list[int]:
        return [row[0] for row in self._rows]

    @property
    def batches(self) -> range:
        """The global batches this worker serves, in the order it serves them."""
        return range(self.first_batch + self.worker, self.num_batches, self.num_workers)

    @cached_property
    def pieces(self) -> tuple[tuple[int, int, int, int], ...]:
        """Runs of this worker's batches of one size: ``(first sample, first index in batches, batches,
        samples per batch on this rank)``, in order."""
        out, offset, served = [], 0, self.batches
        for n, (first, _, size) in enumerate(self._rows):
            stop = self._rows[n + 1][0] if n + 1 < len(self._rows) else self.num_batches
            lo = _index_at(served, first)
            hi = _index_at(served, stop)
            if hi > lo:
                d = size // self.num_ranks
                out.append((offset, lo, hi - lo, d))
                offset += (hi - lo) * d
        return tuple(out)

    def __len__(self) -> int:
        last = self.pieces[-1] if self.pieces else (0, 0, 0, 0)
        return last[0] + last[2] * last[3]

    @cached_property
    def _piece_firsts(self) -> list[int]:
        return [p[0] for p in self.pieces]

    def piece_of(self, i: int) -> tuple[int, int, int, int]:
        """The :attr:`pieces` entry holding this worker's ``i``-th sample."""
        return self.pieces[bisect.bisect_right(self._piece_firsts, i) - 1]

    def position(self, i: int) -> int:
        """Schedule position of this worker's ``i``-th sample."""
        offset, lo, _, d = self.piece_of(i)
        k, j = divmod(i - offset, d)
        return self.batch_start(self.batches[lo + k]) + j

    def batch_start(self, global_batch: int) -> int:
        """First position of this rank's slice of ``global_batch``."""
        first, start, size = self._rows[bisect.bisect_right(self._firsts, global_batch) - 1]
        return start + (global_batch - first) * size + self.rank * (size // self.num_ranks)

    def device_sizes(self) -> list[int]:
        """Samples of each of this worker's batches on this rank, in serving order."""
        return [d for _, _, count, d in self.pieces for _ in range(count)]


def _index_at(r: range, value: int) -> int:
    """Number of elements of the increasing range ``r`` below ``value``."""
    if value <= r.start:
        return 0
    return min(len(r), -(-(value - r.start) // r.step))


class _Chunk(NamedTuple):
    """Consecutive samples ``[lo, hi)`` of a worker's share, as Python lists (fast scalar indexing)."""

    lo: int
    hi: int
    ids: list[int]
    sources: list[int]
    positions: list[int]


class WorkerOrder:
    """A worker's share as a lazy sequence of Streaming sample ids (what ``_get_work`` returns).

    Streaming reads it from three threads (download, ready, yield), each moving forward; each thread
    keeps its own current chunk, so there is no lock and no shared mutable state.

    Args:
        share: Which batches and slices this worker serves.
        take: The schedule's ``take``.
        stream_offsets: First Streaming sample id of each source's stream.
        stream_sizes: Samples in each source's stream (sample ids are checked against it).
        source_names: Source names, for errors.
        chunk_samples: Samples fetched from the schedule at once (rounded up to whole batches).
    """

    def __init__(
        self,
        share: WorkerShare,
        take: Take,
        stream_offsets: NDArray[np.int64],
        stream_sizes: NDArray[np.int64],
        source_names: list[str],
        chunk_samples: int = 8192,
    ) -> None:
        self.share = share
        self._take = take
        self._offsets = np.asarray(stream_offsets, np.int64)
        self._sizes = np.asarray(stream_sizes, np.int64)
        self._names = source_names
        self._chunk_target = chunk_samples
        self._len = len(share)
        self._local = threading.local()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> int:
        """Streaming sample id of this worker's ``i``-th sample (called per sample by three threads)."""
        chunk = getattr(self._local, "chunk", None)
        if chunk is None or not chunk.lo <= i < chunk.hi:
            chunk = self._load(i)
        return chunk.ids[i - chunk.lo]

    def label(self, i: int) -> tuple[int, int]:
        """(source id, schedule position) of this worker's ``i``-th sample."""
        chunk = getattr(self._local, "chunk", None)
        if chunk is None or not chunk.lo <= i < chunk.hi:
            chunk = self._load(i)
        return chunk.sources[i - chunk.lo], chunk.positions[i - chunk.lo]

    def _load(self, i: int) -> _Chunk:
        if not 0 <= i < self._len:
            raise IndexError(f"worker sample {i} out of range [0, {self._len})")
        offset, first, count, d = self.share.piece_of(i)  # a run of batches of one size
        per_chunk = max(1, -(-self._chunk_target // d))
        c = (i - offset) // (per_chunk * d)
        k0 = first + c * per_chunk
        batches = self.share.batches[k0: first + min(count, (c + 1) * per_chunk)]
        starts = np.array([self.share.batch_start(g) for g in batches], np.int64)
        sources, samples = self._take_slices(starts, d)
        self._check(sources, samples, int(starts[0]))
        positions = (starts[:, None] + np.arange(d)).reshape(-1)
        lo = offset + c * per_chunk * d
        chunk = _Chunk(lo, lo + len(positions), (self._offsets[sources] + samples).tolist(), sources.tolist(),
                       positions.tolist())
        self._local.chunk = chunk
        return chunk

    def _take_slices(self, starts: NDArray[np.int64], b: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Positions ``[s, s + b)`` for each start ``s``, concatenated.

        A compiled schedule's ``take`` costs a fixed overhead (about 40 us here, hundreds of positions' worth)
        plus a little per position, so one span read and sliced is cheaper while the span is at most
        :data:`SPAN_WASTE` times what this worker needs (ranks x workers <= 16); beyond that, one take
        per batch.
        """
        first, stop = int(starts[0]), int(starts[-1]) + b
        if stop - first <= SPAN_WASTE * len(starts) * b:
            src, smp = self._take(first, stop)
            index = ((starts - first)[:, None] + np.arange(b)).reshape(-1)
            return np.asarray(src, np.int64)[index], np.asarray(smp, np.int64)[index]
        parts = [self._take(int(s), int(s) + b) for s in starts]
        return (np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False),
                np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False))

    def _check(self, sources: NDArray[np.int64], samples: NDArray[np.int64], first: int) -> None:
        if len(sources) and (sources.min() < 0 or sources.max() >= len(self._sizes)):
            raise MixtureError(f"schedule names source id {int(sources.max())} near position {first}, "
                               f"but it has {len(self._sizes)} sources", hint="recompile the schedule")
        bad = (samples < 0) | (samples >= self._sizes[sources])
        if bad.any():
            k = int(np.argmax(bad))
            name = self._names[int(sources[k])]
            raise MixtureError(
                f"schedule asks for sample {int(samples[k])} of source '{name}', which has "
                f"{int(self._sizes[sources[k]])} samples",
                hint="the source changed after compiling: recompile the schedule",
            )
