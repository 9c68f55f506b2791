"""Mixing throughput (positions/s): our EDF kernel against Megatron-LM's static blend written in NumPy.

Baseline: Megatron-LM's ``build_blending_indices`` (megatron/core/datasets/helpers.cpp): for each
position n pick the source with the largest error ``weight_i * max(n, 1) - count_i`` (first index on ties),
and record its per-source sample index. Three implementations of exactly that algorithm:

* ``megatron numpy loop``: the per-position Python loop, as the pure-Python fallbacks of Megatron-derived
  codebases write it (``errors = weights * max(n, 1.0) - counts; i = argmax(errors)``).
* ``megatron numpy scan``: a chunk-vectorised NumPy variant that is *exact*. Let ``delta_i(n) = count_i(n) -
  floor(w_i * n)`` for all sources but the last (the last follows from sum(count) = n). The greedy keeps
  ``delta`` in {-1, 0, 1} (else we widen to {-2..2}, {-4..4}), so each position n has a transition table
  ``T_n: state -> next state`` and a choice table ``O_n: state -> source``, built for all n of a chunk at
  once with the same float expressions as Megatron. The trajectory is then a prefix composition of the
  tables (Hillis-Steele doubling, log2(chunk) gathers): no per-position Python. A state leaving the window
  lands in a sink and the chunk is redone with a wider window, so the result is exact, not approximate
  (checked against the loop on every run).
* ``megatron numba loop``: the same loop compiled with numba, for scale (the C++ original's class).

Ours: ``mixture.kernels.mix_samples`` / ``mix_tokens`` with three sources (text 2048 tokens; image-caption 729 visual + ~30
caption tokens; instruction ~1500 tokens), ramping from text-only to (0.80, 0.15, 0.05) over the first half
of the positions: token-unit (tokens shares, the time-varying token-level mix we ship), sample-unit with
the same ramp, and sample-unit static (Megatron's own problem). ``kernel`` rows time the kernel alone
(per-draw token sizes precomputed, as Megatron's sizes are given); ``compile_schedule`` rows time the whole
in-process compiler on a one-mixed-phase file of the same number of positions (token lookahead,
shuffles, checkpoints, order.bin, manifest). Ours outputs source ids only: per-source sample indices are
implicit (random access reconstructs them), whereas Megatron materialises them.

All rows run the same number of positions in alternating order, repeated; medians and ratios reported.
Usage: .venv/bin/python benchmarks/bench_compile.py mix [--positions N] [--large N] [--repeats R]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_compile_common import median, table  # noqa: E402

from mixture.kernels import LINEAR, Chunk, Curve, mix_samples, mix_tokens  # noqa: E402
from mixture.permute import derive_key  # noqa: E402
from mixture.sourcedata import Pricing  # noqa: E402

WEIGHTS = np.array([0.80, 0.15, 0.05])
START = np.array([1.0, 0.0, 0.0])
NAMES = ["dclm", "datacomp_dr", "llava"]
BATCH = 256


# ---------------------------------------------------------------- Megatron-LM's static blend, three ways


def megatron_numpy_loop(weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's build_blending_indices as a per-position NumPy loop."""
    dataset_index = np.zeros(size, dtype=np.uint8)
    dataset_sample_index = np.zeros(size, dtype=np.int64)
    current_samples = np.zeros(len(weights), dtype=np.int64)
    for sample_idx in range(size):
        errors = weights * max(sample_idx, 1.0) - current_samples
        max_error_index = int(np.argmax(errors))
        dataset_index[sample_idx] = max_error_index
        dataset_sample_index[sample_idx] = current_samples[max_error_index]
        current_samples[max_error_index] += 1
    return dataset_index, dataset_sample_index


