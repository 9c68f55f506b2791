"""Suite-wide settings and fixtures: hypothesis profiles (derandomized in CI), the albumentations switch,
free ports for multi-process tests, and the release of Streaming's shared memory after each test."""

import gc
import os
import socket
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Returns a function giving a TCP port free on this machine now, for a multi-process test's rendezvous
    or a local server: never a fixed port, so two test runs on one machine do not collide."""
    return _free_port


_STREAMING_MEMORY = "streaming.base.shared.memory"


class _ReleaseOnCollection:
    """Stands in for ``atexit`` in Streaming's shared-memory module.

    Streaming registers every ``SharedMemory`` it opens with ``atexit``, so the registry keeps each one (its
    file descriptor and mapping) alive until the process exits: a test process that builds hundreds of
    datasets runs out of file descriptors ("Too many open files"). Here the same cleanup (close, and unlink
    what this process created) runs when the ``SharedMemory`` is garbage collected, or at exit if it never is.
    """

    @staticmethod
    def register(cleanup: Callable[[], Any]) -> None:
        memory = cleanup.__self__  # type: ignore[attr-defined]
        detached = object.__new__(type(memory))  # holds the blocks, not the object the finalizer watches
        detached.created_shms, detached.opened_shms = memory.created_shms, memory.opened_shms
        weakref.finalize(memory, detached.cleanup)


def _release_streaming_memory_on_collection() -> bool:
    """Install :class:`_ReleaseOnCollection` once Streaming is imported; whether it is.

    Also imports :mod:`streaming_data._streaming_compat`, whose lock serialises shared-memory prefix
    registration, so that datasets the tests build with Streaming directly are covered too.
    """
    module = sys.modules.get(_STREAMING_MEMORY)
    if module is None:
        return False
    if not isinstance(module.atexit, _ReleaseOnCollection):
        import streaming_data._streaming_compat  # noqa: F401

        module.atexit = _ReleaseOnCollection()
    return True


@pytest.fixture(scope="session", autouse=True)
def _streaming_memory_session() -> None:
    """Installed before module fixtures build datasets (test modules imported Streaming at collection)."""
    _release_streaming_memory_on_collection()


@pytest.fixture(autouse=True)
def release_streaming_shared_memory() -> Iterator[None]:
    """After each test, collect the datasets it dropped, so their shared memory is released now."""
    _release_streaming_memory_on_collection()
    yield
    if _release_streaming_memory_on_collection():
        gc.collect()
