"""Sweeps, run: prepare every run of a sweep's run tree, train it parents first, and say where it stands.

The planning (which variants share which trunk) is the compiler's, pure and torch-free: :mod:`mixture.plan`
and :mod:`mixture.plan_files`. This package is the orchestration above it:

- :mod:`trainer.sweep.prepare`: one run config per planned run and ``sweep.json``;
- :mod:`trainer.sweep.execute`: train the runs (in this process or ``composer -n N``), resumably;
- :mod:`trainer.sweep.records`: the sweep directory's names and ``sweep.json`` as frozen records;
- :mod:`trainer.sweep.status`: where each run and variant stands, read from ``sweep.json`` and the run
  directories' typed records (:mod:`mixture.run_dir`);
- :mod:`trainer.sweep.cli`: ``mixture sweep plan|run|status``.

Nothing here imports torch or composer at module level.
"""

from __future__ import annotations

from trainer.sweep.execute import launch_commands, run_sweep
from trainer.sweep.prepare import default_sweep_dir, prepare_sweep
from trainer.sweep.status import result_dirs, sweep_status

__all__ = ["default_sweep_dir", "launch_commands", "prepare_sweep", "result_dirs", "run_sweep", "sweep_status"]
