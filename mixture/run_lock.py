"""The run directory's lock: one trainer per run directory at a time, released by the kernel when it dies.

A trainer holds an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock`` for its whole invocation; a second
trainer on the same directory is refused at once with the holder's pid and host (read from the file). An
OS lock belongs to the open file, not to the file's existence: a killed trainer (``kill -9``, a crash)
releases it automatically, so there are no stale locks to clean. The file is removed when the
lock is released, so a run directory that is not in use has no ``.lock`` (rerunning a finished run leaves
its directory byte-identical); because another process may hold the file open while it is removed, an
acquirer checks after locking that the path still names the file it locked and retries otherwise.

Multi-rank runs take it once, in global rank 0 (:mod:`trainer.run_guard` shares the outcome with the
other ranks). Standard library only (no torch), like :mod:`mixture.run_dir`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mixture.errors import MixtureError
from mixture.run_dir import LOCK


class RunLock:
    """An exclusive lock on a run directory (use :func:`acquire`; release with :meth:`release`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()  # while still locked: an acquirer that opened it re-checks the path
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(run_dir: str | os.PathLike[str]) -> RunLock:
    """Lock ``run_dir`` (creating it) for this process, or refuse at once.

    Raises:
        MixtureError: If another live process holds it (naming its pid and host).
    """
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise MixtureError(f"{run_dir} is in use by {_describe(path)}",
                               hint="wait for that trainer to end or stop it; two trainers on one run "
                               "directory would interleave its metrics and checkpoints") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed it between our open and our lock: lock the new file
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode() + b"\n", 0)
    return RunLock(path, fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _describe(path: Path) -> str:
    """``pid N on HOST (since HH:MM:SS)`` from a lock file, or a generic phrase if it is not written yet."""
    try:
        record = json.loads(path.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["since"])))
        return f"another trainer (pid {int(record['pid'])} on {record['host']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another trainer (it has not recorded its pid yet)"
