"""The compiler's speed goals, measured. One entry point, one subcommand per goal.

  compile     `mixture compile` of the full 1B paper recipe as a whole process: wall, CPU, peak RSS.
              Goal: under 10 s and under 1 GB on a 2-core machine (recipe as written: 1.70B positions;
              also the same recipe stretched to the full 4.3T-token plan, 2.1B positions).
  validate    `mixture validate` of a ~100-line file (benchmarks/validate_100.yaml), start-up included.
              Goal: under 1 s wall.
  mix         mixing throughput (positions/s) against Megatron-LM's static blend in NumPy: see
              benchmarks/bench_compile_mix.py. Goal: at least 1.0x.
  access      random access to the compiled 1B schedule: see benchmarks/bench_compile_access.py.
              Goal: any position in under 10 microseconds.
  breakdown   where a full-scale compile spends time and memory, stage by stage (for the bottleneck notes).
  all         compile, validate, breakdown, mix, access (the process measurements first, while this
              parent process is small: Linux carries a parent's peak RSS into a child's ru_maxrss).

Process runs alternate between configurations (A, B, C, A, B, C, ...) because this machine is shared and
drifts; each configuration reports the median over its runs. Two interpreter set-ups are compared:
``as-is`` (this environment sets PYTHONDONTWRITEBYTECODE=1, so every start compiles the source of ~500
modules: numpy, numba, pydantic, ...) and ``pyc`` (bytecode cached in a private PYTHONPYCACHEPREFIX,
warmed by one untimed run: what a normal install sees). Neither touches the shared .venv.

Usage: .venv/bin/python benchmarks/bench_compile.py {compile,validate,mix,access,breakdown,all} [--repeats N]
Results: a table on stdout and benchmarks/results/compile_<goal>.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile_common import (  # noqa: E402
    MIXTURE,
    PYTHON,
    ROOT,
    env_variant,
    machine,
    median,
    run_process,
    table,
    write_json,
)

RECIPE = ROOT / "examples" / "paper_1b.yaml"
CAPTIONS = ROOT / "benchmarks" / "compile_paper_1b_captions.yaml"
VALIDATE_FILE = ROOT / "benchmarks" / "validate_100.yaml"
GOAL_S, GOAL_BYTES, GOAL_VALIDATE_S = 10.0, 1e9, 1.0  # 1 GB read strictly: 10**9 bytes = 953.7 MiB


def full_plan_recipe(directory: Path) -> Path:
    """examples/paper_1b.yaml with the text phase running to 100% of the 4.3T plan (2.1B positions)."""
    data = yaml.safe_load(RECIPE.read_text())
    assert data["phases"][0]["name"] == "text", "examples/paper_1b.yaml changed shape: update this benchmark"
    data["phases"][0]["end"] = "100% of text_plan"
    data["name"] = "paper-1b-full-plan"
    path = directory / "paper_1b_full_plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _summarise(name: str, runs: list[dict[str, object]], goal_s: float, goal_bytes: float | None) -> dict:
    walls = [float(r["wall_s"]) for r in runs]
    rss = [float(r["max_rss_mib"]) for r in runs]
    row = {"config": name, "runs": len(runs), "wall_s_median": median(walls), "wall_s_min": min(walls),
           "wall_s_max": max(walls), "cpu_s_median": median([float(r["cpu_s"]) for r in runs]),
           "max_rss_mib_median": median(rss), "max_rss_mib_max": max(rss),
           "max_rss_mb_decimal_max": max(rss) * 2**20 / 1e6,
           "wall_goal_met": median(walls) < goal_s}
    if goal_bytes is not None:
        row["rss_goal_met"] = max(rss) * 2**20 < goal_bytes
    return row


def bench_compile(repeats: int, cold_jit: bool) -> dict[str, object]:
    """Alternating `mixture compile` runs of the recipe, its 2.1B-position variant and the captions variant."""
    work = Path(tempfile.mkdtemp(prefix="bench-compile-"))
    try:
        pyc = work / "pyc"
        full = full_plan_recipe(work)
        configs = {
            "paper_1b, as-is (no .pyc)": (RECIPE, "as-is"),
            "paper_1b, .pyc cached": (RECIPE, "pyc"),
            "paper_1b full 4.3T plan (2.1B positions), .pyc cached": (full, "pyc"),
            "paper_1b captions counted (per-sample pricing), .pyc cached": (CAPTIONS, "pyc"),
        }
        out = work / "schedule"
        # Untimed warm-up: fills the private .pyc cache and the page cache.
        run_process([MIXTURE, "compile", str(RECIPE), "-o", str(out)], env_variant("pyc", pyc))
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in configs}
        for rep in range(repeats):
            for name, (path, env) in configs.items():
                result = run_process([MIXTURE, "compile", str(path), "-o", str(out)], env_variant(env, pyc))
                runs[name].append(result)
                print(f"  rep {rep + 1} {name}: {result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU, "
                      f"{result['max_rss_mib']:.0f} MiB", flush=True)
        rows = [_summarise(name, r, GOAL_S, GOAL_BYTES) for name, r in runs.items()]
        for row, name in zip(rows, configs):
            row["output"] = runs[name][-1]["stdout"]
        if cold_jit:  # first compile after install: numba compiles the kernels (cache in an empty dir)
            env = env_variant("pyc", pyc)
            env["NUMBA_CACHE_DIR"] = str(work / "numba-cold")
            result = run_process([MIXTURE, "compile", str(RECIPE), "-o", str(out)], env)
            rows.append(_summarise("paper_1b, .pyc cached, cold numba cache (first run after install)",
                                   [result], GOAL_S, GOAL_BYTES))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows, ["config", "runs", "wall_s_median", "wall_s_min", "wall_s_max", "cpu_s_median",
                       "max_rss_mib_median", "max_rss_mib_max", "max_rss_mb_decimal_max", "wall_goal_met",
                       "rss_goal_met"]))
    return {"goal": f"compile the full 1B recipe in < {GOAL_S} s wall and < 1 GB (10**9 bytes) peak RSS",
            "repeats": repeats, "rows": rows, "raw": runs}


def bench_validate(repeats: int) -> dict[str, object]:
    """Alternating `mixture validate` runs (as-is and .pyc) beside a bare interpreter start."""
    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        pyc = work / "pyc"
        configs = {
            "mixture validate validate_100.yaml, as-is (no .pyc)": ([MIXTURE, "validate", str(VALIDATE_FILE)],
                                                                    "as-is"),
            "mixture validate validate_100.yaml, .pyc cached": ([MIXTURE, "validate", str(VALIDATE_FILE)], "pyc"),
            "python -c pass (interpreter start-up, for scale)": ([PYTHON, "-c", "pass"], "as-is"),
        }
        run_process(configs["mixture validate validate_100.yaml, .pyc cached"][0], env_variant("pyc", pyc))
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in configs}
        for _ in range(repeats):
            for name, (argv, env) in configs.items():
                runs[name].append(run_process(argv, env_variant(env, pyc)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [_summarise(name, r, GOAL_VALIDATE_S, None) for name, r in runs.items()]
    rows[0]["output"] = runs[next(iter(runs))][-1]["stdout"]
    print(table(rows, ["config", "runs", "wall_s_median", "wall_s_min", "wall_s_max", "cpu_s_median",
                       "max_rss_mib_median", "wall_goal_met"]))
    lines = sum(1 for _ in VALIDATE_FILE.open())
    return {"goal": f"mixture validate of a ~100-line file in < {GOAL_VALIDATE_S} s wall", "file_lines": lines,
            "repeats": repeats, "rows": rows, "raw": runs}


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("goal", choices=["compile", "validate", "mix", "access", "breakdown", "all"])
    parser.add_argument("--repeats", type=int, default=None, help="runs per configuration (default per goal)")
    parser.add_argument("--cold-jit", action="store_true", help="compile: add one run with an empty numba cache")
    args, rest = parser.parse_known_args(argv)
    print(f"machine: {machine()}", flush=True)
    goals = ["compile", "validate", "breakdown", "mix", "access"] if args.goal == "all" else [args.goal]
    for goal in goals:
        print(f"\n== {goal} ==", flush=True)
        if goal == "compile":
            path = write_json("compile_cli", bench_compile(args.repeats or 3, args.cold_jit))
        elif goal == "validate":
            path = write_json("compile_validate", bench_validate(args.repeats or 10))
        elif goal == "mix":
            from bench_compile_mix import run as run_mix

            path = write_json("compile_mix", run_mix(rest, args.repeats))
        elif goal == "breakdown":
            from bench_compile_breakdown import run as run_breakdown

            path = write_json("compile_breakdown", run_breakdown(rest))
        else:
            from bench_compile_access import run as run_access

            path = write_json("compile_access", run_access(rest))
        print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
