"""The mixing kernels: which source each position of a mixed phase draws from.

Algorithm: **earliest-deadline-first apportionment** against the integral of the (possibly ramped) mix.
For source ``s`` the target after clock ``u`` is ``W_s(u) = lag0_s + integral_0^u w_s``, where the clock
counts positions (sample-unit mixes) or tokens (token-unit mixes) from the start of the phase and
``lag0`` carries the previous phase's rounding error so that guarantees hold across phase boundaries.

* Token-unit mixes, per position: every source's next draw has a known size ``t_s`` (the within-source
  order is fixed in advance), and is *due* when its target reaches ``R_s + t_s``; the source whose draw
  is due soonest, ``(R_s + t_s - W_s(T)) / w_s(T)`` clock units ahead, takes the position. This keeps each
  source's tokens within one of its samples of its target at every prefix (tested with hypothesis).
* Sample-unit mixes, per global batch, two levels: (1) each source gets ``floor`` or ``ceil`` of its
  batch target, the ceilings going to the sources furthest behind their cumulative target (largest
  remainder with carried lag, as in Pfair scheduling), so every global batch is within one sample per
  source of its target; (2) inside the batch, earliest-deadline-first orders those counts so that every
  prefix stays within one sample of the target.

Megatron-LM's static blend picks the largest deficit per position; for three or more sources that
exceeds one sample at some prefixes (we measured 1.1), and it knows neither ramps nor tokens.
The loop is inherently sequential (each choice moves every deficit), so it is compiled with numba; the
chunked driver in :mod:`mixture.compiler` keeps memory bounded at any schedule length.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

LINEAR, COSINE = 0, 1
_EPS = 1e-12


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
def mix_chunk(
    token_unit: bool, batch: int, max_positions: int, p: NDArray[np.float64], q: NDArray[np.float64],
    ramp: float, shape: int, lag0: NDArray[np.float64], tie: NDArray[np.int64],
    tok: NDArray[np.int64], state_pos: NDArray[np.int64], state_tok: NDArray[np.float64],
    drawn: NDArray[np.int64], realised_tok: NDArray[np.float64], stop_pos: int, stop_tok: float,
    out: NDArray[np.uint8],
) -> int:
    """Fill ``out`` with source ids for up to ``max_positions`` positions (whole global batches).

    Args:
        token_unit: Weights are token shares (else sample shares).
        batch: Global batch size B; the phase may stop only at multiples of B.
        max_positions: Capacity of this chunk (a multiple of B).
        p, q: Previous and current mix (per source); ``ramp`` clock units of ``shape`` between them.
        lag0: Target minus realised at the phase start (carried rounding error), per source.
        tie: Per-source tie-break rank (derived from names, so independent of file order).
        tok: ``tok[s, j]`` is the budget tokens of source s's j-th draw in this chunk.
        state_pos: [positions since phase start]; updated.
        state_tok: [tokens since phase start]; updated.
        drawn: Draws per source since phase start; updated (indexes ``tok`` relative to chunk start via
            the caller's offsets: the caller passes ``tok`` starting at each source's draw at chunk start).
        realised_tok: Tokens per source since phase start; updated.
        stop_pos: Stop at this many positions since phase start (a multiple of B), or -1.
        stop_tok: Stop at the first batch boundary where tokens since phase start >= this (or inf).
        out: Output buffer (length >= max_positions).

    Returns:
        Positions written.
    """
    k = p.shape[0]
    start_drawn = drawn.copy()
    pos = state_pos[0]
    clock_tok = state_tok[0]
    rem = np.zeros(k, dtype=np.int64)
    share = np.zeros(k, dtype=np.float64)  # this batch's target per source (level 1)
    target_end = np.zeros(k, dtype=np.float64)  # integral of the weights up to the batch's end
    written = 0
    while written < max_positions:
        if stop_pos >= 0 and pos >= stop_pos:
            break
        if clock_tok >= stop_tok:
            break
        if not token_unit:
            # Level 1: this batch's count per source, floor or ceil of its batch target.
            ua = float(pos)
            ub = ua + batch
            total_floor = 0
            for s in range(k):
                target_end[s] = _integral(p[s], q[s], ramp, shape, ub)
                share[s] = target_end[s] - _integral(p[s], q[s], ramp, shape, ua)
                rem[s] = max(math.floor(share[s] + 1e-9), 0)
                total_floor += rem[s]
            extra = batch - total_floor
            while extra != 0:
                best = -1
                best_key = 0.0
                for s in range(k):
                    if extra > 0 and not rem[s] < share[s] - 1e-9:  # rem + 1 must stay below share + 1
                        continue
                    if extra < 0 and rem[s] == 0:
                        continue
                    behind = (drawn[s] + rem[s]) - (lag0[s] + target_end[s])
                    key = behind if extra > 0 else -behind
                    if best < 0 or key < best_key or (key == best_key and tie[s] < tie[best]):
                        best, best_key = s, key
                if best < 0:  # float noise left no eligible source: widen to all positive weights
                    for s in range(k):
                        if q[s] > 0.0 or p[s] > 0.0:
                            best = s
                            break
                rem[best] += 1 if extra > 0 else -1
                extra += -1 if extra > 0 else 1
        for _ in range(batch):
            # Earliest deadline first among released draws (those that would not run ahead of the
            # target); if none is released, the earliest deadline overall.
            best = -1
            best_slack = 0.0
            best_released = False
            for s in range(k):
                if token_unit:
                    w = _weight(p[s], q[s], ramp, shape, clock_tok)
                    if w <= _EPS and q[s] <= _EPS:
                        continue
                    t = tok[s, drawn[s] - start_drawn[s]]
                    target = lag0[s] + _integral(p[s], q[s], ramp, shape, clock_tok)
                    released = realised_tok[s] < lag0[s] + _integral(p[s], q[s], ramp, shape, clock_tok + t)
                    slack = (realised_tok[s] + t - target) / max(w, _EPS)
                else:
                    if rem[s] == 0:
                        continue
                    u = pos + 1.0
                    w = _weight(p[s], q[s], ramp, shape, u)
                    target = lag0[s] + _integral(p[s], q[s], ramp, shape, u)
                    released = drawn[s] < target
                    slack = (drawn[s] + 1 - target) / max(w, _EPS)
                better = best < 0 or (released and not best_released)
                if not better and released == best_released:
                    better = slack < best_slack or (slack == best_slack and tie[s] < tie[best])
                if better:
                    best, best_slack, best_released = s, slack, released
            t = tok[best, drawn[best] - start_drawn[best]]
            out[written] = best
            drawn[best] += 1
            realised_tok[best] += t
            clock_tok += t
            pos += 1
            written += 1
            if not token_unit:
                rem[best] -= 1
    state_pos[0] = pos
    state_tok[0] = clock_tok
    return written
