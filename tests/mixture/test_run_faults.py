"""Run-directory faults without training: the lock (refusal naming the holder, released by kill -9), the
atomic rewrite of metrics.jsonl (kill -9 inside it leaves the old file).

The trainer-level cases (a trainer refused on a locked directory, kill after the final checkpoint, rerun
of a finished run) are in tests/trainer/test_runs.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture import run_dir as rd
from mixture import run_lock
from mixture.errors import MixtureError
from mixture.faults import ENV

ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, mixture.run_lock as l; l.acquire(sys.argv[1]); print('locked', flush=True); sys.stdin.read()"


def test_a_locked_run_dir_is_refused_naming_the_holder_and_freed_by_kill(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(MixtureError) as refused:
            run_lock.acquire(run_dir)
        message = str(refused.value)
        assert "\n" not in message and f"in use by another trainer (pid {holder.pid} on " in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / rd.LOCK).exists()  # left by the killed holder, but no longer held: not stale
    with run_lock.acquire(run_dir) as lock:
        assert json.loads((run_dir / rd.LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(MixtureError, match=f"pid {os.getpid()} "):
            run_lock.acquire(run_dir)  # a second open file in the same process is refused too
        lock.release()
        lock.release()  # idempotent
    assert not (run_dir / rd.LOCK).exists()  # a directory nobody uses has no lock file


def _metrics_text(lines: list[dict]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


@given(num_lines=st.integers(0, 6), keep=st.integers(0, 7), torn=st.text(max_size=12))
def test_truncation_keeps_whole_lines_up_to_the_batch(num_lines: int, keep: int, torn: str,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = tmp_path_factory.mktemp("metrics")
    lines = [{"batch": b, "loss/train": 1.0 / b} for b in range(1, num_lines + 1)]
    (run_dir / rd.METRICS).write_text(_metrics_text(lines) + '{"batch": 9, "lo' + torn.replace("\n", ""))
    rd.truncate_metrics(run_dir, keep)
    assert (run_dir / rd.METRICS).read_text() == _metrics_text([x for x in lines if x["batch"] <= keep])
    assert sorted(p.name for p in run_dir.iterdir()) == [rd.METRICS]


def test_a_kill_inside_the_metrics_rewrite_leaves_the_old_file(tmp_path: Path) -> None:
    lines = [{"batch": b, "loss/train": 1.0 / b} for b in range(1, 6)]
    before = _metrics_text(lines) + '{"batch": 6, "loss/tr'  # a run killed while appending
    (tmp_path / rd.METRICS).write_text(before)
    code = "import sys; from mixture import run_dir; run_dir.truncate_metrics(sys.argv[1], 3)"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                          env={**os.environ, ENV: "metrics_rewrite"}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / rd.METRICS).read_text() == before  # the old file, whole
    assert (tmp_path / f".{rd.METRICS}.partial").read_text() == _metrics_text(lines[:3])  # the new one, unused
    rd.truncate_metrics(tmp_path, 3)  # the next resume rewrites it
    assert (tmp_path / rd.METRICS).read_text() == _metrics_text(lines[:3])
    assert not (tmp_path / f".{rd.METRICS}.partial").exists()
