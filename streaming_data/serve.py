"""Serve a compiled schedule exactly through MosaicML Streaming.

:class:`ScheduledDataset` is a ``StreamingDataset`` (download, local cache, ``cache_limit`` eviction,
remote schemes, shared-memory coordination are all Streaming's) whose sample order is the schedule's:

- global batch ``b`` is exactly ``order[b*B:(b+1)*B]`` (with per-phase batch sizes, the positions the
  schedule's batch-start table gives it, ``B`` being its phase's batch); rank ``r`` of ``W`` gets the
  ``r``-th of ``W`` equal contiguous slices of it, and dataloader worker ``w`` of ``N`` serves the rank's
  batches ``w, w+N, ...`` (which is the round-robin order a PyTorch DataLoader reads them in);
- one schedule spans several MDS sources: source id ``i`` of the schedule is Streaming stream ``i``;
- the resume state is one integer (samples consumed) plus the schedule fingerprint; a state made with
  another schedule is refused unless ``ignore_schedule_fingerprint=True``;
- any ``W`` dividing every phase's ``B`` gives the same global batches, so resuming on a different number
  of ranks is exact;
- before anything is served, each source's fingerprint (``index.json`` + ``samples.parquet``) is checked
  against the schedule's manifest, each remote source's cached ``index.json`` against the remote one, and
  every shard of every source for presence, size and recorded hash (:mod:`streaming_data.shards`).

Each yielded sample is the MDS row (a dict of columns) plus ``source`` (name), ``source_id`` and
``position`` (in the schedule), so that a collator can route text, image-caption and instruction samples.
Streaming's ordering knobs (shuffle, sampling, canonical nodes, partition, stream proportions) do nothing
under a schedule, so they are refused rather than silently ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import fsspec
import numpy as np
from numpy.typing import NDArray
from torch.utils.data import DataLoader

from mixture.errors import MixtureError, Problem
from mixture.sources import INDEX_JSON, source_fingerprint
from streaming_data._serve_order import WorkerOrder, WorkerShare
from streaming_data._streaming_compat import (
    OrderDrivenDataset,
    Placement,
    check_streaming_version,
    detect_node_ranks,
    detect_ranks,
    make_stream,
    streaming_state_keys,
)
from streaming_data.locations import is_remote, storage_options
from streaming_data.shards import check_source_shards, shard_hash_algorithm

RESERVED_KEYS = ("source", "source_id", "position")
"""Keys added to every served sample; an MDS column with one of these names is refused."""
OVERRIDE_FLAG = "ignore_schedule_fingerprint"


class SourceRecordLike(Protocol):
    name: str
    kind: str
    location: str | None
    fingerprint: str
    num_samples: int


class SegmentLike(Protocol):
    first_batch: int
    start: int
    batch_size: int


class ScheduleLike(Protocol):
    """The part of ``mixture.schedule.Schedule`` that serving uses."""

    fingerprint: str
    global_batch_size: int
    num_batches: int
    max_batch_size: int
    segments: Sequence[SegmentLike]
    sources: Sequence[SourceRecordLike]

    def __len__(self) -> int: ...

    def batch_index(self, position: int) -> int | None: ...

    def check_world_size(self, world_size: int) -> None: ...

    def take(self, start: int, stop: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]: ...


def open_compiled_schedule(path: str) -> ScheduleLike:
    """Open a compiled schedule directory with ``mixture.schedule.load_schedule``."""
    from mixture.schedule import load_schedule  # the compiler; imported lazily, cheap

    return load_schedule(path)


def check_sources(
    schedule: ScheduleLike, cache_dir: str | None, storage_options: dict[str, object] | None = None
) -> list[Problem]:
    """Every reason the sources on disk are not the ones the schedule was compiled from.

    Args:
        schedule: The compiled schedule (its manifest's source records).
        cache_dir: Where remote sources are cached (``cache_dir/<source name>``).
        storage_options: fsspec options for remote sources; by default derived from ``S3_ENDPOINT_URL``.

    Returns:
        One problem per changed, missing, stale-cached or damaged source (a missing, resized or
        corrupted shard: :mod:`streaming_data.shards`); empty when all match.
    """
    return [p for p, _ in _checked(schedule, cache_dir, storage_options) if p is not None]


def _checked(schedule: ScheduleLike, cache_dir: str | None,
             storage_options: dict[str, object] | None) -> list[tuple[Problem | None, str | None]]:
    """Per source: its problem (or None) and the shard hash algorithm its index.json records."""
    checked = []
    for record in schedule.sources:
        if record.location is None:
            checked.append((Problem(f"source '{record.name}' is declared by size only: there is no data to serve",
                                    path=f"sources.{record.name}",
                                    hint="ingest it, point its `location` at the data and recompile"), None))
            continue
        opts = storage_options if storage_options is not None else _manifest_storage_options(schedule, record)
        checked.append(_check_source(record, opts, cache_dir))
    return checked


def _manifest_storage_options(schedule: ScheduleLike, record: SourceRecordLike) -> dict[str, object]:
    """The source's ``storage_options`` from the mixture file (if the schedule keeps it), else the default."""
    spec = getattr(getattr(schedule, "manifest", None), "spec", {})
    given = spec.get("sources", {}).get(record.name, {}).get("storage_options")
    return dict(given) if given else storage_options(record.location or "")


def _check_source(record: SourceRecordLike, opts: dict[str, object],
                  cache_dir: str | None) -> tuple[Problem | None, str | None]:
    path = f"sources.{record.name}"
    try:
        found = source_fingerprint(record.location, opts)
    except MixtureError as error:
        return Problem(f"source '{record.name}' is missing: {error}", path=path,
                       hint="restore the data the schedule was compiled from, or recompile the schedule"), None
    if found != record.fingerprint:
        return Problem(
            f"source '{record.name}' at {record.location} changed since the schedule was compiled "
            f"(fingerprint {found}, manifest says {record.fingerprint})",
            path=path, hint="recompile the schedule against this data, or restore the data it was compiled from",
        ), None
    with fsspec.open(f"{record.location.rstrip('/')}/{INDEX_JSON}", "rb", **opts) as handle:
        theirs = handle.read()
    remote = is_remote(record.location)
    cache = os.path.join(cache_dir, record.name) if remote and cache_dir is not None else None
    cached = os.path.join(cache, INDEX_JSON) if cache else None
    if cached and os.path.exists(cached):
        with open(cached, "rb") as mine:
            if mine.read() != theirs:
                return Problem(
                    f"the local cache {cache} holds another version of source '{record.name}' than "
                    f"{record.location}", path=path,
                    hint=f"delete {cache} (Streaming never refreshes a cached index.json)",
                ), None
    index = json.loads(theirs)
    problem = check_source_shards(record.name, record.location, remote=remote, cache=cache,
                                  storage_options=opts, read_index=lambda: index, share=detect_node_ranks())
    return problem, shard_hash_algorithm(index)


def checked_streams(schedule: ScheduleLike, cache_dir: str | None, storage_options: dict[str, object] | None,
                    download_retry: int) -> list:
    """One Streaming stream per schedule source, in source-id order, once every source has passed
    :func:`check_sources` (remote ones cached in ``cache_dir/<name>``, local ones read in place; shards
    downloaded later are checked against their recorded hash by Streaming's ``validate_hash``)."""
    remote = [is_remote(r.location or "") for r in schedule.sources]
    if any(remote) and cache_dir is None:
        raise MixtureError("some sources are remote but no cache_dir was given", hint="pass cache_dir=")
    checked = _checked(schedule, cache_dir, storage_options)
    problems = [p for p, _ in checked if p is not None]
    if problems:
        raise MixtureError(problems)
    return [make_stream(r.location, os.path.join(cache_dir, r.name) if rem and cache_dir else None, rem,
                        download_retry, validate_hash=algorithm)
            for r, rem, (_, algorithm) in zip(schedule.sources, remote, checked)]


class ScheduledDataset(OrderDrivenDataset):
    """A StreamingDataset that serves a compiled schedule's global order, exactly.

    Use :func:`build_dataloader` (it sets the per-rank batch size to ``B / W``). The schedule is opened
    from its path in each process and worker, never pickled.

    Args:
        schedule: Path of the compiled schedule directory.
        cache_dir: Local cache root for remote sources (each cached in ``cache_dir/<source name>``);
            required when any source is remote. Local sources are read in place.
        cache_limit: Streaming's cache limit (bytes or ``"1gb"``), at least 4x the largest shard, and
            room for the shards that ``predownload + 1`` samples of every worker on the node touch: Streaming
            0.13.0's ready thread waits forever on a shard that another download evicted after it
            arrived (a hang, not an error), and a mixed schedule can touch a new shard per sample.
        predownload: Samples each worker downloads ahead (Streaming's default: 8 batches; one batch when
            ``cache_limit`` is set, see above).
        download_retry: Streaming's download retries.
        storage_options: fsspec options for the fingerprint check of remote sources (by default the
            ``S3_ENDPOINT_URL`` that Streaming itself reads).
        ignore_schedule_fingerprint: Resume from a state made with another schedule (serving this one
            from the saved position). Only for those who mean to switch schedules mid-run.
        chunk_samples: Positions each worker reads from the schedule at a time.
        **streaming_kwargs: Refused: Streaming's ordering options have no meaning under a schedule.

    Raises:
        MixtureError: For refused options, a global batch size not divisible by the number of ranks, and
            any source that is missing, changed, stale in the cache or of the wrong size.
    """

    def __init__(
        self,
        schedule: str | os.PathLike[str],
        *,
        cache_dir: str | None = None,
        cache_limit: int | str | None = None,
        predownload: int | None = None,
        download_retry: int = 2,
        storage_options: dict[str, object] | None = None,
        ignore_schedule_fingerprint: bool = False,
        chunk_samples: int = 8192,
        **streaming_kwargs: Any,
    ) -> None:
        check_streaming_version()
        if streaming_kwargs:
            raise MixtureError(
                f"{', '.join(sorted(streaming_kwargs))}: not an option of ScheduledDataset; Streaming's "
                "ordering options (shuffle, sampling, canonical nodes, partition, proportions) do nothing "
                "when serving a compiled schedule: the schedule is the order", hint="remove them")
        self.schedule_path = os.fspath(schedule)
        self._schedule: ScheduleLike | None = None
        sched = self.schedule
        self._check_shape(sched)
        streams = checked_streams(sched, cache_dir, storage_options, download_retry)
        batch_size = sched.max_batch_size // self._num_ranks  # the largest device batch
        if cache_limit is not None and predownload is None:
            predownload = batch_size
        super().__init__(streams=streams, batch_size=batch_size, cache_limit=cache_limit,
                         predownload=predownload, shuffle=False)
        self._set_epoch_positions(self.num_positions)
        self._check_streams(sched)
        self.ignore_schedule_fingerprint = ignore_schedule_fingerprint
        self.source_names = [r.name for r in sched.sources]
        self.chunk_samples = chunk_samples
        self._resume_samples: int | None = None
        self._work: WorkerOrder | None = None
        self.yield_batches = False  # build_dataloader sets it: each item is then one batch (a list)

    @property
    def schedule(self) -> ScheduleLike:
        """The compiled schedule, opened from its path on first use in this process."""
        if self._schedule is None:
            self._schedule = open_compiled_schedule(self.schedule_path)
        return self._schedule

    def _check_shape(self, sched: ScheduleLike) -> None:
        self.schedule_fingerprint = sched.fingerprint
        self.global_batch_size = int(sched.global_batch_size)
        self.num_positions = len(sched)
        _, self._num_ranks = detect_ranks()
        sched.check_world_size(self._num_ranks)

    def _check_streams(self, sched: ScheduleLike) -> None:
        _, sizes = self._stream_offsets()
        problems = []
        for i, record in enumerate(sched.sources):
            if int(sizes[i]) != record.num_samples:
                problems.append(Problem(f"source '{record.name}' has {int(sizes[i])} samples in its "
                                        f"index.json, the manifest says {record.num_samples}",
                                        path=f"sources.{record.name}", hint="recompile the schedule"))
            clash = self._stream_columns(i) & set(RESERVED_KEYS)
            if clash:
                problems.append(Problem(f"source '{record.name}' has MDS columns {sorted(clash)}, which "
                                        "serving adds to every sample", path=f"sources.{record.name}",
                                        hint="rename those columns at ingest"))
        if problems:
            raise MixtureError(problems)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_schedule"] = None  # reopened from its path in each worker (memory-mapped, not copied)
        state["_work"] = None
        return state

    # --- the order ---

    def _worker_order(self, epoch: int, sample_in_epoch: int, place: Placement) -> WorkerOrder:
        sched = self.schedule
        first = sched.batch_index(sample_in_epoch)
        if first is None:  # load_state_dict checked the resume point; Streaming's own arithmetic did not
            raise MixtureError(f"position {sample_in_epoch} is not the start of a global batch of {self.schedule_path}")
        table = tuple((s.first_batch, s.start, s.batch_size) for s in sched.segments if s.num_batches)
        share = WorkerShare(self.global_batch_size, place.num_ranks, place.rank, place.num_workers,
                            place.worker, first, sched.num_batches, table)
        offsets, sizes = self._stream_offsets()
        self._work = WorkerOrder(share, self.schedule.take, offsets, sizes, self.source_names, self.chunk_samples)
        return self._work

    def __iter__(self) -> Iterator[Any]:
        """This worker's samples, in schedule order, each with ``source``, ``source_id`` and ``position``;
        with ``yield_batches`` (what :func:`build_dataloader` sets), one list per global batch: this rank's
        slice of it, whatever its phase's batch size."""
        if not self.yield_batches:
            return self._samples()
        return self._batches()

    def _batches(self) -> Iterator[list[dict[str, Any]]]:
        samples = self._samples()
        first = next(samples, None)  # the worker's share is known once iteration has started
        if first is None:
            return
        batch = [first]
        for size in self._work.share.device_sizes():
            batch.extend(sample for _, sample in zip(range(size - len(batch)), samples))
            yield batch
            batch = []
        for _ in samples:  # nothing is left; this runs the sample generator's end-of-share check
            raise MixtureError("serving yielded more samples than this worker's batches hold")

    def _samples(self) -> Iterator[dict[str, Any]]:
        self._work = None
        served = 0
        names = self.source_names
        for served, sample in enumerate(super().__iter__(), start=1):
            source_id, position = self._work.label(served - 1)
            sample["source_id"], sample["source"], sample["position"] = source_id, names[source_id], position
            yield sample
        if self._work is not None and served != len(self._work):
            raise MixtureError(f"serving stopped after {served} of this worker's {len(self._work)} "
                               "samples: a download or schedule error was raised in Streaming's "
                               "threads (see the traceback above)")

    # --- resume ---

    def _resume_point(self, presumed_epoch: int) -> tuple[int, int]:
        if self._resume_samples is None:
            return presumed_epoch, 0
        epoch, sample_in_epoch = divmod(self._resume_samples, self.num_positions)
        if epoch < presumed_epoch:  # that resume point is behind us
            return presumed_epoch, 0
        return epoch, sample_in_epoch

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """The resume state: samples consumed since the start of training, and the schedule fingerprint.

        Args:
            num_samples: Samples consumed in the current epoch by all ranks together (Composer passes
                its ``sample_in_epoch`` with ``from_beginning=True``).
            from_beginning: Whether ``num_samples`` counts from the start of the epoch (``True``) or
                from where this run resumed (``False``).

        Returns:
            ``{"samples_consumed", "schedule_fingerprint", "global_batch_size"}``.
        """
        epoch = max(self._current_epoch(), 0)
        if num_samples == 0 and self._current_epoch() >= 0 and from_beginning:
            epoch += 1  # Composer saves at an epoch's end with sample_in_epoch reset to 0
        if not from_beginning:
            resumed_epoch, resumed_at = self._resume_point(epoch)
            num_samples += resumed_at if resumed_epoch == epoch else 0
        return {"samples_consumed": epoch * self.num_positions + num_samples,
                "schedule_fingerprint": self.schedule_fingerprint,
                "global_batch_size": self.global_batch_size}  # the run's, for reference only

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume from a state made by :meth:`state_dict` (call before iterating).

        Raises:
            MixtureError: If the state is not ours, was made with another schedule (unless
                ``ignore_schedule_fingerprint``), or is not on a global batch boundary.
        """
        self._resume_samples = resume_samples(obj, self.schedule, self.schedule_path,
                                              self.ignore_schedule_fingerprint)


def resume_samples(obj: dict[str, Any], schedule: ScheduleLike, schedule_path: str, ignore_fingerprint: bool) -> int:
    """Validate a saved serving state against the schedule being served; return samples consumed."""
    fingerprint = schedule.fingerprint
    if "samples_consumed" not in obj:
        kind = "Streaming's own dataset state" if set(streaming_state_keys()) <= set(obj) else "not a serving state"
        raise MixtureError(f"cannot resume a scheduled dataset from {sorted(obj)} ({kind})",
                           hint="resume from a checkpoint made with ScheduledDataset")
    consumed = int(obj["samples_consumed"])
    saved = obj.get("schedule_fingerprint")
    if saved != fingerprint and not ignore_fingerprint:
        raise MixtureError(
            f"the checkpoint was made with schedule {saved}, but {schedule_path} is schedule {fingerprint}: "
            f"resuming at sample {consumed} would serve a different order than the run so far",
            hint=f"resume with the schedule the run started with, or pass {OVERRIDE_FLAG}=True to switch "
            "schedules at this point on purpose")
    if consumed < 0 or schedule.batch_index(consumed % len(schedule)) is None:
        sizes = sorted({s.batch_size for s in schedule.segments if s.num_batches}) or [schedule.global_batch_size]
        raise MixtureError(f"resume point {consumed} samples is negative or not a whole number of global batches of "
                           f"{' and '.join(map(str, sizes))}", hint="resume from a checkpoint saved at a batch boundary")
    return consumed


def build_dataloader(dataset: ScheduledDataset, *, num_workers: int = 0,
                     collate_fn: Callable[[list[dict[str, Any]]], Any] | None = None, **kwargs: Any) -> DataLoader:
    """A DataLoader over ``dataset`` that yields each global batch's slice of this rank (``B / W`` samples,
    ``B`` the batch's phase's batch size) as one item; ``len`` is the schedule's number of global batches.

    Args:
        dataset: The scheduled dataset.
        num_workers: Dataloader worker processes; any number serves the same global batches.
        collate_fn: Turns a list of sample dicts into a batch (default: keep the list).
        **kwargs: Passed to ``DataLoader`` (``pin_memory``, ``prefetch_factor``, ...); ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last`` are fixed by the schedule.
    """
    fixed = {"batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"} & set(kwargs)
    if fixed:
        raise MixtureError(f"{', '.join(sorted(fixed))}: fixed by the schedule", hint="remove them")
    dataset.yield_batches = True
    return _BatchLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=collate_fn or _as_list,
                        **kwargs)


class _BatchLoader(DataLoader):
    """A DataLoader of whole per-rank batches; its length is the schedule's global batches (what a loader
    with a fixed batch size over the whole order had), not the dataset's samples."""

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        """The largest per-rank batch (what Composer takes as the microbatch when none is given)."""
        return int(self.dataset.batch_size)

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        """DataLoader's own ``None``: automatic batching is off, each item is already a batch."""

    def __len__(self) -> int:
        return int(self.dataset.schedule.num_batches)


def _as_list(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples
