"""Which schedule directories this process already knows to be intact.

:func:`mixture.schedule_check.verify_schedule` reads a directory in full (files, shapes, the fingerprint
recomputed from order.bin) once per process; the compiler, which computed every byte of a directory it has
just written, vouches for it here so that opening it straight after compiling does not read it back. A
directory is known by the sizes and modification times of its files: any later change makes it unknown.
Its own module because the compiler and the checker both use it (the checker imports the compiler's
fingerprint, so the compiler cannot import the checker).
"""

from __future__ import annotations

import os
from pathlib import Path

_verified: set[tuple[object, ...]] = set()


def state_key(path: Path) -> tuple[object, ...]:
    """Sizes and modification times of every file: a change anywhere makes the directory unverified."""
    stats = []
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            stats.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return (str(path.resolve()), tuple(stats))


def is_verified(key: tuple[object, ...]) -> bool:
    """Whether a directory in the state ``key`` was verified (or vouched for) in this process."""
    return key in _verified


def vouch_key(key: tuple[object, ...]) -> None:
    """Record a directory in the state ``key`` as verified."""
    _verified.add(key)


def vouch(path: str | Path) -> None:
    """Count a directory as verified in this process: its writer, which computed every file and the
    fingerprint from the data itself, calls this right after writing it."""
    vouch_key(state_key(Path(path)))
