"""Per-phase global batch sizes through the compiler, the schedule's batch-start table, LR and planning.

docs/determinism.md links here. The run's batch is 8; the fine-tuning-like phase trains at 4.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mixture.api import variants
from mixture.errors import MixtureError
from mixture.plan import common_prefix, plan_sweep
from mixture.schedule import Schedule, load_schedule
from tests.mixture.helpers import compile_text, full_order, spec_text

PHASES = [
    {"name": "text", "duration": "400sp", "mix": {"web": 1}},
    {"name": "cool", "duration": "30k tok", "mix": {"web": 0.8, "img": 0.2}},
    {"name": "ft", "duration": "1 ep", "mix": {"chat": 1}, "global_batch_size": 4,
     "lr": {"rewarm": {"warmup": "10%", "peak": 1e-4}}},
]
LR = {"peak": 1e-3, "warmup": "10ba", "plan": "60ba"}  # a plan in steps, whatever the run's length


def _with(phases: list[dict], i: int, **change: object) -> list[dict]:
    out = [dict(p) for p in phases]
    out[i] = {**out[i], **change}
    return out


def _text(phases: list[dict], **extra: object) -> str:
    return spec_text(phases, **extra).replace("global_batch_size: 8", f"global_batch_size: 8\n  lr: {json.dumps(LR)}")


def test_each_phase_is_a_whole_number_of_its_own_batches(tmp_path):
    s = compile_text(_text(PHASES), tmp_path)
    text, cool, ft = s.segments
    assert [(x.batch_size, x.first_batch, x.start) for x in s.segments] == \
        [(8, 0, 0), (8, 50, 400), (4, cool.stop_batch, cool.stop)]
    assert all((p.stop - p.start) % seg.batch_size == 0 for p, seg in zip(s.phases, s.segments))
    assert ft.num_batches == -(-700 // 4) and ft.stop == len(s)  # one epoch of 700, rounded up to batches of 4
    assert s.num_batches == s.manifest.num_batches == ft.stop_batch
    assert s.max_batch_size == 8 and s.manifest.batch_sizes == (8, 4)  # the largest step: serving and microbatch
    assert [s.batch_size_at(g) for g in (0, 49, 50, ft.first_batch - 1, ft.first_batch, s.num_batches - 1)] == \
        [8, 8, 8, 8, 4, 4]
    assert s.batch_bounds(ft.first_batch) == (ft.start, ft.start + 4)
    assert [s.batch_index(p) for p in (0, 8, ft.start, ft.start + 4, ft.start + 2, len(s))] == \
        [0, 1, ft.first_batch, ft.first_batch + 1, None, s.num_batches]
    assert len(s.batch_tokens()) == s.num_batches + 1 and len(s.lr()) == s.num_batches
    bt = s.batch_tokens()  # every boundary's tokens, including inside the batch-4 phase
    src, smp = s.take(ft.start, ft.start + 4)
    assert bt[ft.first_batch + 1] - bt[ft.first_batch] == int(s.tokens(src, smp).sum())


def test_durations_round_up_to_the_phases_own_batches_from_its_start(tmp_path):
    """Samples, tokens and ends all stop at the first boundary of the phase's batch at or after the target,
    counted from the phase's start (with one batch size this is today's rounding)."""
    phases = [{"name": "a", "duration": "43sp", "mix": {"web": 1}},  # 48: six batches of 8
              {"name": "b", "end": "70sp", "mix": {"web": 1}, "global_batch_size": 12},  # 48 + 24
              {"name": "c", "duration": "3ba", "mix": {"chat": 1}, "global_batch_size": 5},  # 3 x 5
              {"name": "d", "duration": "1k tok", "mix": {"web": 1}, "global_batch_size": 3}]  # 256 each: 4 samples, 2 x 3
    s = compile_text(spec_text(phases), tmp_path)
    assert [(p.start, p.stop) for p in s.phases] == [(0, 48), (48, 72), (72, 87), (87, 93)]
    assert [x.first_batch for x in s.segments] == [0, 6, 8, 11] and s.num_batches == 13


def test_one_batch_size_written_per_phase_changes_nothing(tmp_path):
    """A phase's global_batch_size equal to the run's is the run's: same order and fingerprint."""
    base = compile_text(spec_text(PHASES[:2]), tmp_path, "base")
    same = compile_text(spec_text(_with(PHASES[:2], 1, global_batch_size=8)), tmp_path, "same")
    assert base.fingerprint == same.fingerprint
    assert all(np.array_equal(x, y) for x, y in zip(full_order(base), full_order(same)))


