"""Sample-unit mixed phases are mixed several chunks at a time on every thread (the later chunks of a group
from predicted start states, kept only if the prediction was exact): the order and the fingerprint must be
byte-identical for any thread count, any group size, any chunk size, and when every prediction is wrong."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import mixture.compiler as compiler
from mixture import schedule_files as files
from mixture.compiler import _Speculative

from helpers import compile_text, spec_text

SMALL_CHUNK = 1 << 13  # chunks of 8,192 positions (or lcm(batch, 4096)), so the phases below span many

FIVE = {n: {"kind": "text", "declared": {"samples": 40_000, "tokens_per_sample": t}}
        for n, t in zip("abcde", (100, 7, 2048, 64, 1))}
PRICED = {
    "web": {"kind": "text", "declared": {"samples": 50_000, "tokens_per_sample": {"mean": 300, "std": 90, "min": 8}}},
    "img": {"kind": "image_caption", "visual_tokens_per_image": 64,
            "declared": {"samples": 30_000, "caption_tokens": {"mean": 20, "std": 8, "min": 2, "max": 60}}},
    "chat": {"kind": "text", "declared": {"samples": 9_000, "tokens_per_sample": 500}},
}
CASES = {
    "static 3 sources, batch 512": (spec_text(
        [{"name": "mix", "duration": "98304sp", "unit": "samples", "mix": {"web": 0.5, "img": 0.3, "chat": 0.2}}],
        sources=PRICED, batch=512), 512),
    "5 sources, carried lag, ramp then static, batch 3": (spec_text(
        [{"name": "warm", "duration": "31sp", "unit": "samples", "mix": {"a": 0.41, "b": 0.33, "c": 0.26}},
         {"name": "ramp", "duration": "90000sp", "unit": "samples", "mix": {"a": 0.05, "b": 0.1, "c": 0.15,
                                                                           "d": 0.3, "e": 0.4},
          "ramp": {"length": "20000sp", "shape": "cosine"}}], sources=FIVE, batch=3), 3),
    "token units, constant prices, 2 chunks": (spec_text(
        [{"name": "mix", "duration": "24576sp", "unit": "tokens", "mix": {"a": 0.9, "c": 0.1}}],
        sources=FIVE, batch=4), 4),
    "tokens stop, batch 1": (spec_text(
        [{"name": "mix", "duration": "9M tok", "unit": "samples", "mix": {"web": 0.6, "img": 0.25, "chat": 0.15}}],
        sources=PRICED, batch=1), 1),
}


def _compiled(tmp_path, name: str, text: str, threads: int) -> tuple[bytes, str]:
    numba.set_num_threads(threads)
    try:
        schedule = compile_text(text, tmp_path, name)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return (schedule.path / files.ORDER).read_bytes(), schedule.manifest.fingerprint


@pytest.mark.parametrize("case", sorted(CASES))
def test_order_and_fingerprint_identical_for_any_threads_group_and_chunk(tmp_path, monkeypatch, case) -> None:
    text, _ = CASES[case]
    reference = _compiled(tmp_path, "one_thread_one_chunk", text, 1)  # one chunk, nothing predicted
    monkeypatch.setattr(compiler, "_CHUNK_TARGET", SMALL_CHUNK)
    tried: list[bool] = []
    predict = _Speculative._predict

    def counted(self: _Speculative, i: int) -> bool:
        ok = predict(self, i)
        tried.append(ok)
        return ok

    monkeypatch.setattr(_Speculative, "_predict", counted)
    assert _compiled(tmp_path, "one_thread", text, 1) == reference
    if numba.config.NUMBA_NUM_THREADS >= 2:
        assert _compiled(tmp_path, "two_threads", text, 2) == reference
    monkeypatch.setattr(compiler, "_threads", lambda: 5)  # groups of 5 chunks on however many threads run
    assert _compiled(tmp_path, "groups_of_five", text, numba.config.NUMBA_NUM_THREADS) == reference
    if "token units" not in case:  # token-unit phases are mixed one chunk at a time (nothing predicted)
        assert sum(tried) > 0, "no chunk was mixed from a predicted state: the test exercises nothing"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_wrong_prediction_is_dropped_and_mixed_again(tmp_path, monkeypatch, case) -> None:
    """Every predicted start state is off by one draw between two sources: each must be detected (the
    chunk is mixed again from the true state), and the result is still the one-chunk order."""
    text, _ = CASES[case]
    reference = _compiled(tmp_path, "reference", text, 1)
    monkeypatch.setattr(compiler, "_CHUNK_TARGET", SMALL_CHUNK)
    monkeypatch.setattr(compiler, "_threads", lambda: 3)
    predict, wrong, dropped = _Speculative._predict, [], []
    run = _Speculative.run

    def off_by_one(self: _Speculative, i: int) -> bool:
        if not predict(self, i):
            return False
        moved = np.flatnonzero(self.drawn[i] > self.drawn[i - 1])
        if len(moved) < 2:
            return True
        self.drawn[i, moved[0]] += 1
        self.drawn[i, moved[1]] -= 1
        compiler.sample_state(self.curve, self.drawn[i], self.release[i], self.deadline[i])
        wrong.append(i)
        return True

    def counting_run(self: _Speculative, *args: object) -> None:
        run(self, *args)
        dropped.append(self.mispredicted)

    monkeypatch.setattr(_Speculative, "_predict", off_by_one)
    monkeypatch.setattr(_Speculative, "run", counting_run)
    assert _compiled(tmp_path, "wrong", text, numba.config.NUMBA_NUM_THREADS) == reference
    if "token units" not in case:
        assert wrong and sum(dropped) >= 1
