"""The sweep planner: exact common prefixes, run trees on synthetic grids, `mixture sweep plan`.

Every plan is checked against brute force (``brute_prefix``: the whole order read with ``take`` and
compared position by position): trunks end exactly where the orders (or LR, or tokens) diverge, and no
segment starts from a checkpoint its schedules disagree on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from helpers import spec_text
from mixture.api import compile_variant, variants
from mixture.cli import main
from mixture.errors import MixtureError
from mixture.plan import SweepPlan, common_prefix, plan_sweep
from mixture.plan_files import read_plan
from mixture.schedule import Schedule, load_schedule

B = 8
LR = {"peak": 1e-3, "warmup": "4ba", "plan": "3000sp"}
# Declared sources of constant sizes: the compiler prices a mixed phase's lookahead of ~4M draws per source
# of varying size, which costs a fraction of a second however short the phase.
SOURCES = {
    "web": {"kind": "text", "declared": {"samples": 5000, "tokens_per_sample": 256}},
    "img": {"kind": "image_caption", "visual_tokens_per_image": 64, "count_caption_tokens": True,
            "declared": {"samples": 3000, "caption_tokens": 20}},
    "chat": {"kind": "instruction", "declared": {"samples": 700, "images_per_sample": 0, "tokens_per_sample": 150}},
}
PHASES = [
    {"name": "text", "duration": "200sp", "mix": {"web": 1}},
    {"name": "cool", "duration": "160sp", "mix": {"web": 0.8, "img": 0.2}, "unit": "samples",
     "ramp": {"length": "64sp"}, "lr": {"cooldown": {"to": 0}}},
    {"name": "ft", "duration": "1 ep", "mix": {"chat": 1}, "lr": {"rewarm": {"warmup": "10%", "peak": 1e-4}}},
]


def compile_sweep_text(text: str, tmp: Path) -> dict[str, Schedule]:
    """Compile every variant of a mixture file's text, in sweep order."""
    path = tmp / "sweep.yaml"
    path.write_text(text)
    return {v.name: compile_variant(v, tmp / (v.name or "only")) for v in variants(path)}


def identities(schedule: Schedule) -> tuple[list[tuple], np.ndarray]:
    """Per position: (source name, fingerprint, size, key, block), and the sample ids."""
    src, samples = schedule.take(0, len(schedule))
    recs = [(s.name, s.fingerprint, s.num_samples, s.key, s.block) for s in schedule.sources]
    return [recs[i] for i in src], samples


def brute_prefix(a: Schedule, b: Schedule) -> int:
    """common_prefix by reading both whole orders, LR and batch tokens."""
    if a.global_batch_size != b.global_batch_size:
        return 0
    batch = a.global_batch_size
    k = min(len(a), len(b)) // batch
    (ida, sa), (idb, sb) = identities(a), identities(b)
    for i in range(k * batch):
        if ida[i] != idb[i] or sa[i] != sb[i]:
            k = i // batch
            break
    la, lb = a.lr(), b.lr()
    if (la is None) != (lb is None):
        return 0
    if la is not None:
        k = next((j for j in range(k) if la[j] != lb[j]), k)
    ta, tb = a.batch_tokens(), b.batch_tokens()
    return next((j - 1 for j in range(k + 1) if ta[j] != tb[j]), k)


def check_plan(plan: SweepPlan, schedules: dict[str, Schedule]) -> dict[tuple[str, str], int]:
    """Brute-force checks of a plan; returns the brute-force prefixes of all pairs."""
    names = list(schedules)
    brute = {(x, y): brute_prefix(schedules[x], schedules[y]) for x in names for y in names}
    for node in plan.nodes:
        assert node.start_batch < node.stop_batch or node.parent is None
        for v in node.variants:  # every variant served agrees with the segment's schedule to its end
            assert brute[(node.schedule, v)] >= node.stop_batch, (node, v)
        if node.parent is not None:
            parent = plan.node(node.parent)
            assert parent.stop_batch == node.start_batch
            assert set(node.variants) <= set(parent.variants)
            # No branch from a position its schedules disagree on, by brute force and by the public check.
            assert brute[(parent.schedule, node.schedule)] >= node.start_batch
            assert common_prefix(schedules[parent.schedule], schedules[node.schedule]) >= node.start_batch
        for v in node.finishes:
            assert plan.num_batches[v] == node.stop_batch
    for v in names:  # each variant is trained exactly once, from 0 to its end
        path = plan.path(v)
        assert path[0].start_batch == 0 and path[-1].stop_batch == plan.num_batches[v]
        assert sum(n.batches for n in path) == plan.num_batches[v]
    totals = plan.totals()
    assert totals["plan_batches"] == sum(n.batches for n in plan.nodes)
    assert totals["scratch_batches"] == sum(plan.num_batches.values())
    return brute


