"""Local paths and remote URLs for datasets: the one place that tells them apart and publishes files.

The rules, used by ingest, serving, the trainer and the reports alike:

- a *URL* is any location with a scheme (``s3://``, ``gs://``, ``file://``): never relative to a config file;
- a *remote* location is a URL other than ``file://``: Streaming downloads from it (and uploads to it);
- *storage options* (fsspec's) for a location: ``S3_ENDPOINT_URL``, the variable Streaming reads for
  S3-compatible stores, as ``client_kwargs.endpoint_url`` for an ``s3://`` location; nothing otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def is_url(location: str) -> bool:
    """True for any location with a scheme, ``file://`` included (never resolved against a directory)."""
    return "://" in location


def is_remote(location: str) -> bool:
    """True for a URL Streaming downloads from or uploads to (s3://, gs://, ...), False for a local path or
    file://."""
    return is_url(location) and not location.startswith("file://")


def local_path(location: str) -> str:
    """A local location without its ``file://`` prefix."""
    return location[len("file://") :] if location.startswith("file://") else location


def storage_options(location: str) -> dict[str, Any]:
    """fsspec options for ``location`` matching what Streaming uses: ``S3_ENDPOINT_URL`` (an S3-compatible
    store) for an ``s3://`` location, nothing for any other."""
    endpoint = os.environ.get("S3_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint and location.startswith("s3://") else {}


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