def test_the_fingerprint_covers_batch_boundaries(tmp_path):
    """The one-source fine-tuning phase draws the same samples at 4 or 2 per batch; the batches differ, so
    the fingerprint (the resume check) does."""
    a = compile_text(spec_text(PHASES), tmp_path, "a")
    b = compile_text(spec_text(_with(PHASES, 2, global_batch_size=2)), tmp_path, "b")
    assert np.array_equal(full_order(a)[1][: len(b)], full_order(b)[1][: len(a)])
    assert a.fingerprint != b.fingerprint and a.num_batches != b.num_batches


def test_lr_is_per_step_and_the_rewarm_counts_the_phases_steps(tmp_path):
    s = compile_text(_text(PHASES), tmp_path)
    ft = s.segments[2]
    lr = s.lr()
    assert int(np.argmax(lr[: ft.first_batch])) == 9  # 10 warm-up steps of 8
    peak = round(0.1 * ft.num_batches)
    assert lr[ft.first_batch + peak - 1] == pytest.approx(1e-4) and lr[ft.first_batch: ft.first_batch + peak].max() \
        == pytest.approx(1e-4)
    # A plan in samples reads the positions before each step from the batch-start table, in the batch-4
    # phase too (here following the plan instead of re-warming).
    plan = _text(_with(PHASES, 2, lr={"continue": True})).replace(
        '"plan": "60ba"}', '"schedule": "linear", "plan": "1200sp"}')
    lr_plan = _compile_text_file(plan, tmp_path / "plan").lr()
    starts = np.array([s.batch_start(g) for g in range(s.num_batches)], np.float64)
    after = slice(10, s.num_batches)  # after the warm-up: peak * (1 - samples before the step / 1200)
    assert lr_plan[after] == pytest.approx(1e-3 * np.clip(1 - starts[after] / 1200, 0, 1), rel=1e-9, abs=1e-15)
    assert np.diff(starts[ft.first_batch:]).tolist() == [4] * (ft.num_batches - 1)


def _compile_text_file(text: str, out) -> Schedule:
    out.mkdir()
    (out / "f.yaml").write_text(text)
    return _compile(out / "f.yaml", out / "s")


def _compile(path, out) -> Schedule:
    from mixture.api import compile_variant

    (variant,) = variants(path)
    return compile_variant(variant, out)


@pytest.mark.parametrize("where, text, message", [
    ("phases[3].end", "end: 60ba", "is a point in batches, but phases up to this one change the global batch size"),
    ("run.duration", "duration: 70ba", "is given in batches, but phases change the global batch size"),
])
def test_batch_counts_that_are_no_position_are_refused_where_written(tmp_path, where, text, message):
    phases = [*PHASES, {"name": "after", "duration": "8sp", "mix": {"web": 1}}]
    doc = spec_text(phases)
    if where == "run.duration":
        doc = doc.replace("global_batch_size: 8", f"global_batch_size: 8\n  {text}")
    else:
        doc = doc.replace("duration: 8sp", text)
    path = tmp_path / "f.yaml"
    path.write_text(doc)
    with pytest.raises(MixtureError, match=message) as error:
        variants(path)
    line = next(i for i, x in enumerate(doc.splitlines(), 1) if text in x)
    assert f"f.yaml:{line}:" in str(error.value)


def test_an_end_in_batches_before_the_change_is_still_exact(tmp_path):
    s = compile_text(spec_text(_with(PHASES, 0, duration=None, end="50ba")), tmp_path)
    assert s.segments[1].first_batch == 50 and s.phases[0].stop == 400


