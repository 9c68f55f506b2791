"""A compiled schedule on disk, opened for random access without reading the whole order.

``load_schedule(path)`` memory-maps ``order.bin`` and loads the small arrays. ``schedule[i]`` is
``(source name, sample id)``; ``schedule.take(a, b)`` gives ``(source ids, sample ids)`` for positions
``[a, b)``; ``phase_at(i)`` names the phase. Objects are cheap to reopen from their path, which is what
dataloader workers should do (pickling keeps only the path).
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
from numba import njit
from numpy.typing import NDArray

from mixture import schedule_files as files
from mixture.errors import MixtureError
from mixture.permute import permute, permute_scalar
from mixture.schedule_files import BatchSegment, Manifest, PhaseRecord, SourceRecord
from mixture.sourcedata import Pricing


@njit(cache=True)
def _mixed_draw(order: NDArray, ckpt: NDArray[np.int64], order_off: np.int64, ckpt_off: np.int64,
                every: np.int64, local: np.int64) -> tuple[np.int64, np.int64]:
    """(source id, draw index) at ``local`` of a mixed phase: checkpoint row + a count of < ``every`` ids."""
    block = local // every
    sid = np.int64(order[order_off + local])
    rank = ckpt[ckpt_off + block, sid]
    for j in range(order_off + block * every, order_off + local):
        if order[j] == sid:
            rank += 1
    return sid, rank


class Schedule:
    """Random access to a compiled schedule directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / files.MANIFEST).is_file():
            raise MixtureError(f"{self.path} is not a compiled schedule (no {files.MANIFEST})",
                               hint="compile one with `mixture compile FILE -o DIR`")
        raw = files.read_manifest(self.path)
        if raw.get("format") != files.FORMAT:
            raise MixtureError(f"{self.path}: unsupported schedule format {raw.get('format')!r}",
                               hint="recompile it with this version of the toolkit")
        self.manifest: Manifest = Manifest.from_json(raw)
        m = self.manifest
        self.sources: tuple[SourceRecord, ...] = m.sources
        self.source_names = m.source_names
        self.fingerprint: str = m.fingerprint
        self.global_batch_size: int = m.global_batch_size  # the run's; phases may have their own
        self.phases: tuple[PhaseRecord, ...] = m.phases
        self.segments: tuple[BatchSegment, ...] = m.batch_segments()
        self._seg_live = [s for s in self.segments if s.num_batches]
        self._seg_firsts = [s.first_batch for s in self._seg_live]
        self._seg_starts = [s.start for s in self._seg_live]
        self.num_batches: int = self.segments[-1].stop_batch if self.segments else 0
        # The largest global batch any step trains (phases without batches do not count).
        self.max_batch_size: int = max(m.batch_sizes)
        self._len: int = m.num_positions
        self._every: int = m.checkpoint_every
        order_file = self.path / files.ORDER
        dtype = np.dtype(m.order_dtype)
        # Plain ndarray views of the memory maps: compiled lookups dispatch faster on them.
        self._order = (np.memmap(order_file, dtype=dtype, mode="r").view(np.ndarray) if order_file.stat().st_size
                       else np.zeros(0, dtype))
        self._ckpt = np.load(self.path / files.CHECKPOINTS, mmap_mode="r").view(np.ndarray)
        self._pricing: dict[str, Pricing] | None = None
        # Phases that hold positions (a zero-length phase shares its start with the next one), for bisecting.
        self._live = [p for p in self.phases if p.stop > p.start]
        self._live_starts = [p.start for p in self._live]
        # Per-source permutation parameters as the compiled scalar lookup takes them.
        self._params = [(np.int64(r.num_samples), np.int64(r.block), np.uint64(r.key)) for r in self.sources]

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Schedule, (str(self.path),))

    def __len__(self) -> int:
        return self._len

    def _live_index(self, i: int) -> int:
        """Index in ``self._live`` of the phase holding position ``i``."""
        if not 0 <= i < self._len:
            raise IndexError(f"position {i} outside the schedule's {self._len} positions")
        return bisect.bisect_right(self._live_starts, i) - 1

    def batch_segment(self, batch: int) -> BatchSegment:
        """The batch-start table's row holding global batch ``batch`` (``0 <= batch < num_batches``)."""
        if not 0 <= batch < self.num_batches:
            raise IndexError(f"global batch {batch} outside the schedule's {self.num_batches} batches")
        return self._seg_live[bisect.bisect_right(self._seg_firsts, batch) - 1]

    def batch_bounds(self, batch: int) -> tuple[int, int]:
        """Positions ``[start, stop)`` of global batch ``batch``."""
        seg = self.batch_segment(batch)
        start = seg.batch_start(batch)
        return start, start + seg.batch_size

    def batch_start(self, batch: int) -> int:
        """First position of global batch ``batch``; ``num_batches`` gives the schedule's length."""
        return len(self) if batch == self.num_batches else self.batch_bounds(batch)[0]

    def batch_index(self, position: int) -> int | None:
        """The global batch that starts at ``position`` (``num_batches`` at the end), None if none does."""
        if position == len(self):
            return self.num_batches
        if not 0 <= position < len(self):
            return None
        seg = self._seg_live[bisect.bisect_right(self._seg_starts, position) - 1]
        k, rest = divmod(position - seg.start, seg.batch_size)
        return None if rest else seg.first_batch + k

    def check_world_size(self, world_size: int) -> None:
        """Refuse a world size that does not divide every phase's global batch (ranks get equal slices).

        Raises:
            MixtureError: Naming the first phase whose batch it does not divide (its mixture-file field).
        """
        for seg in self.segments:
            if seg.num_batches and seg.batch_size % world_size:
                own = seg.batch_size != self.global_batch_size
                raise MixtureError(
                    f"global batch size {seg.batch_size} (phase {seg.phase!r} of {self.path}) is not divisible "
                    f"by the {world_size} ranks of this run",
                    path=f"phases.{seg.phase}.global_batch_size" if own else "run.global_batch_size",
                    hint="run on a number of ranks that divides every phase's global batch size")

    def batches_before(self, position: int) -> int:
        """The number of global batches it takes to train positions ``[0, position)`` (the first batch
        boundary at or after ``position``; ``num_batches`` from the schedule's end on)."""
        if position >= len(self):
            return self.num_batches
        if position <= 0:
            return 0
        seg = self._seg_live[bisect.bisect_right(self._seg_starts, position) - 1]
        return seg.first_batch + -(-(position - seg.start) // seg.batch_size)

    def batch_size_at(self, batch: int) -> int:
        """Samples in global batch ``batch``."""
        return self.batch_segment(batch).batch_size

    def phase_at(self, i: int) -> str:
        """Name of the phase that position ``i`` belongs to."""
        return self._live[self._live_index(i)].name

    def __getitem__(self, i: int) -> tuple[str, int]:
        if i < 0:
            i += self._len
        phase = self._live[self._live_index(i)]
        local = i - phase.start
        if phase.mixed:
            sid, rank = _mixed_draw(self._order, self._ckpt, np.int64(phase.order_offset),
                                    np.int64(phase.ckpt_offset), np.int64(self._every), np.int64(local))
            sid = int(sid)
        else:
            sid = self.source_names.index(phase.source)
            rank = np.int64(phase.cursors[str(phase.source)] + local)
        return self.source_names[sid], int(permute_scalar(rank, *self._params[sid]))

    def take(self, start: int, stop: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Source ids and sample ids of positions ``[start, stop)``."""
        start, stop = max(start, 0), min(stop, self._len)
        if stop <= start:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        src_parts, rank_parts = [], []
        idx = self._live_index(start)
        pos = start
        while pos < stop:
            phase = self._live[idx]
            end = min(stop, phase.stop)
            src, rank = self._phase_take(phase, pos, end)
            src_parts.append(src)
            rank_parts.append(rank)
            pos = end
            idx += 1
        src = np.concatenate(src_parts)
        ranks = np.concatenate(rank_parts)
        samples = np.empty_like(ranks)
        for sid in np.unique(src):
            sel = src == sid
            rec = self.sources[int(sid)]
            samples[sel] = permute(ranks[sel], rec.num_samples, rec.block, rec.key)
        return src, samples

    def take_named(self, start: int, stop: int) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
        """Like :meth:`take`, with source names (``"text"``) instead of source ids."""
        src, samples = self.take(start, stop)
        return np.asarray(self.source_names, dtype=np.str_)[src], samples

    def _phase_take(self, phase: PhaseRecord, a: int, b: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        local_a, local_b = a - phase.start, b - phase.start
        if not phase.mixed:
            sid = self.source_names.index(phase.source)
            base = phase.cursors[str(phase.source)]
            return (np.full(b - a, sid, np.int32),
                    np.arange(base + local_a, base + local_b, dtype=np.int64))
        off = phase.order_offset
        block = local_a // self._every
        lead_start = block * self._every
        chunk = np.asarray(self._order[off + lead_start: off + local_b]).astype(np.int32)
        counts = np.array(self._ckpt[phase.ckpt_offset + block], dtype=np.int64)
        counts += np.bincount(chunk[: local_a - lead_start], minlength=len(self.sources))
        src = chunk[local_a - lead_start:]
        ranks = np.empty(src.shape, np.int64)
        for sid in np.unique(src):
            sel = src == sid
            ranks[sel] = counts[sid] + np.arange(int(sel.sum()))
        return src, ranks

    def source_ids(self, start: int, stop: int) -> NDArray[np.int32]:
        """Source ids of positions ``[start, stop)`` without their sample ids (no permutation: cheap)."""
        start, stop = max(start, 0), min(stop, self._len)
        parts = [np.zeros(0, np.int32)]
        pos = start
        while pos < stop:
            phase = self._live[self._live_index(pos)]
            end = min(stop, phase.stop)
            if phase.mixed:
                off = phase.order_offset - phase.start
                parts.append(self._order[off + pos: off + end].astype(np.int32))
            else:
                parts.append(np.full(end - pos, self.source_names.index(phase.source), np.int32))
            pos = end
        return np.concatenate(parts)

    def pricing(self) -> dict[str, Pricing]:
        """Budget-token pricing of each source (for tokens per position)."""
        if self._pricing is None:
            out = {}
            for s in self.sources:
                desc = s.pricing
                if desc.get("array"):
                    out[s.name] = Pricing(array=np.load(self.path / files.token_array(s.name), mmap_mode="r"))
                else:
                    out[s.name] = Pricing(base=desc["base"], mean=desc["mean"], std=desc["std"],
                                          lo=desc["lo"], hi=desc["hi"], key=int(desc["key"]))
            self._pricing = out
        return self._pricing

    def tokens(self, src: NDArray[np.int32], samples: NDArray[np.int64]) -> NDArray[np.int64]:
        """Budget tokens of the given (source id, sample id) pairs."""
        out = np.empty(samples.shape, np.int64)
        pricing = self.pricing()
        for sid in np.unique(src):
            sel = src == sid
            out[sel] = pricing[self.source_names[int(sid)]].tokens_of(samples[sel])
        return out

    def lr(self) -> NDArray[np.float64] | None:
        """Learning rate per global batch, if the run has an LR plan."""
        path = self.path / files.LR
        return np.load(path) if path.exists() else None

    def batch_tokens(self) -> NDArray[np.int64]:
        """Cumulative tokens at every global-batch boundary (length ``num_batches + 1``)."""
        return np.load(self.path / files.BATCH_TOKENS)


def load_schedule(path: str | Path) -> Schedule:
    """Open a compiled schedule directory after verifying it (:mod:`mixture.schedule_check`)."""
    from mixture.schedule_check import verify_schedule

    verify_schedule(path)
    return Schedule(path)
