"""One rank of the 2-rank serving test (run by test_serve_dist.py; env RANK, WORLD_SIZE, MASTER_*).

Several scenarios per launch, because importing streaming costs each process 10-20 s:
full pass with 0 and 2 workers; stop after ``k`` batches and save the state (for 2 -> 1); resume from a
1-rank state (1 -> 2). Each rank writes what it served to ``out/rank{r}.json``.
"""

from __future__ import annotations

import json
import os
import sys


def main(schedule: str, out: str, state_from_one_rank: str, stop: int) -> None:
    """``out/table.json`` holds the test's source table (schedule source id -> [kind, data tag])."""
    import torch.distributed as dist
    from serve_helpers import served_batches

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    from streaming_data.serve import ScheduledDataset

    def dataset() -> ScheduledDataset:
        return ScheduledDataset(schedule)

    with open(os.path.join(out, "table.json")) as f:
        kinds = {int(i): tuple(v) for i, v in json.load(f).items()}
    results = {f"full_w{w}": served_batches(dataset(), kinds, w) for w in (0, 2)}
    stopped = dataset()
    results["stop"] = served_batches(stopped, kinds, 2, stop=stop)
    state = stopped.state_dict(stopped.schedule.batch_start(stop), from_beginning=True)
    if rank == 0:
        with open(os.path.join(out, "state_two_ranks.json"), "w") as f:
            json.dump(state, f)
    resumed = dataset()
    with open(state_from_one_rank) as f:
        resumed.load_state_dict(json.load(f))
    results["resume_from_one_rank"] = served_batches(resumed, kinds, 0)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
