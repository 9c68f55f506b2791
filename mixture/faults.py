"""Test-only fault injection: ``MIXTURE_TEST_KILL_AT=NAME`` makes the process SIGKILL itself at the point NAME.

The fault tests (tests/trainer/test_runs.py) use it to kill a trainer where a real crash or ``kill -9`` could
land and no signal handler runs: after the final checkpoint (``before_final_eval``), between results.json
and the export (``before_export``), and inside the rewrite of metrics.jsonl (``metrics_rewrite``, after the
new file is written and before it replaces the old one). Unset (always, outside those tests) it does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "MIXTURE_TEST_KILL_AT"


def kill_point(name: str) -> None:
    """SIGKILL this process if ``MIXTURE_TEST_KILL_AT`` names this point (test-only; see the module docstring)."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
