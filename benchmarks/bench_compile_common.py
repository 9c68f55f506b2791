"""Shared helpers of the compiler benchmarks: the machine, process timing, statistics, tables, JSON.

Process timing uses ``os.wait4``, which returns the resource usage of exactly the child that ended, so
each run's peak RSS (``ru_maxrss``) and CPU time are its own, as ``/usr/bin/time -v`` reports them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VENV_BIN = ROOT / ".venv" / "bin"
MIXTURE = str(VENV_BIN / "mixture")
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def machine() -> dict[str, object]:
    """nproc, CPU model, RAM, load average and the Python that runs the benchmark."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")),
                         model)
    except OSError:
        pass
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": round(ram_gib, 1),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "platform": platform.platform(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def env_variant(name: str, pyc_dir: Path | None = None) -> dict[str, str]:
    """Environment of a child process.

    ``as-is``: this shell's environment (here PYTHONDONTWRITEBYTECODE=1, so no .pyc is ever written and
    every start compiles the source of every imported module). ``pyc``: bytecode cached under ``pyc_dir``
    (PYTHONPYCACHEPREFIX, so the shared .venv is not touched), which is what a normal install sees.
    """
    env = dict(os.environ)
    if name == "pyc":
        assert pyc_dir is not None
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pyc_dir)
    elif name != "as-is":
        raise ValueError(f"unknown environment variant {name!r}")
    return env


def run_process(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """Run one process to completion: wall seconds, user+sys CPU seconds, peak RSS (MiB), stdout tail."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps exactly this child, with its own rusage
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({code}): {stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout.strip()[-300:]}


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(values))


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))])


def table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (floats shown with 3 significant digits, ints with separators)."""
    def fmt(v: object) -> str:
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, object]) -> Path:
    """Write ``benchmarks/results/NAME.json`` (the machine is added) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    payload = {"machine": machine(), "commit": commit.stdout.strip(), **payload}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path
