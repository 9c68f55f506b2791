"""Reading a training run's directory, as the trainer writes it.

The contract (docs/analysis.md, "The run directory"):

* ``run.json``: ``name``, ``schedule`` (path of the compiled schedule), ``schedule_fingerprint``,
  ``variant`` (``name``, ``values``), ``global_batch_size``, ``world_size``, ``status``, ``last_batch``.
* ``metrics.jsonl``: one JSON object per line. Train lines: ``batch`` (batches completed), ``samples``,
  ``lr``, ``loss/train``, ``loss/train/SRC``, ``samples/train/SRC`` and ``tokens/train/SRC`` (cumulative).
  Eval lines carry ``eval/...`` keys instead (``eval/loss/SRC``, ``eval/vqa/accuracy``, ``eval/text/...``).
* ``results.json``: ``batch`` and ``eval`` (the final ``eval/...`` values).

A run that is still writing may end in half a line; that line is left out with a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError

RUN_JSON, METRICS, RESULTS = "run.json", "metrics.jsonl", "results.json"


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
    info: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name (its directory's name when run.json has none)."""
        return str(self.info.get("name") or self.path.name)

    @property
    def variant_values(self) -> dict[str, Any]:
        """The sweep axis values of the run's schedule variant ({} without a sweep)."""
        variant = self.info.get("variant") or {}
        return dict(variant.get("values") or {})

    def final_eval(self) -> dict[str, float]:
        """Final ``eval/...`` values: results.json, else the last eval line's values."""
        if self.results and isinstance(self.results.get("eval"), dict):
            return {k: v for k, v in self.results["eval"].items() if isinstance(v, (int, float))}
        out: dict[str, float] = {}
        for line in self.evals:
            out.update({k: v for k, v in line.items() if k.startswith("eval/") and isinstance(v, (int, float))})
        return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MixtureError(f"{path} does not exist", hint=f"point at a run directory holding {what}") from None
    except ValueError as exc:
        raise MixtureError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MixtureError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


def _read_metrics(path: Path, run: Run) -> None:
    if not path.exists():
        run.notes.append(f"{run.name}: no {METRICS} (nothing logged yet)")
        return
    lines = path.read_text().splitlines()
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            if number == len(lines):  # the trainer may be writing it right now
                run.notes.append(f"{run.name}: the last line of {METRICS} is incomplete and was left out")
                continue
            raise MixtureError(f"{path}:{number}: not a JSON object",
                               hint="each line must be one JSON object") from None
        if not isinstance(line, dict) or not isinstance(line.get("batch"), int):
            raise MixtureError(f"{path}:{number}: a metrics line needs an integer 'batch'")
        (run.evals if any(k.startswith("eval/") for k in line) else run.train).append(line)


def load_run(path: str | Path) -> Run:
    """Read a run directory (``run.json`` required; ``metrics.jsonl`` and ``results.json`` when present).

    Raises:
        MixtureError: If ``run.json`` is missing or malformed, or a metrics line is not JSON.
    """
    root = Path(path)
    if not root.is_dir():
        raise MixtureError(f"{root} is not a directory", hint=f"point at a run directory holding {RUN_JSON}")
    run = Run(root, _read_json(root / RUN_JSON, RUN_JSON))
    _read_metrics(root / METRICS, run)
    if (root / RESULTS).exists():
        run.results = _read_json(root / RESULTS, RESULTS)
    elif run.info.get("status") == "done":
        run.notes.append(f"{run.name}: status is done but there is no {RESULTS}; the last eval line is used")
    return run


def per_source(line: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{SRC: value}`` for the keys ``PREFIX/SRC`` of one metrics line."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in line.items() if k.startswith(prefix + "/") and "/" not in k[cut:]}
