"""`mixture report`: planned against realised agrees with `mixture export` of the same schedule, batch by
batch; targets equal the compiler's own integral; a run's logged consumption is checked exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.realised import target_integral
from analysis.report import report
from mixture.cli import main
from mixture.kernels import COSINE, LINEAR, _integral
from mixture.schedule import Schedule
from tests.analysis.fixtures import (
    assert_self_contained,
    cumulative_by_batch,
    order_table,
    random_rows,
    write_index,
    write_run,
)
from tests.mixture.helpers import compile_text, spec_text

PHASES = [
    {"name": "trunk", "duration": "400 sp", "mix": {"web": 1}},
    {"name": "ramp_in", "duration": "300000 tok", "unit": "tokens", "mix": {"web": 0.6, "img": 0.3, "chat": 0.1},
     "ramp": {"length": "100000 tok"}},
    {"name": "even", "duration": "2000 sp", "unit": "samples", "mix": {"web": 0.5, "img": 0.5}},
    {"name": "shift", "duration": "1000 sp", "unit": "samples", "mix": {"web": 0.2, "img": 0.8},
     "ramp": {"length": "50ba", "shape": "cosine"}},
    {"name": "tune", "duration": "1 ep", "mix": {"chat": 1}},
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Schedule, pa.Table, Path]:
    tmp = tmp_path_factory.mktemp("sched")
    schedule = compile_text(spec_text(PHASES), tmp)
    return schedule, order_table(schedule, tmp), tmp


@pytest.fixture(scope="module")
def fine(compiled: tuple[Schedule, pa.Table, Path]) -> dict:
    """The report at batch resolution (every batch its own point)."""
    schedule, _, tmp = compiled
    return report(schedule.path, tmp / "rep_fine", max_points=10_000)[0]


def _per_phase(schedule: Schedule, order: pa.Table) -> dict[tuple[str, str], tuple[int, int]]:
    """(phase, source) -> (samples, tokens), straight from the export."""
    frame = {c: order.column(c).to_pylist() for c in ("phase", "source")}
    tokens = order.column("tokens").to_numpy()
    out: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(frame["phase"], frame["source"])):
        acc = out.setdefault(key, [0, 0])
        acc[0] += 1
        acc[1] += int(tokens[i])
    return {k: (v[0], v[1]) for k, v in out.items()}


def test_rows_agree_with_export(compiled: tuple[Schedule, pa.Table, Path], fine: dict) -> None:
    schedule, order, _ = compiled
    data = fine
    expected = _per_phase(schedule, order)
    assert {(r["phase"], r["source"]): (r["samples"], r["tokens"]) for r in data["rows"]} == expected
    assert all(c["ok"] for c in data["checks"]), data["checks"]
    sizes = {s.name: s.num_samples for s in schedule.sources}
    totals = {s: sum(v[0] for (p, src), v in expected.items() if src == s) for s in sizes}
    assert {r["source"]: r["samples"] for r in data["sources"]} == totals
    epochs = {s: totals[s] / sizes[s] for s in sizes}
    assert {r["source"]: r["epochs"] for r in data["sources"]} == pytest.approx(epochs)
    tune = next(r for r in data["rows"] if r["phase"] == "tune")
    assert tune["repeated"] == max(0, tune["samples"] + expected[("ramp_in", "chat")][0] - sizes["chat"])


def test_batch_by_batch_shares_agree_with_export(compiled: tuple[Schedule, pa.Table, Path], fine: dict) -> None:
    schedule, order, _ = compiled
    data = fine
    samples, tokens = cumulative_by_batch(schedule, order)
    ids = {n: i for i, n in enumerate(schedule.source_names)}
    for zoom in data["zoom"]:
        a = zoom["start_batch"]
        edges = a + np.asarray(zoom["batch"])
        assert list(np.diff(zoom["batch"])) == [1] * (len(edges) - 1)  # every single batch
        amount = tokens if zoom["unit"] == "tokens" else samples
        per_batch = np.diff(amount[edges], axis=0)
        share = per_batch / per_batch.sum(axis=1, keepdims=True)
        for name, got in zoom["realised"].items():
            assert got == pytest.approx(share[:, ids[name]].tolist(), abs=1e-12)
            assert zoom["min_share"][name] == pytest.approx(got, abs=1e-12)
    curve = data["curve"]
    edges = np.asarray(curve["batch"])
    assert curve["tokens"] == schedule.batch_tokens()[edges].tolist()
    for i, unit in enumerate(curve["unit"]):
        amount = tokens if unit == "tokens" else samples
        got = amount[edges[i + 1]] - amount[edges[i]]
        for name, j in ids.items():
            assert curve["realised"][name][i] == pytest.approx(got[j] / got.sum(), abs=1e-12)


def test_targets_are_the_compilers_integral(compiled: tuple[Schedule, pa.Table, Path], fine: dict) -> None:
    schedule, order, _ = compiled
    data = fine
    zoom = next(z for z in data["zoom"] if z["phase"] == "ramp_in")  # first mixed phase: nothing carried in
    phase = next(p for p in data["phases"] if p["name"] == "ramp_in")
    _, tokens = cumulative_by_batch(schedule, order)
    edges = zoom["start_batch"] + np.asarray(zoom["batch"])
    clock = tokens[edges].sum(axis=1) - tokens[edges[0]].sum()
    for name, got in zoom["target"].items():
        p, q = phase["ramp"]["from"][name], phase["weights"][name]
        integral = np.array([_integral(p, q, phase["ramp"]["length"], LINEAR, float(u)) for u in clock])
        assert got == pytest.approx((np.diff(integral) / np.diff(clock)).tolist(), rel=1e-9, abs=1e-12)


@given(p=st.floats(0, 1), q=st.floats(0, 1), ramp=st.floats(0, 1e6), cosine=st.booleans(),
       u=st.lists(st.floats(0, 3e6), min_size=1, max_size=5))
def test_target_integral_matches_the_kernel(p: float, q: float, ramp: float, cosine: bool, u: list[float]) -> None:
    got = target_integral(np.array([p]), np.array([q]), ramp, "cosine" if cosine else "linear", np.array(u))
    want = [_integral(p, q, ramp, COSINE if cosine else LINEAR, x) for x in u]
    assert got[:, 0].tolist() == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_array_priced_sources(tmp_path: Path) -> None:
    text = write_index(tmp_path, "text", "text", random_rows("text", 900, 1))
    imgs = write_index(tmp_path, "imgs", "image_caption", random_rows("image_caption", 400, 2))
    sources = {"text": {"kind": "text", "location": str(text)},
               "imgs": {"kind": "image_caption", "location": str(imgs), "visual_tokens_per_image": 32}}
    phases = [{"name": "a", "duration": "100 sp", "mix": {"text": 1}},
              {"name": "b", "duration": "50000 tok", "unit": "tokens", "mix": {"text": 0.7, "imgs": 0.3}}]
    schedule = compile_text(spec_text(phases, sources=sources), tmp_path)
    data, _ = report(schedule.path, tmp_path / "rep")
    assert {(r["phase"], r["source"]): (r["samples"], r["tokens"]) for r in data["rows"]} == \
        _per_phase(schedule, order_table(schedule, tmp_path))
    assert all(c["ok"] for c in data["checks"])


def test_a_run_that_consumed_the_schedule_agrees(compiled: tuple[Schedule, pa.Table, Path]) -> None:
    schedule, order, tmp = compiled
    run = write_run(tmp / "runs", schedule, order, "exact", every=3)
    data, paths = report(schedule.path, tmp / "rep_run", run_dir=run, figures=True)
    got = data["run"]
    assert got["mismatched_batches"] == 0 and got["checked_batches"] == schedule.manifest.num_batches // 3
    assert all(r["agrees"] for r in got["consumed"])
    assert "report_run_losses.png" in {p.name for p in paths["figures"].iterdir()}
    assert_self_contained(paths["html"])
    assert set(got["losses"]["series"]) >= {f"loss/train/{n}" for n in schedule.source_names}
    assert len(got["lr"].get("schedule", got["lr"]["batch"])) == len(got["lr"]["batch"])


def test_a_run_that_strayed_is_caught(compiled: tuple[Schedule, pa.Table, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    schedule, order, tmp = compiled
    run = write_run(tmp / "runs", schedule, order, "strayed", fingerprint="0" * 32)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    bad = json.loads(lines[99])
    bad["samples/train/img"] += 1
    lines[99] = json.dumps(bad)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"batch": 9')  # half-written last line
    assert main(["report", str(schedule.path), "--run", str(run), "-o", str(tmp / "rep_strayed")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp / "rep_strayed" / "report.json").read_text())["run"]
    assert data["mismatched_batches"] == 1 and data["first_mismatch"] == bad["batch"]
    assert "not on this one" in out and "incomplete" in out


def test_bad_inputs_exit_2(compiled: tuple[Schedule, pa.Table, Path], capsys: pytest.CaptureFixture[str]) -> None:
    schedule, order, tmp = compiled
    broken = tmp / "broken_run"
    broken.mkdir()
    (broken / "run.json").write_text("{}")
    (broken / "metrics.jsonl").write_text('{"batch": 1}\nnot json\n{"batch": 2}\n')
    cases = [([str(tmp / "nothing")], "not a compiled schedule"),
             ([str(schedule.path), "--run", str(tmp / "no_run")], "is not a directory"),
             ([str(schedule.path), "--run", str(broken)], "metrics.jsonl:2: not a JSON object")]
    for args, message in cases:
        assert main(["report", *args, "-o", str(tmp / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
