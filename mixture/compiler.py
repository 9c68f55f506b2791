"""The compiler: resolved spec + source data -> a compiled schedule directory.

Layout of the directory (see docs/architecture.md):
``manifest.json`` (everything but the big arrays, and the fingerprint), ``order.bin`` (one source id per
position of *mixed* phases only; single-source phases are described analytically by their cursor), 
``checkpoints.npy`` (absolute draws per source every ``CHECKPOINT`` positions of mixed phases, for random
access), ``batch_tokens.npy`` (cumulative tokens at every global-batch boundary), ``lr.npy`` (learning
rate per step, when the run has an LR plan) and ``tokens/NAME.npy`` (budget tokens of array-priced sources).

The work goes phase by phase and, inside a mixed phase, chunk by chunk of positions, so memory stays
bounded at any schedule length. Phase ends are rounded up to whole global batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from typing import BinaryIO
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mixture import __version__
from mixture.errors import MixtureError
from mixture.kernels import COSINE, LINEAR, _integral, mix_chunk
from mixture.lr import lr_per_step
from mixture.permute import derive_key, permute
from mixture.resolve import Resolved, ResolvedPhase, epochs_to_positions
from mixture.sourcedata import SourceData
from mixture.units import Unit

ALGORITHM = "edf-apportionment/1"
FORMAT = "mixture-schedule/1"
CHECKPOINT = 4096
_CHUNK_TARGET = 1 << 22

Progress = Callable[[int], None]


@dataclass
class _State:
    pos: int = 0
    tokens: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    lag_unit: str = ""
    prev_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class _Out:
    names: list[str]
    order: BinaryIO
    dtype: np.dtype
    order_len: int = 0
    checkpoints: list[NDArray[np.int64]] = field(default_factory=list)
    batch_tokens: list[NDArray[np.int64]] = field(default_factory=list)
    digest: object = field(default_factory=hashlib.sha256)


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
    if kind == "positions_abs":
        return max(_ceil_batch(int(value), batch) - state.pos, 0), math.inf
    if kind == "epochs":
        (only,) = [s for s, w in phase.weights.items() if w > 0]
        return epochs_to_positions(phase.stop, data[only].num_samples, batch), math.inf
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


def _mixed(phase: ResolvedPhase, names: list[str], state: _State, data: dict[str, SourceData], batch: int,
           stop_pos: int, stop_tok: float, out: _Out, progress: Progress | None) -> dict[str, object]:
    k = len(names)
    all_ids = {n: i for i, n in enumerate(out.names)}
    q = np.array([phase.weights.get(n, 0.0) for n in names])
    p = np.array([state.prev_weights.get(n, 0.0) for n in names]) if phase.ramp_clock > 0 else q.copy()
    token_unit = phase.unit == "tokens"
    carry = state.lag_unit == phase.unit
    lag0 = np.array([state.lag.get(n, 0.0) if carry else 0.0 for n in names])
    tie = np.array([derive_key("tie", n) >> 1 for n in names], dtype=np.int64)
    lookahead = {n: _Lookahead(data[n]) for n in names}
    shape = COSINE if phase.ramp_shape == "cosine" else LINEAR
    chunk = math.lcm(batch, CHECKPOINT)
    chunk *= max(1, _CHUNK_TARGET // chunk)
    state_pos, state_tok = np.zeros(1, np.int64), np.zeros(1, np.float64)
    drawn, realised = np.zeros(k, np.int64), np.zeros(k, np.float64)
    buf = np.zeros(chunk, np.uint8)
    start_cursor = np.array([state.cursors.get(n, 0) for n in names], dtype=np.int64)
    ckpt_offset = sum(len(c) for c in out.checkpoints)
    order_offset = out.order_len
    while True:
        tok = np.stack([lookahead[n].get(int(start_cursor[i] + drawn[i]), chunk) for i, n in enumerate(names)])
        before = drawn.copy()
        written = mix_chunk(token_unit, batch, chunk, p, q, phase.ramp_clock, shape, lag0, tie, tok,
                            state_pos, state_tok, drawn, realised, stop_pos, stop_tok, buf)
        if written == 0:
            break
        ids = buf[:written]
        # Absolute draws per source at every CHECKPOINT positions of the phase (chunks start aligned).
        blocks = -(-written // CHECKPOINT)
        counts = np.bincount(np.arange(written) // CHECKPOINT * k + ids, minlength=blocks * k).reshape(blocks, k)
        starts = np.cumsum(np.vstack([np.zeros((1, k), np.int64), counts[:-1]]), axis=0) + before + start_cursor
        full = np.zeros((blocks, len(out.names)), np.int64)
        full[:, [all_ids[n] for n in names]] = starts
        out.checkpoints.append(full)
        global_ids = np.array([all_ids[n] for n in names], dtype=out.dtype)[ids]
        raw = global_ids.tobytes()
        out.order.write(raw)
        out.digest.update(raw)
        out.order_len += written
        # Tokens per position -> cumulative tokens at each batch boundary.
        rank = np.empty(written, np.int64)
        for i in range(k):
            sel = ids == i
            rank[sel] = np.arange(int(sel.sum()))
        pos_tokens = tok[ids, rank]
        batch_sums = pos_tokens.reshape(-1, batch).sum(axis=1)
        base = out.batch_tokens[-1][-1] if out.batch_tokens else 0
        out.batch_tokens.append(np.cumsum(batch_sums) + base)
        if progress:
            progress(written)
        if written < chunk:
            break
    positions = int(state_pos[0])
    tokens = int(round(state_tok[0]))
    clock = float(positions) if not token_unit else float(state_tok[0])
    realised_unit = drawn.astype(np.float64) if not token_unit else realised
    state.lag = {n: float(lag0[i] + _integral(p[i], q[i], phase.ramp_clock, shape, clock) - realised_unit[i])
                 for i, n in enumerate(names)}
    state.lag_unit = phase.unit
    return {"positions": positions, "tokens": tokens, "order_offset": order_offset, "ckpt_offset": ckpt_offset,
            "drawn": dict(zip(names, drawn.tolist())), "draw_tokens": dict(zip(names, realised.tolist()))}


def _compile_phase(phase: ResolvedPhase, state: _State, data: dict[str, SourceData], batch: int, out: _Out,
                   progress: Progress | None) -> dict[str, object]:
    stop_pos, stop_tok = _stop_rule(phase, state, data, batch)
    ramping = phase.ramp_clock > 0 and state.prev_weights != phase.weights
    names = sorted(n for n in set(phase.weights) | (set(state.prev_weights) if ramping else set())
                   if phase.weights.get(n, 0) > 0 or (ramping and state.prev_weights.get(n, 0) > 0))
    record: dict[str, object] = {"name": phase.name, "unit": phase.unit, "start": state.pos,
                                 "weights": phase.weights}
    start_cursors = {n: state.cursors.get(n, 0) for n in out.names}
    if len(names) == 1:
        positions, tokens = _single(phase, names[0], state, data, batch, stop_pos, stop_tok, out, progress)
        record.update(mixed=False, source=names[0], source_tokens={names[0]: tokens})
        drawn = {names[0]: positions}
        state.lag, state.lag_unit = {}, ""
    else:
        info = _mixed(phase, names, state, data, batch, stop_pos, stop_tok, out, progress)
        positions, tokens = int(info["positions"]), int(info["tokens"])  # type: ignore[call-overload]
        record.update(mixed=True, order_offset=info["order_offset"], ckpt_offset=info["ckpt_offset"],
                      source_tokens={n: int(round(t)) for n, t in info["draw_tokens"].items()})  # type: ignore[union-attr]
        drawn = info["drawn"]  # type: ignore[assignment]
    for n, d in drawn.items():
        state.cursors[n] = state.cursors.get(n, 0) + int(d)
    record.update(stop=state.pos + positions, tokens=tokens, cursors=start_cursors,
                  draws={n: int(drawn.get(n, 0)) for n in out.names}, start_tokens=state.tokens)
    state.pos += positions
    state.tokens += tokens
    state.prev_weights = phase.weights
    return record


def _check_caps(records: list[dict[str, object]], data: dict[str, SourceData]) -> None:
    problems = []
    for name, src in data.items():
        if src.max_epochs is None:
            continue
        for rec in records:
            used = (rec["cursors"][name] + rec["draws"][name]) / src.num_samples  # type: ignore[index]
            if used > src.max_epochs + 1e-12:
                problems.append(
                    f"source {name!r} needs {used:.3f} epochs by the end of phase {rec['name']!r}, "
                    f"above its cap max_epochs={src.max_epochs:g} ({src.num_samples} samples)")
                break
    if problems:
        raise MixtureError("; ".join(problems), hint="raise max_epochs, add data, or shorten the phases")


def compile_schedule(resolved: Resolved, data: dict[str, SourceData], out_dir: str | Path,
                     progress: Progress | None = None,
                     variant: dict[str, object] | None = None) -> dict[str, object]:
    """Compile ``resolved`` over ``data`` into ``out_dir`` (written atomically); returns the manifest.

    ``variant`` (the sweep variant's name and axis values) is recorded in the manifest for reports; it is
    not part of the fingerprint, which covers only what determines the order.

    Raises:
        MixtureError: If the schedule is infeasible (caps, overrun) or data is missing.
    """
    spec = resolved.spec
    batch = spec.run.global_batch_size
    names = sorted(data)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = np.uint8 if len(names) <= 255 else np.uint16
    state = _State()
    records: list[dict[str, object]] = []
    with open(tmp / "order.bin", "wb") as order:
        out = _Out(names, order, np.dtype(dtype))
        for phase in resolved.phases:
            records.append(_compile_phase(phase, state, data, batch, out, progress))
    batch_tokens = np.concatenate([np.zeros(1, np.int64)] + out.batch_tokens)
    try:
        _check_caps(records, data)
        _check_overrun(resolved, state, batch_tokens)
    except MixtureError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    checkpoints = (np.concatenate(out.checkpoints) if out.checkpoints
                   else np.zeros((0, len(names)), np.int64))
    np.save(tmp / "batch_tokens.npy", batch_tokens)
    np.save(tmp / "checkpoints.npy", checkpoints)
    (tmp / "tokens").mkdir()
    for name in names:
        if data[name].pricing.array is not None:
            np.save(tmp / "tokens" / f"{name}.npy", data[name].pricing.array.astype(np.int32))
    lr = lr_per_step(spec, records, batch_tokens, resolved.durations)
    if lr is not None:
        np.save(tmp / "lr.npy", lr)
    manifest = _manifest(resolved, data, records, state, out, batch_tokens, checkpoints, dtype)
    manifest["variant"] = variant or {"name": "", "values": {}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return manifest


def _check_overrun(resolved: Resolved, state: _State, batch_tokens: NDArray[np.int64]) -> None:
    """The phases may not run past run.duration by a whole batch (phase ends round up to batches)."""
    run = resolved.spec.run
    if run.duration is None:
        return
    d = resolved.durations["run.duration"]
    if d.unit is Unit.TOKENS:
        over = len(batch_tokens) >= 2 and batch_tokens[-2] >= d.value
        used, unit = state.tokens, "tokens"
    elif d.unit in (Unit.SAMPLES, Unit.BATCHES):
        limit = int(d.value) * (run.global_batch_size if d.unit is Unit.BATCHES else 1)
        over = state.pos > _ceil_batch(limit, run.global_batch_size)
        used, unit = state.pos, "samples"
    else:
        return
    if over:
        raise MixtureError(f"the phases take {used} {unit}, more than run.duration ({run.duration})",
                           path="run.duration", hint="lengthen run.duration or shorten the phases")


def _fingerprint(sources: list[dict[str, object]], phases: list[dict[str, object]], order_digest: str,
                 checkpoints: NDArray[np.int64]) -> str:
    """Hash of exactly what determines the order: nothing else (names of phases, LR) enters it."""
    digest = hashlib.sha256(ALGORITHM.encode())
    keyed = [{k: s[k] for k in ("name", "num_samples", "key", "shuffle_block_samples", "fingerprint")}
             for s in sources]
    shape = [{k: p[k] for k in ("start", "stop", "mixed", "source", "cursors") if k in p} for p in phases]
    digest.update(json.dumps([keyed, shape], sort_keys=True).encode())
    digest.update(order_digest.encode())
    digest.update(np.ascontiguousarray(checkpoints).tobytes())
    return digest.hexdigest()[:32]


def _manifest(resolved: Resolved, data: dict[str, SourceData], records: list[dict[str, object]], state: _State,
              out: _Out, batch_tokens: NDArray[np.int64], checkpoints: NDArray[np.int64],
              dtype: type) -> dict[str, object]:
    spec = resolved.spec
    sources = []
    for i, name in enumerate(out.names):
        src = data[name]
        sources.append({
            "id": i, "name": name, "kind": src.kind, "location": src.location, "fingerprint": src.fingerprint,
            "num_samples": src.num_samples, "key": str(src.key), "shuffle_block_samples": src.block,
            "pricing": src.pricing.describe(), "max_epochs": src.max_epochs,
            "epochs_used": state.cursors.get(name, 0) / src.num_samples, "dropped": src.dropped,
        })
    fingerprint = _fingerprint(sources, records, out.digest.hexdigest(), checkpoints)
    return {
        "format": FORMAT, "algorithm": ALGORITHM, "toolkit_version": __version__,
        "name": spec.name, "seed": spec.seed, "fingerprint": fingerprint,
        "global_batch_size": spec.run.global_batch_size, "seq_len": spec.run.seq_len,
        "num_positions": state.pos, "num_batches": state.pos // spec.run.global_batch_size,
        "total_tokens": state.tokens, "order_dtype": np.dtype(dtype).name, "checkpoint_every": CHECKPOINT,
        "sources": sources, "phases": records,
        "has_lr": spec.run.lr is not None,
        "spec": spec.model_dump(mode="json", by_alias=True),
    }
