"""The one module that reaches into MosaicML Streaming's internals (pinned: ``mosaicml-streaming==0.13.0``).

Streaming has no public hook for "serve this order". Its ``StreamingDataset.__iter__`` does three things
we keep (shard download and caching, ``cache_limit`` eviction, shared-memory coordination between the
workers of a node) and one we replace: the partition step. In 0.13.0 that step is
``StreamingDataset._get_work(epoch, sample_in_epoch)``, called once per worker per epoch, returning the
worker's flat sequence of sample ids (ids in the concatenated index space of all streams, stream order);
the base class reads it only through ``len()`` and integer indexing (``_Iterator``), so a lazy sequence
works and no worker ever holds a copy of the whole order. Where an epoch starts is decided by
``StreamingDataset._resume(world, epoch)``, which we also replace: the stock version reads a JSON block in
shared memory that its creator unlinks at exit, after which iteration silently restarts at sample 0.

One more internal is wrapped: ``get_shm_prefix``, where a node's local leader finds the first free
shared-memory prefix, waits at a barrier for its other ranks, then creates the prefix's ``_locals`` block.
Two jobs starting on one machine at once can both find the same prefix, and the later one dies with
``FileExistsError: /000272_locals`` (seen with two test runs at once). :func:`_registered_prefix` holds a
machine-wide file lock from the search to the creation, so registrations of datasets built here happen one
at a time.

Everything here is named after those internals so that a Streaming upgrade breaks in one place, and
``tests/streaming_data/test_serve_contract.py`` fails loudly if the override points move or change shape.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np
import streaming.base.dataset as _streaming_dataset
from numpy.typing import NDArray
from streaming import Stream, StreamingDataset
from streaming.base.shared.prefix import get_shm_prefix as _stock_get_shm_prefix
from streaming.base.world import World
from torch import distributed as dist

from mixture.errors import MixtureError

STREAMING_VERSION = "0.13.0"
"""The Streaming release whose internals this module was written against (and pyproject.toml pins)."""


def check_streaming_version() -> None:
    """Refuse to run on a Streaming release other than the one this module was checked against.

    Raises:
        MixtureError: If the installed ``mosaicml-streaming`` is not :data:`STREAMING_VERSION`.
    """
    installed = importlib.metadata.version("mosaicml-streaming")
    if installed != STREAMING_VERSION:
        raise MixtureError(
            f"mosaicml-streaming {installed} is installed; schedule serving was checked against "
            f"{STREAMING_VERSION} only (it overrides StreamingDataset._get_work and ._resume)",
            hint=f"install mosaicml-streaming=={STREAMING_VERSION}, or port streaming_data/_streaming_compat.py "
            "and run tests/streaming_data/test_serve_contract.py",
        )


@dataclass(frozen=True)
class Placement:
    """Where the calling process sits: its rank among ``num_ranks``, its worker among ``num_workers``."""

    rank: int
    num_ranks: int
    worker: int
    num_workers: int


def detect_ranks() -> tuple[int, int]:
    """This process's rank and the number of ranks, as Streaming sees them (torch.distributed or env)."""
    world = World.detect()
    return world.rank, world.num_ranks


def detect_node_ranks() -> tuple[int, int]:
    """This process's rank on its node and the number of ranks per node, as Streaming sees them."""
    world = World.detect()
    return world.rank_of_node, world.ranks_per_node


def make_stream(location: str, local: str | None, remote: bool, download_retry: int,
                validate_hash: str | None = None) -> Stream:
    """One Streaming stream over an MDS directory: read in place if local, else cached under ``local``
    (each downloaded shard checked against its ``validate_hash`` digest in ``index.json``, if given)."""
    if remote:
        return Stream(remote=location, local=local, download_retry=download_retry, validate_hash=validate_hash)
    return Stream(local=location, download_retry=download_retry)


class OrderDrivenDataset(StreamingDataset):
    """A StreamingDataset whose per-worker sample ids and resume point come from two hooks.

    Subclasses implement :meth:`_worker_order` and :meth:`_resume_point`; everything else (download,
    cache, eviction, the iteration threads) is Streaming's.
    """

    def _worker_order(self, epoch: int, sample_in_epoch: int, place: Placement) -> Sequence[int]:
        """This worker's Streaming sample ids for ``epoch`` from ``sample_in_epoch`` on."""
        raise NotImplementedError

    def _resume_point(self, presumed_epoch: int) -> tuple[int, int]:
        """The (epoch, sample_in_epoch) to start iterating at, given the epoch Streaming expects next."""
        raise NotImplementedError

    # --- Streaming 0.13.0 internals overridden (called from StreamingDataset.__iter__ in each worker) ---

    def _get_work(self, epoch: int, sample_in_epoch: int) -> Sequence[int]:  # type: ignore[override]
        world = self._parallel_worker_world
        place = Placement(world.rank, world.num_ranks, world.worker_of_rank, world.workers_per_rank)
        return self._worker_order(epoch, sample_in_epoch, place)

    def _resume(self, world: World, epoch: int) -> tuple[int, int]:
        return self._resume_point(epoch)

    # --- Streaming state read or set by the serving layer ---

    def _set_epoch_positions(self, num_positions: int) -> None:
        """Make one epoch exactly the schedule: ``len(dataset)`` is its per-rank share."""
        self.epoch_size = num_positions
        self.length = ceil(num_positions / self._parallel_rank_world.num_ranks)

    def _stream_offsets(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(first Streaming sample id, number of samples) of each stream, in stream order."""
        return self.sample_offset_per_stream, self.samples_per_stream

    def _stream_columns(self, stream_id: int) -> set[str]:
        """Column names of a stream's MDS shards."""
        first = int(self.shard_offset_per_stream[stream_id])
        return set(getattr(self.shards[first], "column_names", []))

    def _current_epoch(self) -> int:
        """The epoch being (or last) iterated: Streaming's shared next-epoch counter minus one."""
        return self.next_epoch - 1


PREFIX_LOCK = os.path.join(tempfile.gettempdir(), "streaming", "mixture-shm-prefix.lock")
"""The machine-wide lock a local leader holds while it registers a shared-memory prefix."""


def _registered_prefix(streams_local: list[str], streams_remote: list[str | None], world: World,
                       retry: int = 100) -> tuple[int, Any]:
    """Streaming's ``get_shm_prefix``, with the search and the creation under :data:`PREFIX_LOCK`.

    The local leader takes the lock, then every rank meets at a barrier, so that the other ranks of the
    node search only while their leader holds it (they must find the prefix the leader creates).
    """
    lock = None
    if world.is_local_leader:
        os.makedirs(os.path.dirname(PREFIX_LOCK), exist_ok=True)
        lock = open(PREFIX_LOCK, "a")  # noqa: SIM115 - closed (and so unlocked) below
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        return _stock_get_shm_prefix(streams_local, streams_remote, world, retry)
    finally:
        if lock is not None:
            lock.close()


_streaming_dataset.get_shm_prefix = _registered_prefix  # the name StreamingDataset.__init__ calls


def streaming_state_keys() -> tuple[str, ...]:
    """Keys of Streaming's own dataset state dict (to recognise and refuse it on resume)."""
    return ("epoch", "sample_in_epoch", "num_canonical_nodes", "shuffle_seed")


__all__ = [
    "STREAMING_VERSION",
    "OrderDrivenDataset",
    "Placement",
    "check_streaming_version",
    "detect_node_ranks",
    "detect_ranks",
    "make_stream",
    "streaming_state_keys",
]
