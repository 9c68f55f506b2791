"""The compiler: resolved spec + source data -> a compiled schedule directory.

The directory's layout, file names and typed records live in :mod:`mixture.schedule_files`; mixed phases
are mixed by the kernels of :mod:`mixture.kernels`.

The work goes phase by phase and, inside a mixed phase, chunk by chunk of positions, so memory stays
bounded at any schedule length. Each phase ends on a whole number of its own global batches (a phase's
``global_batch_size``, else the run's): its length rounds up to the next batch boundary, counted from the
phase's start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import numba
import numpy as np
from numpy.typing import NDArray

from mixture import __version__
from mixture import schedule_files as files
from mixture.errors import MixtureError
from mixture.kernels import (COSINE, LINEAR, Chunk, Curve, _integral, mix_samples, mix_samples_chunks, mix_tokens,
                             sample_state)
from mixture.lr import lr_per_step
from mixture.permute import derive_key, permute
from mixture.resolve import Resolved, ResolvedPhase, epochs_to_positions
from mixture.verified import vouch
from mixture.schedule_files import Manifest, PhaseRecord, RampRecord, SourceRecord
from mixture.sourcedata import Pricing, SourceData
from mixture.units import Unit

ALGORITHM = "edf-apportionment/2"
CHECKPOINT = 4096  # a power of two (the kernels test position & (CHECKPOINT - 1))
_CHUNK_TARGET = 1 << 22

Progress = Callable[[int], None]


@dataclass
class _State:
    pos: int = 0
    batches: int = 0
    tokens: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    lag_unit: str = ""
    prev_weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _MixedResult:
    """What a phase drew: positions, tokens, (order, checkpoint) offsets, per-source draws and tokens,
    and the rounding it started from."""

    positions: int
    tokens: int
    offsets: tuple[int | None, int | None]
    drawn: dict[str, int]
    source_tokens: dict[str, int]
    lag0: dict[str, float]


@dataclass
class _Out:
    """What the phases append to. ``order.bin`` bytes are written and hashed by one background thread, in
    the order they are emitted, while the next chunk is mixed (the kernels release the GIL). Each chunk is
    copied into one of three reused buffers (at most two are queued, one is being filled), not into a new
    allocation whose pages would be faulted in again for every chunk."""

    names: list[str]
    order: BinaryIO
    dtype: np.dtype
    order_len: int = 0
    checkpoints: list[NDArray[np.int64]] = field(default_factory=list)
    batch_tokens: list[NDArray[np.int64]] = field(default_factory=list)
    digest: object = field(default_factory=hashlib.sha256)
    writer: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "order-writer"))
    pending: list[Future[None]] = field(default_factory=list)
    buffers: list[NDArray] = field(default_factory=list)

    def emit(self, ids: NDArray) -> None:
        """Append a copy of ``ids`` to order.bin and its hash (in the background; at most two chunks queued),
        so the caller may refill ``ids`` at once."""
        while len(self.pending) >= 2:
            self.pending.pop(0).result()
        self.buffers = [b for b in self.buffers if b.size >= ids.size][-3:]
        if len(self.buffers) < 3:
            self.buffers.insert(0, np.empty(ids.size, ids.dtype))
        buffer = self.buffers.pop(0)  # the oldest: its write finished before the two still queued
        self.buffers.append(buffer)
        view = buffer[: ids.size]
        np.copyto(view, ids)
        self.pending.append(self.writer.submit(self._write, memoryview(view)))

    def _write(self, raw: memoryview) -> None:
        self.order.write(raw)
        self.digest.update(raw)

    def finish(self) -> None:
        """Wait for every emitted byte (re-raising a write error) and stop the writer thread."""
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pending.clear()
            self.writer.shutdown(wait=True)


def _ceil_batch(n: int, batch: int) -> int:
    return -(-n // batch) * batch


def _draw_tokens(src: SourceData, start: int, count: int) -> NDArray[np.int64]:
    const = src.pricing.constant
    if const is not None:
        return np.full(count, const, dtype=np.int64)
    draws = np.arange(start, start + count, dtype=np.int64)
    return src.pricing.tokens_of(permute(draws, src.num_samples, src.block, src.key))


class _Lookahead:
    """Budget tokens of a source's next draws; what one chunk computed and did not use serves the next.

    A mixed chunk must know the sizes of up to ``chunk`` upcoming draws of every source, but a source with
    a small share uses few of them; without this carry-over the same draws were priced again and again.
    """

    def __init__(self, src: SourceData) -> None:
        self.src = src
        self.start = 0
        self.tokens = np.zeros(0, np.int64)

    def get(self, start: int, count: int) -> NDArray[np.int64]:
        """Tokens of draws ``[start, start + count)``."""
        have_from = start - self.start
        if 0 <= have_from <= len(self.tokens):
            kept = self.tokens[have_from:]
            need = count - len(kept)
            if need > 0:
                self.tokens = np.concatenate([kept, _draw_tokens(self.src, start + len(kept), need)])
            else:
                self.tokens = kept[:count]
        else:
            self.tokens = _draw_tokens(self.src, start, count)
        self.start = start
        return self.tokens


def _stop_rule(phase: ResolvedPhase, state: _State, data: dict[str, SourceData],
               batch: int) -> tuple[int, float]:
    """(stop positions since phase start or -1, stop tokens since phase start or inf)."""
    kind, value = phase.stop.kind, phase.stop.value
    if kind == "positions_rel":
        return _ceil_batch(int(value), batch), math.inf
    if kind == "positions_abs":  # whole batches of this phase from its start (as the run's: one batch size)
        return _ceil_batch(max(int(value) - state.pos, 0), batch), math.inf
    if kind == "epochs":
        return epochs_to_positions(phase.stop, data[phase.stop.source].num_samples, batch), math.inf
    if kind == "tokens_rel":
        return -1, float(value)
    return -1, float(max(value - Decimal(state.tokens), Decimal(0)))


def _single(phase: ResolvedPhase, name: str, state: _State, data: dict[str, SourceData], batch: int,
            stop_pos: int, stop_tok: float, out: _Out, progress: Progress | None) -> tuple[int, int]:
    """A one-source phase: no order is stored; returns (positions, tokens)."""
    src = data[name]
    cursor = state.cursors.get(name, 0)
    const = src.pricing.constant
    if stop_pos >= 0 and const is not None:
        n = stop_pos
    elif const is not None:
        n = _ceil_batch(math.ceil(stop_tok / const), batch) if stop_tok > 0 else 0
    else:
        n, total = 0, 0
        chunk = _ceil_batch(_CHUNK_TARGET, batch)
        while (stop_pos < 0 and total < stop_tok) or (stop_pos >= 0 and n < stop_pos):
            take = chunk if stop_pos < 0 else min(chunk, stop_pos - n)
            toks = _draw_tokens(src, cursor + n, take)
            per_batch = np.cumsum(toks.reshape(-1, batch).sum(axis=1)) + total
            if stop_pos < 0 and per_batch[-1] >= stop_tok:
                take = (int(np.searchsorted(per_batch, stop_tok)) + 1) * batch
                toks, per_batch = toks[:take], per_batch[: take // batch]
            out.batch_tokens.append(per_batch + state.tokens)
            n += take
            total = int(per_batch[-1])
            if progress:
                progress(take)
        return n, total
    if n:
        steps = np.arange(1, n // batch + 1, dtype=np.int64) * (const * batch)
        out.batch_tokens.append(steps + state.tokens)
        if progress:
            progress(n)
    return n, n * const


def _curve(phase: ResolvedPhase, names: list[str], state: _State) -> Curve:
    """The targets of a mixed phase over its sources (sorted by name)."""
    q = np.array([phase.weights.get(n, 0.0) for n in names])
    p = np.array([state.prev_weights.get(n, 0.0) for n in names]) if phase.ramp_clock > 0 else q.copy()
    carry = state.lag_unit == phase.unit
    lag0 = np.array([state.lag.get(n, 0.0) if carry else 0.0 for n in names])
    tie = np.array([derive_key("tie", n) >> 1 for n in names], dtype=np.int64)
    return Curve(p, q, lag0, tie, float(phase.ramp_clock), COSINE if phase.ramp_shape == "cosine" else LINEAR)


def _look_width(curve: Curve, token_unit: bool, chunk: int) -> NDArray[np.int64]:
    """Draws per source a chunk may take: a sample-unit mix stays within one sample of its target."""
    if token_unit:
        return np.full(len(curve.q), chunk + 1, np.int64)
    most = np.ceil(np.maximum(curve.p, curve.q) * chunk).astype(np.int64) + 3
    return np.minimum(most, chunk)


def _mixed(phase: ResolvedPhase, names: list[str], state: _State, data: dict[str, SourceData], batch: int,
           stop: tuple[int, float], out: _Out, progress: Progress | None) -> _MixedResult:
    k = len(names)
    curve = _curve(phase, names, state)
    token_unit = phase.unit == "tokens"
    kernel = mix_tokens if token_unit else mix_samples
    lookahead = [_Lookahead(data[n]) for n in names]
    chunk = math.lcm(batch, CHECKPOINT)
    chunk *= max(1, _CHUNK_TARGET // chunk)
    width = _look_width(curve, token_unit, chunk)
    gid = np.array([out.names.index(n) for n in names], np.int64)
    limits = np.array([stop[0], stop[1], batch, CHECKPOINT], np.float64)
    priced = [i for i, n in enumerate(names) if data[n].pricing.constant is None]
    # Constant prices only, in samples: one column (mix_samples clamps; mix_tokens reads ahead, so not there).
    look_columns = int(width.max()) if priced or token_unit else 1
    ch = Chunk(np.zeros((k, look_columns), np.int64), gid, np.zeros(k, np.int64), np.zeros(k),
               np.zeros(2), limits, np.zeros(chunk, out.dtype), np.zeros(chunk // batch, np.int64),
               np.zeros((chunk // CHECKPOINT, k), np.int64), np.full(k, np.nan), np.full(k, np.nan))
    start_cursor = np.array([state.cursors.get(n, 0) for n in names], dtype=np.int64)
    ckpt_offset = sum(len(c) for c in out.checkpoints)
    order_offset = out.order_len
    for i, n in enumerate(names):  # every draw of a constant-priced source costs the same: fill once
        if i not in priced:
            ch.look[i, : width[i]] = data[n].pricing.constant
    group = _threads() if not token_unit else 1
    if group > 1 and not 0 <= stop[0] <= chunk:  # a phase of one chunk or less has nothing to share
        speculative = _Speculative(curve, ch, width, chunk, group, lookahead, priced, start_cursor)
        speculative.run(lambda c, written: _store_chunk(out, c, written, batch, start_cursor), progress)
        return _close_mixed(phase, names, state, curve, ch, (order_offset, ckpt_offset))
    while True:
        _fill_priced(ch.look, ch.drawn, priced, width, lookahead, start_cursor)
        before = ch.drawn.copy()
        written = kernel(curve, ch)
        if np.any(ch.drawn - before > width):  # the bound that sizes the lookahead: never seen broken
            raise RuntimeError(f"phase {phase.name!r}: a chunk drew more than its token lookahead holds")
        if written == 0:
            break
        _store_chunk(out, ch, written, batch, start_cursor)
        if progress:
            progress(written)
        if written < chunk:
            break
    return _close_mixed(phase, names, state, curve, ch, (order_offset, ckpt_offset))


def _fill_priced(look: NDArray[np.int64], drawn: NDArray[np.int64], priced: list[int], width: NDArray[np.int64],
                 lookahead: list[_Lookahead], start_cursor: NDArray[np.int64]) -> None:
    """Fill each priced source's row of ``look`` with the sizes of its next draws (constant rows stay)."""
    for i in priced:
        look[i, : width[i]] = lookahead[i].get(int(start_cursor[i] + drawn[i]), int(width[i]))


