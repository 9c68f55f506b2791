"""Publishing files to a dataset's location, local or remote.

The rules for locations (``is_url``, ``is_relative``, ``is_remote``, ``local_path``, ``storage_options``) are
owned by :mod:`mixture.locations` (pure, so the compiler uses them too) and re-exported here for ingest,
serving, the trainer and the reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mixture.locations import is_relative, is_remote, is_url, local_path, storage_options

__all__ = ["is_relative", "is_remote", "is_url", "local_path", "publish", "storage_options"]


def publish(staging: str, out: str, names: Sequence[str]) -> None:
    """Move ``names`` from the local ``staging`` directory to ``out``, one at a time, in the given order.

    Locally each is a rename (atomic on one file system); remotely each is one upload through Streaming's
    uploader (one PUT, atomic on object stores). Callers put ``index.json`` last.
    """
    if not is_remote(out):
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(local_path(out), name))
        return
    from streaming.base.storage.upload import CloudUploader

    uploader = CloudUploader.get((staging, out.rstrip("/")), keep_local=True, exist_ok=True)
    for name in names:
        uploader.upload_file(name)
