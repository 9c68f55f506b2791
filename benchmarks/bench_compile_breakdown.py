"""Where a full-scale compile spends its time and memory, stage by stage (in-process, one run per file).

Wraps the compiler's stages (``_single``, ``_mixed``, ``_draw_tokens``, ``lr_per_step``) to record each
call's seconds and its tracemalloc peak (NumPy reports its buffers to tracemalloc), and compares the
per-source token lookahead the compiler computes with the draws the schedule uses. tracemalloc slows
allocation-heavy code, so the seconds here are for proportions; bench_compile.py compile has the timings.
Usage: .venv/bin/python benchmarks/bench_compile.py breakdown
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_compile_common import PYTHON, ROOT, table  # noqa: E402

import mixture.compiler as compiler  # noqa: E402

STAGES = ("_single", "_mixed", "_draw_tokens", "lr_per_step")


def _wrap(name: str, fn: Callable[..., object], calls: list[dict[str, object]]) -> Callable[..., object]:
    def timed(*args: object, **kwargs: object) -> object:
        live, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        record = {"stage": name, "seconds": seconds, "live_mib_before": live / 2**20, "peak_mib": peak / 2**20}
        if name == "_draw_tokens":
            src = args[0]
            record["draws"] = int(args[2])  # type: ignore[call-overload]
            record["source"] = f"{src.name} ({'constant' if src.pricing.constant is not None else 'per-sample'})"
        calls.append(record)
        return result
    return timed


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would include the parent's peak, which Linux
    carries across fork and exec."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def profile(path: Path, work: Path) -> dict[str, object]:
    """Compile ``path`` once in-process with every stage wrapped."""
    from mixture.api import compile_variant, variants

    calls: list[dict[str, object]] = []
    originals = {name: getattr(compiler, name) for name in STAGES}
    for name, fn in originals.items():
        setattr(compiler, name, _wrap(name, fn, calls))
    try:
        rss_before = _peak_rss_mib()
        tracemalloc.start()
        start = time.perf_counter()
        schedule = compile_variant(variants(path)[0], work / "schedule")
        seconds = time.perf_counter() - start
        tracemalloc.stop()
    finally:
        for name, fn in originals.items():
            setattr(compiler, name, fn)
    stages = []
    for name in STAGES:
        mine = [c for c in calls if c["stage"] == name]
        if mine:
            stages.append({"stage": name, "calls": len(mine), "seconds": sum(float(c["seconds"]) for c in mine),
                           "peak_mib_above_live": max(float(c["peak_mib"]) - float(c["live_mib_before"]) for c in mine),
                           "peak_mib": max(float(c["peak_mib"]) for c in mine),
                           "draws_computed": sum(int(c.get("draws", 0)) for c in mine) or None})
    lookahead: dict[str, dict[str, int]] = {}
    for c in calls:
        if c["stage"] == "_draw_tokens":
            entry = lookahead.setdefault(str(c["source"]), {"draws_computed": 0, "draws_used": 0})
            entry["draws_computed"] += int(c["draws"])  # type: ignore[call-overload]
    for phase in schedule.phases:  # draws of the phases that call _draw_tokens (all but constant singles)
        for name, draws in phase.draws.items():
            for key, entry in lookahead.items():
                if key.startswith(name + " ") and (phase.mixed or "per-sample" in key):
                    entry["draws_used"] += int(draws)
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    return {"file": name, "positions": len(schedule), "seconds_traced": seconds,
            "rss_mib_before_compile": rss_before,
            "rss_mib_peak": _peak_rss_mib(),
            "lookahead": [{"source": k, **v} for k, v in lookahead.items()], "stages": stages}


def _one(path: str) -> None:
    """Child process: profile one file and print the result as JSON (each file gets a fresh RSS)."""
    import numpy as np

    from mixture.kernels import mix_samples  # noqa: F401  (numba loads before the RSS baseline)
    from mixture.permute import permute

    permute(np.arange(3), 10, 4, 1)
    work = Path(tempfile.mkdtemp(prefix="bench-breakdown-"))
    try:
        print(json.dumps(profile(Path(path), work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(argv: list[str]) -> dict[str, object]:
    """Profile the recipe, its 2.1B-position variant and the captions-counted variant, one process each."""
    from bench_compile import CAPTIONS, RECIPE, full_plan_recipe

    work = Path(tempfile.mkdtemp(prefix="bench-breakdown-"))
    try:
        results = []
        for path in (RECIPE, full_plan_recipe(work), CAPTIONS):
            proc = subprocess.run([PYTHON, __file__, "--one", str(path)], capture_output=True, text=True,
                                  check=True, cwd=ROOT)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for result in results:
        print(f"{result['file']}: {result['positions']:,} positions, {result['seconds_traced']:.2f} s traced, "
              f"RSS {result['rss_mib_before_compile']:.0f} MiB before (imports, numba) -> peak "
              f"{result['rss_mib_peak']:.0f} MiB")
        print(table(result["stages"], ["stage", "calls", "seconds", "peak_mib_above_live", "peak_mib",
                                        "draws_computed"]))
        print(table(result["lookahead"], ["source", "draws_computed", "draws_used"]))
    return {"what": "per-stage seconds (under tracemalloc) and tracemalloc peaks of one in-process compile",
            "results": results}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        _one(sys.argv[2])
    else:
        run(sys.argv[1:])
