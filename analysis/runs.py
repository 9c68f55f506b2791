"""Reading a training run's directory, through its typed records (:mod:`mixture.run_dir`).

``run.json`` is a :class:`~mixture.run_dir.RunInfo`, ``results.json`` a :class:`~mixture.run_dir.Results`;
the lines of ``metrics.jsonl`` are split into train lines (``batch``, ``samples``, ``lr``, ``loss/train``,
``loss/train/SRC``, cumulative ``samples/train/SRC`` and ``tokens/train/SRC``) and eval lines (``eval/...``
keys). A run that is still writing may end in half a line; that line is left out with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixture import run_dir as rd
from mixture.errors import MixtureError


@dataclass
class Run:
    """A run directory, read.

    Attributes:
        path: The directory.
        info: ``run.json``.
        train: Train lines of ``metrics.jsonl`` in file order.
        evals: Eval lines of ``metrics.jsonl`` in file order.
        results: ``results.json`` (None when absent: the run has not finished).
        notes: What was odd about the files (a half-written last line, ...).
    """

    path: Path
    info: rd.RunInfo
    train: list[rd.Line] = field(default_factory=list)
    evals: list[rd.Line] = field(default_factory=list)
    results: rd.Results | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name (its directory's name when run.json has none)."""
        return self.info.name or self.path.name

    @property
    def variant_values(self) -> dict[str, Any]:
        """The sweep axis values of the run's schedule variant ({} without a sweep)."""
        return dict(self.info.variant.values) if self.info.variant else {}

    def final_eval(self) -> dict[str, float]:
        """Final ``eval/...`` values: results.json, else the last eval line's values."""
        if self.results:
            return dict(self.results.eval)
        out: dict[str, float] = {}
        for line in self.evals:
            out.update({k: v for k, v in line.items() if k.startswith("eval/") and isinstance(v, (int, float))})
        return out


def load_run(path: str | Path) -> Run:
    """Read a run directory (``run.json`` required; ``metrics.jsonl`` and ``results.json`` when present).

    Raises:
        MixtureError: If ``run.json`` is missing or malformed, or a metrics line is not JSON.
    """
    root = Path(path)
    if not root.is_dir():
        raise MixtureError(f"{root} is not a directory", hint=f"point at a run directory holding {rd.RUN_JSON}")
    run = Run(root, rd.read_info(root))
    lines, notes = rd.read_metrics(root)
    run.notes += [f"{run.name}: {note}" for note in notes]
    for line in lines:
        (run.evals if rd.is_eval_line(line) else run.train).append(line)
    run.results = rd.read_results(root)
    if run.results is None and run.info.status == "done":
        run.notes.append(f"{run.name}: status is done but there is no {rd.RESULTS}; the last eval line is used")
    return run


def per_source(line: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{SRC: value}`` for the keys ``PREFIX/SRC`` of one metrics line."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in line.items() if k.startswith(prefix + "/") and "/" not in k[cut:]}
