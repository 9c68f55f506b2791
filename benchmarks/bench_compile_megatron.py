"""Mixed-phase compile speed against Megatron-LM's C++ blend builder, side by side in one process.

Anchor: megatron-core's ``build_blending_indices`` (megatron/core/datasets/helpers.cpp, compiled into
``helpers_cpp``): per position, the source with the largest ``weight * max(n, 1) - count`` error, writing a
source id and a per-source sample index. It is loaded from a separate, benchmark-only environment by file
path, so neither torch nor the rest of megatron is imported (and nothing of it enters this project):

    uv venv .bench-venv --python 3.11
    VIRTUAL_ENV=.bench-venv uv pip install "megatron-core<0.16" numpy

(`.bench-venv/` is git-ignored; the helper is a CPython 3.11 extension, the same Python as `.venv`.)

Ours, measured as the *marginal* rate of the whole in-process compiler (``compile_variant``: pricing,
kernel, checkpoints, order.bin, its hash, manifest) on a one-phase file: ``(N - N0) / (t(N) - t(N0))``
with ``N0 = N / 32``, so set-up cancels. Rows:

* ``static samples``: three declared text sources, sample-unit mix 0.5/0.3/0.2: Megatron's own problem.
* ``static tokens``: the same weights as token shares over samples of varying size (mean 2048, std 600).
* ``ramp samples`` / ``ramp tokens``: a cosine ramp from (1, 0, 0) to 0.5/0.3/0.2 over the first half.
* ``static samples, 1 thread``: the same with ``numba.set_num_threads(1)``; the default row uses every
  thread numba has (``NUMBA_NUM_THREADS``, the cores), mixing chunks side by side (the order is the same).
* ``kernel``: :func:`mixture.kernels.mix_samples` alone on the static sample-unit mix (no I/O), one thread.

Every case runs once per round, rounds alternate the cases (A B C ... A B C ...) because the machine is
shared; medians over rounds, ratios against Megatron's median, and the load average are reported. Each
case is timed in wall seconds and in CPU seconds of the process (``time.process_time``: every thread,
user + system), whose ratios move less with the machine's load; a multi-threaded row costs more CPU than
its wall time.
Usage: .venv/bin/python benchmarks/bench_compile_megatron.py [--positions N] [--rounds R]
Results: a table on stdout and benchmarks/results/compile_megatron.json.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numba
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_compile_common import ROOT, machine, median, table, write_json  # noqa: E402

from mixture.api import compile_variant, variants  # noqa: E402
from mixture.kernels import LINEAR, Chunk, Curve, mix_samples  # noqa: E402

WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}
BATCH = 512


def load_megatron_helper() -> ModuleType:
    """megatron-core's compiled ``helpers_cpp`` from .bench-venv, loaded by path (no torch)."""
    found = glob.glob(str(ROOT / ".bench-venv/lib/python*/site-packages/megatron/core/datasets/helpers_cpp*.so"))
    if not found:
        sys.exit("megatron-core is not installed in .bench-venv: see this script's docstring")
    spec = importlib.util.spec_from_file_location("helpers_cpp", found[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def megatron(helper: ModuleType, size: int) -> None:
    """build_blending_indices over ``size`` positions, 0.5/0.3/0.2 (arrays as megatron allocates them)."""
    index = np.zeros(size, dtype=np.int16)
    sample_index = np.zeros(size, dtype=np.int64)
    helper.build_blending_indices(index, sample_index, np.array(list(WEIGHTS.values())), 3, size, False)


def mixture_file(directory: Path, size: int, unit: str, ramp: bool) -> Path:
    """A one-phase file mixing three declared sources over ``size`` positions (or their tokens)."""
    tokens = 2048 if unit == "samples" else {"mean": 2048, "std": 600, "min": 64}
    sources = {n: {"kind": "text", "declared": {"samples": "1B", "tokens_per_sample": tokens}} for n in WEIGHTS}
    duration = f"{size}sp" if unit == "samples" else f"{size * 2048} tok"
    phases = [{"name": "lead", "duration": f"{BATCH}sp", "mix": {"a": 1}},
              {"name": "mix", "duration": duration, "unit": unit, "mix": dict(WEIGHTS)}]
    if ramp:
        length = f"{size // 2}sp" if unit == "samples" else f"{size * 1024} tok"
        phases[1]["ramp"] = {"length": length, "shape": "cosine"}
    else:
        phases = phases[1:]
    doc = {"name": f"bench-{unit}", "seed": 1, "run": {"seq_len": 2048, "global_batch_size": BATCH},
           "sources": sources, "phases": phases}
    path = directory / f"{unit}-{'ramp' if ramp else 'static'}-{size}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def compile_seconds(path: Path, out: Path) -> np.ndarray:
    """(wall, CPU) seconds of one in-process compile of ``path`` (CPU: every thread of the process)."""
    (variant,) = variants(path)
    start = np.array([time.perf_counter(), time.process_time()])
    compile_variant(variant, out)
    seconds = np.array([time.perf_counter(), time.process_time()]) - start
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def kernel_case(size: int) -> Callable[[], None]:
    """mix_samples alone over ``size`` positions of the static mix (constant 2048-token samples); the big
    arrays are allocated once, outside the timed call, as the compiler allocates them once per phase."""
    w = np.array(list(WEIGHTS.values()))
    curve = Curve(w, w.copy(), np.zeros(3), np.arange(3, dtype=np.int64), 0.0, LINEAR)
    look = np.full((3, size), 2048, np.int64)
    out, batch_tokens = np.zeros(size, np.uint8), np.zeros(size // BATCH, np.int64)
    ckpt = np.zeros((size // 4096, 3), np.int64)

    def run() -> None:
        chunk = Chunk(look, np.arange(3, dtype=np.int64), np.zeros(3, np.int64), np.zeros(3), np.zeros(2),
                      np.array([size, math.inf, BATCH, 4096.0]), out, batch_tokens, ckpt,
                      np.full(3, np.nan), np.full(3, np.nan))
        assert mix_samples(curve, chunk) == size

    return run


def _cases(helper: ModuleType, size: int, work: Path) -> dict[str, Callable[[], np.ndarray]]:
    """Each case returns the (wall, CPU) seconds its ``size - size // 32`` marginal positions took."""
    small = size // 32

    def marginal(unit: str, ramp: bool, threads: int | None = None) -> Callable[[], float]:
        big, little = mixture_file(work, size, unit, ramp), mixture_file(work, small, unit, ramp)

        def run() -> np.ndarray:
            numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
            try:
                return compile_seconds(big, work / "o") - compile_seconds(little, work / "o")
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        return run

    def timed(fn: Callable[[], None]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            start = np.array([time.perf_counter(), time.process_time()])
            fn()
            return np.array([time.perf_counter(), time.process_time()]) - start
        return run

    return {"megatron build_blending_indices (C++), static samples":
            timed(lambda: megatron(helper, size - small)),
            "ours compile, static samples": marginal("samples", False),
            "ours compile, static samples, 1 thread": marginal("samples", False, threads=1),
            "ours compile, static tokens": marginal("tokens", False),
            "ours compile, ramp samples": marginal("samples", True),
            "ours compile, ramp tokens": marginal("tokens", True),
            "ours kernel only (mix_samples), static samples": timed(kernel_case(size - small))}


def run(size: int, rounds: int) -> dict[str, object]:
    """Alternate every case ``rounds`` times; medians and ratios to Megatron."""
    helper = load_megatron_helper()
    work = Path(tempfile.mkdtemp(prefix="bench-megatron-"))
    try:
        cases = _cases(helper, size, work)
        for fn in cases.values():  # warm-up: numba's compiled kernels load, page cache fills
            fn()
        times: dict[str, list[np.ndarray]] = {name: [] for name in cases}
        loads = []
        for _ in range(rounds):
            for name, fn in cases.items():
                times[name].append(fn())
            loads.append(machine()["loadavg_1_5_15"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    positions = size - size // 32
    rows = []
    for name, t in times.items():
        wall, cpu = median([x[0] for x in t]), median([x[1] for x in t])
        rows.append({"method": name, "positions": positions, "seconds_median": wall,
                     "positions_per_s": positions / wall, "cpu_seconds_median": cpu,
                     "positions_per_cpu_s": positions / cpu, "all_seconds": [round(float(x[0]), 4) for x in t],
                     "all_cpu_seconds": [round(float(x[1]), 4) for x in t]})
    for key, ratio in (("positions_per_s", "vs_megatron"), ("positions_per_cpu_s", "vs_megatron_cpu")):
        anchor = rows[0][key]
        for row in rows:
            row[ratio] = row[key] / anchor
    return {"rows": rows, "loadavg_per_round": loads, "batch": BATCH, "threads": numba.config.NUMBA_NUM_THREADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=1 << 25, help="positions of the big compile")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = run(args.positions, args.rounds)
    print(table(result["rows"], ["method", "positions", "seconds_median", "positions_per_s", "vs_megatron",
                                 "cpu_seconds_median", "vs_megatron_cpu"]))
    print("load average per round:", result["loadavg_per_round"], "threads:", result["threads"])
    print("written", write_json("compile_megatron", result))


if __name__ == "__main__":
    main()
