"""`mixture train` over a schedule whose fine-tuning phase has its own global batch size.

The schedule: 4 batches of text and 2 of text + images at 8 samples, then 4 fine-tuning batches at 4
samples. Composer's step counter is the global batch index throughout; each step trains its phase's batch
(the dataloader yields one rank's slice of each global batch; the microbatch stays fixed and Composer's
token-weighted accumulation makes the step's loss the mean over the batch's label tokens). Tested: what a
run logs equals the schedule's counts and LR per step; stopping (or being killed) inside the second batch
size and resuming is bit-identical to the uninterrupted run; gradient accumulation (microbatch 2) trains the same batches;
2 ranks (FSDP2) train the same global batches as one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

from mixture.schedule import load_schedule  # noqa: E402
from trainer.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SIZES = [8] * 6 + [4] * 4


def per_phase_mixture(data: Path) -> dict:
    spec = h.mixture(data, text_batches=4)
    spec["phases"][1]["duration"] = "2ba"
    spec["phases"][2].update(duration="4ba", global_batch_size=4)
    return spec


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("phase_batches")
    raw = h.make_raw(root / "raw")
    h.ingest(raw, root / "data")
    schedule = h.compile_to(per_phase_mixture(root / "data"), root / "p.yaml", root / "sched")
    config = h.run_config(root / "p_run.yaml", schedule, root / "run_p", export=False)
    return {"root": root, "schedule": schedule, "config": config, "result": train(config)}


def _counts(line: dict) -> dict:
    return {k: v for k, v in line.items() if k.startswith(("samples", "tokens", "batch"))}


def test_each_step_trains_its_phases_batch(study: dict) -> None:
    schedule = load_schedule(study["schedule"])
    assert [schedule.batch_size_at(g) for g in range(schedule.num_batches)] == SIZES
    lines = h.metrics(study["root"] / "run_p")
    assert [m["batch"] for m in lines] == list(range(1, 11)) and study["result"].batches == 10
    src, samples = schedule.take(0, len(schedule))
    tokens = schedule.tokens(src, samples)
    for m in lines:
        upto = sum(SIZES[: m["batch"]])
        assert m["samples"] == upto
        for sid, name in enumerate(schedule.source_names):
            assert m[f"samples/train/{name}"] == int((src[:upto] == sid).sum())
            assert m[f"tokens/train/{name}"] == int(tokens[:upto][src[:upto] == sid].sum())
    assert [m["lr"] for m in lines] == pytest.approx(schedule.lr().tolist(), rel=1e-12)
    run = json.loads((study["root"] / "run_p" / "run.json").read_text())
    assert run["status"] == "done" and run["last_batch"] == 10


def test_stop_inside_the_second_batch_size_and_resume_is_bit_identical(study: dict) -> None:
    root = study["root"]
    config = h.run_config(root / "r_run.yaml", study["schedule"], root / "run_r", export=False)
    first = train(config, stop_at="8ba")  # batches 6..9 are the 4-sample ones
    assert first.batches == 8
    assert train(config).batches == 10
    assert [m["loss/train"] for m in h.metrics(root / "run_r")] == \
        [m["loss/train"] for m in h.metrics(root / "run_p")]
    assert [_counts(m) for m in h.metrics(root / "run_r")] == [_counts(m) for m in h.metrics(root / "run_p")]


def test_kill_inside_the_second_batch_size_then_resume_equals_the_uninterrupted_run(study: dict) -> None:
    """SIGKILL once the checkpoint after batch 7 (the first of 4 samples) exists; the rerun resumes from the
    newest checkpoint and ends with the uninterrupted run's losses and counts."""
    import signal
    import time

    root = study["root"]
    config = h.run_config(root / "k_run.yaml", study["schedule"], root / "run_k", export=False,
                          checkpoint={"interval": "1ba"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mixture", "train", str(config)], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (root / "run_k" / "checkpoints" / "ba7-rank0.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint at batch 7 within 600 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((root / "run_k" / "run.json").read_text())["status"] == "running"  # killed, not stopped
    assert train(config).batches == 10
    assert [m["loss/train"] for m in h.metrics(root / "run_k")] == \
        [m["loss/train"] for m in h.metrics(root / "run_p")]
    assert [_counts(m) for m in h.metrics(root / "run_k")] == [_counts(m) for m in h.metrics(root / "run_p")]


def test_gradient_accumulation_trains_the_same_batches(study: dict) -> None:
    root = study["root"]
    config = h.run_config(root / "m_run.yaml", study["schedule"], root / "run_m", export=False, microbatch_size=2)
    train(config)
    one, acc = h.metrics(root / "run_p"), h.metrics(root / "run_m")
    assert [_counts(m) for m in acc] == [_counts(m) for m in one]
    assert [m["loss/train"] for m in acc] == pytest.approx([m["loss/train"] for m in one], rel=1e-5)


@pytest.mark.timeout(1500)
def test_two_ranks_train_the_same_global_batches(study: dict, free_port: Callable[[], int]) -> None:
    root = study["root"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "composer.cli.launcher", "-n", "2", "--master_port", str(free_port()),
           "-m", "mixture", "train", str(study["config"]), "--run-dir", str(root / "run_2")]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = h.metrics(root / "run_p"), h.metrics(root / "run_2")
    assert [_counts(m) for m in two] == [_counts(m) for m in one]
    assert [m["loss/train"] for m in two] == pytest.approx([m["loss/train"] for m in one], rel=1e-6)
    assert json.loads((root / "run_2" / "run.json").read_text())["world_size"] == 2
