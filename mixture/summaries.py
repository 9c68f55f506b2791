"""Machine-readable results of ``validate`` and ``explain`` (their ``--json`` output).

``validate --json`` prints one object: ``{"file", "ok": true, "phases", "sources", "variants"}``, or
``{"file", "ok": false, "problems": [{"message", "path", "file", "line", "col", "hint"}, ...]}`` (exit 2).
``explain --json`` prints a list with one object per variant: name, fingerprint, totals, batch sizes, phase spans (each with its
``global_batch_size``, ``first_batch`` and ``num_batches``) and
the rows of the table (:func:`mixture.api.explain_rows`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError


def validate_summary(file: str | Path) -> dict[str, Any]:
    """What ``mixture validate FILE`` found, as data (problems included rather than raised)."""
    from mixture.api import variants

    try:
        found = variants(file)
    except MixtureError as error:
        return {"file": str(file), "ok": False, "problems": [dataclasses.asdict(p) for p in error.problems]}
    first = found[0].resolved
    return {"file": str(file), "ok": True, "phases": [p.name for p in first.phases],
            "sources": sorted(first.spec.sources), "variants": [v.name for v in found if v.name]}


def explain_summary(target: str | Path) -> list[dict[str, Any]]:
    """The ``explain`` table of each variant of a schedule directory or mixture file, as data."""
    from mixture.api import explain_rows, open_or_compile

    out = []
    for name, schedule in open_or_compile(target):
        m = schedule.manifest
        segments = m.batch_segments()
        out.append({"variant": name, "name": m.name, "fingerprint": m.fingerprint,
                    "num_positions": m.num_positions, "num_batches": m.num_batches,
                    "global_batch_size": m.global_batch_size, "batch_sizes": list(m.batch_sizes),
                    "total_tokens": m.total_tokens,
                    "phases": [{"name": p.name, "start": p.start, "stop": p.stop,
                                "global_batch_size": s.batch_size, "first_batch": s.first_batch,
                                "num_batches": s.num_batches} for p, s in zip(m.phases, segments)],
                    "rows": explain_rows(schedule)})
    return out
