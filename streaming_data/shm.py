"""Starting a StreamingDataset safely next to other runs on one host: no start-up race, no stale leftovers.

Streaming names each dataset's shared memory ``/dev/shm/NNNNNN_locals``, ``NNNNNN_barrier``, ... and its
file locks ``$TMPDIR/NNNNNN_barrier_filelock`` / ``NNNNNN_cache_filelock`` with the first prefix number
``NNNNNN`` that has neither (``streaming.base.shared.prefix.get_shm_prefix``). Two problems follow:

- Two datasets starting together on one host both pick the same free prefix; the second to create its
  ``NNNNNN_locals`` dies with ``FileExistsError``. Here the local leader of each run holds one host-wide
  ``flock`` (``$TMPDIR/mixture-streaming-start.lock``) while its dataset is built, so the trainers of
  this project start one after another (the other ranks wait on their leader at a barrier), and a
  one-rank start that still collides with a foreign process retries with backoff.
- A killed run leaves its shared memory and file locks behind; every later dataset on the host then skips
  past them (we saw prefixes beyond 100) and ``/dev/shm`` fills. Streaming's ``clean_stale_shared_memory``
  unlinks every prefix from 0 up to the first gap, *including those of live datasets*, and leaves the file
  locks, so it is only safe when nothing else on the host streams. :func:`clean_stale` removes exactly the
  prefixes no live process uses: a prefix is live when any process has one of its files mapped
  (``/proc/PID/maps``) or open (``/proc/PID/fd``). Only this user's files are considered (others' are
  private to them). It runs under the host lock, at the start of every run. Processes in another PID
  namespace that share this ``/dev/shm`` (containers started with ``--ipc=host``) are invisible in
  ``/proc``: give such containers their own ``/dev/shm`` or ``TMPDIR``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import gettempdir
from typing import TypeVar

T = TypeVar("T")

SHM_ROOT = Path("/dev/shm")
START_LOCK = "mixture-streaming-start.lock"
_NAME = re.compile(r"^(\d{6})_(locals|barrier|next_epoch|cache_usage|shard_states|shard_access_times|resume|"
                   r"epoch_shape|epoch_data|barrier_filelock|cache_filelock)$")
_LOCK_WAIT_S = 120.0  # then start without the host lock (two multi-node runs could otherwise wait on each other)
_RETRIES = 8


def start_dataset(build: Callable[[], T]) -> T:
    """``build()`` (which constructs a StreamingDataset) under the host's start lock, after cleaning stale
    shared memory, retrying a one-rank start that loses the prefix race (see the module docstring).

    Ranks are read as Streaming reads them (``LOCAL_RANK``, ``WORLD_SIZE``); with more than one, the
    process group must be initialised (the ranks wait on their local leader at a barrier).
    """
    one_rank = int(os.environ.get("WORLD_SIZE", "1")) == 1
    with _host_start_lock(int(os.environ.get("LOCAL_RANK", "0")) == 0):
        for attempt in range(_RETRIES):
            try:
                return build()
            except FileExistsError:
                if not one_rank or attempt == _RETRIES - 1:
                    raise  # ranks of a multi-rank start cannot retry apart (Streaming's barriers)
                time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _host_start_lock(leader: bool) -> Iterator[None]:
    """The local leader holds the host lock (and cleans); every rank waits until it does."""
    from torch import distributed as dist

    fd = None
    if leader:
        fd = os.open(Path(gettempdir(), START_LOCK), os.O_RDWR | os.O_CREAT, 0o666)
        if not _lock_within(fd, _LOCK_WAIT_S):
            print(f"note: another dataset start held {START_LOCK} for {_LOCK_WAIT_S:.0f} s; starting anyway",
                  file=sys.stderr)
        clean_stale()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _lock_within(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def clean_stale(roots: tuple[Path, ...] | None = None) -> list[Path]:
    """Remove this user's Streaming shared memory and file locks whose prefix no live process uses.

    Args:
        roots: Where to look (default ``/dev/shm`` and the temporary directory).

    Returns:
        The files removed (none where ``/proc`` is missing: liveness cannot be told there).
    """
    roots = roots or (SHM_ROOT, Path(gettempdir()))
    live = _live_prefixes(roots)
    if live is None:
        return []
    removed = []
    for root in roots:
        for path in _candidates(root):
            if _NAME.match(path.name).group(1) not in live:  # type: ignore[union-attr]
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    path.unlink()
                    removed.append(path)
    return removed


def _candidates(root: Path) -> list[Path]:
    """This user's Streaming files under ``root``."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if _NAME.match(entry.name):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                        found.append(Path(entry.path))
    return found


def _live_prefixes(roots: tuple[Path, ...]) -> set[str] | None:
    """Prefixes with a file mapped or open in a process we can inspect (None without ``/proc``)."""
    proc = Path("/proc")
    if not (proc / "self" / "maps").exists():
        return None
    pattern = re.compile("(?:" + "|".join(re.escape(str(r)) for r in roots) + r")/(\d{6})_")
    live: set[str] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            live.update(pattern.findall((proc / pid / "maps").read_text()))
        with contextlib.suppress(OSError):
            for fd in os.listdir(proc / pid / "fd"):
                with contextlib.suppress(OSError):
                    live.update(pattern.findall(os.readlink(proc / pid / "fd" / fd)))
    return live
