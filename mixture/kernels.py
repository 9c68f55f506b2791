"""The mixing kernels: which source each position of a mixed phase draws from.

For source ``s`` the target after clock ``u`` is ``W_s(u) = lag0_s + integral_0^u w_s``, where the clock
counts positions (sample-unit mixes) or tokens (token-unit mixes) from the start of the phase, ``w_s`` ramps
from the previous mix ``p`` to this one ``q`` (linear or cosine) and then stays at ``q``, and ``lag0``
carries the previous phase's rounding error so that guarantees hold across phase boundaries.

Both algorithms are **earliest-deadline-first (EDF) apportionment**: a source's next draw is *released*
once taking it would not put the source a whole draw ahead of its target, and *due* when the target
reaches the draw; among released draws the earliest deadline takes the position. Release and deadline
are exact inverses of ``W_s`` (:func:`_inverse`), computed once per draw, not linear extrapolations of the
current weight (which mis-ordered deadlines when several weights fall and rise at once). For unit jobs
with release times and deadlines EDF is optimal (it meets every deadline whenever any order does), and
the targets admit an order within one sample (Tijdeman's chairman assignment theorem), so:

* :func:`mix_samples` (**sample-unit**, two levels per global batch): (1) each source gets ``floor`` or
  ``ceil`` of its batch target, the ceilings going to the sources furthest behind their cumulative target
  (largest remainder with carried lag, as in Pfair scheduling) and never leaving a source a whole sample
  off its cumulative target; (2) inside the batch EDF orders those counts. Every prefix is within one
  sample per source of its target, every global batch within one sample per source of its batch target.
* :func:`mix_tokens` (**token-unit**, per position): the clock moves by the drawn sample's tokens; every
  source's tokens stay within one of its samples of its target at every prefix.

Megatron-LM's static blend picks the largest deficit per position; for three or more sources that
exceeds one sample at some prefixes (we measured 1.1), and it knows neither ramps nor tokens.
The loop is inherently sequential (each choice moves every deficit), so it is compiled with numba; the
chunked driver in :mod:`mixture.compiler` keeps memory bounded at any schedule length. Each kernel also
writes what the driver stores per chunk (global source ids, tokens per global batch, a checkpoint of
draws every ``every`` positions), so the order is read once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

LINEAR, COSINE = 0, 1
_NEWTON_STEPS = 60


class Curve(NamedTuple):
    """The targets of a mixed phase: weights ramp from ``p`` to ``q`` over ``ramp`` clock units.

    Attributes:
        p: Previous mix, per source (equal to ``q`` when the phase does not ramp).
        q: This phase's mix, per source.
        lag0: Target minus realised at the phase start (carried rounding error), per source.
        tie: Per-source tie-break rank (derived from names, so independent of file order).
        ramp: Ramp length in clock units (0: no ramp).
        shape: ``LINEAR`` or ``COSINE``.
    """

    p: NDArray[np.float64]
    q: NDArray[np.float64]
    lag0: NDArray[np.float64]
    tie: NDArray[np.int64]
    ramp: float
    shape: int


class Chunk(NamedTuple):
    """One call's inputs and outputs besides the curve; counters carry over from chunk to chunk.

    Attributes:
        look: ``look[s, j]``: budget tokens of source s's j-th draw counted from this chunk's start.
        gid: Global source id written to ``out`` for each of the phase's sources.
        drawn: Draws per source since the phase start; updated.
        realised: Budget tokens per source since the phase start; updated.
        clock: ``[positions, tokens]`` since the phase start; updated.
        limits: ``[stop positions (-1: none), stop tokens (inf: none), global batch size, every]``.
        out: Global source id per position of this chunk.
        batch_tokens: Tokens of each global batch of this chunk.
        ckpt: Draws per source (since the phase start) at every ``every`` positions of the phase.
        release: Per source, the clock after which its next draw is released (NaN at the phase start:
            computed then); carried from chunk to chunk, so every draw's window is computed once, from the
            previous one, whatever the chunking.
        deadline: Per source, the clock by which its next draw is due; carried like ``release``.
    """

    look: NDArray[np.int64]
    gid: NDArray[np.int64]
    drawn: NDArray[np.int64]
    realised: NDArray[np.float64]
    clock: NDArray[np.float64]
    limits: NDArray[np.float64]
    out: NDArray[np.uint8]
    batch_tokens: NDArray[np.int64]
    ckpt: NDArray[np.int64]
    release: NDArray[np.float64]
    deadline: NDArray[np.float64]


@njit(cache=True, inline="always")
def _weight(p: float, q: float, ramp: float, shape: int, u: float) -> float:
    if ramp <= 0.0 or u >= ramp:
        return q
    x = u / ramp
    r = x if shape == LINEAR else 0.5 * (1.0 - math.cos(math.pi * x))
    return p + (q - p) * r


@njit(cache=True, inline="always")
def _integral(p: float, q: float, ramp: float, shape: int, u: float) -> float:
    """integral_0^u of the weight: ramp from p to q over ``ramp`` clock units, then q."""
    if ramp <= 0.0:
        return q * u
    x = min(u, ramp) / ramp
    big_r = 0.5 * x * x if shape == LINEAR else 0.5 * (x - math.sin(math.pi * x) / math.pi)
    inside = p * x * ramp + (q - p) * ramp * big_r
    return inside + q * max(u - ramp, 0.0)


@njit(cache=True)
def _inverse_ramp(p: float, q: float, ramp: float, shape: int, y: float, after: float) -> float:
    """Clock inside the ramp (``0 < y <= ramp * (p + q) / 2``) at which the integral reaches ``y``.

    ``after`` is a clock known to lie at or before the answer (the previous draw's deadline, or 0); a
    cosine ramp starts its safeguarded Newton iteration there, which takes one or two steps.
    """
    a = (q - p) / (2.0 * ramp)
    u = 2.0 * y / (p + math.sqrt(max(p * p + 4.0 * a * y, 0.0)))  # the linear ramp's root, stably
    if shape == LINEAR:
        return min(u, ramp)
    lo, hi = min(max(after, 0.0), ramp), ramp
    if after > 0.0:
        u = after
    u = min(max(u, lo), hi)
    tol = 1e-13 * max(ramp, 1.0)  # in clock units
    for _ in range(_NEWTON_STEPS):
        f = _integral(p, q, ramp, shape, u) - y
        w = _weight(p, q, ramp, shape, u)
        if abs(f) <= tol * w or f == 0.0:
            return u
        if f > 0.0:
            hi = u
        else:
            lo = u
        nxt = u - f / w if w > 0.0 else -1.0
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if hi - lo <= tol:
            return hi
        u = nxt
    return u


@njit(cache=True, inline="always")
def _inverse(p: float, q: float, ramp: float, shape: int, y: float, after: float = 0.0) -> float:
    """Smallest clock at which the integral of the weight reaches ``y`` (``inf`` if it never does).

    ``after``: a clock at or before the answer (speeds up a cosine ramp; the result depends on it only
    in the last bits, so callers pass the same ``after`` for the same draw whatever the chunking).
    """
    if p <= 0.0 and q <= 0.0:
        return np.inf  # a source without weight in the phase is never due and never released
    if y <= 0.0:
        return 0.0
    base = 0.0
    if ramp > 0.0:
        top = 0.5 * ramp * (p + q)
        if y <= top:
            return _inverse_ramp(p, q, ramp, shape, y, after)
        y -= top
        base = ramp
    if q <= 0.0:
        return np.inf
    return base + y / q


@njit(cache=True, inline="always")
def _better(s: int, released: bool, due: float, best: int, best_released: bool, best_due: float,
            tie: NDArray[np.int64]) -> bool:
    """EDF order: released before unreleased, then earlier deadline, then the name-derived tie rank."""
    if best < 0 or (released and not best_released):
        return True
    if released != best_released:
        return False
    return due < best_due or (due == best_due and tie[s] < tie[best])


@njit(cache=True, inline="always")
def _edf_pick(release: NDArray[np.float64], deadline: NDArray[np.float64], tie: NDArray[np.int64],
              now: float) -> int:
    """Earliest deadline among released sources (``release < now``); if none is released (float noise at
    a boundary), the earliest deadline overall."""
    best, best_released, best_due = -1, False, 0.0
    for s in range(release.shape[0]):
        released = release[s] < now
        if _better(s, released, deadline[s], best, best_released, best_due, tie):
            best, best_released, best_due = s, released, deadline[s]
    return best


@njit(cache=True)
def _batch_bounds(c: Curve, ua: float, batch: int, lo: NDArray[np.int64], hi: NDArray[np.int64]) -> None:
    """Each source's count in the global batch over clock ``[ua, ua + batch)``: ``lo[s]`` to ``hi[s]``.

    ``floor`` or ``ceil`` of its batch target (just the target when that is a whole number).
    """
    for s in range(lo.shape[0]):
        share = (_integral(c.p[s], c.q[s], c.ramp, c.shape, ua + batch)
                 - _integral(c.p[s], c.q[s], c.ramp, c.shape, ua))
        lo[s] = max(math.floor(share + 1e-9), 0)
        hi[s] = lo[s] + 1 if lo[s] < share - 1e-9 else lo[s]


@njit(cache=True, inline="always")
def _pick_in_batch(release: NDArray[np.float64], deadline: NDArray[np.float64], tie: NDArray[np.int64],
                   now: float, end: float, count: NDArray[np.int64], lo: NDArray[np.int64],
                   hi: NDArray[np.int64]) -> tuple[int, float]:
    """EDF among sources below their batch ceiling; a source below its batch floor is due by ``end``.

    Also returns the earliest deadline of all sources, from the same pass (a second loop over the
    sources for it cost 5-9% of the kernel on a static 3-source mix).
    """
    best, best_released, best_due = -1, False, 0.0
    least = deadline[0]
    for s in range(release.shape[0]):
        least = min(least, deadline[s])
        if count[s] >= hi[s]:
            continue
        due = deadline[s] if count[s] >= lo[s] else min(deadline[s], end)
        released = release[s] < now
        if _better(s, released, due, best, best_released, best_due, tie):
            best, best_released, best_due = s, released, due
    return best, least


@njit(cache=True, inline="always")
def _sample_window(c: Curve, s: int, j: float) -> tuple[float, float]:
    """(release, deadline) clock of source s's draw number ``j`` (1-based) in a sample-unit mix."""
    rel = _inverse(c.p[s], c.q[s], c.ramp, c.shape, j - 1.0 - c.lag0[s])
    due = _inverse(c.p[s], c.q[s], c.ramp, c.shape, j - c.lag0[s])
    return rel, due


@njit(cache=True, inline="always")
def _record(ch: Chunk, s: int, t: int, written: int, every: int) -> None:
    """Write position ``written`` of the chunk as a draw of source s costing ``t`` tokens.

    Chunks start at multiples of ``every`` positions of the phase, so checkpoint rows align.
    """
    if written & (every - 1) == 0:
        row = written // every
        for i in range(ch.drawn.shape[0]):
            ch.ckpt[row, i] = ch.drawn[i]
    ch.out[written] = ch.gid[s]
    ch.drawn[s] += 1
    ch.realised[s] += t


@njit(cache=True, inline="always")
def _look_sum(look: NDArray[np.int64], s: int, a: int, b: int, last: int) -> int:
    """Tokens of source s's draws ``a`` to ``b - 1`` of the chunk (columns past ``last`` repeat it)."""
    if a >= last:
        return (b - a) * look[s, last]
    total = 0
    for j in range(a, min(b, last)):
        total += look[s, j]
    return total + max(b - last, 0) * look[s, last]


@njit(cache=True, nogil=True, error_model="numpy")  # every division is guarded: no zero checks
def mix_samples(c: Curve, ch: Chunk) -> int:
    """Sample-unit EDF apportionment, per global batch: floor/ceil counts with carried lag, then EDF.

    Fills ``ch.out`` with up to ``len(ch.out)`` positions (whole global batches) and stops at the stop
    rule in ``ch.limits``; returns the positions written.
    """
    k = c.q.shape[0]
    batch, every = int(ch.limits[2]), int(ch.limits[3])
    start = ch.drawn.copy()
    release, deadline = ch.release, ch.deadline
    for s in range(k):
        if np.isnan(deadline[s]):  # the phase's first draw
            release[s], deadline[s] = _sample_window(c, s, ch.drawn[s] + 1.0)
    # after[s]: the deadline source s's next draw after the pending one will get, computed one draw early
    # (same arguments as when it is needed) so the division or Newton iteration is off the critical path.
    after = np.empty(k)
    for s in range(k):
        after[s] = _inverse(c.p[s], c.q[s], c.ramp, c.shape, (ch.drawn[s] + 1) + 1.0 - c.lag0[s], deadline[s])
    lo, hi, count = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    look, last = ch.look, ch.look.shape[1] - 1
    pos = int(ch.clock[0])
    written = 0
    while written + batch <= ch.out.shape[0]:
        if (ch.limits[0] >= 0 and pos >= ch.limits[0]) or ch.clock[1] >= ch.limits[1]:
            break
        _batch_bounds(c, float(pos), batch, lo, hi)
        count[:] = 0
        end = float(pos + batch)
        for _ in range(batch):
            now = pos + 1.0
            s, least = _pick_in_batch(release, deadline, c.tie, now, end, count, lo, hi)
            # The batch bounds would break the prefix bound (plain EDF picks a source due now, or s is not
            # released): the prefix bound wins. Plain EDF only matters when some deadline has come or s is
            # unreleased; otherwise the override cannot fire and EDF is not computed.
            if not release[s] < now or least <= now:
                e = _edf_pick(release, deadline, c.tie, now)
                if s != e and (deadline[e] <= now or not release[s] < now):
                    s = e
            if written & (every - 1) == 0:  # chunks start at multiples of every: checkpoint rows align
                ch.ckpt[written // every] = ch.drawn
            ch.out[written] = ch.gid[s]
            ch.drawn[s] += 1
            # Draw j's deadline is draw j + 1's release (same float expression): one inverse per draw.
            release[s] = deadline[s]
            deadline[s] = after[s]
            after[s] = _inverse(c.p[s], c.q[s], c.ramp, c.shape, (ch.drawn[s] + 1) + 1.0 - c.lag0[s], after[s])
            count[s] += 1
            pos += 1
            written += 1
        # The batch's tokens, per source: its draws' sizes (the same integers, summed out of the pick loop;
        # exact in float64, so realised is what adding them one by one gave).
        batch_tok = 0
        for s in range(k):
            j = ch.drawn[s] - start[s]
            t = _look_sum(look, s, j - count[s], j, last)
            ch.realised[s] += t
            batch_tok += t
        ch.batch_tokens[written // batch - 1] = batch_tok
        ch.clock[1] += batch_tok
    ch.clock[0] = pos
    return written


@njit(cache=True, inline="always")
def _token_window(c: Curve, s: int, have: float, t: int) -> tuple[float, float]:
    """(release, deadline) token clock of source s's next draw of ``t`` tokens, ``have`` tokens drawn.

    Released once the clock after the draw passes where the target reaches ``have``; due where the target
    reaches ``have + t``.
    """
    at = _inverse(c.p[s], c.q[s], c.ramp, c.shape, have - c.lag0[s])
    due = _inverse(c.p[s], c.q[s], c.ramp, c.shape, have + t - c.lag0[s])
    return at - t, due


@njit(cache=True, nogil=True, error_model="numpy")  # every division is guarded
def mix_tokens(c: Curve, ch: Chunk) -> int:
    """Token-unit EDF apportionment, per position; the clock moves by each drawn sample's tokens.

    Fills ``ch.out`` with up to ``len(ch.out)`` positions (whole global batches) and stops at the first
    batch boundary past the stop rule in ``ch.limits``; returns the positions written. Every draw must
    cost at least one token (the caller checks; else the clock would never reach a token stop).
    """
    k = c.q.shape[0]
    batch, every = int(ch.limits[2]), int(ch.limits[3])
    start = ch.drawn.copy()
    release, deadline = ch.release, ch.deadline
    for s in range(k):
        if np.isnan(deadline[s]):  # the phase's first draw
            release[s], deadline[s] = _token_window(c, s, ch.realised[s], ch.look[s, 0])
    # after[s]: the deadline of the draw after the pending one, computed one draw early with the same
    # arguments it gets when it is needed (the realised tokens then: these two sizes added in order).
    cols = ch.look.shape[1]
    after = np.full(k, np.nan)
    for s in range(k):
        if cols > 1:
            after[s] = _inverse(c.p[s], c.q[s], c.ramp, c.shape,
                                (ch.realised[s] + ch.look[s, 0]) + ch.look[s, 1] - c.lag0[s], deadline[s])
    pos = int(ch.clock[0])
    clock = ch.clock[1]
    written = 0
    while written + batch <= ch.out.shape[0]:
        if (ch.limits[0] >= 0 and pos >= ch.limits[0]) or clock >= ch.limits[1]:
            break
        batch_tok = 0
        for _ in range(batch):
            s = _edf_pick(release, deadline, c.tie, clock)
            j = ch.drawn[s] - start[s]
            t = ch.look[s, j]
            _record(ch, s, t, written, every)
            if j + 1 >= ch.look.shape[1]:
                raise IndexError("mix_tokens: token lookahead exhausted")
            # The target reaches the tokens drawn so far where it reached the last draw's deadline.
            reached = deadline[s]
            t_next = ch.look[s, j + 1]
            release[s] = reached - t_next
            deadline[s] = after[s]
            if j + 2 < cols:  # else this chunk cannot take another draw of s (that would raise above)
                after[s] = _inverse(c.p[s], c.q[s], c.ramp, c.shape,
                                    (ch.realised[s] + t_next) + ch.look[s, j + 2] - c.lag0[s], after[s])
            batch_tok += t
            clock += t
            pos += 1
            written += 1
        ch.batch_tokens[written // batch - 1] = batch_tok
    ch.clock[0] = pos
    ch.clock[1] = clock
    return written


@njit(cache=True)
def sample_state(c: Curve, drawn: NDArray[np.int64], release: NDArray[np.float64],
                 deadline: NDArray[np.float64]) -> None:
    """The (release, deadline) :func:`mix_samples` holds once each source has ``drawn`` draws, written in
    place (past a ramp they depend on ``drawn`` alone; inside one, only up to the last bits)."""
    for s in range(drawn.shape[0]):
        release[s], deadline[s] = _sample_window(c, s, drawn[s] + 1.0)


@njit(cache=True, nogil=True, parallel=True)
def mix_samples_chunks(c: Curve, look: NDArray[np.int64], gid: NDArray[np.int64], drawn: NDArray[np.int64],
                       realised: NDArray[np.float64], clock: NDArray[np.float64], limits: NDArray[np.float64],
                       out: NDArray[np.uint8], batch_tokens: NDArray[np.int64], ckpt: NDArray[np.int64],
                       release: NDArray[np.float64], deadline: NDArray[np.float64],
                       written: NDArray[np.int64]) -> None:
    """:func:`mix_samples` over independent chunks on every thread, row ``i`` of each array being chunk
    ``i``'s :class:`Chunk` (``gid`` and ``limits`` shared). Each chunk is a pure function of its own rows,
    so the result is the same for any number of threads.

    The small per-chunk state (draws, tokens, clock, release, deadline: a few bytes a row) is mixed in
    private copies and written back once: adjacent rows share a cache line, and two threads updating them
    at every position made each other's caches miss (2 threads took 3.4x the CPU time of one, 2x the wall).
    """
    for i in prange(out.shape[0]):
        d, r, t = drawn[i].copy(), realised[i].copy(), clock[i].copy()
        rel, due = release[i].copy(), deadline[i].copy()
        written[i] = mix_samples(c, Chunk(look[i], gid, d, r, t, limits, out[i], batch_tokens[i], ckpt[i],
                                          rel, due))
        drawn[i], realised[i], clock[i] = d, r, t
        release[i], deadline[i] = rel, due
