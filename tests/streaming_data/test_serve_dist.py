"""Serving on 2 ranks (torch.distributed, gloo, CPU): exact global batches and elastic resume 1 <-> 2.

One launch of two processes runs every 2-rank scenario (see serve_dist_worker.py); the 1-rank halves of
the elastic checks run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import served_batches  # noqa: E402
from test_serve import B, NUM_BATCHES, check_exact, dataset, world  # noqa: E402, F401

WORKER = Path(__file__).parent / "serve_dist_worker.py"
REPO = Path(__file__).resolve().parents[2]


def launch_two_ranks(port: int, *args: str, timeout: float = 400) -> None:
    """Run serve_dist_worker.py as ranks 0 and 1 of a gloo group on ``port``; fail with both logs if either
    fails or they are not done within ``timeout`` seconds (generous: on a loaded 2-core machine importing
    torch and streaming alone takes each rank a minute)."""
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
        procs.append(subprocess.Popen([sys.executable, str(WORKER), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    deadline, logs, why = time.monotonic() + timeout, [], "failed"
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            logs = [p.communicate()[0] for p in procs]
            why = f"did not finish within {timeout:.0f} s"
            break
    if any(p.returncode for p in procs):
        pytest.fail(f"the two ranks {why}\n" + "\n".join(f"--- rank {r} (exit {p.returncode}):\n{log[-4000:]}"
                                                           for r, (p, log) in enumerate(zip(procs, logs))))


def global_batches(per_rank: list[list]) -> list:
    """Concatenate each rank's batch k, in rank order: the global batch k."""
    assert len({len(r) for r in per_rank}) == 1
    return [sum((r[k] for r in per_rank), []) for k in range(len(per_rank[0]))]


@pytest.mark.slow
def test_two_ranks_exact_and_elastic(world: dict, tmp_path: Path, free_port: Callable[[], int]) -> None:
    kinds, path = world["kinds"], world["path"]
    one_rank = dataset(path)  # 1 rank, stopped after 4 batches: the 1 -> 2 state
    assert len(served_batches(one_rank, kinds, 2, stop=4)) == 4
    state_one = tmp_path / "state_one_rank.json"
    state_one.write_text(json.dumps(one_rank.state_dict(4 * B, from_beginning=True)))

    (tmp_path / "table.json").write_text(json.dumps(kinds))
    launch_two_ranks(free_port(), path, str(tmp_path), str(state_one), "6")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for num_workers in (0, 2):
        check_exact(global_batches([r[f"full_w{num_workers}"] for r in ranks]), path)
    assert all(len(b) == B // 2 for r in ranks for b in r["full_w0"])
    check_exact(global_batches([r["stop"] for r in ranks]), path, complete=False)
    check_exact(global_batches([r["resume_from_one_rank"] for r in ranks]), path, first_batch=4)

    two_to_one = dataset(path)  # 2 -> 1: the state the 2-rank run saved after 6 batches
    two_to_one.load_state_dict(json.loads((tmp_path / "state_two_ranks.json").read_text()))
    check_exact(served_batches(two_to_one, kinds, 2), path, first_batch=6)
    assert NUM_BATCHES > 6
