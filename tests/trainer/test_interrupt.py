"""Ctrl-C or kill during `mixture train` (one process): the run stops between batches, is marked stopped,
keeps only whole checkpoints, and a re-run continues from the newest one to the same losses."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

from trainer.interrupt import StopRequest  # noqa: E402
from trainer.run import train  # noqa: E402


def _signal_at(run_dir: Path, batch: int, signum: int) -> threading.Thread:
    """Send ``signum`` to this process once the run has logged ``batch``."""
    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            lines = h.metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
            if lines and lines[-1]["batch"] >= batch:
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_between_batches_and_rerun_resumes(tmp_path: Path, signum: int) -> None:
    raw = h.make_raw(tmp_path / "raw")
    h.ingest(raw, tmp_path / "data")
    schedule = h.compile_to(h.mixture(tmp_path / "data"), tmp_path / "m.yaml", tmp_path / "sched")
    reference = train(h.run_config(tmp_path / "ref.yaml", schedule, tmp_path / "ref"))
    config = h.run_config(tmp_path / "run.yaml", schedule, tmp_path / "run", checkpoint={"interval": "2ba"})
    watcher = _signal_at(tmp_path / "run", 3, signum)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    watcher.join()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "stopped" and 3 <= run["last_batch"] < 12
    for checkpoint in (tmp_path / "run" / "checkpoints").glob("ba*-rank0.pt"):
        torch.load(checkpoint, map_location="cpu", weights_only=False)  # whole, loadable
    for handled in (signal.SIGINT, signal.SIGTERM):  # the run's handlers are gone (Streaming keeps its own)
        assert not isinstance(getattr(signal.getsignal(handled), "__self__", None), StopRequest)
    result = train(config)  # autoresume from the newest checkpoint
    assert result.batches == reference.batches == 12
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done"
    losses = {m["batch"]: m["loss/train"] for m in h.metrics(tmp_path / "run")}
    assert [losses[b] for b in range(1, 13)] == [m["loss/train"] for m in h.metrics(tmp_path / "ref")]
