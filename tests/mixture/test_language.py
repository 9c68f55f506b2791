"""The language's second edition: `rest` weights, `include:` of shared files, readable sweeps (issue 18)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture.api import variants
from mixture.errors import MixtureError
from mixture.load import parse_spec
from mixture.resolve import resolve
from tests.mixture.helpers import compile_text, full_order, spec_text


def _weights(mix: dict, normalize: bool = False) -> dict[str, float]:
    phase = {"name": "a", "duration": "10k tok", "mix": mix, **({"normalize": True} if normalize else {})}
    return resolve(*parse_spec(spec_text([phase]))).phases[0].weights


@given(st.lists(st.floats(min_value=0, max_value=1, allow_subnormal=False), min_size=1, max_size=2))
def test_rest_is_exactly_one_minus_the_others(others):
    names = ["web", "img"][: len(others)]
    mix = dict(zip(names, others))
    if sum(Fraction(repr(w)) for w in others) > 1:
        with pytest.raises(MixtureError, match="nothing is left for 'rest'"):
            _weights({**mix, "chat": "rest"})
        return
    got = _weights({**mix, "chat": "rest"})
    rest = 1 - sum((Fraction(repr(w)) for w in others), Fraction(0))
    assert got["chat"] == float(rest)  # correctly rounded: the exact remainder, not a float subtraction
    assert {k: got[k] for k in names} == {k: float(Fraction(repr(v))) for k, v in mix.items()}


def test_rest_compiles_to_the_same_order_as_the_written_out_weight(tmp_path):
    rest = [{"name": "a", "duration": "60k tok", "mix": {"web": 0.7, "img": "rest"}}]
    written = [{"name": "a", "duration": "60k tok", "mix": {"web": 0.7, "img": 0.3}}]
    a = compile_text(spec_text(rest), tmp_path, "rest")
    b = compile_text(spec_text(written), tmp_path, "written")
    assert a.fingerprint == b.fingerprint
    assert all(np.array_equal(x, y) for x, y in zip(full_order(a), full_order(b)))


def test_rest_may_be_swept_and_may_be_zero():
    assert _weights({"web": 1.0, "img": "rest"}) == {"img": 0.0, "web": 1.0}
    assert _weights({"img": "rest"}) == {"img": 1.0}


@pytest.mark.parametrize("mix, normalize, message", [
    ({"web": "rest", "img": "rest"}, False, "a second 'rest' weight (already on 'web')"),
    ({"web": 0.8, "chat": 0.3, "img": "rest"}, False, "the other weights sum to 1.1, more than 1"),
    ({"web": 0.5, "img": "rest"}, True, "normalize: true with a 'rest' weight"),
    ({"web": "most"}, False, "expected a number or 'rest', got 'most'"),
])
def test_rest_misuse_is_refused_at_its_key(mix, normalize, message):
    with pytest.raises(MixtureError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        _weights(mix, normalize)
    assert all(p.line > 0 and p.path.startswith("phases[0]") for p in info.value.problems)


def _write(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


_PHASES = "phases:\n  - {name: a, duration: 60k tok, mix: {web: 0.6, img: rest}}\n"
_SOURCES = ("sources:\n  web: {kind: text, declared: {samples: 5000, tokens_per_sample: 256}}\n"
            "  img: {kind: image_caption, visual_tokens_per_image: 64, declared: {samples: 3000, caption_tokens: 20}}\n")
_HEAD = "name: t\nseed: 7\nrun: {seq_len: 256, global_batch_size: 8}\n"


def test_moving_sources_into_an_included_file_changes_nothing(tmp_path):
    from mixture.api import compile_variant

    _write(tmp_path, {"inline.yaml": _HEAD + _SOURCES + _PHASES, "shared/sources.yaml": _SOURCES,
                      "study/run.yaml": _HEAD + "include: ../shared/sources.yaml\n" + _PHASES})
    (a,), (b,) = variants(tmp_path / "inline.yaml"), variants(tmp_path / "study" / "run.yaml")
    assert a.resolved.spec == b.resolved.spec
    sa, sb = compile_variant(a, tmp_path / "a"), compile_variant(b, tmp_path / "b")
    assert sa.fingerprint == sb.fingerprint
    assert sa.manifest.spec == sb.manifest.spec  # the canonical spec is of the resolved content
    assert (tmp_path / "a" / "order.bin").read_bytes() == (tmp_path / "b" / "order.bin").read_bytes()


def test_included_locations_stay_relative_to_their_file_and_includes_nest(tmp_path):
    _write(tmp_path, {
        "data/sources.yaml": "include: refs.yaml\nsources:\n  web: {kind: text, location: mds/web}\n"
                             "  s3: {kind: text, location: 's3://bucket/web'}\n",
        "data/refs.yaml": "references: {plan: 1M tok}\n",
        "exp/run.yaml": _HEAD + "include: [../data/sources.yaml]\n" + _PHASES.replace(
            "{web: 0.6, img: rest}", "{web: 1}")})
    spec, located = parse_spec_file(tmp_path / "exp" / "run.yaml")
    assert spec.sources["web"].location == "../data/mds/web"  # still names data/mds/web
    assert spec.sources["s3"].location == "s3://bucket/web"
    assert str(spec.references["plan"]) == "1M tok"
    assert located.file_of("references.plan").endswith("refs.yaml") and located.where("references.plan")[0] == 1
    assert located.file_of("phases[0].mix") == located.file


def parse_spec_file(path):
    from mixture.load import read_spec

    return read_spec(path)


def test_include_errors_point_into_the_file_that_has_the_problem(tmp_path):
    _write(tmp_path, {"shared.yaml": _SOURCES.replace("samples: 3000", "samples: -3"),
                      "run.yaml": _HEAD + "include: shared.yaml\n" + _PHASES})
    with pytest.raises(MixtureError) as info:
        variants(tmp_path / "run.yaml")
    (problem,) = info.value.problems
    assert problem.file.endswith("shared.yaml") and problem.line == 3 and "sources.img" in problem.path


def test_include_cycles_are_refused_with_the_chain(tmp_path):
    _write(tmp_path, {"a.yaml": "include: b.yaml\n", "b.yaml": "include: c.yaml\n", "c.yaml": "include: a.yaml\n",
                      "run.yaml": _HEAD + "include: a.yaml\n" + _PHASES})
    with pytest.raises(MixtureError, match="include cycle: a.yaml -> b.yaml -> c.yaml -> a.yaml") as info:
        variants(tmp_path / "run.yaml")
    assert info.value.problems[0].file.endswith("c.yaml")


@pytest.mark.parametrize("own, line", [("run: {seq_len: 8, global_batch_size: 8}\n", 4), (
    "sources:\n  web: {kind: text, declared: {samples: 5, tokens_per_sample: 9}}\n", 5)])
def test_a_key_defined_in_two_files_is_refused_naming_both(tmp_path, own, line):
    _write(tmp_path, {"shared.yaml": _HEAD.replace("name: t\nseed: 7\n", "") + _SOURCES,
                      "run.yaml": "name: t\nseed: 7\ninclude: shared.yaml\n" + own + _PHASES})
    with pytest.raises(MixtureError, match=r"also defined in .*shared.yaml:\d") as info:
        variants(tmp_path / "run.yaml")
    assert info.value.problems[0].file.endswith("run.yaml") and info.value.problems[0].line == line


_SWEEP_BASE = _HEAD + "references: {plan: 1M tok}\n" + _SOURCES + (
    "phases:\n  - {name: text, end: 20% of plan, mix: {web: 1}}\n"
    "  - {name: cool, duration: 60k tok, mix: {web: rest, img: 0.1}, lr: {rewarm: {warmup: 10ba, peak: 1e-3}}}\n")


def _names(tmp_path, sweep: str) -> list[tuple[str, dict]]:
    (tmp_path / "s.yaml").write_text(_SWEEP_BASE + sweep)
    return [(v.name, v.values) for v in variants(tmp_path / "s.yaml")]


def test_list_values_keep_the_names_existing_files_have(tmp_path):
    """The forms the shipped examples use, named exactly as before labels existed (ids of compiled runs)."""
    zipped = _names(tmp_path, "sweep:\n  mode: zip\n  axes:\n"
                    "    intro: {field: phases.text.end, values: ['0% of plan', '100% of plan']}\n"
                    "    warmup: {field: phases.cool.lr.rewarm.warmup, values: [5000ba, 1000ba]}\n"
                    "    peak: {field: phases.cool.lr.rewarm.peak, values: [1e-2, 9.8e-4]}\n")
    assert [n for n, _ in zipped] == ["intro=0pctofplan,warmup=5000ba,peak=1e-2",
                                      "intro=100pctofplan,warmup=1000ba,peak=9.8e-4"]
    grid = _names(tmp_path, "sweep:\n  axes:\n    seed: {field: seed, values: [7, 365]}\n"
                  "    images: {field: phases.cool.mix.img, values: [0.1, 0]}\n")
    assert [n for n, _ in grid] == ["seed=7,images=0.1", "seed=7,images=0", "seed=365,images=0.1", "seed=365,images=0"]


def test_labels_name_the_variants_and_grid_times_zip_is_one_sweep(tmp_path):
    found = _names(tmp_path, "sweep:\n  axes:\n"
                   "    intro:\n      fields: [phases.text.end, phases.cool.lr.rewarm.peak]\n"
                   "      values: {early: ['20% of plan', 1e-3], late: ['80% of plan', 2e-4]}\n"
                   "    share:\n      fields: [phases.cool.mix.web, phases.cool.mix.img]\n"
                   "      values: [[0.9, 0.1], [0.7, rest]]\n"
                   "    seed: {field: seed, values: {a: 1, b: 2}}\n")
    assert [n for n, _ in found] == [f"intro={i},share={s},seed={x}" for i in ("early", "late")
                                     for s in ("0.9_0.1", "0.7_rest") for x in "ab"]
    assert found[0][1] == {"intro": "early", "share": [0.9, 0.1], "seed": "a"}
    by_name = {v.name: v.resolved.spec for v in variants(tmp_path / "s.yaml")}
    late = by_name["intro=late,share=0.7_rest,seed=b"]
    assert (late.phases[0].end, late.phases[1].lr.rewarm.peak, late.seed) == ("80% of plan", 2e-4, 2)
    assert late.phases[1].mix == {"web": 0.7, "img": "rest"}


def test_labelled_zip_sweeps_and_errors_point_at_the_labelled_value(tmp_path):
    found = _names(tmp_path, "sweep:\n  mode: zip\n  axes:\n"
                   "    intro: {field: phases.text.end, values: {early: '20% of plan', late: '80% of plan'}}\n"
                   "    peak: {field: phases.cool.lr.rewarm.peak, values: [1e-3, 2e-4]}\n")
    assert [n for n, _ in found] == ["intro=early,peak=1e-3", "intro=late,peak=2e-4"]
    with pytest.raises(MixtureError, match="in variant intro=late: unknown reference 'plna'") as info:
        _names(tmp_path, "sweep:\n  axes:\n"
               "    intro: {field: phases.text.end, values: {early: '20% of plan', late: '80% of plna'}}\n")
    assert info.value.problems[0].line == len(_SWEEP_BASE.splitlines()) + 3


@pytest.mark.parametrize("sweep, message", [
    ("    x: {fields: [seed, phases.cool.mix.img], values: [[1, 0.1], [2]]}\n",
     "sweep.axes.x.values[1]: expected a list of 2 values, one per field (seed, phases.cool.mix.img), got [2]"),
    ("    x: {field: seed, fields: [seed], values: [1]}\n", "give exactly one of 'field' or 'fields'"),
    ("    x: {field: seed, values: {'bad label': 1}}\n", "is not a valid name"),
    ("    x: {field: seed, values: {}}\n", "a sweep axis needs at least one value"),
    ("    x: {fields: [seed, phases.nope.end], values: [[1, 2]]}\n", "no phase named 'nope'"),
])
def test_sweep_misuse_is_refused_where_it_is_written(tmp_path, sweep, message):
    with pytest.raises(MixtureError) as info:
        _names(tmp_path, "sweep:\n  axes:\n" + sweep)
    text = str(info.value)
    assert message in text and all(p.line > len(_SWEEP_BASE.splitlines()) for p in info.value.problems), text


def test_a_rest_weight_of_zero_leaves_a_one_source_phase_measurable_in_epochs():
    phase = {"name": "ft", "duration": "1 ep", "mix": {"chat": 1, "web": "rest"}}
    assert resolve(*parse_spec(spec_text([phase]))).phases[0].weights == {"chat": 1.0, "web": 0.0}
    phase["mix"] = {"chat": 0.5, "web": "rest"}
    with pytest.raises(MixtureError, match="this one mixes 2"):
        resolve(*parse_spec(spec_text([phase])))


@given(st.lists(st.booleans(), min_size=3, max_size=3), st.booleans())
def test_any_split_of_sections_between_files_resolves_to_the_same_spec(tmp_path_factory, moved, refs_moved):
    """Sources (any subset) and references moved into an included file: the same spec, by value."""
    import yaml

    root = tmp_path_factory.mktemp("split")
    doc = yaml.safe_load(spec_text([{"name": "a", "end": "10% of plan", "mix": {"web": 1}},
                                    {"name": "b", "duration": "50k tok", "mix": {"web": "rest", "img": 0.2}}],
                                   references={"plan": "1M tok"}))
    shared: dict = {"sources": {}}
    for name, move in zip(list(doc["sources"]), moved):
        if move:
            shared["sources"][name] = doc["sources"].pop(name)
    if refs_moved:
        shared["references"] = doc.pop("references")
    (root / "shared.yaml").write_text(yaml.safe_dump(shared))
    (root / "split.yaml").write_text(yaml.safe_dump({**doc, "include": "shared.yaml"}))
    inline = yaml.safe_load(spec_text([{"name": "a", "end": "10% of plan", "mix": {"web": 1}},
                                       {"name": "b", "duration": "50k tok", "mix": {"web": "rest", "img": 0.2}}],
                                      references={"plan": "1M tok"}))
    (root / "inline.yaml").write_text(yaml.safe_dump(inline))
    (a,), (b,) = variants(root / "inline.yaml"), variants(root / "split.yaml")
    assert a.resolved.spec == b.resolved.spec and a.resolved.phases == b.resolved.phases
