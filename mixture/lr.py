"""The learning rate per step, from the run's plan and each phase's directive.

The plan (``run.lr``) is a function of the run's clocks: linear warm-up to ``peak``, then ``schedule``
decay to ``final`` at the end of ``plan`` (in tokens, samples or batches; the default is the whole run),
constant afterwards. A phase either follows the plan (``continue``), decays from wherever the LR stands
at its start (``cooldown``), restarts (``rewarm``: warm-up to a new peak, then decay within the phase), or
holds a ``constant``. The result is one float64 per global batch (per optimizer step), stored as ``lr.npy``
beside the order, so the trainer, reports and plots read the very same numbers. With per-phase batch sizes
the clocks stay per step: ``ba`` counts steps, ``samples`` are the positions before a step (the batch-start
table), and a phase's ``rewarm`` in samples is converted with that phase's batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from mixture.schedule_files import PhaseRecord, batch_segments, batch_starts
from mixture.spec import MixtureSpec
from mixture.units import Duration, Unit

_BLOCK = 1 << 20


def _decay(shape: str, frac: NDArray[np.float64]) -> NDArray[np.float64]:
    """Fraction of the way from start to end value (0 -> 1) for progress ``frac`` in [0, 1]."""
    frac = np.clip(frac, 0.0, 1.0)
    if shape == "cosine":
        return 0.5 * (1.0 - np.cos(math.pi * frac))
    if shape == "sqrt":
        return np.sqrt(frac)
    if shape == "constant":
        return np.zeros_like(frac)
    return frac


def _amount(d: Duration, ref: float) -> tuple[str, float]:
    """(clock, length) of a duration; percentages become a fraction of ``ref`` in clock "fraction"."""
    if d.unit is Unit.TOKENS:
        return "tokens", float(d.value)
    if d.unit is Unit.SAMPLES:
        return "samples", float(d.value)
    if d.unit is Unit.BATCHES:
        return "steps", float(d.value)
    return "fraction", float(d.value) / 100.0 * ref


def _resolve_percent(durations: Mapping[str, Duration], path: str) -> Duration:
    d = durations[path]
    if d.unit is not Unit.PERCENT:
        return d
    base = durations[f"references.{d.ref}" if d.ref else "run.duration"]  # resolve() checked it exists
    return Duration(base.value * d.value / 100, base.unit, None, d.text)


def lr_per_step(spec: MixtureSpec, phases: Sequence[PhaseRecord], batch_tokens: NDArray[np.int64],
                durations: Mapping[str, Duration]) -> NDArray[np.float64] | None:
    """LR for every global batch of the compiled schedule, or None when the run has no LR plan.

    ``durations`` are the spec's durations as resolve parsed them (:attr:`mixture.resolve.Resolved.durations`).
    """
    plan = spec.run.lr
    if plan is None:
        return None
    segments = batch_segments(phases, spec.run.global_batch_size)
    num_steps = len(batch_tokens) - 1
    plan_d = _resolve_percent(durations, "run.lr.plan") if plan.plan else None
    plan_clock, plan_len = ("steps", float(num_steps)) if plan_d is None else _amount(plan_d, 0)
    warm_clock, warm_len = _amount(_resolve_percent(durations, "run.lr.warmup"), 1.0)
    if warm_clock == "fraction":
        warm_clock, warm_len = plan_clock, warm_len * plan_len
    shape = "linear" if plan.schedule == "linear" else plan.schedule
    lr = np.empty(num_steps, dtype=np.float64)
    # Evaluated in blocks of steps: a 4.3T-token plan has 8M steps, and whole-run temporaries cost GBs.
    for a in range(0, num_steps, _BLOCK):
        b = min(a + _BLOCK, num_steps)
        steps = np.arange(a, b, dtype=np.float64)
        samples = batch_starts(segments, np.arange(a, b, dtype=np.int64)).astype(np.float64)
        clocks = {"steps": steps, "samples": samples, "tokens": batch_tokens[a:b].astype(np.float64)}
        warm = clocks[warm_clock] / warm_len if warm_len > 0 else np.ones(b - a)
        if warm_len > 0 and warm_clock == plan_clock:
            progress = (clocks[plan_clock] - warm_len) / max(plan_len - warm_len, 1.0)
        else:
            progress = clocks[plan_clock] / max(plan_len, 1.0)
        after = plan.peak + (plan.final - plan.peak) * _decay(shape, progress)
        lr[a:b] = np.where(warm < 1.0, plan.peak * np.minimum(warm + 1.0 / max(warm_len, 1.0), 1.0), after)
    planned_first = lr[0] if num_steps else plan.peak
    for i, (seg, phase) in enumerate(zip(segments, spec.phases)):
        a, b, batch = seg.first_batch, seg.stop_batch, seg.batch_size
        if b <= a:
            continue
        n = b - a
        start_lr = lr[a - 1] if a > 0 else planned_first
        directive = phase.lr
        if directive.cooldown is not None:
            c = directive.cooldown
            lr[a:b] = start_lr + (c.to - start_lr) * _decay(c.shape, (np.arange(n) + 1.0) / n)
        elif directive.rewarm is not None:
            r = directive.rewarm
            wd = durations[f"phases[{i}].lr.rewarm.warmup"]
            wclock, wlen = _amount(wd, float(n))
            wsteps = {"steps": wlen, "samples": wlen / batch, "fraction": wlen}.get(wclock)
            if wsteps is None:  # tokens: convert with this phase's tokens per step
                per_step = (batch_tokens[b] - batch_tokens[a]) / n
                wsteps = wlen / max(per_step, 1.0)
            wsteps = max(int(round(wsteps)), 0)
            k = np.arange(n, dtype=np.float64)
            rise = r.peak * (k + 1.0) / max(wsteps, 1)
            fall = r.peak + (r.to - r.peak) * _decay(r.decay, (k - wsteps + 1.0) / max(n - wsteps, 1))
            lr[a:b] = np.where(k < wsteps, rise, fall)
        elif directive.constant is not None:
            lr[a:b] = directive.constant
    return lr
