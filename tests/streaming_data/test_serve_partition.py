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


@settings(max_examples=60, deadline=None, derandomize=True)
@given(sizes=st.lists(st.sampled_from([2, 4, 6, 8, 12, 24]), min_size=1, max_size=4),
       counts=st.lists(st.integers(0, 5), min_size=4, max_size=4), W=st.sampled_from([1, 2, 3, 4, 6]),
       N=st.integers(1, 5), first=st.integers(0, 20), chunk=st.sampled_from([1, 5, 64, 4096]),
       seed=st.integers(0, 2**16))
def test_per_phase_batch_sizes_any_world_serves_the_order(sizes: list[int], counts: list[int], W: int, N: int,
                                                          first: int, chunk: int, seed: int) -> None:
    """Phases with their own global batch sizes (the batch-start table): for any W dividing every size, any
    N and any resume batch, the ranks' batches read round-robin concatenate to the order's batches."""
    assume(all(b % W == 0 for b in sizes))
    counts = counts[: len(sizes)]
    assume(sum(counts) > 0)
    table, bounds, pos, batch = [], [], 0, 0
    for b, n in zip(sizes, counts):
        if n:
            table.append((batch, pos, b))
        bounds += [(pos + j * b, pos + (j + 1) * b) for j in range(n)]
        pos, batch = pos + n * b, batch + n
    first = min(first, batch)
    rng = np.random.default_rng(seed)
    src_sizes = np.array([5, 7, 3], np.int64)
    offsets = np.concatenate([[0], np.cumsum(src_sizes)[:-1]])
    src = rng.integers(0, 3, pos).astype(np.int32)
    smp = (rng.integers(0, 1000, pos) % src_sizes[src]).astype(np.int64)

    def take(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return src[a:b], smp[a:b]

    per_rank = []
    for r in range(W):
        workers = [WorkerOrder(WorkerShare(sizes[0], W, r, N, w, first, batch, tuple(table)), take, offsets,
                               src_sizes, ["s"] * 3, chunk) for w in range(N)]
        cursors, batches = [0] * N, []
        sizes_served = [iter(o.share.device_sizes()) for o in workers]
        for k in range(batch - first):
            w = k % N
            a, b = bounds[first + k]
            d = (b - a) // W
            assert next(sizes_served[w]) == d
            got = [workers[w][i] for i in range(cursors[w], cursors[w] + d)]
            assert [workers[w].share.position(i) for i in range(cursors[w], cursors[w] + d)] == \
                list(range(a + r * d, a + (r + 1) * d))
            cursors[w] += d
            batches.append(got)
        assert cursors == [len(o) for o in workers]
        per_rank.append(batches)
    flat = (offsets[src] + smp).tolist()
    assert [sum((per_rank[r][k] for r in range(W)), []) for k in range(batch - first)] == \
        [flat[a:b] for a, b in bounds[first:]]