def sweep_of(axes: dict, mode: str = "grid", phases: list | None = None, run: dict | None = None,
             **extra: object) -> str:
    return spec_text(phases or PHASES, sweep={"axes": axes, "mode": mode}, sources=SOURCES,
                     run=run or {"seq_len": 256, "global_batch_size": B, "lr": LR}, **extra)


def first_difference(a: Schedule, b: Schedule) -> int:
    """First position where two orders read different samples (brute force)."""
    (ida, sa), (idb, sb) = identities(a), identities(b)
    return next(i for i in range(min(len(ida), len(idb))) if ida[i] != idb[i] or sa[i] != sb[i])


def test_intro_point_grid_trunks_end_exactly_where_orders_diverge(tmp_path):
    # No LR plan: only the order can end a trunk. The cooldown ramps images in, so its first positions are
    # still text, read from the same cursor as the longer variants' text phase: they are shared too.
    axes = {"intro": {"field": "phases.text.duration", "values": ["96sp", "200sp", "400sp"]}}
    schedules = compile_sweep_text(sweep_of(axes, run={"seq_len": 256, "global_batch_size": B}), tmp_path)
    plan = plan_sweep(schedules)
    brute = check_plan(plan, schedules)
    n96, n200, n400 = (schedules[n] for n in schedules)
    first, second = first_difference(n96, n200) // B, first_difference(n200, n400) // B
    assert 96 // B < first < 200 // B < second and first_difference(n96, n400) // B == first
    assert [(n.start_batch, n.stop_batch, n.parent) for n in plan.nodes] == [
        (0, first, None), (first, len(n96) // B, "n0"), (first, second, "n0"), (second, len(n200) // B, "n2"),
        (second, len(n400) // B, "n2")]
    assert brute[(n96.path.name, n200.path.name)] == first


def test_intro_point_grid_with_lr_branches_where_the_cooldown_starts(tmp_path):
    axes = {"intro": {"field": "phases.text.duration", "values": ["96sp", "200sp", "400sp"]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    check_plan(plan, schedules)
    n96, n200, n400 = schedules
    ends = [plan.num_batches[n] for n in (n96, n200, n400)]
    assert [(n.schedule, n.start_batch, n.stop_batch, n.parent) for n in plan.nodes] == [
        (n96, 0, 12, None), (n96, 12, ends[0], "n0"), (n200, 12, 25, "n0"), (n200, 25, ends[1], "n2"),
        (n400, 25, ends[2], "n2")]
    assert [(r.schedule, r.parent, r.save_at) for r in plan.runs()] == [
        (n96, None, (12, ends[0])), (n200, "n0", (25, ends[1])), (n400, "n2", (ends[2],))]
    assert plan.totals()["saved_batches"] == 12 + 12 + 13


def test_finetune_epochs_share_everything_before_the_rewarm(tmp_path):
    axes = {"epochs": {"field": "phases.ft.duration", "values": ["1 ep", "2 ep", "3 ep"]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    check_plan(plan, schedules)
    ft_start = schedules["epochs=1ep"].phases[2]["start"] // B
    assert plan.nodes[0].stop_batch == ft_start and len(plan.nodes) == 4
    assert all(n.parent == "n0" and n.start_batch == ft_start for n in plan.nodes[1:])


def test_without_lr_a_shorter_finetune_is_a_prefix_served_by_the_longer_run(tmp_path):
    axes = {"epochs": {"field": "phases.ft.duration", "values": ["1 ep", "2 ep"]}}
    schedules = compile_sweep_text(sweep_of(axes, run={"seq_len": 256, "global_batch_size": B}), tmp_path)
    plan = plan_sweep(schedules)
    check_plan(plan, schedules)
    one, two = schedules
    assert common_prefix(schedules[one], schedules[two]) == plan.num_batches[one]
    assert [(n.schedule, n.finishes) for n in plan.nodes] == [(one, (one,)), (two, (two,))]
    assert plan.same_as(two) is None and plan.served_by(one).stop_batch == plan.num_batches[one]
    assert [(r.schedule, r.parent, r.start_batch) for r in plan.runs()] == [(one, None, 0),
                                                                            (two, "n0", plan.num_batches[one])]


def test_seeds_share_nothing_across_seeds_and_the_pre_finetune_trunk_within_one(tmp_path):
    # The seed keys every source's permutation and the declared token draws: orders differ from position 0.
    axes = {"seed": {"field": "seed", "values": [7, 365]},
            "epochs": {"field": "phases.ft.duration", "values": ["1 ep", "2 ep"]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    brute = check_plan(plan, schedules)
    assert brute[("seed=7,epochs=1ep", "seed=365,epochs=1ep")] == 0
    roots = plan.children(None)
    assert [(r.schedule, r.variants) for r in roots] == [
        ("seed=7,epochs=1ep", ("seed=7,epochs=1ep", "seed=7,epochs=2ep")),
        ("seed=365,epochs=1ep", ("seed=365,epochs=1ep", "seed=365,epochs=2ep"))]


def test_zip_sweep_changes_intro_and_share_together(tmp_path):
    axes = {"intro": {"field": "phases.text.duration", "values": ["96sp", "96sp", "200sp"]},
            "share": {"field": "phases.cool.mix", "values": [{"web": 0.8, "img": 0.2}, {"web": 0.5, "img": 0.5},
                                                              {"web": 0.8, "img": 0.2}]}}
    schedules = compile_sweep_text(sweep_of(axes, mode="zip"), tmp_path)
    plan = plan_sweep(schedules)
    brute = check_plan(plan, schedules)
    a, b, c = schedules
    assert brute[(a, c)] == 96 // B and 96 // B <= brute[(a, b)] < plan.num_batches[a]
    assert plan.nodes[0].stop_batch == 96 // B and plan.nodes[0].variants == (a, b, c)


def test_identical_variants_are_served_by_one_leaf(tmp_path):
    # A cap that is never reached changes neither the order nor the LR: three variants, one schedule.
    axes = {"cap": {"field": "sources.web.max_epochs", "values": [5, 6, 7]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    check_plan(plan, schedules)
    names = list(schedules)
    assert len(plan.nodes) == 1 and plan.nodes[0].finishes == tuple(names)
    assert [plan.same_as(n) for n in names] == [None, names[0], names[0]]
    assert plan.totals()["saved_batch_fraction"] == pytest.approx(2 / 3)


def test_different_batch_sizes_share_nothing(tmp_path):
    axes = {"batch": {"field": "run.global_batch_size", "values": [8, 16]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    check_plan(plan, schedules)
    assert len(plan.children(None)) == 2 and plan.global_batch_size == 0


def test_different_sequence_lengths_share_nothing(tmp_path):
    # Same order and LR, but the trainer cuts samples at seq_len: what is trained differs from batch 0.
    axes = {"seq": {"field": "run.seq_len", "values": [256, 512]}}
    schedules = compile_sweep_text(sweep_of(axes), tmp_path)
    plan = plan_sweep(schedules)
    assert common_prefix(*schedules.values()) == 0 and len(plan.children(None)) == 2


# Property test: small random files and two mutations of them, compared with brute force.
_SOURCES = {**SOURCES, "one": {"kind": "text", "declared": {"samples": 1, "tokens_per_sample": 64}}}


@st.composite
def _phase(draw: st.DrawFn, i: int) -> dict:
    names = draw(st.lists(st.sampled_from(sorted(_SOURCES)), min_size=1, max_size=3, unique=True))
    weights = [draw(st.integers(1, 5)) for _ in names]
    phase = {"name": f"p{i}", "duration": f"{draw(st.integers(1, 12)) * 4}sp",
             "mix": {n: w for n, w in zip(names, weights)}, "normalize": True,
             "unit": draw(st.sampled_from(["samples", "tokens"]))}
    if i > 0 and len(names) > 1 and draw(st.booleans()):
        phase["ramp"] = {"length": "4sp" if phase["unit"] == "samples" else "1k tok",  # never past the phase
                         "shape": draw(st.sampled_from(["linear", "cosine"]))}
    return phase


@st.composite
def _mutation(draw: st.DrawFn, phases: list[dict]) -> tuple[list[dict], dict]:
    """A copy of ``phases`` changed in one place, and top-level overrides (seed, LR)."""
    out = json.loads(json.dumps(phases))
    i = draw(st.integers(0, len(out) - 1))
    what = draw(st.sampled_from(["duration", "duration", "mix", "mix", "drop", "seed", "lr"]))
    if what == "duration":
        out[i]["duration"] = f"{draw(st.integers(1, 12)) * 4}sp"
    elif what == "mix":
        out[i]["mix"] = {n: w + draw(st.integers(0, 1)) for n, w in out[i]["mix"].items()}
    elif what == "drop":
        out = out[: i + 1] if i + 1 < len(out) else out[:i] or out
    return out, {"seed": 8} if what == "seed" else {"lr": {"peak": 2e-3}} if what == "lr" else {}


@settings(max_examples=25)
@given(data=st.data())
def test_common_prefix_is_exact_against_brute_force(tmp_path_factory, data):
    batch = data.draw(st.sampled_from([2, 4, 8]))
    phases = [data.draw(_phase(i)) for i in range(data.draw(st.integers(1, 4)))]
    files = [(phases, {})] + [data.draw(_mutation(phases)) for _ in range(2)]
    tmp = tmp_path_factory.mktemp("prefix")
    schedules = []
    for j, (ph, over) in enumerate(files):
        lr = {"peak": over.get("lr", {}).get("peak", 1e-3), "warmup": "2ba", "plan": "200sp"}
        text = spec_text(ph, sources=_SOURCES, seed=over.get("seed", 7), batch=batch,
                         run={"seq_len": 64, "global_batch_size": batch, "lr": lr})
        (tmp / f"f{j}.yaml").write_text(text)
        (variant,) = variants(tmp / f"f{j}.yaml")
        schedules.append(compile_variant(variant, tmp / f"s{j}"))
    assert common_prefix(schedules[0], schedules[0]) == len(schedules[0]) // batch
    for x, y in ((0, 1), (0, 2), (1, 2)):
        k = common_prefix(schedules[x], schedules[y])
        assert k == brute_prefix(schedules[x], schedules[y])
        shorter = min(len(schedules[x]), len(schedules[y])) // batch
        event("prefix: none" if k == 0 else "prefix: all of the shorter" if k == shorter else "prefix: part")
    named = {f"v{j}": s for j, s in enumerate(schedules)}
    check_plan(plan_sweep(named), named)


def test_cli_plans_writes_plan_json_and_reuses_compiled_schedules(tmp_path, capsys):
    axes = {"intro": {"field": "phases.text.duration", "values": ["96sp", "200sp"]},
            "epochs": {"field": "phases.ft.duration", "values": ["1 ep", "2 ep"]}}
    path = tmp_path / "m.yaml"
    path.write_text(sweep_of(axes))
    out = tmp_path / "sweep"
    assert main(["sweep", "plan", str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "n0 trunk" in printed.out and "saved" in printed.out and "compiled intro=96sp,epochs=1ep" in printed.err
    data = json.loads((out / "plan.json").read_text())
    assert data["format"] == "mixture-sweep-plan/1" and data["global_batch_size"] == B
    assert set(data) == {"format", "file", "name", "global_batch_size", "variants", "nodes", "runs", "totals"}
    assert set(data["variants"][0]) == {"name", "values", "schedule_dir", "fingerprint", "num_batches",
                                        "num_tokens", "served_by", "run", "same_as"}
    assert set(data["nodes"][0]) == {"id", "schedule", "start_batch", "stop_batch", "parent", "children",
                                     "variants", "finishes", "batches", "start_tokens", "stop_tokens", "tokens"}
    assert set(data["runs"][0]) == {"schedule", "nodes", "start_batch", "stop_batch", "parent", "save_at"}
    assert data["variants"][0]["values"] == {"intro": "96sp", "epochs": "1 ep"}
    plan, dirs = read_plan(out)
    schedules = {name: load_schedule(d) for name, d in dirs.items()}
    check_plan(plan, schedules)
    assert [v["fingerprint"] for v in data["variants"]] == [s.fingerprint for s in schedules.values()]
    assert plan == plan_sweep(schedules) and data["totals"] == plan.totals()
    # Planning again reuses every compiled variant; a changed spec recompiles them.
    assert main(["sweep", "plan", str(path), "-o", str(out)]) == 0
    assert capsys.readouterr().err.count("reused") == 4
    path.write_text(sweep_of(axes, seed=8))
    assert main(["sweep", "plan", str(path), "-o", str(out)]) == 0
    assert capsys.readouterr().err.count("compiled") == 4


def test_cli_refuses_a_file_without_a_sweep(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(spec_text(PHASES, sources=SOURCES))
    assert main(["sweep", "plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "has no sweep" in err and "mixture compile" in err and "Traceback" not in err


def test_plan_of_nothing_and_unreadable_plans_are_errors(tmp_path):
    with pytest.raises(MixtureError, match="no schedules"):
        plan_sweep({})
    with pytest.raises(MixtureError, match="mixture sweep plan"):
        read_plan(tmp_path)
    (tmp_path / "plan.json").write_text('{"format": "other"}')
    with pytest.raises(MixtureError, match="unsupported plan format"):
        read_plan(tmp_path)
