"""Planned against realised, per phase, source and global batch, for a compiled schedule.

*Planned* is the target the compiler mixes towards: for each source of a phase, the integral of its
(possibly ramped) weight over the phase's clock (positions for sample-unit mixes, tokens for token-unit
mixes) plus the rounding the previous mixed phase carried over, exactly as ``mixture/kernels.py`` defines
it. *Realised* is what the order holds, counted from the schedule's files rather than taken from the
manifest: a one-source phase is analytic (every position is that source; tokens come from
``batch_tokens.npy``), and a mixed phase is counted from ``order.bin`` one global batch at a time
(``bincount`` over whole-batch chunks; a source's tokens are the running sum over its draws in order,
priced as ``Schedule.tokens`` prices them). The paper's 1B recipe (1.7B positions, a 16M-position mixed
cooldown) takes about a second; memory is bounded by the chunk (4M positions) and the number of plotted
points, never the schedule's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError
from mixture.permute import permute
from mixture.schedule import Schedule

_CHUNK = 1 << 22


def target_integral(p: NDArray[np.float64], q: NDArray[np.float64], ramp: float, shape: str,
                    u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Integral of each source's weight from clock 0 to each ``u``: a ramp from ``p`` to ``q``, then ``q``.

    Returns:
        Array ``[len(u), len(q)]`` (the vectorised form of ``mixture.kernels._integral``).
    """
    u = np.asarray(u, np.float64)[:, None]
    if ramp <= 0:
        return u * q[None, :]
    x = np.minimum(u, ramp) / ramp
    big_r = 0.5 * x * x if shape == "linear" else 0.5 * (x - np.sin(np.pi * x) / np.pi)
    return p * x * ramp + (q - p) * ramp * big_r + q * np.maximum(u - ramp, 0.0)


@dataclass
class PhasePlan:
    """A phase as the report needs it (positions rounded to whole batches, as the compiler writes them)."""

    name: str
    unit: str
    start: int
    stop: int
    batch: int
    mixed: bool
    names: list[str]
    ids: list[int]
    p: NDArray[np.float64]
    q: NDArray[np.float64]
    ramp: float
    shape: str
    lag0: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    start_batch: int = 0
    """Global batch index of the phase's first batch (from the schedule's batch-start table)."""

    @property
    def num_batches(self) -> int:
        """Global batches in the phase."""
        return (self.stop - self.start) // self.batch


@dataclass
class PhaseScan:
    """Cumulative counts of one phase at chosen batch boundaries (local batch indices ``edges``).

    ``samples``, ``tokens`` and ``target`` are ``[len(edges), k]`` (``target`` in the phase's unit);
    ``max_lag``, ``min_share`` and ``max_share`` are per segment between edges, over every batch boundary
    and every batch inside (shares in the phase's unit); ``largest`` is each source's largest sample.
    """

    plan: PhasePlan
    edges: NDArray[np.int64]
    samples: NDArray[np.int64]
    tokens: NDArray[np.int64]
    target: NDArray[np.float64]
    max_lag: NDArray[np.float64]
    min_share: NDArray[np.float64]
    max_share: NDArray[np.float64]
    largest: NDArray[np.int64]

    def realised(self) -> NDArray[np.float64]:
        """Cumulative realised amounts in the phase's unit."""
        return (self.tokens if self.plan.unit == "tokens" else self.samples).astype(np.float64)


def phase_plans(schedule: Schedule) -> list[PhasePlan]:
    """Every phase with its sources, weights, ramp and carried rounding, as the compiler recorded them."""
    ids = {n: i for i, n in enumerate(schedule.source_names)}
    plans = []
    for rec, seg in zip(schedule.phases, schedule.segments):
        names = list(rec.sources) or [str(rec.source)]
        q = np.array([rec.weights.get(n, 0.0) for n in names])
        ramp = rec.ramp
        p = np.array([ramp.weights_from.get(n, 0.0) for n in names]) if ramp else q.copy()
        plans.append(PhasePlan(rec.name, rec.unit, rec.start, rec.stop, seg.batch_size, rec.mixed,
                               names, [ids[n] for n in names], p, q, ramp.length if ramp else 0.0,
                               ramp.shape if ramp else "linear",
                               np.array([rec.lag0.get(n, 0.0) for n in names]) if rec.mixed else np.zeros(0),
                               seg.first_batch))
    return plans


