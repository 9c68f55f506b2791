"""The library entry points the CLI calls: validate, compile, explain, export.

Each is a function of paths and returns data; printing is the CLI's job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mixture.errors import MixtureError, Problem
from mixture.load import _problems, read_spec
from mixture.resolve import Resolved, resolve
from mixture.spec import MixtureSpec
from mixture.sweep import expand
from mixture.yaml_loader import Located

if TYPE_CHECKING:  # numpy, numba and pyarrow stay out of `mixture validate`'s start-up
    from mixture.schedule import Schedule
    from mixture.sourcedata import SourceData

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Variant:
    """One compilable variant of a mixture file (``name`` is "" without a sweep)."""

    name: str
    resolved: Resolved
    base_dir: str
    values: dict[str, object] = field(default_factory=dict)  # sweep axis -> this variant's value
    located: Located | None = None  # where the file's values are, for locating compile-time problems


def variants(path: str | Path) -> list[Variant]:
    """Read, check and resolve a mixture file and each of its sweep variants.

    Raises:
        MixtureError: Every problem in the file (and in any variant), located.
    """
    from pydantic import ValidationError

    spec, located = read_spec(path)
    base_dir = str(Path(path).resolve().parent)
    out = []
    problems: list[Problem] = []
    for name, data, origins, values in expand(located):
        try:
            variant_spec = spec if not name else MixtureSpec.model_validate(data)
            out.append(Variant(name, resolve(variant_spec, located), base_dir, values, located))
        except ValidationError as exc:
            problems += [_in_variant(p, name, origins, located) for p in _problems(exc, located, data=data)]
        except MixtureError as exc:
            problems += [_in_variant(p, name, origins, located) for p in exc.problems]
    if problems:
        raise MixtureError(problems)
    return out


def _in_variant(problem: Problem, name: str, origins: dict[str, str], located: Located) -> Problem:
    """Name the variant in a problem and point at the sweep value that put the bad field there."""
    if not name:
        return problem
    line, col, file = problem.line, problem.col, problem.file or located.file
    for field, origin in origins.items():
        if problem.path == field or problem.path.startswith((field + ".", field + "[")):
            (line, col), file = located.where(origin), located.file_of(origin)
    return Problem(f"in variant {name}: {problem.message}", problem.path, file, line, col, problem.hint)


def compile_variant(variant: Variant, out_dir: str | Path, progress: Progress | None = None,
                    expect: Progress | None = None) -> Schedule:
    """Load the sources a variant uses and compile it into ``out_dir``.

    ``progress`` is called with the positions each step of the compiler added; ``expect``, once the sources
    are read, with the positions the schedule is expected to have (:func:`expected_positions`), so that a
    progress display can show a fraction and an ETA.
    """
    from mixture.compiler import compile_schedule
    from mixture.schedule import load_schedule
    from mixture.sourcedata import load_source

    spec = variant.resolved.spec
    data, problems = {}, []
    for n in variant.resolved.used_sources:
        try:
            data[n] = load_source(n, spec.sources[n], spec.seed, variant.base_dir)
        except MixtureError as exc:
            problems += [_locate(p, variant, f"sources.{n}.location") for p in exc.problems]
            continue
        if data[n].pricing.array is not None and not data[n].pricing.array.any():
            problems.append(_locate(Problem(f"every sample of {n!r} costs 0 tokens", hint="check the index's "
                                            "token columns and visual_tokens_per_image"), variant, f"sources.{n}"))
    if problems:
        raise MixtureError(problems)
    if expect:
        expect(expected_positions(variant.resolved, data))
    try:
        compile_schedule(variant.resolved, data, out_dir, progress,
                         variant={"name": variant.name, "values": variant.values})
    except MixtureError as exc:
        raise MixtureError([_locate(p, variant, "") for p in exc.problems]) from None
    return load_schedule(out_dir)


def expected_positions(resolved: Resolved, data: dict[str, SourceData]) -> int:
    """About how many positions a compile of ``resolved`` writes (for progress; the compiler decides).

    Phases measured in positions, batches or epochs are exact (rounded up to whole batches of the phase's
    own batch size, as the compiler does); a phase measured in tokens divides them by the mean budget tokens per position of its mix (a
    token-unit mix: ``1 / sum(w / mean)``, a sample-unit one: ``sum(w * mean)``; a ramp counts as its end mix).
    """
    from mixture.resolve import epochs_to_positions

    pos, tokens, total = 0, 0.0, 0
    for phase in resolved.phases:
        batch = phase.batch
        weights = {n: w for n, w in phase.weights.items() if w > 0 and n in data}
        share = sum(weights.values()) or 1.0
        means = {n: max(data[n].pricing.mean_tokens, 1e-9) for n in weights}
        if phase.unit == "tokens":
            per_position = share / max(sum(w / means[n] for n, w in weights.items()), 1e-12)
        else:
            per_position = sum(w * means[n] for n, w in weights.items()) / share
        kind, value = phase.stop.kind, float(phase.stop.value)
        if kind == "positions_rel":
            n = value
        elif kind == "positions_abs":
            n = max(value - pos, 0)
        elif kind == "epochs":
            n = epochs_to_positions(phase.stop, data[phase.stop.source].num_samples, batch)
        else:
            n = max(value - (tokens if kind == "tokens_abs" else 0.0), 0.0) / max(per_position, 1e-9)
        n = -(-int(n) // batch) * batch
        pos, tokens, total = pos + n, tokens + n * per_position, total + n
    return total


def _locate(problem: Problem, variant: Variant, default_path: str) -> Problem:
    """A compile-time problem placed in the mixture file (at its path, else at ``default_path``)."""
    if problem.file or variant.located is None:
        return problem
    path = problem.path or default_path
    if not path:
        return Problem(problem.message, file=variant.located.file, hint=problem.hint)
    return variant.located.problem(path, problem.message, problem.hint)


def open_or_compile(target: str | Path, progress: Progress | None = None) -> Iterator[tuple[str, Schedule]]:
    """Schedules of a compiled directory, or of a mixture file compiled into a temporary directory."""
    from mixture.schedule import load_schedule

    target = Path(target)
    if target.is_dir():
        yield "", load_schedule(target)
        return
    for variant in variants(target):
        with tempfile.TemporaryDirectory(prefix="mixture-explain-") as tmp:
            yield variant.name, compile_variant(variant, Path(tmp) / "schedule", progress)


def explain_rows(schedule: Schedule) -> list[dict[str, object]]:
    """Planned samples, tokens, share and epochs per phase and source (from the manifest: no order scan)."""
    m = schedule.manifest
    sizes = {s.name: s.num_samples for s in m.sources}
    rows = []
    for phase in m.phases:
        positions = phase.positions
        tokens = phase.source_tokens
        total = max(sum(tokens.values()), 1)
        for name in sorted(tokens):
            samples = phase.draws.get(name, 0)
            if samples == 0:
                continue
            rows.append({"phase": phase.name, "source": name, "samples": samples, "tokens": tokens[name],
                         "share": tokens[name] / total, "sample_share": samples / max(positions, 1),
                         "epochs": samples / sizes[name], "target": phase.weights.get(name, 0.0),
                         "unit": phase.unit})
    return rows


def export_order(schedule: Schedule, out: str | Path, start: int = 0, stop: int | None = None,
                 progress: Progress | None = None, chunk: int = 1 << 21) -> int:
    """Write positions ``[start, stop)`` as parquet: position, phase, source, sample, tokens."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    stop = len(schedule) if stop is None else min(stop, len(schedule))
    if not 0 <= start <= stop:
        raise MixtureError(f"bad range {start}:{stop} for a schedule of {len(schedule)} positions",
                           hint="use --range A:B with 0 <= A <= B")
    phase_names = [p.name for p in schedule.phases]
    phase_type = pa.dictionary(pa.int16(), pa.string())
    source_type = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("position", pa.int64()), ("phase", phase_type), ("source", source_type),
                        ("sample", pa.int64()), ("tokens", pa.int64())])
    # Phase index of each position: bisect over the phases that hold positions (empty ones share a start).
    live = np.array([i for i, p in enumerate(schedule.phases) if p.stop > p.start], dtype=np.int64)
    live_starts = np.array([schedule.phases[i].start for i in live], dtype=np.int64)
    with pq.ParquetWriter(str(out), schema) as writer:
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            src, samples = schedule.take(a, b)
            pos = np.arange(a, b, dtype=np.int64)
            phase = live[np.searchsorted(live_starts, pos, side="right") - 1]
            table = pa.table({
                "position": pos,
                "phase": pa.DictionaryArray.from_arrays(pa.array(phase.astype(np.int16)), pa.array(phase_names)),
                "source": pa.DictionaryArray.from_arrays(pa.array(src), pa.array(schedule.source_names)),
                "sample": samples, "tokens": schedule.tokens(src, samples)}, schema=schema)
            writer.write_table(table)
            if progress:
                progress(b - a)
    return stop - start