@njit(cache=True)
def megatron_numba_loop(weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The same loop compiled (a stand-in for Megatron's C++ helper)."""
    k = weights.shape[0]
    dataset_index = np.zeros(size, dtype=np.uint8)
    dataset_sample_index = np.zeros(size, dtype=np.int64)
    current = np.zeros(k, dtype=np.int64)
    for n in range(size):
        x = max(float(n), 1.0)
        best = 0
        best_error = weights[0] * x - current[0]
        for i in range(1, k):
            error = weights[i] * x - current[i]
            if error > best_error:
                best_error = error
                best = i
        dataset_index[n] = best
        dataset_sample_index[n] = current[best]
        current[best] += 1
    return dataset_index, dataset_sample_index


def _scan_chunk(w: np.ndarray, n0: int, m: int, c0: np.ndarray, radius: int) -> np.ndarray | None:
    """Exact greedy choices for positions [n0, n0 + m) from counts c0, or None if delta leaves the window."""
    k, free, side = len(w), len(w) - 1, 2 * radius + 1
    num_states = side**free
    sink, width = num_states, num_states + 1
    n = np.arange(n0, n0 + m + 1, dtype=np.int64)
    here = n[:-1]
    x = np.maximum(here.astype(np.float64), 1.0)
    base = [np.floor(n.astype(np.float64) * w[j]).astype(np.int64) for j in range(free)]
    wx = [x * w[i] for i in range(k)]  # the very products Megatron computes
    table_next = np.empty((m, width), np.uint8 if width <= 256 else np.int32)
    table_next[:, sink] = sink
    table_pick = np.zeros((m, width), np.uint8)
    for s in range(num_states):
        delta = [(s // side**j) % side - radius for j in range(free)]
        counts = [base[j][:-1] + delta[j] for j in range(free)]
        counts.append(here - sum(counts))
        pick = np.zeros(m, np.uint8)
        best = wx[0] - counts[0]
        for i in range(1, k):  # strict '>' keeps the first index on ties, as Megatron does
            error = wx[i] - counts[i]
            pick[error > best] = i
            np.maximum(best, error, out=best)
        table_pick[:, s] = pick
        ok = counts[-1] >= 0
        code = np.zeros(m, np.int64)
        for j in range(free):
            nxt = counts[j] + (pick == j) - base[j][1:] + radius
            ok &= (counts[j] >= 0) & (nxt >= 0) & (nxt < side)
            code += nxt * side**j
        table_next[:, s] = np.where(ok, code, sink)
    d0 = [int(c0[j] - base[j][0] + radius) for j in range(free)]
    if any(d < 0 or d >= side for d in d0):
        return None
    s0 = sum(d * side**j for j, d in enumerate(d0))
    prefix = table_next  # prefix[j] = T_j o ... o T_0 after the doubling rounds
    rows = np.arange(m, dtype=np.intp)[:, None] * width
    step = 1
    while step < m:
        flat = prefix.ravel()
        composed = flat[prefix[:-step].astype(np.intp) + rows[step:]]
        prefix = prefix.copy()
        prefix[step:] = composed
        step *= 2
    states = np.empty(m, np.intp)
    states[0] = s0
    states[1:] = prefix[:-1, s0]
    if (states == sink).any() or prefix[-1, s0] == sink:
        return None
    return table_pick[np.arange(m), states]


def megatron_numpy_scan(weights: np.ndarray, size: int, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's build_blending_indices, chunk-vectorised and exact (see the module docstring)."""
    k = len(weights)
    dataset_index = np.empty(size, np.uint8)
    dataset_sample_index = np.empty(size, np.int64)
    counts = np.zeros(k, np.int64)
    for n0 in range(0, size, chunk):
        m = min(chunk, size - n0)
        for radius in (1, 2, 4):
            picks = _scan_chunk(weights, n0, m, counts, radius)
            if picks is not None:
                break
        else:
            raise RuntimeError("greedy deficit outside +-4: widen the window")
        dataset_index[n0: n0 + m] = picks
        for i in range(k):
            where = np.flatnonzero(picks == i)
            dataset_sample_index[n0 + where] = counts[i] + np.arange(where.size)
            counts[i] += where.size
    return dataset_index, dataset_sample_index


# ---------------------------------------------------------------- ours


def _pricings() -> list[Pricing]:
    return [Pricing(base=0, mean=2048.0), Pricing(base=729, mean=30, std=12, lo=3, hi=77, key=derive_key(7, "dc")),
            Pricing(base=0, mean=1500, std=500, lo=64, hi=2048, key=derive_key(7, "llava"))]


def make_tokens(size: int) -> np.ndarray:
    """tok[s, j]: budget tokens of source s's j-th draw (enough for any source to take every position)."""
    ids = np.arange(size, dtype=np.int64)
    return np.stack([p.tokens_of(ids) for p in _pricings()])


def ours_kernel(mode: str, size: int, tok: np.ndarray) -> np.ndarray:
    """One kernel call (mix_samples or mix_tokens) over ``size`` positions: mode is token-ramp, sample-ramp or sample-static."""
    token_unit = mode.startswith("token")
    k = len(WEIGHTS)
    if mode == "sample-static":
        p, ramp = WEIGHTS.copy(), 0.0
    else:
        p = START.copy()
        mean_tokens = float(np.dot(WEIGHTS, tok[:, :4096].mean(axis=1)))
        ramp = size / 2 * (mean_tokens if token_unit else 1.0)
    tie = np.array([derive_key("tie", n) >> 1 for n in NAMES], dtype=np.int64)
    curve = Curve(p, WEIGHTS.copy(), np.zeros(k), tie, ramp, LINEAR)
    look = np.ascontiguousarray(np.concatenate([tok, tok[:, -1:]], axis=1))  # mix_tokens reads one ahead
    chunk = Chunk(look, np.arange(k, dtype=np.int64), np.zeros(k, np.int64), np.zeros(k), np.zeros(2),
                  np.array([size, math.inf, BATCH, 4096.0]), np.zeros(size, np.uint8),
                  np.zeros(size // BATCH, np.int64), np.zeros((-(-size // 4096), k), np.int64),
                  np.full(k, np.nan), np.full(k, np.nan))
    written = (mix_tokens if token_unit else mix_samples)(curve, chunk)
    assert written == size, (written, size)
    return chunk.out


def mixed_phase_file(directory: Path, size: int, unit: str) -> Path:
    """A file whose second phase mixes three sources over ``size`` positions, ramping over its first half."""
    warm = f"{BATCH} sp"
    if unit == "tokens":
        mean = 0.80 * 2048 + 0.15 * 759 + 0.05 * 1500
        duration, ramp = f"{int(size * mean)} tok", f"{int(size * mean / 2)} tok"
    else:
        duration, ramp = f"{size} sp", f"{size // 2} sp"
    text = f"""name: mixbench
seed: 7
run: {{seq_len: 2048, global_batch_size: {BATCH}}}
sources:
  dclm: {{kind: text, declared: {{samples: 2.1B, tokens_per_sample: 2048}}}}
  datacomp_dr: {{kind: image_caption, declared: {{samples: 1.4B,
                 caption_tokens: {{mean: 30, std: 12, min: 3, max: 77}}}}}}
  llava: {{kind: instruction, declared: {{samples: 665k, images_per_sample: 0,
           tokens_per_sample: {{mean: 1500, std: 500, min: 64, max: 2048}}}}}}
phases:
  - {{name: warm, duration: {warm}, mix: {{dclm: 1}}}}
  - {{name: mix, duration: {duration}, unit: {unit}, mix: {{dclm: 0.80, datacomp_dr: 0.15, llava: 0.05}},
     ramp: {{length: {ramp}}}}}
"""
    path = directory / f"mix_{unit}.yaml"
    path.write_text(text)
    return path


def ours_compile(path: Path, out: Path) -> int:
    """The whole in-process compiler on ``path``; returns the mixed phase's positions."""
    from mixture.api import compile_variant, variants

    schedule = compile_variant(variants(path)[0], out)
    phase = schedule.phases[1]
    return phase.positions


# ---------------------------------------------------------------- driver


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternate(cases: dict[str, Callable[[], object]], positions: dict[str, int],
               repeats: int) -> list[dict[str, object]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn))
        print(f"  rep {rep + 1}: " + ", ".join(f"{n} {t[-1]:.3g}s" for n, t in times.items()), flush=True)
    rows = []
    for name, t in times.items():
        sec = median(t)
        rows.append({"method": name, "positions": positions[name], "repeats": repeats, "seconds_median": sec,
                     "seconds_min": min(t), "positions_per_s": positions[name] / sec,
                     "ns_per_position": sec / positions[name] * 1e9, "all_seconds": t})
    return rows


def run(argv: list[str], repeats: int | None) -> dict[str, object]:
    """Both tables (same positions for every method; then a larger N without the NumPy baselines)."""
    parser = argparse.ArgumentParser(prog="bench_compile.py mix")
    parser.add_argument("--positions", type=int, default=1 << 20, help="positions, every method (multiple of 256)")
    parser.add_argument("--large", type=int, default=1 << 24, help="positions of the compiled-only table")
    args = parser.parse_args(argv)
    repeats = repeats or 5
    size, large = args.positions, args.large
    work = Path(tempfile.mkdtemp(prefix="bench-mix-"))
    try:
        tok = make_tokens(max(size, large))
        # Warm-ups (JIT loads, page faults) and the exactness check of the two NumPy variants.
        loop = megatron_numpy_loop(WEIGHTS, size)
        scan = megatron_numpy_scan(WEIGHTS, size)
        compiled = megatron_numba_loop(WEIGHTS, size)
        exact = {"numpy_scan_equals_loop": bool((loop[0] == scan[0]).all() and (loop[1] == scan[1]).all()),
                 "numba_equals_loop": bool((loop[0] == compiled[0]).all() and (loop[1] == compiled[1]).all())}
        print(f"  exactness: {exact}", flush=True)
        files = {u: mixed_phase_file(work, size, u) for u in ("tokens", "samples")}
        mixed = {u: ours_compile(files[u], work / f"out_{u}") for u in files}
        for mode in ("token-ramp", "sample-ramp", "sample-static"):
            ours_kernel(mode, size, tok[:, :size])
        small = tok[:, :size]
        cases = {
            "megatron numpy loop (static, samples)": lambda: megatron_numpy_loop(WEIGHTS, size),
            "megatron numpy scan, exact (static, samples)": lambda: megatron_numpy_scan(WEIGHTS, size),
            "megatron numba loop (static, samples), reference": lambda: megatron_numba_loop(WEIGHTS, size),
            "ours kernel: tokens, 3 sources, ramp": lambda: ours_kernel("token-ramp", size, small),
            "ours kernel: samples, 3 sources, ramp": lambda: ours_kernel("sample-ramp", size, small),
            "ours kernel: samples, 3 sources, static": lambda: ours_kernel("sample-static", size, small),
            "ours compile_schedule: tokens, ramp (whole compiler, in-process)":
                lambda: ours_compile(files["tokens"], work / "out_tokens"),
            "ours compile_schedule: samples, ramp (whole compiler, in-process)":
                lambda: ours_compile(files["samples"], work / "out_samples"),
        }
        positions = {name: size for name in cases}
        positions["ours compile_schedule: tokens, ramp (whole compiler, in-process)"] = mixed["tokens"]
        positions["ours compile_schedule: samples, ramp (whole compiler, in-process)"] = mixed["samples"]
        print(f"== same positions ({size:,}) for every method, {repeats} alternating repeats", flush=True)
        rows = _alternate(cases, positions, repeats)
        base = {r["method"]: r["positions_per_s"] for r in rows}
        for row in rows:
            row["vs_numpy_loop"] = row["positions_per_s"] / base["megatron numpy loop (static, samples)"]
            row["vs_numpy_scan"] = row["positions_per_s"] / base["megatron numpy scan, exact (static, samples)"]
        print(table(rows, ["method", "positions", "seconds_median", "positions_per_s", "ns_per_position",
                           "vs_numpy_loop", "vs_numpy_scan"]))
        big = {
            "megatron numba loop (static, samples), reference": lambda: megatron_numba_loop(WEIGHTS, large),
            "ours kernel: tokens, 3 sources, ramp": lambda: ours_kernel("token-ramp", large, tok),
            "ours kernel: samples, 3 sources, ramp": lambda: ours_kernel("sample-ramp", large, tok),
            "ours kernel: samples, 3 sources, static": lambda: ours_kernel("sample-static", large, tok),
        }
        print(f"== {large:,} positions (compiled code only; the NumPy loop would take minutes), 3 repeats",
              flush=True)
        big_rows = _alternate(big, {name: large for name in big}, 3)
        ref = big_rows[0]["positions_per_s"]
        for row in big_rows:
            row["vs_numba_loop"] = row["positions_per_s"] / ref
        print(table(big_rows, ["method", "positions", "seconds_median", "positions_per_s", "ns_per_position",
                               "vs_numba_loop"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"goal": "ours >= 1.0x Megatron's static blend in NumPy, positions/s on the same positions",
            "weights": WEIGHTS.tolist(), "ramp_from": START.tolist(), "batch": BATCH, "exactness": exact,
            "same_positions": rows, "large": big_rows}


if __name__ == "__main__":
    import json

    print(json.dumps(run(sys.argv[1:], None), indent=1, default=str)[:2000])