def _threads() -> int:
    """Chunks a sample-unit mixed phase mixes side by side: numba's thread count (``NUMBA_NUM_THREADS``,
    ``numba.set_num_threads``). The order does not depend on it."""
    return int(numba.get_num_threads())


class _Speculative:
    """Mixes a sample-unit phase ``group`` chunks at a time, on every thread, identical to one at a time.

    The first chunk of a group starts from the true state. Each later one starts from a *predicted*
    state: the draws per source at its first position, guessed from the targets (floor of each, the
    remaining ceilings to the earliest next deadlines as the kernel computes them, never to a source whose
    target is a whole number, ties to the tie rank; right at 92% of 400 random chunk boundaries),
    and the release, deadline and tokens those draws imply. After the group, a chunk is kept only if
    its start state equals, bit for bit, the state the chunk before it ended in; from the first that does
    not, the rest are dropped and mixed again from the true state. A chunk is a pure function of its
    start state, so the order is the same for any thread count. Only chunks that start past the ramp
    are predicted (inside a ramp the deadlines carry the Newton iteration's last bits).
    """

    def __init__(self, curve: Curve, ch: Chunk, width: NDArray[np.int64], chunk: int, group: int,
                 lookahead: list[_Lookahead], priced: list[int], start_cursor: NDArray[np.int64]) -> None:
        self.curve, self.ch, self.width, self.chunk, self.group = curve, ch, width, chunk, group
        self.lookahead, self.priced, self.start_cursor = lookahead, priced, start_cursor
        k = len(curve.q)
        self.const = ch.look[:, 0].copy()  # tokens per draw of the constant-priced sources
        self.look = np.zeros((group,) + ch.look.shape, np.int64)
        self.look[:] = ch.look  # the constant-priced rows, filled once by the caller; priced rows per chunk
        self.drawn, self.realised = np.zeros((group, k), np.int64), np.zeros((group, k))
        self.clock = np.zeros((group, 2))
        self.release, self.deadline = np.zeros((group, k)), np.zeros((group, k))
        self.out = np.zeros((group, chunk), ch.out.dtype)
        self.batch_tokens = np.zeros((group,) + ch.batch_tokens.shape, np.int64)
        self.ckpt = np.zeros((group,) + ch.ckpt.shape, np.int64)
        self.written = np.zeros(group, np.int64)
        self.mispredicted = 0

    def _state(self, i: int) -> tuple[NDArray, ...]:
        return self.drawn[i], self.realised[i], self.clock[i], self.release[i], self.deadline[i]

    def _fill_look(self, i: int) -> None:
        _fill_priced(self.look[i], self.drawn[i], self.priced, self.width, self.lookahead, self.start_cursor)

    def _predict(self, i: int) -> bool:
        """Set slot ``i``'s start state from slot ``i - 1``'s start, one chunk later; False if implausible."""
        c, before = self.curve, self.drawn[i - 1]
        at = float(self.clock[i - 1, 0] + self.chunk)
        if c.ramp > 0.0 and at < c.ramp:
            return False
        target = c.lag0 + np.array([_integral(c.p[s], c.q[s], c.ramp, c.shape, at) for s in range(len(c.q))])
        drawn = np.floor(target).astype(np.int64)
        ceilings = int(at) - int(drawn.sum())
        release, due = np.zeros(len(drawn)), np.zeros(len(drawn))
        sample_state(c, drawn, release, due)  # the next draws' deadlines, as the kernel computes them
        # A source whose target is a whole number cannot take a ceiling (it would be a whole draw ahead):
        # at a chunk boundary where several next deadlines tie, it would otherwise win on the tie rank.
        drawn[np.lexsort((c.tie, due, target <= drawn))[:max(ceilings, 0)]] += 1
        step = drawn - before
        if not 0 <= ceilings <= len(drawn) or np.any(step < 0) or np.any(step > self.width):
            return False
        self.drawn[i] = drawn
        self.realised[i] = self.realised[i - 1] + np.array(
            [self.look[i - 1, s, : step[s]].sum() if s in self.priced else step[s] * self.const[s]
             for s in range(len(drawn))], np.float64)
        self.clock[i] = at, self.realised[i].sum()
        sample_state(c, self.drawn[i], self.release[i], self.deadline[i])
        return True

    def run(self, store: Callable[[Chunk, int], None], progress: Progress | None) -> None:
        """Mix the phase to its stop; ``store`` each chunk in order; leave the end state in ``ch``."""
        ch, true_state = self.ch, (self.ch.drawn, self.ch.realised, self.ch.clock, self.ch.release,
                                   self.ch.deadline)
        while True:
            for row, value in zip(self._state(0), true_state):
                row[:] = value
            self._fill_look(0)
            n = 1
            while n < self.group and (ch.limits[0] < 0 or self.clock[n - 1, 0] + self.chunk < ch.limits[0]):
                if not self._predict(n):
                    break
                self._fill_look(n)
                n += 1
            starts = [tuple(a.copy() for a in self._state(i)) for i in range(n)]
            mix_samples_chunks(self.curve, self.look[:n], ch.gid, self.drawn[:n], self.realised[:n],
                               self.clock[:n], ch.limits, self.out[:n], self.batch_tokens[:n], self.ckpt[:n],
                               self.release[:n], self.deadline[:n], self.written[:n])
            done = False
            for i in range(n):
                if i and not all(_same_bits(a, b) for a, b in zip(starts[i], true_state)):
                    self.mispredicted += 1
                    break
                if np.any(self.drawn[i] - starts[i][0] > self.width):
                    raise RuntimeError("a chunk drew more than its token lookahead holds")
                written = int(self.written[i])
                true_state = self._state(i)
                done = written < self.chunk
                if written:
                    store(Chunk(self.look[i], ch.gid, *true_state[:3], ch.limits, self.out[i],
                                self.batch_tokens[i], self.ckpt[i], *true_state[3:]), written)
                    if progress:
                        progress(written)
                if done:
                    break
            for row, value in zip((ch.drawn, ch.realised, ch.clock, ch.release, ch.deadline), true_state):
                row[:] = value
            if done:
                return
            true_state = (ch.drawn, ch.realised, ch.clock, ch.release, ch.deadline)


