"""Stop a one-process run cleanly on Ctrl-C or ``kill``: between batches, never inside a checkpoint write.

Without this, SIGINT raises KeyboardInterrupt wherever Python happens to be, and SIGTERM ends the process
outright: during ``torch.save`` the interrupt left a truncated checkpoint behind (seen: "unexpected pos"
from torch's zip writer), which the next run's autoresume then tried to load. Here the first signal only
records the request; the run stops at the start of the next batch, after the previous batch's checkpoint
(if any) was written, by raising KeyboardInterrupt there (the run is then marked ``stopped``). A second
signal stops at once. Multi-rank runs keep the default behaviour: ranks would not stop at the same batch.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest(Callback):
    """Composer callback + signal handling: see the module docstring."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal received

    def batch_start(self, state: State, logger: Logger) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt(f"signal {self.requested}: stopped before batch {int(state.timestamp.batch) + 1}")

    def _handle(self, signum: int, _frame: Any) -> None:  # noqa: ANN401 - a frame
        if self.requested is not None:
            raise KeyboardInterrupt(f"signal {signum} (second)")
        self.requested = signum

    @contextlib.contextmanager
    def handling(self, enabled: bool) -> Iterator[None]:
        """Install the handlers for the block (only when ``enabled`` and in the main thread)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in _SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def raise_if_requested(self) -> None:
        """Raise KeyboardInterrupt for a request that came too late to stop a batch (e.g. in the final eval)."""
        if self.requested is not None:
            raise KeyboardInterrupt(f"signal {self.requested}")
