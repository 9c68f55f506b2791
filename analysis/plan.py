"""The numbers of `mixture report`: planned against realised for a compiled schedule, as plain JSON data.

:func:`analyse_schedule` scans the schedule once (see :mod:`analysis.realised`) at the batch boundaries it
needs: an overview of the whole run in at most ``max_points`` bins (phase boundaries always among them), a
close-up of every mixed phase (every batch, or ``max_points`` bins), and any batches a run logged, so that
a run's consumption can be checked against the schedule exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analysis.realised import PhasePlan, PhaseScan, epochs_row, phase_plans, scan_phases, zoom_edges
from mixture.schedule import Schedule

MAX_POINTS = 2000


class Analysis:
    """Scans of every phase of a schedule, with lookups by global batch."""

    def __init__(self, schedule: Schedule, max_points: int = MAX_POINTS, extra_batches: Sequence[int] = ()) -> None:
        self.schedule = schedule
        self.plans = phase_plans(schedule)
        num_batches = schedule.manifest.num_batches
        bounds = [b for p in self.plans for b in (p.start_batch, p.start_batch + p.num_batches)]
        self.overview = zoom_edges(num_batches, max_points)
        self.overview = np.unique(np.concatenate([self.overview, np.asarray(bounds, np.int64)]))
        self.extra = np.unique(np.clip(np.asarray(list(extra_batches), np.int64), 0, num_batches))
        self.zoom = {p.name: zoom_edges(p.num_batches, max_points) for p in self.plans if p.mixed}
        edges = {p.name: self._local_edges(p) for p in self.plans}
        self.scans: dict[str, PhaseScan] = scan_phases(schedule, self.plans, edges)
        self.live = [p for p in self.plans if p.name in self.scans]

    def _local_edges(self, plan: PhasePlan) -> NDArray[np.int64]:
        a, b = plan.start_batch, plan.start_batch + plan.num_batches
        parts = [self.overview[(self.overview >= a) & (self.overview <= b)] - a,
                 self.extra[(self.extra >= a) & (self.extra <= b)] - a, self.zoom.get(plan.name, np.zeros(0, np.int64))]
        return np.unique(np.concatenate(parts + [np.array([0, plan.num_batches])]).astype(np.int64))

    def cumulative(self, batches: Sequence[int]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Samples and tokens per source (``[len(batches), sources]``) in the first ``batches`` global batches.

        Each batch must be one of the edges scanned (an overview edge, a phase boundary or an extra batch).
        """
        k = len(self.schedule.source_names)
        samples, tokens = np.zeros((len(batches), k), np.int64), np.zeros((len(batches), k), np.int64)
        base_s, base_t = np.zeros(k, np.int64), np.zeros(k, np.int64)
        for plan in self.live:
            scan = self.scans[plan.name]
            a, b = plan.start_batch, plan.start_batch + plan.num_batches
            for i, g in enumerate(batches):
                if a <= g <= b:
                    row = int(np.searchsorted(scan.edges, g - a))
                    samples[i] = base_s
                    tokens[i] = base_t
                    samples[i, plan.ids] += scan.samples[row]
                    tokens[i, plan.ids] += scan.tokens[row]
            base_s[plan.ids] += scan.samples[-1]
            base_t[plan.ids] += scan.tokens[-1]
        return samples, tokens


def analyse_schedule(schedule: Schedule, max_points: int = MAX_POINTS,
                     extra_batches: Sequence[int] = ()) -> tuple[Analysis, dict[str, Any]]:
    """Planned against realised for every phase and source, the share curves and the consistency checks.

    Args:
        schedule: The compiled schedule.
        max_points: Most points per curve (a phase with fewer batches is shown batch by batch).
        extra_batches: Global batch counts at which cumulative counts must be exact (a run's log).

    Returns:
        The scans (for lookups such as :meth:`Analysis.cumulative`) and the report's JSON-able data:
        ``schedule``, ``phases``, ``rows``, ``sources``, ``curve``, ``zoom`` and ``checks``.
    """
    an = Analysis(schedule, max_points, extra_batches)
    m = schedule.manifest
    info = {k: getattr(m, k) for k in ("name", "fingerprint", "num_positions", "num_batches", "global_batch_size",
                                       "total_tokens", "seq_len")}
    info.update(path=str(schedule.path), variant=m.variant, batch_sizes=list(m.batch_sizes))
    data = {"schedule": info, "phases": [_phase_info(p) for p in an.plans], "rows": _rows(an),
            "sources": _source_rows(an), "curve": _curve(an), "zoom": [_zoom(an, p) for p in an.live if p.mixed]}
    data["checks"] = _checks(an, data)
    return an, data


def _phase_info(plan: PhasePlan) -> dict[str, Any]:
    return {"name": plan.name, "unit": plan.unit, "mixed": plan.mixed, "start": plan.start, "stop": plan.stop,
            "start_batch": plan.start_batch, "batches": plan.num_batches, "sources": plan.names,
            "weights": dict(zip(plan.names, plan.q.tolist())),
            "ramp": {"from": dict(zip(plan.names, plan.p.tolist())), "length": plan.ramp, "shape": plan.shape}
            if plan.ramp > 0 else None}


