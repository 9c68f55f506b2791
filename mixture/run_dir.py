"""The run directory: its file names and typed records, read and written without torch or composer.

A training run writes one directory (DESIGN.md, "The run directory"); the trainer writes it, sweep status
and the reports read it, and this module is the one that knows its layout:

- ``run.json``: a :class:`RunInfo` (status ``running | stopped | failed | done``, schedule path and
  fingerprint, sweep variant, global batch size, world size, last batch, ...);
- ``metrics.jsonl``: one JSON object per logged batch (``batch``, ``samples``, ``lr``, ``loss/train``,
  ``loss/train/SRC``, cumulative ``samples/train/SRC`` and ``tokens/train/SRC``, ``time/wall``, ``time/step_s``,
  ``throughput/tokens_per_s``, ``throughput/samples_per_s``) and one per evaluation
  (``batch`` and ``eval/...`` keys); their keys are per source, so lines stay dictionaries (:data:`Line`);
- ``results.json``: a :class:`Results` (the final evaluation and its :class:`Baseline` per score);
- ``checkpoints/`` (the default checkpoint folder) and ``export/`` (the Hugging Face export);
- ``.lock``: present while a trainer uses the directory (:mod:`mixture.run_lock`).

It lives in the compiler package only because that is the package every other one may import (the
reports must not import the trainer); it reads no schedule and imports nothing but the standard library
and :mod:`mixture.errors`. JSON files are written whole (temporary file, fsync, rename), so a reader never
sees half of one, even after a crash; ``metrics.jsonl`` is appended to, so a reader leaves out a
half-written last line, and its rewrite on resume goes through a rename too.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from mixture.errors import MixtureError
from mixture.faults import kill_point

RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
CHECKPOINT_FILE = "ba{batch}-rank{rank}.pt"  # Composer's save_filename; latest-rank{rank}.pt links to the newest
_CHECKPOINT_RE = re.compile(r"^ba(\d+)-rank\d+\.pt$")
EXPORT = "export"
TRAIN_LOG = "train.log"
LOCK = ".lock"  # held by the trainer using the directory (mixture.run_lock); absent when none is

RunStatus = Literal["running", "stopped", "failed", "done"]
STATUSES: tuple[str, ...] = get_args(RunStatus)

# One metrics.jsonl line: keys are per source (``loss/train/SRC``), so a line is a mapping, not a record.
Line = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    """The sweep variant a run's schedule was compiled from (name "" and no values without a sweep)."""

    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """``run.json``: what a run trains and how far it got.

    Attributes:
        name: The run's name (its directory's name).
        status: ``running`` (training now, or killed), ``stopped`` (before the schedule's end), ``failed`` or
            ``done`` (reached the schedule's last batch); None in a file that does not say.
        schedule: Path of the compiled schedule.
        schedule_fingerprint: Its fingerprint.
        variant: The sweep variant (None in files written before variants were recorded).
        global_batch_size: Samples per global batch.
        world_size: Ranks that trained.
        last_batch: Batches completed.
        stop_batch: The batch this invocation trains to.
        started: Wall time of the (latest) start.
        finished: Wall time of the (latest) end.
        export: The export directory (None: not exported).
        same_as: For a sweep's alias directory: the variant whose run trained this one.
        trained_in: For a sweep's alias directory: that run's directory.
    """

    name: str = ""
    status: RunStatus | None = None
    schedule: str | None = None
    schedule_fingerprint: str | None = None
    variant: Variant | None = None
    global_batch_size: int | None = None
    world_size: int | None = None
    last_batch: int = 0
    stop_batch: int | None = None
    started: float | None = None
    finished: float | None = None
    export: str | None = None
    same_as: str | None = None
    trained_in: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = RUN_JSON) -> RunInfo:
        """The record of a parsed ``run.json`` (unknown keys are ignored: newer writers may add some).

        Raises:
            MixtureError: If ``status`` is not one of :data:`STATUSES` or ``variant`` is not an object.
        """
        status = data.get("status")
        if status is not None and status not in STATUSES:
            raise MixtureError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
        variant = data.get("variant")
        if variant is not None and not isinstance(variant, dict):
            raise MixtureError(f"{where}: variant should be an object with name and values, not {variant!r}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and data[k] is not None}
        known["last_batch"] = int(known.get("last_batch") or 0)
        known["variant"] = None if variant is None else Variant(str(variant.get("name") or ""),
                                                                 dict(variant.get("values") or {}))
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``run.json`` (alias fields only when set)."""
        data = asdict(self)
        for key in ("same_as", "trained_in"):
            if data[key] is None:
                del data[key]
        return data

    def updated(self, **changes: Any) -> RunInfo:  # noqa: ANN401 - field values of this record
        """A copy with ``changes`` (field names checked by :func:`dataclasses.replace`)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Baseline:
    """What a score is read against (``results.json``'s ``baselines``, keyed by the score's name).

    Attributes:
        value: The baseline's score (e.g. the answer prior's accuracy, the uniform guess's loss).
        se: Its standard error (0 when it is exact).
        name: Short name (``answer prior``, ``uniform guess``).
        what: How it was computed, in words.
    """

    value: float
    se: float = 0.0
    name: str = ""
    what: str = ""


@dataclass(frozen=True)
class Results:
    """``results.json``: the final evaluation, at batch ``batch``, and the baselines of its scores
    (``eval/vqa/accuracy``: the answer prior; ``eval/loss/SRC``: the uniform guess; absent in files written
    before they were recorded)."""

    batch: int
    eval: dict[str, float]
    baselines: dict[str, Baseline] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = RESULTS) -> Results:
        """The record of a parsed ``results.json``.

        Raises:
            MixtureError: If ``batch`` is not an integer, ``eval`` not an object, or a baseline has no number.
        """
        batch, scores = data.get("batch"), data.get("eval")
        if not isinstance(batch, int) or not isinstance(scores, dict):
            raise MixtureError(f"{where}: results need an integer 'batch' and an 'eval' object")
        baselines = {}
        for key, item in (data.get("baselines") or {}).items():
            if not isinstance(item, dict) or not isinstance(item.get("value"), (int, float)):
                raise MixtureError(f"{where}: baselines.{key} needs a numeric 'value'")
            baselines[key] = Baseline(float(item["value"]), float(item.get("se") or 0.0), str(item.get("name") or ""),
                                      str(item.get("what") or ""))
        return cls(batch, {k: v for k, v in scores.items() if isinstance(v, (int, float))}, baselines)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``.

    Raises:
        MixtureError: If the file is missing, not JSON, or not an object.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MixtureError(f"{path} does not exist", hint="point at a run directory") from None
    except ValueError as exc:
        raise MixtureError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MixtureError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON object whole, through a rename (a reader never sees half of it)."""
    write_atomic(path, json.dumps(data, indent=1) + "\n")


def write_atomic(path: Path, text: str, *, fault: str = "") -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file, fsync, rename, fsync of the directory.

    A crash at any moment leaves either the old file or the new one, never a mix (a leftover temporary
    ``.NAME.partial`` is overwritten by the next write). ``fault`` names a test-only kill point
    (:mod:`mixture.faults`) between the fsync and the rename.
    """
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if fault:
        kill_point(fault)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_info(run_dir: str | Path) -> RunInfo:
    """``RUN_DIR/run.json``.

    Raises:
        MixtureError: If it is missing or malformed.
    """
    path = Path(run_dir) / RUN_JSON
    return RunInfo.from_dict(read_json(path), path)


