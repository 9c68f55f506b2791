"""Stale Streaming shared memory and file locks left by killed runs, removed without touching live ones.

Streaming names each dataset's shared memory ``/dev/shm/NNNNNN_locals``, ``NNNNNN_barrier``, ... and its
file locks ``$TMPDIR/NNNNNN_barrier_filelock`` / ``NNNNNN_cache_filelock`` with the first prefix number
``NNNNNN`` that has neither (``streaming.base.shared.prefix.get_shm_prefix``; two datasets starting at once
are kept apart by the machine-wide registration lock of :mod:`streaming_data._streaming_compat`, which
also calls :func:`clean_stale_once` while it holds that lock).

- A killed run leaves its shared memory and file locks behind; every later dataset on the host then skips
  past them (we saw prefixes beyond 100) and ``/dev/shm`` fills. Streaming's ``clean_stale_shared_memory``
  unlinks every prefix from 0 up to the first gap, *including those of live datasets*, and leaves the file
  locks, so it is only safe when nothing else on the host streams. :func:`clean_stale` removes exactly the
  prefixes no live process uses: a prefix is live when any process has one of its files mapped
  (``/proc/PID/maps``) or open (``/proc/PID/fd``). Only this user's files are considered (others' are
  private to them). Processes in another PID namespace that share this ``/dev/shm`` (containers started
  with ``--ipc=host``) are invisible in ``/proc``: give such containers their own ``/dev/shm``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from tempfile import gettempdir

SHM_ROOT = Path("/dev/shm")
_NAME = re.compile(r"^(\d{6})_(locals|barrier|next_epoch|cache_usage|shard_states|shard_access_times|resume|"
                   r"epoch_shape|epoch_data|barrier_filelock|cache_filelock)$")
_cleaned = False


def clean_stale_once() -> None:
    """:func:`clean_stale`, the first time a process calls it (a process's first dataset start); later
    calls return at once (the scan of ``/proc`` takes a fraction of a second on a busy machine)."""
    global _cleaned
    if not _cleaned:
        _cleaned = True
        clean_stale()


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
