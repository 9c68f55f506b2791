"""Reruns and faults of `mixture train` (docs/training.md, "Resume and rerun"), on one tiny study.

One uninterrupted reference run; one run killed with SIGKILL after its final checkpoint (before the final
evaluation), rerun and killed again after results.json (before the export), rerun to the end: its
results.json, metrics.jsonl and export equal the reference's. Rerunning the finished run changes no byte;
a trainer on a run directory another process holds is refused at once, in one line naming the holder.
Kill points are the test-only hook of :mod:`mixture.faults`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

from mixture.cli import main as cli  # noqa: E402
from mixture.faults import ENV  # noqa: E402
from trainer.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, tiny_study: dict) -> dict:
    root = tmp_path_factory.mktemp("runs")
    evaluation = {"heldout": {"text": {"location": str(tiny_study["data"] / "text"), "samples": 8}},
                  "vqa": {"file": str(tiny_study["raw"]["vqa"]), "questions": 4}}
    configs = {name: h.run_config(root / f"{name}.yaml", tiny_study["schedule"], root / name, eval=evaluation)
               for name in ("reference", "killed")}
    train(configs["reference"])
    return {"root": root, "configs": configs, "schedule": tiny_study["schedule"]}


def _train_killed_at(config: Path, point: str) -> tuple[subprocess.Popen, str]:
    """`mixture train CONFIG` in a process that SIGKILLs itself at ``point``; the process and its stderr."""
    env = {**os.environ, ENV: point, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mixture", "train", str(config)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    return proc, err


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def test_a_run_killed_after_its_final_checkpoint_finishes_when_rerun(study: dict) -> None:
    root, reference, run_dir = study["root"], study["root"] / "reference", study["root"] / "killed"
    proc, err = _train_killed_at(study["configs"]["killed"], "before_final_eval")
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert (run_dir / "checkpoints" / "ba8-rank0.pt").exists() and not (run_dir / "results.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert json.loads((run_dir / ".lock").read_text())["pid"] == proc.pid  # it held the lock; the kernel freed it
    proc, err = _train_killed_at(study["configs"]["killed"], "before_export")  # the rerun evaluates, dies again
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert (run_dir / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    assert not (run_dir / "export").exists()
    result = train(study["configs"]["killed"])  # only the export is left
    assert result.batches == 8 and not result.unchanged
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "done" and info["last_batch"] == 8
    assert (run_dir / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    # One final evaluation line, as the uninterrupted run's: every metric equal but the wall-clock ones.
    assert _untimed(run_dir / "metrics.jsonl") == _untimed(reference / "metrics.jsonl")
    assert _hashes(run_dir / "export") == _hashes(reference / "export")
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in reference.iterdir())


def test_rerunning_a_finished_run_changes_nothing(study: dict, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # No start-up display on stderr: the refusal must be the only line (without this the test passed only
    # after an earlier test's `--quiet` had left MIXTURE_QUIET set in the process).
    monkeypatch.setenv("MIXTURE_QUIET", "1")
    run_dir = study["root"] / "reference"
    before = _hashes(run_dir)
    assert cli(["train", str(study["configs"]["reference"])]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir}: already trained to batch 8 with its final evaluation and export; nothing to do" in out
    assert _hashes(run_dir) == before
    assert cli(["train", str(study["configs"]["reference"]), "--stop-at", "5ba"]) == 2  # cannot go back
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{run_dir}: its newest checkpoint is at batch 8, past this invocation's stop at batch 5 (a run "
                   "cannot go back: stop later, or use another run_dir)"]
    assert _hashes(run_dir) == before


def test_a_trainer_on_a_locked_run_dir_is_refused_at_once(study: dict, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTURE_QUIET", "1")  # the refusal alone on stderr (see the test above)
    run_dir = study["root"] / "locked"
    config = h.run_config(study["root"] / "locked.yaml", study["schedule"], run_dir)
    hold = "import sys, mixture.run_lock as l; l.acquire(sys.argv[1]); print('locked', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert cli(["train", str(config)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run_dir} is in use by another trainer (pid {holder.pid} on " in err[0], err
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing else was written


def _untimed(path: Path) -> list[dict[str, object]]:
    """metrics.jsonl's lines without wall time and throughput (they differ between two runs by nature)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if not k.startswith(("time/", "throughput/"))} for line in lines]