def find_info(run_dir: str | Path) -> RunInfo | None:
    """``RUN_DIR/run.json``, or None when it is missing or unreadable (a run that has not started)."""
    try:
        return read_info(run_dir)
    except MixtureError:
        return None


def write_info(run_dir: str | Path, info: RunInfo) -> None:
    """Write ``RUN_DIR/run.json``."""
    write_json(Path(run_dir) / RUN_JSON, info.to_dict())


def read_results(run_dir: str | Path) -> Results | None:
    """``RUN_DIR/results.json`` (None when absent: the run has not finished).

    Raises:
        MixtureError: If it exists but is malformed.
    """
    path = Path(run_dir) / RESULTS
    return Results.from_dict(read_json(path), path) if path.exists() else None


def write_results(run_dir: str | Path, results: Results) -> None:
    """Write ``RUN_DIR/results.json``."""
    write_json(Path(run_dir) / RESULTS, asdict(results))


def read_metrics(run_dir: str | Path) -> tuple[list[Line], list[str]]:
    """The lines of ``RUN_DIR/metrics.jsonl`` in file order, and notes (no file, a half-written last line).

    Raises:
        MixtureError: For a line that is not a JSON object with an integer ``batch`` (but the last).
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return [], [f"no {METRICS} (nothing logged yet)"]
    lines, notes = [], []
    # Only "\n" ends a line (text mode and splitlines() also split a torn last line at "\r", "\x1e", ...).
    texts = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    last = max((number for number, text in enumerate(texts, 1) if text.strip()), default=0)
    for number, text in enumerate(texts, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            if number == last:  # the trainer may be writing it right now, or was killed while it did
                notes.append(f"the last line of {METRICS} is incomplete and was left out")
                continue
            raise MixtureError(f"{path}:{number}: not a JSON object", hint="each line must be one JSON object") from None
        if not isinstance(line, dict) or not isinstance(line.get("batch"), int):
            raise MixtureError(f"{path}:{number}: a metrics line needs an integer 'batch'")
        lines.append(line)
    return lines, notes


def is_eval_line(line: Line) -> bool:
    """Whether a metrics line is an evaluation's (``eval/...`` keys) rather than a training batch's."""
    return any(key.startswith("eval/") for key in line)


def append_metrics(run_dir: str | Path, line: Line) -> None:
    """Append one line to ``RUN_DIR/metrics.jsonl``."""
    with open(Path(run_dir) / METRICS, "a") as handle:
        handle.write(json.dumps(line) + "\n")


def truncate_metrics(run_dir: str | Path, batch: int) -> None:
    """Drop the metrics lines past ``batch`` (left by a run that broke after its last checkpoint), and a
    half-written last line (a run killed while appending), atomically (:func:`write_atomic`).

    Raises:
        MixtureError: For a line before the last that is not a metrics line (as :func:`read_metrics`).
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    lines, _ = read_metrics(run_dir)
    kept = [line for line in lines if line["batch"] <= batch]
    text = "".join(json.dumps(line) + "\n" for line in kept)
    if text != path.read_text():
        write_atomic(path, text, fault="metrics_rewrite")


def checkpoint_file(batch: int | str, rank: int | str = 0) -> str:
    """The name of a rank's checkpoint after ``batch`` batches (``ba120-rank0.pt``; ``"*"`` for either: a glob)."""
    return CHECKPOINT_FILE.format(batch=batch, rank=rank)


def checkpoint_batch(name: str) -> int | None:
    """The batch of a checkpoint file's name (``ba120-rank0.pt`` -> 120); None for any other name."""
    match = _CHECKPOINT_RE.match(name)
    return int(match[1]) if match else None
