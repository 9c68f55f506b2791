"""Random-access permutations: which sample of a source its k-th draw reads.

Algorithm: **shard-block shuffle with Feistel permutations**. A source of ``n`` samples is cut into blocks
of ``block`` consecutive samples (the last block may be short). Each epoch permutes the order of the blocks
and, independently, the samples inside each block, both with keyed 4-round Feistel networks over the next
power of four, cycle-walking back into the exact domain. So draw ``k`` -> (epoch ``k // n``, rank
``k % n``) -> block slot -> block -> sample is a pure function: nothing is materialised, resume and random
access cost a few hash evaluations, and a window of ``W`` consecutive draws touches at most
``ceil(W / block) + 2`` blocks within an epoch (the 2 only when the last, short block falls inside the
window), hence a bounded set of shards.

Why not Streaming's own shuffles (py1e, py1br): they are defined over whole epochs of its canonical node
layout, are not random-access functions of one draw index, and importing streaming costs ~10 s.
Why numba: the per-element arithmetic (64-bit mixing, cycle-walking) is branchy; compiled it runs at tens
of nanoseconds per draw, and the same compiled function serves single lookups (about a microsecond) and
bulk slices, so there is one implementation, not two that must agree.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

_ROUNDS = 4
_PIECE = 1 << 16  # draws per parallel piece of a bulk permutation
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def derive_key(*parts: object) -> int:
    """A 64-bit key from names and numbers (sha256 of their text): seeds derive from names."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _feistel(x: np.uint64, n: np.uint64, key: np.uint64, inverse: bool) -> np.uint64:
    """Keyed bijection of [0, n): balanced Feistel on 2h bits (4**h >= n), cycle-walking into range."""
    if n <= np.uint64(1):
        return np.uint64(0)
    bits = np.uint64(0)
    while (np.uint64(1) << bits) < n:
        bits += np.uint64(1)
    h = (bits + np.uint64(1)) // np.uint64(2)
    mask = (np.uint64(1) << h) - np.uint64(1)
    while True:
        left = x >> h
        right = x & mask
        for i in range(_ROUNDS):
            r = (_ROUNDS - 1 - i) if inverse else i
            rk = key + np.uint64(r + 1) * _GOLD
            if inverse:
                left, right = right ^ (_mix(left ^ rk) & mask), left
            else:
                left, right = right, left ^ (_mix(right ^ rk) & mask)
        x = (left << h) | right
        if x < n:
            return x


@njit(cache=True)
def _epoch_state(epoch: np.int64, key: np.uint64, num_blocks: np.int64) -> tuple[np.uint64, np.int64]:
    """Key of an epoch and the slot its short (last) block lands in."""
    ekey = _mix(key ^ _mix(np.uint64(epoch + 1) * _GOLD))
    short_slot = np.int64(_feistel(np.uint64(num_blocks - 1), np.uint64(num_blocks), ekey, True))
    return ekey, short_slot


@njit(cache=True)
def _permute_in_epoch(r: np.int64, n: np.int64, block: np.int64, ekey: np.uint64,
                      short_slot: np.int64) -> np.int64:
    """Sample at rank ``r`` of an epoch: rank -> block slot -> block -> offset inside the block."""
    num_blocks = (n + block - 1) // block
    last = num_blocks - 1
    last_len = n - last * block
    head = short_slot * block
    if r < head:
        slot = r // block
        off = r - slot * block
    elif r < head + last_len:
        slot = short_slot
        off = r - head
    else:
        rest = r - head - last_len
        slot = short_slot + 1 + rest // block
        off = rest - (slot - short_slot - 1) * block
    blk = np.int64(_feistel(np.uint64(slot), np.uint64(num_blocks), ekey, False))
    size = last_len if blk == last else block
    bkey = _mix(ekey ^ (np.uint64(blk + 1) * _C1))
    return blk * block + np.int64(_feistel(np.uint64(off), np.uint64(size), bkey, False))


@njit(cache=True)
def _permute_kernel(ranks: NDArray[np.int64], n: np.int64, block: np.int64, key: np.uint64,
                    out: NDArray[np.int64]) -> None:
    num_blocks = (n + block - 1) // block
    cached_epoch = np.int64(-1)
    ekey = np.uint64(0)
    short_slot = np.int64(0)
    for i in range(ranks.shape[0]):
        epoch = ranks[i] // n
        if epoch != cached_epoch:  # consecutive draws share an epoch: compute its state once
            cached_epoch = epoch
            ekey, short_slot = _epoch_state(epoch, key, num_blocks)
        out[i] = _permute_in_epoch(ranks[i] - epoch * n, n, block, ekey, short_slot)


@njit(cache=True, parallel=True)
def _permute_parallel(ranks: NDArray[np.int64], n: np.int64, block: np.int64, key: np.uint64,
                      out: NDArray[np.int64]) -> None:
    """:func:`_permute_kernel` over independent pieces on every thread: a pure map, so the result is the
    same for any number of threads."""
    pieces = (ranks.shape[0] + _PIECE - 1) // _PIECE
    for j in prange(pieces):
        a = j * _PIECE
        b = min(a + _PIECE, ranks.shape[0])
        _permute_kernel(ranks[a:b], n, block, key, out[a:b])


@njit(cache=True)
def permute_scalar(rank: np.int64, n: np.int64, block: np.int64, key: np.uint64) -> np.int64:
    """:func:`permute` of one draw, callable from other compiled code (about a microsecond from Python)."""
    block = min(block, n)
    num_blocks = (n + block - 1) // block
    epoch = rank // n
    ekey, short_slot = _epoch_state(epoch, key, num_blocks)
    return _permute_in_epoch(rank - epoch * n, n, block, ekey, short_slot)


@njit(cache=True)
def _hash_kernel(values: NDArray[np.int64], key: np.uint64, out: NDArray[np.uint64]) -> None:
    for i in range(values.shape[0]):
        out[i] = _mix(np.uint64(values[i]) ^ key)


def hash64(values: NDArray[np.int64], key: int) -> NDArray[np.uint64]:
    """64-bit mix (splitmix64 finaliser) of each value xor ``key``: per-sample draws that need no state."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    out = np.empty(values.shape, dtype=np.uint64)
    _hash_kernel(values.reshape(-1), np.uint64(key), out.reshape(-1))
    return out


def permute(ranks: NDArray[np.int64], n: int, block: int, key: int) -> NDArray[np.int64]:
    """Samples read by draws ``ranks`` of a source of ``n`` samples (ranks beyond ``n`` are later epochs).

    Args:
        ranks: Draw indices (0-based, counting across epochs).
        n: Number of samples in the source.
        block: Shuffle block size in samples.
        key: The source's 64-bit key (see :func:`derive_key`).
    """
    ranks = np.ascontiguousarray(ranks, dtype=np.int64)
    out = np.empty(ranks.shape, dtype=np.int64)
    kernel = _permute_parallel if ranks.size > 2 * _PIECE else _permute_kernel
    kernel(ranks.reshape(-1), np.int64(n), np.int64(min(block, n)), np.uint64(key), out.reshape(-1))
    return out

