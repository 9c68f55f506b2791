"""Local paths and URLs: the one rule that tells them apart, for every package.

- a *URL* is any location with a scheme (``s3://``, ``gs://``, ``file://``): never relative to a config file;
- a *relative* location is a local path that is not absolute: resolved against the directory of the file
  that names it (a mixture file, an included file, a run config);
- a *remote* location is a URL other than ``file://``: Streaming downloads from it (and uploads to it);
- *storage options* (fsspec's) for a location: ``S3_ENDPOINT_URL``, the variable Streaming reads for
  S3-compatible stores, as ``client_kwargs.endpoint_url`` for an ``s3://`` location; nothing otherwise.

Pure string rules (no Streaming, no fsspec), so the compiler can use them; ``streaming_data.locations``
adds publishing and re-exports them.
"""

from __future__ import annotations

import os
from typing import Any


def is_url(location: str) -> bool:
    """True for any location with a scheme, ``file://`` included (never resolved against a directory)."""
    return "://" in location


def is_relative(location: str) -> bool:
    """True for a local path that is not absolute: it is resolved against the naming file's directory."""
    return not is_url(location) and not os.path.isabs(location)


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
