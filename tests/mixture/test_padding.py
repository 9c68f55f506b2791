"""`mixture explain`'s padding estimate: per-phase slots against a direct count over the order, sampling
of long phases, and the printed lines."""

from __future__ import annotations

import numpy as np
import pytest

from mixture.cli import main
from mixture.padding import estimate_padding, estimate_span, first_fit, sample_lengths

from helpers import compile_text, spec_text

PHASES = [
    {"name": "text", "duration": "64sp", "mix": {"web": 1}},
    {"name": "cool", "duration": "96sp", "mix": {"web": 0.5, "img": 0.5}, "unit": "samples"},
    {"name": "tune", "duration": "48sp", "mix": {"chat": 1}},
]


@pytest.fixture(scope="module")
def schedule(tmp_path_factory: pytest.TempPathFactory):
    return compile_text(spec_text(PHASES), tmp_path_factory.mktemp("padding"))


def test_estimate_counts_every_slot_of_every_batch(schedule) -> None:
    seq, size = 256, schedule.global_batch_size
    estimates = {e.name: e for e in estimate_padding(schedule)}
    assert list(estimates) == ["text", "cool", "tune", "run"]
    src, samples = schedule.take(0, len(schedule))
    tokens = schedule.tokens(src, samples) + (src == schedule.source_names.index("img"))
    for name, (a, b) in {"text": (0, 8), "cool": (8, 20), "tune": (20, 26)}.items():
        e = estimates[name]
        lengths = np.minimum(tokens[a * size:b * size], seq)
        assert (e.batches_examined, e.num_batches, e.real_tokens) == (b - a, b - a, int(lengths.sum()))
        assert e.unpacked_padding == pytest.approx(1 - lengths.sum() / ((b - a) * size * seq))
        rows = sum(int(first_fit(lengths[i:i + size], seq).max()) + 1 for i in range(0, len(lengths), size))
        assert e.packed_rows == rows and e.packed_padding <= e.unpacked_padding
    assert estimates["text"].unpacked_padding == 0.0  # declared 256-token text fills its rows
    assert estimates["run"].real_tokens == sum(estimates[n].real_tokens for n in ("text", "cool", "tune"))


def test_long_phases_are_sampled_evenly(schedule) -> None:
    e = estimate_span(schedule, "cool", 8, 20, max_batches=4)
    assert e.sampled and (e.batches_examined, e.num_batches) == (4, 12)
    expected = sum(int(sample_lengths(schedule, b * 8, b * 8 + 8, 256).sum()) for b in (8, 12, 15, 19))
    assert e.real_tokens == expected


def test_explain_prints_padding_per_phase(tmp_path, capsys) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(spec_text(PHASES))
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "padding at seq_len 256 (all 26 batches)" in out
    assert all(f"  {name} " in out for name in ("text", "cool", "tune", "run"))