def scan_phase(schedule: Schedule, plan: PhasePlan, edges: NDArray[np.int64]) -> PhaseScan:
    """Count a phase at the local batch boundaries ``edges`` (sorted, unique, from 0 to its batches)."""
    if not plan.mixed:
        return _single(schedule, plan, edges)
    return _Mixed(schedule, plan, edges).run()


def _single(schedule: Schedule, plan: PhasePlan, edges: NDArray[np.int64]) -> PhaseScan:
    bt = schedule.batch_tokens()
    tokens = (bt[plan.start_batch + edges] - bt[plan.start_batch])[:, None].astype(np.int64)
    samples = (edges * plan.batch)[:, None].astype(np.int64)
    target = (tokens if plan.unit == "tokens" else samples).astype(np.float64)
    segs = max(len(edges) - 1, 0)
    ones = np.ones((segs, 1))
    return PhaseScan(plan, edges, samples, tokens, target, np.zeros((segs, 1)), ones, ones.copy(),
                     np.zeros(1, np.int64))


class _Mixed:
    """The batch-by-batch count of a mixed phase (state carried across whole-batch chunks)."""

    def __init__(self, schedule: Schedule, plan: PhasePlan, edges: NDArray[np.int64]) -> None:
        self.s, self.plan, self.edges = schedule, plan, edges
        k = len(plan.names)
        rec = next(r for r in schedule.phases if r.name == plan.name)
        self.cursor = np.array([rec.cursors[n] for n in plan.names], np.int64)
        # Global source id -> index in this phase's sources (-1: not in the phase).
        self.lookup = np.full(max(len(schedule.sources), 256), -1, np.int64)
        self.lookup[plan.ids] = np.arange(k)
        self.drawn, self.tok = np.zeros(k, np.int64), np.zeros(k, np.int64)
        self.clock = 0.0
        self.largest = np.zeros(k, np.int64)
        segs = max(len(edges) - 1, 0)
        self.max_lag = np.zeros((segs, k))
        self.min_share, self.max_share = np.full((segs, k), np.inf), np.full((segs, k), -np.inf)
        self.at_samples, self.at_tokens = np.zeros((len(edges), k), np.int64), np.zeros((len(edges), k), np.int64)
        self.at_target = np.zeros((len(edges), k))
        self.at_target[0] = plan.lag0 if plan.lag0.size else 0.0

    def run(self) -> PhaseScan:
        batch = self.plan.batch
        chunk = max(1, _CHUNK // batch) * batch
        start, length = self.plan.start, self.plan.stop - self.plan.start
        for a in range(0, length, chunk):
            self._chunk(a // batch, self.s.source_ids(start + a, start + min(a + chunk, length)))
        shares = (self.min_share, self.max_share)
        for arr in shares:  # segments without batches (cannot happen with unique edges) read as NaN
            arr[~np.isfinite(arr)] = np.nan
        return PhaseScan(self.plan, self.edges, self.at_samples, self.at_tokens, self.at_target, self.max_lag,
                         self.min_share, self.max_share, self.largest)

    def _source_tokens(self, j: int, count: int) -> NDArray[np.int64]:
        """Budget tokens of source j's next ``count`` draws, in draw order."""
        name = self.plan.names[j]
        pricing = self.s.pricing()[name]
        if pricing.constant is not None:
            return np.full(count, pricing.constant, np.int64)
        rec = self.s.sources[self.plan.ids[j]]
        ranks = np.arange(count, dtype=np.int64) + self.cursor[j] + self.drawn[j]
        return pricing.tokens_of(permute(ranks, rec.num_samples, rec.block, rec.key)).astype(np.int64)

    def _chunk(self, first_batch: int, ids: NDArray) -> None:
        batch, k = self.plan.batch, len(self.plan.names)
        nb = len(ids) // batch
        local = self.lookup[ids]
        if local.size and local.min() < 0:
            raise MixtureError(f"{self.s.path}: the order holds a source outside phase {self.plan.name!r}'s mix",
                               hint="the schedule directory is damaged: compile it again")
        per_batch = np.bincount(np.arange(len(ids)) // batch * k + local, minlength=nb * k).reshape(nb, k)
        cum = np.cumsum(per_batch, axis=0)  # draws since chunk start, at each batch end
        tok_cum = np.zeros((nb, k), np.int64)
        for j in range(k):
            t = self._source_tokens(j, int(cum[-1, j]))
            if t.size:
                self.largest[j] = max(self.largest[j], int(t.max()))
                running = np.concatenate([[0], np.cumsum(t)])
                tok_cum[:, j] = running[cum[:, j]]
        samples = cum + self.drawn
        tokens = tok_cum + self.tok
        self._record(first_batch, samples, tokens)
        self.drawn, self.tok = samples[-1].copy(), tokens[-1].copy()

    def _record(self, first_batch: int, samples: NDArray[np.int64], tokens: NDArray[np.int64]) -> None:
        """Targets at each batch end of a chunk, then lag and per-batch share reduced per segment."""
        plan = self.plan
        token_unit = plan.unit == "tokens"
        ends = np.arange(first_batch + 1, first_batch + 1 + len(samples))
        clock = tokens.sum(axis=1).astype(np.float64) if token_unit else (ends * plan.batch).astype(np.float64)
        lag0 = plan.lag0 if plan.lag0.size else np.zeros(len(plan.names))
        target = lag0 + target_integral(plan.p, plan.q, plan.ramp, plan.shape, clock)
        realised = (tokens if token_unit else samples).astype(np.float64)
        prev_real = np.vstack([self.tok if token_unit else self.drawn, realised[:-1]])
        prev_clock = np.concatenate([[self.clock], clock[:-1]])
        share = (realised - prev_real) / np.maximum(clock - prev_clock, 1e-12)[:, None]
        lag = np.abs(realised - target)
        seg = np.searchsorted(self.edges, ends - 1, side="right") - 1
        uniq, first = np.unique(seg, return_index=True)
        self.max_lag[uniq] = np.maximum(self.max_lag[uniq], np.maximum.reduceat(lag, first, axis=0))
        self.min_share[uniq] = np.minimum(self.min_share[uniq], np.minimum.reduceat(share, first, axis=0))
        self.max_share[uniq] = np.maximum(self.max_share[uniq], np.maximum.reduceat(share, first, axis=0))
        rows = np.searchsorted(self.edges, ends)
        hit = (rows < len(self.edges)) & (self.edges[np.minimum(rows, len(self.edges) - 1)] == ends)
        self.at_samples[rows[hit]], self.at_tokens[rows[hit]] = samples[hit], tokens[hit]
        self.at_target[rows[hit]] = target[hit]
        self.clock = float(clock[-1])


def scan_phases(schedule: Schedule, plans: list[PhasePlan],
                edges: dict[str, NDArray[np.int64]]) -> dict[str, PhaseScan]:
    """Scan every phase that holds batches at its ``edges`` (each mixed phase starts from the rounding the
    compiler recorded it carried over)."""
    return {plan.name: scan_phase(schedule, plan, edges[plan.name]) for plan in plans if plan.num_batches}


def zoom_edges(num_batches: int, max_points: int) -> NDArray[np.int64]:
    """Every batch boundary, or ``max_points`` evenly spaced ones (always 0 and the end)."""
    if num_batches <= max_points:
        return np.arange(num_batches + 1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, num_batches, max_points + 1)).astype(np.int64))


def epochs_row(draws: int, cursor: int, num_samples: int) -> dict[str, float | int]:
    """Epochs a phase reads of a source, where the source stands after it, and the draws that re-read a
    sample (draw ``r`` of a source reads a sample again when ``r >= num_samples``)."""
    end = cursor + draws
    return {"epochs": draws / num_samples, "epochs_at_end": end / num_samples,
            "repeated": max(0, end - max(cursor, num_samples))}
