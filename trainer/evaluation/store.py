"""``OUT/answers.jsonl``: the answers given so far, one validated JSON object a line, so that an interrupted
evaluation resumes where it stopped.

A line is trusted only if it parses as an object with a ``benchmark`` name, a ``question_id`` and a string
``answer``; anything else (a line torn by a crash) is dropped when the file is opened, and the file is
rewritten without it before anything is appended. Appends are flushed and fsynced batch by batch. The
final file (with per-question scores) replaces it atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError


def _valid(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if (not isinstance(record, dict) or not isinstance(record.get("benchmark"), str) or "question_id" not in record
            or not isinstance(record.get("answer"), str)):
        return None
    return record


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (written beside it, fsynced, renamed)."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class AnswerStore:
    """The answers of ``OUT/answers.jsonl`` by benchmark and question id.

    Args:
        path: The file (created if missing).
        benchmarks: The benchmark names being evaluated; lines of other benchmarks are kept but unused.
    """

    def __init__(self, path: Path, benchmarks: Iterable[str]) -> None:
        self.path = path
        self.answers: dict[str, dict[str, str]] = {b: {} for b in benchmarks}
        self.dropped = 0
        self.other_lines: list[str] = []  # answers of benchmarks not evaluated now: kept in the final file
        kept: list[str] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                record = _valid(line)
                if record is None:
                    self.dropped += bool(line.strip())
                    continue
                kept.append(json.dumps(record))
                if record["benchmark"] in self.answers:
                    self.answers[record["benchmark"]][str(record["question_id"])] = record["answer"]
                else:
                    self.other_lines.append(kept[-1])
            if self.dropped:
                write_atomic(path, "".join(k + "\n" for k in kept))

    def append(self, benchmark: str, answers: dict[str, str]) -> None:
        """Record answers (question id -> text) durably."""
        lines = "".join(json.dumps({"benchmark": benchmark, "question_id": q, "answer": a}) + "\n"
                        for q, a in answers.items())
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise MixtureError(f"{self.path}: cannot append answers ({exc.strerror})") from None
        self.answers[benchmark].update(answers)