def test_old_schedule_directories_load_as_one_batch_size(tmp_path):
    """A manifest written before per-phase batches (no phase batch fields) still verifies and loads."""
    s = compile_text(spec_text(PHASES[:2]), tmp_path)
    old = tmp_path / "old"
    shutil.copytree(s.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for p in manifest["phases"]:
        del p["global_batch_size"], p["batch_offset"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_schedule(old)
    assert loaded.fingerprint == s.fingerprint and loaded.segments == s.segments
    assert [loaded.batch_bounds(g) for g in range(loaded.num_batches)] == [(8 * g, 8 * g + 8) for g in range(s.num_batches)]


def test_a_phase_not_whole_in_its_batches_is_a_damaged_directory(tmp_path):
    s = compile_text(spec_text(PHASES), tmp_path)
    manifest = json.loads((s.path / "manifest.json").read_text())
    manifest["phases"][2]["global_batch_size"] = 3
    (s.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MixtureError, match="not a whole number of its global batches"):
        load_schedule(s.path)


def test_common_prefix_and_sweep_planning_compare_batch_boundaries(tmp_path):
    """Variants differing only in the fine-tuning batch agree up to its start, and share that trunk."""
    a = compile_text(_text(PHASES), tmp_path, "a")
    b = compile_text(_text(_with(PHASES, 2, global_batch_size=2)), tmp_path, "b")
    c = compile_text(_text(_with(PHASES, 2, global_batch_size=None)), tmp_path, "c")  # 8, the run's
    ft = a.segments[2].first_batch
    assert common_prefix(a, b) == common_prefix(a, c) == common_prefix(b, c) == ft
    assert common_prefix(a, a) == a.num_batches
    plan = plan_sweep({"a": a, "b": b, "c": c})
    (trunk,) = [n for n in plan.nodes if n.parent is None]
    assert trunk.stop_batch == ft and {n.parent for n in plan.nodes if n is not trunk} == {trunk.id}
    assert plan.num_batches == {"a": a.num_batches, "b": b.num_batches, "c": c.num_batches}


def test_common_prefix_stops_inside_a_phase_of_another_batch_size(tmp_path):
    """Same batch sizes, a different mix in the batch-4 phase: the prefix ends at the batch that differs."""
    mixed = _with(PHASES, 2, mix={"chat": 0.5, "web": 0.5}, duration="200sp", unit="samples")
    a = compile_text(_text(mixed), tmp_path, "a")
    b = compile_text(_text(_with(mixed, 2, mix={"chat": 0.25, "web": 0.75})), tmp_path, "b")
    k = common_prefix(a, b)
    ft = a.segments[2].first_batch
    assert ft <= k < a.num_batches
    x, y = (s.take(a.batch_start(ft), a.batch_start(k + 1)) for s in (a, b))
    assert np.array_equal(x[0][: a.batch_start(k) - a.batch_start(ft)], y[0][: a.batch_start(k) - a.batch_start(ft)])
    assert not (np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]))


def test_explain_json_names_each_phases_batches(tmp_path, capsys):
    from mixture.cli import main

    s = compile_text(_text(PHASES), tmp_path)
    capsys.readouterr()
    assert main(["explain", str(s.path), "--json"]) == 0
    [table] = json.loads(capsys.readouterr().out)
    assert table["batch_sizes"] == [8, 4] and table["global_batch_size"] == 8
    assert [(p["global_batch_size"], p["first_batch"], p["num_batches"]) for p in table["phases"]] == \
        [(x.batch_size, x.first_batch, x.num_batches) for x in s.segments]
    assert sum(p["num_batches"] for p in table["phases"]) == table["num_batches"] == s.num_batches


def test_the_compile_progress_total_counts_each_phases_own_batches(tmp_path):
    from mixture.api import expected_positions
    from mixture.sourcedata import load_source

    phases = [PHASES[0], {**PHASES[2], "global_batch_size": 12}]  # 700 samples: 59 batches of 12, not 88 of 8
    s = compile_text(_text(phases), tmp_path)
    (variant,) = variants(tmp_path / "spec.yaml")
    spec = variant.resolved.spec
    data = {n: load_source(n, spec.sources[n], spec.seed, variant.base_dir) for n in variant.resolved.used_sources}
    assert expected_positions(variant.resolved, data) == len(s) == 400 + 59 * 12
