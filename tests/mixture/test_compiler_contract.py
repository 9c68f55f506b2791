"""The determinism and order contracts of DESIGN.md, one test each (docs/determinism.md links here)."""

from __future__ import annotations

import numpy as np
import pytest

from mixture.errors import MixtureError
from tests.mixture.helpers import compile_text, full_order, spec_text

TEXT_THEN_MIX = [
    {"name": "text", "duration": "400sp", "mix": {"web": 1}},
    {"name": "cool", "duration": "120k tok", "mix": {"web": 0.8, "img": 0.2},
     "ramp": {"length": "20k tok", "shape": "cosine"}},
    {"name": "ft", "duration": "1 ep", "mix": {"chat": 1}},
]


def test_recompile_is_bit_identical(tmp_path):
    a = compile_text(spec_text(TEXT_THEN_MIX), tmp_path, "a")
    b = compile_text(spec_text(TEXT_THEN_MIX), tmp_path, "b")
    assert a.fingerprint == b.fingerprint
    for name in ("order.bin", "checkpoints.npy", "batch_tokens.npy", "lr.npy"):
        pa, pb = a.path / name, b.path / name
        assert pa.exists() == pb.exists()
        if pa.exists():
            assert pa.read_bytes() == pb.read_bytes()


def test_fingerprint_ignores_what_does_not_change_the_order(tmp_path):
    base = compile_text(spec_text(TEXT_THEN_MIX), tmp_path, "base")
    renamed = [dict(p) for p in TEXT_THEN_MIX]
    renamed[1] = {**renamed[1], "name": "cooldown", "lr": {"cooldown": {"to": 0.0}}}
    other = compile_text(spec_text(renamed), tmp_path, "renamed")
    assert np.array_equal(full_order(base)[1], full_order(other)[1])
    assert base.fingerprint == other.fingerprint


@pytest.mark.parametrize("change", ["seed", "weight", "block", "duration"])
def test_fingerprint_changes_when_the_order_changes(tmp_path, change):
    base = compile_text(spec_text(TEXT_THEN_MIX), tmp_path, "base")
    phases = [dict(p) for p in TEXT_THEN_MIX]
    kwargs: dict = {}
    if change == "seed":
        kwargs["seed"] = 8
    elif change == "weight":
        phases[1] = {**phases[1], "mix": {"web": 0.7, "img": 0.3}}
    elif change == "duration":
        phases[0] = {**phases[0], "duration": "408sp"}
    text = spec_text(phases, **kwargs)
    if change == "block":
        text = text.replace("kind: text", "kind: text\n    shuffle_block_samples: 100")
    other = compile_text(text, tmp_path, "other")
    assert not (len(base) == len(other) and np.array_equal(full_order(base)[0], full_order(other)[0])
                and np.array_equal(full_order(base)[1], full_order(other)[1]))
    assert base.fingerprint != other.fingerprint


def test_prefix_stability_one_trunk_serves_every_introduction_point(tmp_path):
    orders = []
    for intro in (96, 200, 304):
        phases = [{"name": "text", "duration": f"{intro}sp", "mix": {"web": 1}},
                  {"name": "cool", "duration": "40k tok", "mix": {"web": 0.9, "img": 0.1}}]
        orders.append((intro, full_order(compile_text(spec_text(phases), tmp_path, f"i{intro}"))))
    for (p1, (s1, x1)), (_, (s2, x2)) in zip(orders, orders[1:]):
        assert np.array_equal(s1[:p1], s2[:p1]) and np.array_equal(x1[:p1], x2[:p1])
        assert not np.array_equal(s1[: p1 + 80], s2[: p1 + 80])  # they do diverge after the branch


def test_prefix_stability_for_mixed_phases_of_different_lengths(tmp_path):
    short = [{"name": "mix", "duration": "200sp", "mix": {"web": 0.5, "img": 0.5}, "unit": "samples"}]
    long = [{"name": "mix", "duration": "640sp", "mix": {"web": 0.5, "img": 0.5}, "unit": "samples"}]
    a = full_order(compile_text(spec_text(short), tmp_path, "s"))
    b = full_order(compile_text(spec_text(long), tmp_path, "l"))
    assert np.array_equal(a[0], b[0][:200]) and np.array_equal(a[1], b[1][:200])


def _draws(schedule, name):
    src, samples = full_order(schedule)
    return samples[src == schedule.source_names.index(name)]


def test_adding_a_source_leaves_other_sources_draw_sequences_unchanged(tmp_path):
    two = [{"name": "mix", "duration": "800sp", "mix": {"web": 0.5, "img": 0.5}, "unit": "samples"}]
    three = [{"name": "mix", "duration": "800sp", "mix": {"web": 0.4, "img": 0.4, "chat": 0.2},
              "unit": "samples"}]
    a = compile_text(spec_text(two), tmp_path, "two")
    b = compile_text(spec_text(three), tmp_path, "three")
    for name in ("web", "img"):
        da, db = _draws(a, name), _draws(b, name)
        n = min(len(da), len(db))
        assert n > 100 and np.array_equal(da[:n], db[:n])


def test_sources_are_read_without_replacement_within_an_epoch_and_cursors_continue(tmp_path):
    phases = [{"name": "a", "duration": "3000sp", "mix": {"web": 1}},
              {"name": "b", "duration": "6000sp", "mix": {"web": 0.5, "img": 0.5}, "unit": "samples"}]
    schedule = compile_text(spec_text(phases), tmp_path)
    web = _draws(schedule, "web")  # 3000 + 3000 draws from 5000 samples: epoch 0 then part of epoch 1
    assert len(web) == 6000
    assert len(np.unique(web[:5000])) == 5000  # the first epoch is a permutation, across the phase change
    assert len(np.unique(web[5000:])) == 1000
    img = _draws(schedule, "img")
    assert len(np.unique(img)) == len(img) == 3000


def test_cap_on_epochs_fails_the_compile_with_the_numbers(tmp_path):
    sources = {"web": {"kind": "text", "max_epochs": 1, "declared": {"samples": 500, "tokens_per_sample": 10}}}
    phases = [{"name": "warm", "duration": "400sp", "mix": {"web": 1}},
              {"name": "more", "duration": "400sp", "mix": {"web": 1}}]
    with pytest.raises(MixtureError) as info:
        compile_text(spec_text(phases, sources=sources), tmp_path)
    message = str(info.value)
    assert "'web'" in message and "'more'" in message and "1.600 epochs" in message and "max_epochs=1" in message
