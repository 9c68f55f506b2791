"""Stale Streaming shared memory and file locks (streaming_data.shm): removed only when no live process
(this one or another) has them mapped or open."""

from __future__ import annotations

import mmap
import subprocess
import sys
from pathlib import Path

from streaming_data.shm import clean_stale


def test_only_shared_memory_no_live_process_uses_is_cleaned(tmp_path: Path) -> None:
    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    tmp.mkdir()
    for prefix in ("000001", "000002", "000003"):
        for name in ("locals", "barrier"):
            (shm / f"{prefix}_{name}").write_bytes(b"\0" * 64)
        (tmp / f"{prefix}_cache_filelock").write_text("")
    (shm / "000004_other").write_text("")  # not Streaming's
    mapped = open(shm / "000002_barrier", "r+b")  # a live dataset maps its memory...
    view = mmap.mmap(mapped.fileno(), 64)
    mapped.close()
    held = open(tmp / "000003_cache_filelock")  # ...or holds its file lock
    holder = subprocess.Popen([sys.executable, "-c", "import sys; f = open(sys.argv[1]); print(1, flush=True); "
                               "sys.stdin.read()", str(shm / "000001_locals")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)  # another process's
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"1\n"
        assert clean_stale((shm, tmp)) == []  # every prefix is in use
        holder.kill()
        holder.wait()
        removed = clean_stale((shm, tmp))
        assert sorted(p.name for p in removed) == ["000001_barrier", "000001_cache_filelock", "000001_locals"]
        assert sorted(p.name for p in shm.iterdir()) == ["000002_barrier", "000002_locals", "000003_barrier",
                                                         "000003_locals", "000004_other"]
    finally:
        view.close()
        held.close()
    assert {p.name for p in clean_stale((shm, tmp))} == {"000002_barrier", "000002_locals", "000003_barrier",
                                                         "000003_locals", "000002_cache_filelock",
                                                         "000003_cache_filelock"}