def _same_bits(a: NDArray, b: NDArray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def _store_chunk(out: _Out, ch: Chunk, written: int, batch: int, start_cursor: NDArray[np.int64]) -> None:
    """Append a chunk's order, checkpoints (absolute draws per source) and batch tokens to ``out``."""
    full = np.zeros((-(-written // CHECKPOINT), len(out.names)), np.int64)
    full[:, ch.gid] = ch.ckpt[: len(full)] + start_cursor
    out.checkpoints.append(full)
    out.emit(ch.out[:written])  # copied: the kernel refills ch.out while it is written
    out.order_len += written
    base = out.batch_tokens[-1][-1] if out.batch_tokens else 0
    out.batch_tokens.append(np.cumsum(ch.batch_tokens[: written // batch]) + base)


def _close_mixed(phase: ResolvedPhase, names: list[str], state: _State, curve: Curve, ch: Chunk,
                 offsets: tuple[int, int]) -> _MixedResult:
    """Carry the phase's rounding error into the next one; what the phase's record needs."""
    positions, tokens = int(ch.clock[0]), int(round(ch.clock[1]))
    token_unit = phase.unit == "tokens"
    clock = float(ch.clock[1]) if token_unit else float(positions)
    realised = ch.realised if token_unit else ch.drawn.astype(np.float64)
    lag0 = {n: float(curve.lag0[i]) for i, n in enumerate(names)} if curve.lag0.any() else {}
    state.lag = {n: float(curve.lag0[i] + _integral(curve.p[i], curve.q[i], curve.ramp, curve.shape, clock)
                          - realised[i]) for i, n in enumerate(names)}
    state.lag_unit = phase.unit
    return _MixedResult(positions, tokens, offsets, dict(zip(names, ch.drawn.tolist())),
                        {n: int(round(t)) for n, t in zip(names, ch.realised.tolist())}, lag0)


def _may_cost_zero(pricing: Pricing) -> bool:
    """Whether some sample of the source may cost 0 budget tokens."""
    if pricing.array is not None:
        return bool(pricing.array.size) and int(pricing.array.min()) <= 0
    const = pricing.constant
    if const is not None:
        return const <= 0
    return pricing.base + max(pricing.lo, round(pricing.mean - 2 * math.sqrt(3.0) * pricing.std)) <= 0


def _refuse_free_samples(phase: ResolvedPhase, names: list[str], data: dict[str, SourceData]) -> None:
    """A phase measured in tokens never ends (or divides by zero) on samples that cost 0 tokens."""
    if phase.unit != "tokens" and not phase.stop.kind.startswith("tokens"):
        return
    free = [n for n in names if _may_cost_zero(data[n].pricing)]
    if free:
        raise MixtureError(f"phase {phase.name!r} is measured in tokens, but source {free[0]!r} has samples "
                           "that cost 0 tokens", path=f"phases.{phase.name}",
                           hint="drop the empty samples at ingest, or measure the phase in samples")


def _phase_sources(phase: ResolvedPhase, state: _State) -> tuple[list[str], RampRecord | None]:
    """The phase's sources (sorted; a ramp keeps those it ramps out) and its ramp, if it ramps."""
    ramping = phase.ramp_clock > 0 and state.prev_weights != phase.weights
    names = sorted(n for n in set(phase.weights) | (set(state.prev_weights) if ramping else set())
                   if phase.weights.get(n, 0) > 0 or (ramping and state.prev_weights.get(n, 0) > 0))
    ramp = None
    if phase.ramp_clock > 0 and len(names) > 1:
        ramp = RampRecord({n: state.prev_weights.get(n, 0.0) for n in names}, float(phase.ramp_clock),
                          phase.ramp_shape)
    return names, ramp


def _compile_phase(phase: ResolvedPhase, state: _State, data: dict[str, SourceData], out: _Out,
                   progress: Progress | None) -> PhaseRecord:
    batch = phase.batch
    stop_pos, stop_tok = _stop_rule(phase, state, data, batch)
    names, ramp = _phase_sources(phase, state)
    _refuse_free_samples(phase, names, data)
    start_cursors = {n: state.cursors.get(n, 0) for n in out.names}
    if len(names) == 1:
        positions, tokens = _single(phase, names[0], state, data, batch, stop_pos, stop_tok, out, progress)
        mixed = _MixedResult(positions, tokens, (None, None), {names[0]: positions}, {names[0]: tokens}, {})
        state.lag, state.lag_unit = {}, ""
    else:
        mixed = _mixed(phase, names, state, data, batch, (stop_pos, stop_tok), out, progress)
    for n, d in mixed.drawn.items():
        state.cursors[n] = state.cursors.get(n, 0) + int(d)
    record = PhaseRecord(
        phase.name, phase.unit, state.pos, state.pos + mixed.positions, dict(phase.weights), len(names) > 1,
        source=names[0] if len(names) == 1 else None, order_offset=mixed.offsets[0],
        ckpt_offset=mixed.offsets[1], sources=tuple(names), ramp=ramp, lag0=mixed.lag0, tokens=mixed.tokens,
        start_tokens=state.tokens, source_tokens=mixed.source_tokens, cursors=start_cursors,
        draws={n: int(mixed.drawn.get(n, 0)) for n in out.names}, global_batch_size=batch,
        batch_offset=state.batches)
    state.pos += mixed.positions
    state.batches += mixed.positions // batch
    state.tokens += mixed.tokens
    state.prev_weights = phase.weights
    return record


def _epochs_text(used: float, cap: float) -> str:
    """``used`` with enough digits to read above ``cap`` (one sample over a big source is 1.0000001)."""
    for digits in range(3, 13):
        text = f"{used:.{digits}f}"
        if float(text) > cap:
            return text
    return repr(used)


def _check_caps(records: list[PhaseRecord], data: dict[str, SourceData]) -> None:
    problems = []
    for name, src in data.items():
        if src.max_epochs is None:
            continue
        for rec in records:
            used = (rec.cursors[name] + rec.draws[name]) / src.num_samples
            if used > src.max_epochs + 1e-12:
                problems.append(
                    f"source {name!r} needs {_epochs_text(used, src.max_epochs)} epochs by the end of phase "
                    f"{rec.name!r}, "
                    f"above its cap max_epochs={src.max_epochs:g} ({src.num_samples} samples)")
                break
    if problems:
        raise MixtureError("; ".join(problems), hint="raise max_epochs, add data, or shorten the phases")


def compile_schedule(resolved: Resolved, data: dict[str, SourceData], out_dir: str | Path,
                     progress: Progress | None = None,
                     variant: dict[str, object] | None = None) -> Manifest:
    """Compile ``resolved`` over ``data`` into ``out_dir`` (written atomically); returns the manifest.

    ``variant`` (the sweep variant's name and axis values) is recorded in the manifest for reports; it is
    not part of the fingerprint, which covers only what determines the order.

    Raises:
        MixtureError: If the schedule is infeasible (caps, overrun) or data is missing.
    """
    names = sorted(data)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = np.uint8 if len(names) <= 255 else np.uint16
    state = _State()
    records: list[PhaseRecord] = []
    with open(tmp / files.ORDER, "wb") as order:
        out = _Out(names, order, np.dtype(dtype))
        try:
            for phase in resolved.phases:
                records.append(_compile_phase(phase, state, data, out, progress))
        finally:
            out.finish()
    batch_tokens = np.concatenate([np.zeros(1, np.int64)] + out.batch_tokens)
    try:
        _check_caps(records, data)
        _check_overrun(resolved, state, records, batch_tokens)
    except MixtureError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    checkpoints = (np.concatenate(out.checkpoints) if out.checkpoints
                   else np.zeros((0, len(names)), np.int64))
    _write_arrays(tmp, resolved, data, records, batch_tokens, checkpoints)
    manifest = _manifest(resolved, data, records, state, out, checkpoints, variant)
    files.write_manifest(tmp, manifest)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    vouch(out_dir)  # every byte above came from this process: no need to read order.bin back to check it
    return manifest


def _write_arrays(tmp: Path, resolved: Resolved, data: dict[str, SourceData], records: list[PhaseRecord],
                  batch_tokens: NDArray[np.int64], checkpoints: NDArray[np.int64]) -> None:
    """Every file of the directory but ``order.bin`` (written as it is made) and the manifest."""
    np.save(tmp / files.BATCH_TOKENS, batch_tokens)
    np.save(tmp / files.CHECKPOINTS, checkpoints)
    (tmp / files.TOKENS_DIR).mkdir()
    for name in sorted(data):
        array = data[name].pricing.array
        if array is not None:
            np.save(tmp / files.token_array(name), array.astype(np.int32))
    lr = lr_per_step(resolved.spec, records, batch_tokens, resolved.durations)
    if lr is not None:
        np.save(tmp / files.LR, lr)


def _check_overrun(resolved: Resolved, state: _State, records: list[PhaseRecord],
                   batch_tokens: NDArray[np.int64]) -> None:
    """The phases may not run past run.duration by a whole batch (phase ends round up to batches): the last
    batch must start before it."""
    run = resolved.spec.run
    if run.duration is None:
        return
    d = resolved.durations["run.duration"]
    if d.unit is Unit.TOKENS:
        over = len(batch_tokens) >= 2 and batch_tokens[-2] >= d.value
        used, unit = state.tokens, "tokens"
    elif d.unit in (Unit.SAMPLES, Unit.BATCHES):  # batches only at one batch size (resolve refuses others)
        limit = int(d.value) * (run.global_batch_size if d.unit is Unit.BATCHES else 1)
        last = next((int(r.global_batch_size or 0) for r in reversed(records) if r.positions), 0)
        over = last > 0 and state.pos - last >= limit
        used, unit = state.pos, "samples"
    else:
        return
    if over:
        raise MixtureError(f"the phases take {used} {unit}, more than run.duration ({run.duration})",
                           path="run.duration", hint="lengthen run.duration or shorten the phases")


def _fingerprint(sources: list[SourceRecord], phases: list[PhaseRecord], order_digest: str,
                 checkpoints: NDArray[np.int64], run_batch: int) -> str:
    """Hash of exactly what determines the order and its batch boundaries: nothing else (names of phases,
    LR) enters it. A phase's own batch size enters only where it differs from the run's, so schedules of one
    batch size keep the fingerprints they had before per-phase batches existed."""
    digest = hashlib.sha256(ALGORITHM.encode())
    keyed = [{k: s.to_json()[k] for k in ("name", "num_samples", "key", "shuffle_block_samples", "fingerprint")}
             for s in sources]
    own = any(p.global_batch_size not in (None, run_batch) for p in phases)
    fields = ("start", "stop", "mixed", "source", "cursors") + (("global_batch_size",) if own else ())
    shape = [{k: v for k, v in p.to_json().items() if k in fields} for p in phases]
    digest.update(json.dumps([keyed, shape], sort_keys=True).encode())
    digest.update(order_digest.encode())
    digest.update(np.ascontiguousarray(checkpoints).tobytes())
    return digest.hexdigest()[:32]


def _manifest(resolved: Resolved, data: dict[str, SourceData], records: list[PhaseRecord], state: _State,
              out: _Out, checkpoints: NDArray[np.int64], variant: dict[str, object] | None) -> Manifest:
    spec = resolved.spec
    sources = [SourceRecord(i, name, data[name].kind, data[name].location, data[name].fingerprint,
                            data[name].num_samples, data[name].key, data[name].block,
                            data[name].pricing.describe(), data[name].max_epochs,
                            state.cursors.get(name, 0) / data[name].num_samples, dict(data[name].dropped))
               for i, name in enumerate(out.names)]
    return Manifest(
        files.FORMAT, ALGORITHM, __version__, spec.name, spec.seed,
        _fingerprint(sources, records, out.digest.hexdigest(), checkpoints, spec.run.global_batch_size),
        spec.run.global_batch_size, spec.run.seq_len, state.pos, state.batches, state.tokens, out.dtype.name,
        CHECKPOINT, tuple(sources), tuple(records), spec.run.lr is not None,
        spec.model_dump(mode="json", by_alias=True), dict(variant or {"name": "", "values": {}}))
