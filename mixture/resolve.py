"""Semantic checks and resolution: a schema-valid spec -> phases with stop rules in clock units.

Checks everything that needs more than one field at a time (undefined sources, weights that do not sum,
percentages of unknown references, phases that overrun the run, epochs of mixed phases, ramps with
nothing to ramp from) and reports all problems at once, each located in the file.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from mixture.errors import MixtureError, Problem, brief
from mixture.spec import MixtureSpec, Phase
from mixture.units import Duration, Unit, parse_count, parse_duration
from mixture.yaml_loader import Located

_WEIGHT_TOL = 1e-6


@dataclass(frozen=True)
class Stop:
    """When a phase ends, in one clock.

    Attributes:
        kind: ``tokens_rel`` (tokens since phase start), ``tokens_abs`` (tokens since run start),
            ``positions_rel``, ``positions_abs`` or ``epochs`` (passes over ``source``: the phase's one
            source, or the one named by ``N ep of NAME`` in a sample-unit mix).
        value: The amount (Decimal: exact).
    """

    kind: str
    value: Decimal
    source: str = ""
    """For ``epochs``: the source they are passes over (a one-source phase's source, or ``N ep of NAME``)."""
    share: Fraction = Fraction(1)
    """For ``epochs``: that source's exact share of the phase's samples (1 in a one-source phase)."""


@dataclass(frozen=True)
class ResolvedPhase:
    """A phase ready for the compiler."""

    index: int
    name: str
    unit: str
    weights: dict[str, float]
    stop: Stop
    ramp_clock: float
    ramp_shape: str
    batch: int = 0
    """Samples per global batch in the phase (its own ``global_batch_size``, else the run's)."""


@dataclass(frozen=True)
class Resolved:
    """A checked spec with durations converted to clocks.

    Attributes:
        durations: Every duration of the spec, parsed once, as written, by dotted path (``run.duration``,
            ``run.lr.warmup``, ``references.NAME``, ``phases[i].lr.rewarm.warmup``, ...): what the compiler
            and the LR plan read instead of parsing the strings again.
    """

    spec: MixtureSpec
    phases: tuple[ResolvedPhase, ...]
    used_sources: tuple[str, ...]
    durations: Mapping[str, Duration] = dataclasses.field(default_factory=dict)


def parse_durations(spec: MixtureSpec) -> dict[str, Duration]:
    """Every duration of a schema-valid spec (the schema checked that each parses), by dotted path."""
    texts: dict[str, str | None] = {"run.duration": spec.run.duration}
    if spec.run.lr is not None:
        texts |= {"run.lr.warmup": spec.run.lr.warmup, "run.lr.plan": spec.run.lr.plan}
    texts |= {f"references.{name}": text for name, text in spec.references.items()}
    for i, phase in enumerate(spec.phases):
        texts |= {f"phases[{i}].duration": phase.duration, f"phases[{i}].end": phase.end,
                  f"phases[{i}].ramp.length": phase.ramp.length if phase.ramp else None,
                  f"phases[{i}].lr.rewarm.warmup": phase.lr.rewarm.warmup if phase.lr.rewarm else None}
    return {path: parse_duration(text) for path, text in texts.items() if text is not None}


class _Ctx:
    def __init__(self, spec: MixtureSpec, located: Located | None) -> None:
        self.spec = spec
        self.located = located
        self.problems: list[Problem] = []
        self.durations = parse_durations(spec)

    def add(self, path: str, message: str, hint: str = "") -> None:
        problem = (self.located.problem(path, message, hint) if self.located is not None
                   else Problem(message, path=path, hint=hint))
        if problem not in self.problems:  # a duration read by two checks is reported once
            self.problems.append(problem)

    def absolute(self, path: str) -> Duration | None:
        """The duration at ``path`` with percentages replaced by an amount in the reference's unit."""
        duration = self.durations[path]
        text = duration.text
        if duration.unit is not Unit.PERCENT:
            return duration
        if duration.ref is None:
            if self.spec.run.duration is None:
                self.add(path, f"{text!r} is a percentage of the run, but run.duration is not set",
                         "set run.duration, or write a percentage of a reference: '80% of NAME'")
                return None
            base_path = "run.duration"
        elif duration.ref not in self.spec.references:
            close = difflib.get_close_matches(duration.ref, list(self.spec.references), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "define it under references:"
            self.add(path, f"unknown reference {duration.ref!r}", hint)
            return None
        else:
            base_path = f"references.{duration.ref}"
        base = self.durations[base_path]
        if base.unit is Unit.PERCENT:
            self.add(base_path, "a reference duration cannot itself be a percentage")
            return None
        value = base.value * duration.value / 100
        return Duration(value, base.unit, None, text, base.source)


def _positions(d: Duration, batch: int) -> Decimal:
    return d.value * batch if d.unit is Unit.BATCHES else d.value


def phase_batch(spec: MixtureSpec, phase: Phase) -> int:
    """Samples per global batch in ``phase``: its own ``global_batch_size``, else the run's."""
    return phase.global_batch_size or spec.run.global_batch_size


def _run_batch_until(spec: MixtureSpec, index: int) -> bool:
    """Whether phases ``0..index`` all train at the run's batch (so run-level batches count positions)."""
    return all(phase_batch(spec, p) == spec.run.global_batch_size for p in spec.phases[: index + 1])


def _stop(ctx: _Ctx, phase: Phase, path: str, index: int) -> Stop | None:
    field = "duration" if phase.duration is not None else "end"
    d = ctx.absolute(f"{path}.{field}")  # the schema guarantees one of the two
    if d is None:
        return None
    rel = field == "duration"
    if d.value <= 0 and rel:  # an `end` at 0 is an empty phase: a sweep's edge (images from the start)
        ctx.add(f"{path}.duration", f"{brief(d.text)} is zero: a phase must last some training",
                "give a positive length, or remove the phase")
        return None
    if d.unit is Unit.TOKENS:
        return Stop("tokens_rel" if rel else "tokens_abs", d.value)
    if d.unit is Unit.BATCHES and not rel and not _run_batch_until(ctx.spec, index):
        ctx.add(f"{path}.end", f"{brief(d.text)} is a point in batches, but phases up to this one change the "
                "global batch size, so a batch count is not a position", "give the end in samples or tokens, or "
                "this phase's length as 'duration' (batches of this phase)")
        return None
    if d.unit in (Unit.SAMPLES, Unit.BATCHES):
        batch = phase_batch(ctx.spec, phase) if rel else ctx.spec.run.global_batch_size
        return Stop("positions_rel" if rel else "positions_abs", _positions(d, batch))
    if d.unit is Unit.EPOCHS:
        return _epochs_stop(ctx, phase, path, d, rel)
    return None  # pragma: no cover


def _active(phase: Phase) -> dict[str, Fraction]:
    """Exact weights of the sources a phase draws from (a ``rest`` weight is what the others leave of 1)."""
    numbers = {s: Fraction(repr(float(w))) for s, w in phase.mix.items() if w != "rest"}
    left = 1 - sum(numbers.values(), Fraction(0))
    weights = {s: left if w == "rest" else numbers[s] for s, w in phase.mix.items()}
    return {s: w for s, w in weights.items() if w > 0}


def _epochs_stop(ctx: _Ctx, phase: Phase, path: str, d: Duration, rel: bool) -> Stop | None:
    """A stop in passes over one source: the phase's only one (``N ep``) or a named one (``N ep of NAME``).

    ``N ep of NAME`` in a mixed phase needs fixed sample shares (``unit: samples``, no ramp): then the phase
    lasts ``ceil(ceil(N * size) / share)`` positions, in whole batches (:func:`epochs_to_positions`); in a
    one-source phase it is ``N ep``.
    """
    if not rel:
        ctx.add(f"{path}.end", "an end point cannot be given in epochs",
                f"use duration: N ep{' of ' + d.source if d.source else ''}")
        return None
    where = f"{path}.duration"
    active = _active(phase)
    if d.source is None:
        if len(active) != 1:
            ctx.add(where, f"a duration in epochs needs a phase with one source, this one mixes {len(active)}",
                    "give the duration in tokens or samples, or as passes over one of its sources: "
                    "'N ep of SOURCE' in a mix with unit: samples")
            return None
        (only,) = active
        return Stop("epochs", d.value, only)
    if d.source not in phase.mix:
        close = difflib.get_close_matches(d.source, list(phase.mix), n=1)
        ctx.add(where, f"{d.text!r} counts passes over {d.source!r}, which is not in this phase's mix",
                f"did you mean {close[0]!r}?" if close else f"name one of its sources: {', '.join(phase.mix)}")
        return None
    if d.source not in active:
        ctx.add(where, f"{d.text!r} counts passes over {d.source!r}, which has weight 0 in this phase's mix: "
                "it is never drawn", "name a source with a positive weight, or give the duration in samples")
        return None
    if len(active) == 1:  # the phase's one source: exactly `N ep`
        return Stop("epochs", d.value, d.source)
    ok = True
    if phase.unit != "samples":
        ctx.add(where, f"{d.text!r} in a mix of token shares: the samples of {d.source!r} are no fixed share "
                "of the phase's samples", "write unit: samples, or give the duration in tokens")
        ok = False
    if phase.ramp is not None:
        ctx.add(where, f"{d.text!r} in a phase that ramps: the share of {d.source!r} changes over the ramp",
                "remove the ramp, or give the duration in samples or batches")
        ok = False
    if not ok:
        return None
    return Stop("epochs", d.value, d.source, active[d.source] / sum(active.values(), Fraction(0)))


def _rest(ctx: _Ctx, phase: Phase, path: str, exact: dict[str, Fraction]) -> dict[str, Fraction] | None:
    """Weights with the one ``rest`` weight replaced by 1 minus the others (exact), or None if it cannot be."""
    rests = [name for name, weight in phase.mix.items() if weight == "rest"]
    if not rests:
        return exact
    for name in rests[1:]:
        ctx.add(f"{path}.mix.{name}", f"a second 'rest' weight (already on {rests[0]!r})",
                "give 'rest' to one source of the mix and numbers to the others")
    if phase.normalize:
        ctx.add(f"{path}.normalize", "normalize: true with a 'rest' weight: 'rest' is what the others leave of 1",
                "remove normalize, or give every weight as a number")
    others = sum(exact.values(), Fraction(0))
    if others > 1:
        ctx.add(f"{path}.mix.{rests[0]}", f"the other weights sum to {float(others):g}, more than 1: nothing "
                "is left for 'rest'", "lower the other weights so they sum to at most 1")
    if len(rests) > 1 or phase.normalize or others > 1:
        return None
    return {**exact, rests[0]: 1 - others}


def _weights(ctx: _Ctx, phase: Phase, path: str) -> dict[str, float] | None:
    ok = True
    for name, weight in phase.mix.items():
        if name not in ctx.spec.sources:
            close = difflib.get_close_matches(name, list(ctx.spec.sources), n=1)
            ctx.add(f"{path}.mix.{name}", f"undefined source {name!r}",
                    f"did you mean {close[0]!r}?" if close else "define it under sources:")
            ok = False
        if weight == "rest":
            continue
        if weight < 0:
            ctx.add(f"{path}.mix.{name}", f"weight must be >= 0, got {weight}")
            ok = False
        if not math.isfinite(weight):
            ctx.add(f"{path}.mix.{name}", f"weight must be a finite number, got {weight}")
            return None
    # Exact sum in name order: the float sum depended on the order the mix was written in.
    numbers = {k: Fraction(repr(float(v))) for k, v in sorted(phase.mix.items()) if v != "rest"}
    exact = _rest(ctx, phase, path, numbers)
    if exact is None:
        return None
    exact = dict(sorted(exact.items()))
    total = sum(exact.values(), Fraction(0))
    if total <= 0:
        ctx.add(f"{path}.mix", "the mix has no positive weight")
        return None
    if not phase.normalize and abs(total - 1.0) > _WEIGHT_TOL:
        ctx.add(f"{path}.mix", f"weights sum to {float(total):g}, not 1",
                "fix the weights, or set normalize: true to divide them by their sum")
        ok = False
    return {k: float(v / total) for k, v in exact.items()} if ok else None


def _ramp(ctx: _Ctx, phase: Phase, index: int, path: str) -> float:
    if phase.ramp is None:
        return 0.0
    if index == 0:
        ctx.add(f"{path}.ramp", "the first phase has no previous mix to ramp from", "remove the ramp")
        return 0.0
    d = ctx.absolute(f"{path}.ramp.length")
    if d is None:
        return 0.0
    if d.value <= 0:
        ctx.add(f"{path}.ramp.length", "a ramp of length zero", "remove the ramp to switch mixes at once")
        return 0.0
    if phase.unit == "tokens" and d.unit is not Unit.TOKENS:
        ctx.add(f"{path}.ramp.length", "a token-unit mix ramps over tokens", "write e.g. '1B tok'")
        return 0.0
    if phase.unit == "samples" and d.unit not in (Unit.SAMPLES, Unit.BATCHES):
        ctx.add(f"{path}.ramp.length", "a sample-unit mix ramps over samples or batches", "write e.g. '500ba'")
        return 0.0
    return float(_positions(d, phase_batch(ctx.spec, phase)))


def _check_rewarm(ctx: _Ctx, phase: Phase, path: str) -> None:
    if phase.lr.rewarm is None:
        return
    where = f"{path}.lr.rewarm.warmup"
    d = ctx.durations[where]
    if d.unit is Unit.PERCENT and (d.ref is not None or d.value > 100):
        ctx.add(where, f"{d.text!r}: a warm-up percentage is of this phase (0-100%, no 'of NAME')",
                "write e.g. '3%' or '100ba'")
    elif d.unit is Unit.EPOCHS:
        ctx.add(where, "a warm-up cannot be given in epochs", "write e.g. '3%' or '100ba'")


def _check_epochs_of(ctx: _Ctx) -> None:
    """``N ep of SOURCE`` is a phase's length: the run's duration, its LR plan and references may not be one.

    (A phase's ``end``, ramp and re-warm refuse any epochs where they are read.)
    """
    for path in ("run.duration", "run.lr.warmup", "run.lr.plan", *(f"references.{r}" for r in ctx.spec.references)):
        d = ctx.durations.get(path)
        if d is not None and d.source is not None:
            ctx.add(path, f"{d.text!r}: passes over one source measure one phase, not {path}",
                    "give it in tokens, samples or batches; a phase's duration may be 'N ep of SOURCE'")
        elif d is not None and d.unit is Unit.EPOCHS and path.startswith("run.lr."):
            # The LR plan is laid out in tokens, samples or steps: epochs of no named source would be misread.
            ctx.add(path, f"{d.text!r}: the LR plan's lengths cannot be given in epochs",
                    "give it in tokens, samples, batches or a percentage (e.g. '5%', '2000ba')")


def _check_lengths(ctx: _Ctx, stops: list[Stop | None]) -> list[tuple[str, Decimal] | None]:
    """Static overrun checks where units allow (the compiler re-checks with realised clocks).

    Returns:
        Each phase's (clock, length) where it is known before compiling (None elsewhere).
    """
    lengths: list[tuple[str, Decimal] | None] = []
    last_abs: dict[str, Decimal] = {}
    cumulative: dict[str, Decimal] = {"tokens": Decimal(0), "positions": Decimal(0)}
    exact = {"tokens": True, "positions": True}
    for i, stop in enumerate(stops):
        lengths.append(None)
        if stop is not None and stop.kind == "epochs":
            exact = {"tokens": False, "positions": False}  # its length depends on the data
        if stop is None or stop.kind == "epochs":
            continue
        clock = "tokens" if stop.kind.startswith("tokens") else "positions"
        before = cumulative[clock]
        if exact[clock] or stop.kind.endswith("rel"):
            lengths[-1] = (clock, stop.value - before if stop.kind.endswith("abs") else stop.value)
        path = f"phases[{i}].{'end' if stop.kind.endswith('abs') else 'duration'}"
        if stop.kind.endswith("abs"):
            if clock in last_abs and stop.value < last_abs[clock]:
                ctx.add(path, f"ends at {stop.value} {clock}, before an earlier phase's end {last_abs[clock]}",
                        "phase ends must not decrease")
            if exact[clock] and stop.value < cumulative[clock]:
                ctx.add(path, f"ends at {stop.value} {clock}, but the phases before it already take "
                        f"{cumulative[clock]}", "move the end later or shorten earlier phases")
            last_abs[clock] = stop.value
            cumulative[clock] = max(cumulative[clock], stop.value)
        elif stop.kind.endswith("rel"):
            cumulative[clock] += stop.value
        for other in cumulative:
            if other != clock:
                exact[other] = False
    run = ctx.spec.run.duration
    if run is not None:
        total = ctx.absolute("run.duration")
        if total is not None and total.unit is Unit.BATCHES and not _run_batch_until(ctx.spec, len(stops)):
            ctx.add("run.duration", f"{brief(total.text)} is given in batches, but phases change the global batch "
                    "size, so a batch count is not a length", "give run.duration in samples or tokens")
            return lengths
        if total is not None and total.unit in (Unit.TOKENS, Unit.SAMPLES, Unit.BATCHES):
            clock = "tokens" if total.unit is Unit.TOKENS else "positions"
            limit = _positions(total, ctx.spec.run.global_batch_size)
            if exact[clock] and cumulative[clock] > limit:
                ctx.add("run.duration", f"the phases take {cumulative[clock]} {clock}, more than the run's "
                        f"{limit}", "lengthen run.duration or shorten the phases")
    return lengths


def _check_ramps(ctx: _Ctx, lengths: list[tuple[str, Decimal] | None], ramps: list[float]) -> None:
    """A ramp may not be longer than its phase (where the phase's length is known before compiling)."""
    for i, (length, ramp) in enumerate(zip(lengths, ramps)):
        phase = ctx.spec.phases[i]
        if length is None or not ramp or phase.ramp is None:
            continue
        clock = "tokens" if phase.unit == "tokens" else "positions"
        if length[0] == clock and Decimal(ramp) > length[1]:
            ctx.add(f"phases[{i}].ramp.length", f"the ramp ({phase.ramp.length}) is longer than its phase "
                    f"({length[1]} {clock})", "shorten the ramp or lengthen the phase")


def _check_sources(ctx: _Ctx) -> None:
    """Declared sources need samples, and samples that cost tokens (a zero-cost mix never fills a budget)."""
    for name, source in ctx.spec.sources.items():
        if source.declared is None:
            continue
        path = f"sources.{name}.declared"
        if parse_count(source.declared.samples) == 0:
            ctx.add(f"{path}.samples", "a source needs at least one sample", "declare its size, e.g. 665000")
        if source.declared_cost() == 0:
            ctx.add(path, "samples of this source cost 0 tokens (text, caption and visual tokens are all 0)",
                    "give tokens_per_sample or caption_tokens above 0, or count visual tokens")


def _length(ctx: _Ctx, path: str) -> tuple[str, Decimal] | None:
    """(clock, amount) of the duration at ``path`` in tokens or positions, None when it is not one of those."""
    d = ctx.absolute(path) if path in ctx.durations else None
    if d is None or d.unit not in (Unit.TOKENS, Unit.SAMPLES, Unit.BATCHES):
        return None
    if d.unit is Unit.BATCHES and not _run_batch_until(ctx.spec, len(ctx.spec.phases)):
        return None  # steps of several batch sizes are no number of positions
    return ("tokens", d.value) if d.unit is Unit.TOKENS else ("positions", _positions(d, ctx.spec.run.global_batch_size))


def _check_lr(ctx: _Ctx, lengths: list[tuple[str, Decimal] | None]) -> None:
    """LR plans that cannot be meant: a final LR above the peak, a warm-up past the run, a rising cooldown."""
    plan = ctx.spec.run.lr
    ceiling = plan.peak if plan is not None else None
    if plan is not None:
        if plan.final > plan.peak:
            ctx.add("run.lr.final", f"the final LR {plan.final:g} is above the peak {plan.peak:g}",
                    "a decay ends below its peak: lower final or raise peak")
        warm = _length(ctx, "run.lr.warmup")
        total = _length(ctx, "run.lr.plan") or _length(ctx, "run.duration")
        if total is None and lengths and all(lengths) and len({c for c, _ in lengths if c}) == 1:
            total = (lengths[0][0], sum((v for _, v in lengths if v is not None), Decimal(0)))
        if warm is not None and total is not None and warm[0] == total[0] and warm[1] > total[1]:
            ctx.add("run.lr.warmup", f"the warm-up ({plan.warmup}) is longer than the run it plans for "
                    f"({total[1]} {total[0]})", "shorten the warm-up")
    for i, phase in enumerate(ctx.spec.phases):
        lr, path = phase.lr, f"phases[{i}].lr"
        if lr.cooldown is not None and ceiling is not None and lr.cooldown.to > ceiling:
            ctx.add(f"{path}.cooldown.to", f"the cooldown would rise: to {lr.cooldown.to:g} is above the LR "
                    f"before it (at most {ceiling:g})", "a cooldown decays: give a lower 'to'")
        if lr.rewarm is not None and lr.rewarm.to > lr.rewarm.peak:
            ctx.add(f"{path}.rewarm.to", f"the decay after the re-warm would rise: to {lr.rewarm.to:g} is "
                    f"above its peak {lr.rewarm.peak:g}", "give a 'to' at or below 'peak'")
        # The LR at the end of this phase (an upper bound for a phase that follows the plan).
        ends = [lr.cooldown.to if lr.cooldown else None, lr.rewarm.to if lr.rewarm else None, lr.constant]
        ceiling = next((e for e in ends if e is not None), plan.peak if plan is not None else None)


def resolve(spec: MixtureSpec, located: Located | None = None) -> Resolved:
    """Check cross-field rules and convert durations.

    Raises:
        MixtureError: Listing every problem found.
    """
    ctx = _Ctx(spec, located)
    names = [p.name for p in spec.phases]
    for i, name in enumerate(names):
        if names.index(name) != i:
            ctx.add(f"phases[{i}].name", f"duplicate phase name {name!r}", "phase names must be unique")
    for ref in spec.references:
        if ctx.durations[f"references.{ref}"].unit is Unit.PERCENT:
            ctx.add(f"references.{ref}", "a reference duration cannot itself be a percentage")
    _check_sources(ctx)
    _check_epochs_of(ctx)
    phases: list[ResolvedPhase] = []
    stops: list[Stop | None] = []
    ramps: list[float] = []
    for i, phase in enumerate(spec.phases):
        path = f"phases[{i}]"
        weights = _weights(ctx, phase, path)
        stop = _stop(ctx, phase, path, i)
        stops.append(stop)
        ramp = _ramp(ctx, phase, i, path)
        ramps.append(ramp)
        _check_rewarm(ctx, phase, path)
        if weights is not None and stop is not None:
            shape = phase.ramp.shape if phase.ramp else "linear"
            phases.append(ResolvedPhase(i, phase.name, phase.unit, weights, stop, ramp, shape,
                                        phase_batch(spec, phase)))
    lengths = _check_lengths(ctx, stops)
    _check_ramps(ctx, lengths, ramps)
    _check_lr(ctx, lengths)
    if ctx.problems:
        raise MixtureError(ctx.problems)
    used = sorted({s for p in phases for s, w in p.weights.items() if w > 0})
    return Resolved(spec=spec, phases=tuple(phases), used_sources=tuple(used), durations=ctx.durations)


def epochs_to_positions(stop: Stop, num_samples: int, batch: int) -> int:
    """Positions of an epoch-based phase, rounded up to whole global batches: ``ceil(S / share)`` for the
    ``S = ceil(N * num_samples)`` draws of N epochs (share 1 in a one-source phase; exact arithmetic), so a
    mix whose shares start on target draws the source at least ``S`` times."""
    draws = math.ceil(Fraction(stop.value) * num_samples)
    positions = math.ceil(draws / stop.share)
    return -(-positions // batch) * batch