def _rows(an: Analysis) -> list[dict[str, Any]]:
    """Per phase and source: planned and realised amounts, shares, deviation, epochs, repetition."""
    rows = []
    records = {r.name: r for r in an.schedule.phases}
    sizes = {s.name: s.num_samples for s in an.schedule.sources}
    for plan in an.live:
        scan = an.scans[plan.name]
        realised, target = scan.realised()[-1], scan.target[-1]
        clock = max(float(realised.sum()), 1e-12)
        samples_total, tokens_total = max(int(scan.samples[-1].sum()), 1), max(int(scan.tokens[-1].sum()), 1)
        for j, name in enumerate(plan.names):
            draws = int(scan.samples[-1, j])
            rows.append({"phase": plan.name, "source": name, "unit": plan.unit, "target_share": target[j] / clock,
                         "share": realised[j] / clock, "planned": float(target[j]), "realised": float(realised[j]),
                         "deviation": float(realised[j] - target[j]),
                         "max_lag": float(scan.max_lag[:, j].max(initial=0)),
                         "samples": draws, "tokens": int(scan.tokens[-1, j]),
                         "sample_share": draws / samples_total, "token_share": int(scan.tokens[-1, j]) / tokens_total,
                         **epochs_row(draws, records[plan.name].cursors[name], sizes[name])})
    return rows


def _source_rows(an: Analysis) -> list[dict[str, Any]]:
    """Per source over the whole schedule: samples, tokens, shares, epochs, repeated draws."""
    samples, tokens = an.cumulative([an.schedule.manifest.num_batches])
    total_s, total_t = max(int(samples.sum()), 1), max(int(tokens.sum()), 1)
    out = []
    for i, src in enumerate(an.schedule.sources):
        n = int(samples[0, i])
        out.append({"source": src.name, "kind": src.kind, "samples": n, "tokens": int(tokens[0, i]),
                    "sample_share": n / total_s, "token_share": int(tokens[0, i]) / total_t,
                    "epochs": n / src.num_samples, "repeated": max(0, n - src.num_samples),
                    "max_epochs": src.max_epochs, "num_samples": src.num_samples})
    return out


def _curve(an: Analysis) -> dict[str, Any]:
    """Share of each source per overview bin, target and realised, in the unit of the bin's phase."""
    names = an.schedule.source_names
    edges = an.overview
    bt = an.schedule.batch_tokens()
    realised = {n: [] for n in names}
    target = {n: [] for n in names}
    units, keep = [], [0]
    for i in range(len(edges) - 1):
        g0, g1 = int(edges[i]), int(edges[i + 1])
        plan = next((p for p in an.live if p.start_batch <= g0 and g1 <= p.start_batch + p.num_batches), None)
        if plan is None or g1 == g0:
            continue
        scan = an.scans[plan.name]
        r0, r1 = np.searchsorted(scan.edges, [g0 - plan.start_batch, g1 - plan.start_batch])
        real = scan.realised()
        clock = max(float(real[r1].sum() - real[r0].sum()), 1e-12)
        shares = dict(zip(plan.names, ((real[r1] - real[r0]) / clock).tolist()))
        targets = dict(zip(plan.names, ((scan.target[r1] - scan.target[r0]) / clock).tolist()))
        for n in names:
            realised[n].append(shares.get(n, 0.0))
            target[n].append(targets.get(n, 0.0))
        units.append(plan.unit)
        keep.append(i + 1)
    kept = edges[keep] if len(edges) > 1 else edges
    return {"batch": kept.tolist(), "tokens": bt[kept].tolist(), "unit": units, "realised": realised,
            "target": target}


def _zoom(an: Analysis, plan: PhasePlan) -> dict[str, Any]:
    """A mixed phase bin by bin: shares, the spread of per-batch shares and the largest lag per bin."""
    scan = an.scans[plan.name]
    zoom = an.zoom[plan.name]
    rows = np.searchsorted(scan.edges, zoom)
    real = scan.realised()
    clock = np.maximum(np.diff(real.sum(axis=1)[rows]), 1e-12)[:, None]
    per = {
        "realised": np.diff(real[rows], axis=0) / clock,
        "target": np.diff(scan.target[rows], axis=0) / clock,
        "min_share": np.minimum.reduceat(scan.min_share, rows[:-1], axis=0),
        "max_share": np.maximum.reduceat(scan.max_share, rows[:-1], axis=0),
        "max_lag": np.maximum.reduceat(scan.max_lag, rows[:-1], axis=0),
    }
    bound = np.ones(len(plan.names)) if plan.unit == "samples" else scan.largest.astype(np.float64)
    worst = scan.max_lag.max(axis=0, initial=0)
    return {"phase": plan.name, "unit": plan.unit, "start_batch": plan.start_batch, "batch": zoom.tolist(),
            **{key: {n: arr[:, j].tolist() for j, n in enumerate(plan.names)} for key, arr in per.items()},
            "worst_lag": dict(zip(plan.names, worst.tolist())), "bound": dict(zip(plan.names, bound.tolist())),
            "within_bound": bool(np.all(worst <= bound + 1e-6))}


def _checks(an: Analysis, data: dict[str, Any]) -> list[dict[str, Any]]:
    """What the order holds against what the manifest and batch_tokens.npy say (each must agree)."""
    bt = an.schedule.batch_tokens()
    records = {r.name: r for r in an.schedule.phases}
    draws_ok = all(int(an.scans[p.name].samples[-1, j]) == records[p.name].draws[n]
                   and int(an.scans[p.name].tokens[-1, j]) == records[p.name].source_tokens[n]
                   for p in an.live for j, n in enumerate(p.names))
    tokens_ok = all(np.array_equal(an.scans[p.name].tokens.sum(axis=1),
                                   bt[p.start_batch + an.scans[p.name].edges] - bt[p.start_batch]) for p in an.live)
    lag_ok = all(z["within_bound"] for z in data["zoom"])
    return [{"check": "per-phase draws and tokens from the order equal the manifest's", "ok": draws_ok},
            {"check": "tokens per batch from the order equal batch_tokens.npy", "ok": tokens_ok},
            {"check": "every batch boundary of every mixed phase within one sample of its target", "ok": lag_ok}]
