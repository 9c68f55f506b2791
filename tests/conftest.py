"""Suite-wide settings and fixtures: hypothesis profiles (derandomized in CI), the albumentations switch,
free ports for multi-process tests, the release of Streaming's shared memory after each test, and the tiny
study's data shared by the trainer's and evaluation's end-to-end tests."""

import gc
import os
import socket
import sys
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
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

    It also counts what it registers, so the fixtures below collect garbage only where a test opened shared
    memory (a full collection costs 1-3 s once torch is loaded: after every test it was minutes of a run).
    """

    def __init__(self) -> None:
        self.opened_since_collection = 0
        self._finalizers: list[weakref.finalize] = []

    def register(self, cleanup: Callable[[], Any]) -> None:
        memory = cleanup.__self__  # type: ignore[attr-defined]
        detached = object.__new__(type(memory))  # holds the blocks, not the object the finalizer watches
        detached.created_shms, detached.opened_shms = memory.created_shms, memory.opened_shms
        self._finalizers.append(weakref.finalize(memory, detached.cleanup))
        self.opened_since_collection += 1

    def unreleased(self) -> int:
        """How many registered ``SharedMemory`` objects are still alive (not yet collected)."""
        self._finalizers = [f for f in self._finalizers if f.alive]
        return len(self._finalizers)

    def collect(self) -> None:
        self.opened_since_collection = 0
        gc.collect()


def _release_streaming_memory_on_collection() -> _ReleaseOnCollection | None:
    """Install :class:`_ReleaseOnCollection` once Streaming is imported; it, or None before.

    Also imports :mod:`streaming_data._streaming_compat`, whose lock serialises shared-memory prefix
    registration, so that datasets the tests build with Streaming directly are covered too.
    """
    module = sys.modules.get(_STREAMING_MEMORY)
    if module is None:
        return None
    if not isinstance(module.atexit, _ReleaseOnCollection):
        import streaming_data._streaming_compat  # noqa: F401

        module.atexit = _ReleaseOnCollection()
    return module.atexit


@pytest.fixture(scope="session", autouse=True)
def _streaming_memory_session() -> None:
    """Installed before module fixtures build datasets (test modules imported Streaming at collection)."""
    _release_streaming_memory_on_collection()


@pytest.fixture(scope="module", autouse=True)
def release_module_shared_memory() -> Iterator[None]:
    """After a module (its own module fixtures are torn down first), collect the datasets they held."""
    _release_streaming_memory_on_collection()
    yield
    release = _release_streaming_memory_on_collection()
    if release is not None and release.unreleased():
        release.collect()


_ALWAYS_COLLECT = Path(__file__).parent / "streaming_data"


@pytest.fixture(autouse=True)
def release_streaming_shared_memory(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that opened shared memory, collect the datasets it dropped, so it is released now.

    Ingest and serving tests (tests/streaming_data) collect after every test, as before: their worker pools
    fork, and a fork inherits whatever garbage is left (a run that skipped those collections once hung in a
    forked ingest worker, waiting on a multiprocessing lock; not reproduced, so not ruled out).
    """
    _release_streaming_memory_on_collection()
    yield
    release = _release_streaming_memory_on_collection()
    if release is not None and (release.opened_since_collection or request.path.is_relative_to(_ALWAYS_COLLECT)):
        release.collect()


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny study made once per session (tests/trainer/train_helpers.py): ``raw`` files, their ingested
    sources under ``data`` and ``schedule``, one compiled mixture of 8 batches (2 of text, 4 of image cooldown,
    2 of fine-tuning). Read-only: tests write their runs in their own directories."""
    sys.path.insert(0, str(Path(__file__).parent / "trainer"))
    import train_helpers as h

    root = tmp_path_factory.mktemp("tiny_study")
    raw = h.make_raw(root / "raw", num_docs=60, num_images=24, num_chats=16)
    h.ingest(raw, root / "data")
    schedule = h.compile_to(h.mixture(root / "data", text_batches=2), root / "mix.yaml", root / "schedule")
    return {"raw": raw, "data": root / "data", "schedule": schedule}
