"""Golden orders: small specs whose compiled orders are pinned, so no change reorders a schedule silently.

For each spec in tests/mixture/golden/ the test compiles it and compares with golden/orders.json: the
sha256 of the whole order (source name and sample id of every position), the first and last positions,
and (for declared sources, whose fingerprint inputs are all in the spec) the schedule fingerprint.
Ingested-like sources are written here from a seeded generator; their fingerprint hashes Parquet bytes
(which depend on the writer's version), so only their order is pinned.

If this fails, users' schedules would reorder: that is only allowed together with a new
``mixture.compiler.ALGORITHM`` version. Then regenerate with
``.venv/bin/python -m tests.mixture.test_golden --write`` and commit both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixture import schedule_files as files
from mixture.api import compile_variant, variants
from mixture.compiler import ALGORITHM

GOLDEN = Path(__file__).parent / "golden"
SPECS = ["mixed_samples", "ramped_tokens", "ingested"]
EDGE = 6


def _write_ingested(directory: Path) -> None:
    """The sample indexes the ingested spec reads (seeded, so the same on every machine)."""
    rng = np.random.default_rng(20260101)
    captions = rng.integers(3, 50, 1500)
    columns = {"text": ("text", {"tokens": rng.integers(20, 900, 3000)}),
               "pairs": ("image_caption", {"tokens": captions + 64, "caption_tokens": captions})}
    for name, (kind, cols) in columns.items():
        path = directory / "data" / name
        path.mkdir(parents=True)
        (path / "index.json").write_text(json.dumps({"version": 2, "shards": []}))
        table = pa.table({k: pa.array(v, pa.int64()) for k, v in cols.items()})
        pq.write_table(table.replace_schema_metadata({"mixture:kind": kind, "mixture:dropped": "{}"}),
                       path / "samples.parquet")


def observe(name: str, work: Path) -> dict[str, object]:
    """Compile spec ``name`` in ``work``; what the golden file pins about it."""
    spec = work / f"{name}.yaml"
    shutil.copy(GOLDEN / f"{name}.yaml", spec)
    if name == "ingested":
        _write_ingested(work)
    (variant,) = variants(spec)
    schedule = compile_variant(variant, work / f"{name}.out")
    on_disk = {str(p.relative_to(schedule.path)): p.stat().st_size for p in schedule.path.rglob("*")
               if p.is_file() and p.name != files.MANIFEST}
    assert files.expected_sizes(schedule.manifest) == on_disk  # what a directory check compares
    src, samples = schedule.take(0, len(schedule))
    names = [schedule.source_names[s] for s in src]
    pairs = [[n, int(x)] for n, x in zip(names, samples)]
    digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    seen = {"algorithm": ALGORITHM, "positions": len(schedule), "order_sha256": digest,
            "first": pairs[:EDGE], "last": pairs[-EDGE:]}
    if name != "ingested":
        seen["fingerprint"] = schedule.fingerprint
    return seen


@pytest.mark.parametrize("name", SPECS)
def test_golden_order_is_unchanged(tmp_path: Path, name: str) -> None:
    want = json.loads((GOLDEN / "orders.json").read_text())[name]
    got = observe(name, tmp_path)
    hint = ("the compiled order changed: every schedule users trained on would reorder. If intended, bump "
            "mixture.compiler.ALGORITHM and regenerate: .venv/bin/python -m tests.mixture.test_golden --write")
    assert got["algorithm"] == want["algorithm"], f"{name}: ALGORITHM moved on; regenerate the golden orders"
    for key in ("positions", "first", "last", "order_sha256"):
        assert got[key] == want[key], f"{name}: {key} differs; {hint}"
    if "fingerprint" in want:
        assert got["fingerprint"] == want["fingerprint"], (
            f"{name}: same order, other fingerprint: what the fingerprint hashes changed (checkpoints of "
            "existing runs will be refused); if intended, regenerate the golden orders")


def _write_all() -> None:
    import tempfile

    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SPECS:
            (Path(tmp) / name).mkdir()
            result[name] = observe(name, Path(tmp) / name)
    (GOLDEN / "orders.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {GOLDEN / 'orders.json'}")


if __name__ == "__main__" and "--write" in sys.argv:
    _write_all()
