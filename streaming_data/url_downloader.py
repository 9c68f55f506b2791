"""img2dataset's ``Downloader`` restricted to http(s) URLs (the policy is :mod:`streaming_data.url_policy`).

Kept apart from the policy because importing img2dataset takes seconds.
"""

from __future__ import annotations

import importlib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from img2dataset.downloader import Downloader

from streaming_data.url_policy import http_only_opener


class HttpOnlyDownloader(Downloader):
    """img2dataset's ``Downloader`` that fetches through :func:`http_only_opener` in its worker process.

    It is pickled into each (spawned) download process by reference to this module, so the opener is
    installed where the downloads run, not only in the process that started them.
    """

    def __call__(self, row: Any) -> Any:
        urllib.request.install_opener(http_only_opener())
        return super().__call__(row)


@contextmanager
def http_only_downloads() -> Iterator[None]:
    """Make ``img2dataset.download`` build :class:`HttpOnlyDownloader` for the duration of the block."""
    main = importlib.import_module("img2dataset.main")  # the package's `main` attribute is a function
    original = main.Downloader
    main.Downloader = HttpOnlyDownloader
    try:
        yield
    finally:
        main.Downloader = original
