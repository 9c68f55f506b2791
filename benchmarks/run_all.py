"""`make bench`: the quick benchmarks, one process each, with a summary of what ran and how long it took.

Quick mode (the default) runs each benchmark at a size that finishes in minutes (all five: 16 min on 2
cores at load average 20); its numbers show the code works and the order of magnitude, not the figures of
docs/benchmarks.md, which come from each script at its own defaults (``--full`` runs those: tens of
minutes to hours, and updates benchmarks/results/). A quick run leaves benchmarks/results/ as it was (the
scripts write their JSON there; it is put back afterwards). ``--only NAME`` runs some of them. Exit status
1 when any benchmark fails.

Usage: ``.venv/bin/python benchmarks/run_all.py [--full] [--only validate mix ...]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script and arguments in quick mode, arguments added in full mode)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "validate": (["bench_compile.py", "validate", "--repeats", "3"], []),
    "mix": (["bench_compile.py", "mix", "--positions", "262144", "--large", "1048576"], []),
    "ingest_text": (["bench_ingest_text.py", "--docs", "2000", "--repeats", "1"], []),
    "stats": (["bench_stats.py", "--rows", "200000", "--rounds", "1", "--dir", "/tmp/bench-stats-quick"], []),
    "serve": (["bench_serve.py", "--samples", "20000", "--rounds", "1", "--workers", "0"], []),
    "train_kernels": (["bench_train_kernels.py", "--rounds", "2", "--steps", "5"], []),
}


def _command(name: str, full: bool) -> list[str]:
    quick, _ = BENCHMARKS[name]
    script, *args = quick
    if full:  # the script's own defaults (its documented figures)
        args = args[:1] if script == "bench_compile.py" else []
    return [sys.executable, str(HERE / script), *args]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each benchmark at its own (documented) size")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    saved = Path(tempfile.mkdtemp()) / "results"
    shutil.copytree(HERE / "results", saved)
    try:
        results = _run_each(args.only or list(BENCHMARKS), args.full, env)
    finally:
        if not args.full:  # quick numbers must not replace the documented ones
            shutil.rmtree(HERE / "results")
            shutil.copytree(saved, HERE / "results")
        shutil.rmtree(saved.parent, ignore_errors=True)
    print("\nbenchmark      status  seconds")
    for name, code, seconds in results:
        print(f"{name:<14} {'ok' if code == 0 else f'rc={code}':<7} {seconds:7.1f}")
    return 1 if any(code for _, code, _ in results) else 0


def _run_each(names: list[str], full: bool, env: dict[str, str]) -> list[tuple[str, int, float]]:
    results = []
    for name in names:
        command = _command(name, full)
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, cwd=HERE.parent, env=env).returncode
        results.append((name, code, time.perf_counter() - start))
    return results


if __name__ == "__main__":
    sys.exit(main())
