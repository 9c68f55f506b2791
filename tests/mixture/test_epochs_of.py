"""`N ep of SOURCE`: a mixed phase's length in passes over one of its sources (docs/dsl.md, units).

The phase lasts ceil(N * size / share) positions (exact), rounded up to whole batches, so the named source
is drawn at least N times its size and at most one batch more. The refusals are in tests/mixture/broken/
(``ep_of_*.yaml``, each located); here: parsing, the counts in compiled orders, the equivalence with plain
`N ep` in a one-source phase, the fingerprint, and the compile-progress total.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixture.api import expected_positions, variants
from mixture.errors import MixtureError
from mixture.load import parse_spec
from mixture.resolve import resolve
from mixture.sourcedata import load_source
from mixture.units import Unit, parse_duration
from tests.mixture.helpers import compile_text, full_order, spec_text

COMPILES = 15 if settings.default is settings.get_profile("ci") else 25


@pytest.mark.parametrize(("text", "value", "source"), [
    ("1 ep of instruct", "1", "instruct"), ("2 epochs of x", "2", "x"), ("0.5 ep of x", "0.5", "x"),
    ("1 epoch of llava_665k-v1", "1", "llava_665k-v1"), ("3ep  of  web ", "3", "web"), ("2 ep", "2", None),
])
def test_epochs_of_a_source_parse(text, value, source):
    d = parse_duration(text)
    assert (d.value, d.unit, d.source, d.ref) == (Decimal(value), Unit.EPOCHS, source, None)


@pytest.mark.parametrize(("text", "message"), [
    ("1 ep of", "'of' must be followed by one source name"),
    ("1 ep of 3x", "'of' must be followed by one source name"),
    ("1 ep of a b", "'of' must be followed by one source name"),
    ("1 ep of a,", "'of' must be followed by one source name"),
    ("100 sp of web", "only epochs name a source"),
    ("2M tok of web", "only epochs name a source"),
    ("1 epof web", "cannot read"),
    ("1 ep ofweb", "cannot read"),
    ("ep of web", "cannot read"),
])
def test_bad_forms_of_epochs_of_a_source_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def _sources(sizes: dict[str, int]) -> dict:
    return {n: {"kind": "text", "shuffle_block_samples": 64, "declared": {"samples": s, "tokens_per_sample": 10}}
            for n, s in sizes.items()}


def _drawn(schedule, phase_index: int, name: str) -> int:
    """Draws of ``name`` in a phase, counted in the order itself (not read from the manifest)."""
    phase = schedule.phases[phase_index]
    src, _ = schedule.take(phase.start, phase.stop)
    count = int(np.count_nonzero(src == schedule.source_names.index(name)))
    assert count == phase.draws[name]
    return count


@settings(max_examples=COMPILES)
@given(st.integers(1, 400), st.lists(st.integers(1, 20), min_size=1, max_size=3),
       st.sampled_from([1, 2, 3, 8, 16]), st.sampled_from(["1", "2", "0.5", "1.3"]), st.booleans())
def test_the_named_source_is_drawn_n_times_its_size_and_at_most_one_batch_more(
        tmp_path_factory, size, others, batch, n, normalize):
    weights = {"ft": 7, **{f"o{i}": w for i, w in enumerate(others)}}
    mix = weights if normalize else {k: w / sum(weights.values()) for k, w in weights.items()}
    phases = [{"name": "ft", "duration": f"{n} ep of ft", "unit": "samples", "normalize": normalize, "mix": mix}]
    sizes = {"ft": size, **{k: 5000 for k in weights if k != "ft"}}
    schedule = compile_text(spec_text(phases, sources=_sources(sizes), batch=batch), tmp_path_factory.mktemp("e"))
    need = math.ceil(Fraction(n) * size)  # whole samples of N epochs
    assert need <= _drawn(schedule, 0, "ft") <= need + batch
    exact = {k: Fraction(repr(w)) for k, w in mix.items()}  # the weights as written (decimals), exactly
    share = exact["ft"] / sum(exact.values())
    assert len(schedule) % batch == 0 and len(schedule) - batch < math.ceil(need / share) <= len(schedule)


def test_the_length_is_exact_where_a_float_division_is_one_over(tmp_path):
    # 700 / 0.7 is 1000.0000000000001 in floats: a float length would be 1001 positions.
    phases = [{"name": "ft", "duration": "1 ep of chat", "unit": "samples", "mix": {"chat": 0.7, "web": "rest"}}]
    schedule = compile_text(spec_text(phases, batch=1), tmp_path)
    assert len(schedule) == 1000 and _drawn(schedule, 0, "chat") == 700
    # 3000 / 0.875 = 3428.57...: 3429 positions, 3432 in batches of 8; the llava-like mix of the docs.
    phases = [{"name": "ft", "duration": "1 ep of instruct", "unit": "samples",
               "mix": {"instruct": 0.875, "text": 0.0625, "images": 0.0625}}]
    sources = _sources({"instruct": 3000, "text": 5000, "images": 5000})
    assert len(compile_text(spec_text(phases, sources=sources, batch=1), tmp_path, "b1")) == 3429
    schedule = compile_text(spec_text(phases, sources=sources, batch=8), tmp_path, "b8")
    assert len(schedule) == 3432 and 3000 <= _drawn(schedule, 0, "instruct") <= 3008


def test_after_a_mixed_phase_the_carried_rounding_moves_the_count_by_at_most_one(tmp_path):
    lead = {"name": "lead", "duration": "37sp", "unit": "samples", "mix": {"chat": 0.3, "web": 0.7}}
    ft = {"name": "ft", "duration": "1 ep of chat", "unit": "samples", "mix": {"chat": 0.7, "web": 0.3}}
    schedule = compile_text(spec_text([lead, ft], batch=1), tmp_path)
    assert schedule.phases[1].lag0  # the lead phase carried its rounding into ft
    assert schedule.phases[1].stop - schedule.phases[1].start == 1000
    assert 700 - 1 <= _drawn(schedule, 1, "chat") <= 700 + 1


@pytest.mark.parametrize("mix", [{"chat": 1}, {"chat": 1, "web": "rest"}, {"chat": 1, "web": 0}])
def test_in_a_one_source_phase_it_is_exactly_plain_epochs(tmp_path, mix):
    lead = {"name": "lead", "duration": "100sp", "mix": {"web": 0.6, "img": 0.4}}
    plain = compile_text(spec_text([lead, {"name": "ft", "duration": "2 ep", "mix": mix}]), tmp_path, "plain")
    named = compile_text(spec_text([lead, {"name": "ft", "duration": "2 ep of chat", "mix": mix}]), tmp_path, "of")
    assert [(p.start, p.stop) for p in plain.phases] == [(p.start, p.stop) for p in named.phases]
    assert all(np.array_equal(a, b) for a, b in zip(full_order(plain), full_order(named)))
    assert plain.fingerprint == named.fingerprint


def test_the_named_source_is_in_the_manifest_and_the_fingerprint(tmp_path):
    sizes = {"a": 300, "b": 500}
    texts = [spec_text([{"name": "ft", "duration": f"1 ep of {s}", "unit": "samples", "mix": {"a": 0.5, "b": 0.5}}],
                       sources=_sources(sizes)) for s in ("a", "b")]
    a, b = (compile_text(t, tmp_path, n) for t, n in zip(texts, ("a", "b")))
    assert a.manifest.spec["phases"][0]["duration"] == "1 ep of a"
    assert b.manifest.spec["phases"][0]["duration"] == "1 ep of b"
    assert (len(a), len(b)) == (600, 1000) and a.fingerprint != b.fingerprint


def test_planning_counts_the_phase_as_the_compiler_does(tmp_path):
    phases = [{"name": "pre", "duration": "20k tok", "mix": {"web": 1}},
              {"name": "ft", "duration": "1.5 ep of chat", "unit": "samples", "global_batch_size": 12,
               "mix": {"chat": 0.8, "web": 0.1, "img": 0.1}}]
    schedule = compile_text(spec_text(phases), tmp_path)
    (variant,) = variants(tmp_path / "spec.yaml")
    spec = variant.resolved.spec
    data = {n: load_source(n, spec.sources[n], spec.seed, variant.base_dir) for n in variant.resolved.used_sources}
    ft = schedule.phases[1]
    assert ft.stop - ft.start == -(-1313 // 12) * 12  # ceil(1.5 * 700 / 0.8) = 1313, in batches of 12
    assert expected_positions(variant.resolved, data) == len(schedule)


def test_plain_epochs_of_a_mixed_phase_point_at_the_named_form():
    text = spec_text([{"name": "ft", "duration": "1 ep", "unit": "samples", "mix": {"chat": 0.5, "web": 0.5}}])
    with pytest.raises(MixtureError) as info:
        resolve(*parse_spec(text, "mix.yaml"))
    (problem,) = info.value.problems
    assert "a duration in epochs needs a phase with one source" in problem.message
    assert "'N ep of SOURCE'" in problem.hint and problem.line > 0 and problem.path == "phases[0].duration"
