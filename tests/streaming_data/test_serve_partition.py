"""The partition math, for many world sizes: ranks x workers, read as a DataLoader reads them, give the order.

No Streaming here (fast): ``WorkerShare``/``WorkerOrder`` are checked against the definition
"global batch g is order[g*B:(g+1)*B]" by simulating DataLoader round-robin over workers and
concatenating ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mixture.errors import MixtureError
from streaming_data._serve_order import WorkerOrder, WorkerShare


def served_global_batches(order_src: np.ndarray, order_smp: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                          B: int, W: int, N: int, first_batch: int, chunk: int) -> list[list[int]]:
    """Global batches as the union of W ranks, each reading N workers round-robin (as DataLoader does)."""
    num_batches = len(order_src) // B

    def take(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return order_src[a:b], order_smp[a:b]

    per_rank = []
    for r in range(W):
        workers = [WorkerOrder(WorkerShare(B, W, r, N, w, first_batch, num_batches), take, offsets, sizes,
                               ["s"] * len(sizes), chunk) for w in range(N)]
        cursors = [0] * N
        batches = []
        for k in range(num_batches - first_batch):
            w, d = k % N, B // W
            order = workers[w]
            batch = [order[i] for i in range(cursors[w], cursors[w] + d)]
            assert [order.share.position(i) for i in range(cursors[w], cursors[w] + d)] == \
                list(range((first_batch + k) * B + r * d, (first_batch + k) * B + (r + 1) * d))
            cursors[w] += d
            batches.append(batch)
        assert cursors == [len(o) for o in workers]  # every worker's share is consumed exactly
        per_rank.append(batches)
    return [sum((per_rank[r][k] for r in range(W)), []) for k in range(num_batches - first_batch)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(B=st.sampled_from([1, 2, 4, 6, 8, 12, 24]), W=st.sampled_from([1, 2, 3, 4, 6]), N=st.integers(1, 5),
       num_batches=st.integers(1, 12), first=st.integers(0, 12), chunk=st.sampled_from([1, 5, 64, 4096]),
       seed=st.integers(0, 2**16))
def test_any_world_serves_the_order(B: int, W: int, N: int, num_batches: int, first: int, chunk: int,
                                    seed: int) -> None:
    assume(B % W == 0)  # a global batch splits evenly over the ranks (the serving contract's precondition)
    first = min(first, num_batches)
    rng = np.random.default_rng(seed)
    sizes = np.array([5, 7, 3], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    src = rng.integers(0, 3, num_batches * B).astype(np.int32)
    smp = (rng.integers(0, 1000, num_batches * B) % sizes[src]).astype(np.int64)
    got = served_global_batches(src, smp, offsets, sizes, B, W, N, first, chunk)
    flat = (offsets[src] + smp).tolist()
    assert got == [flat[g * B:(g + 1) * B] for g in range(first, num_batches)]


def test_sample_beyond_source_is_refused() -> None:
    share = WorkerShare(4, 1, 0, 1, 0, 0, 1)
    order = WorkerOrder(share, lambda a, b: (np.array([0, 1, 1, 0], np.int32), np.array([0, 1, 9, 2], np.int64)),
                        np.array([0, 5]), np.array([5, 5]), ["web", "caps"])
    with pytest.raises(MixtureError, match="sample 9 of source 'caps', which has 5 samples"):
        order[0]
