"""Packing and the throughput switches on the tiny model, without Composer's Trainer: the packed layout,
first fit, packed == unpacked (loss, per-source sums, gradients), no attention across documents, bf16
autocast, activation checkpointing and torch.compile."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mixture.errors import MixtureError
from mixture.padding import first_fit

torch = pytest.importorskip("torch")

from trainer.batch import IGNORE, Collator, Vocab, num_samples, split_rows  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.model import VLM, build_hf_model, configure_speed, precision_for, source_sums  # noqa: E402

VOCAB = Vocab(text_vocab_size=257, eos_id=256)
KINDS = ["text", "image_caption", "instruction"]
SEQ = 48
VT = 16  # the tiny encoder's visual tokens (32 px, patch 8)


@functools.lru_cache(maxsize=None)
def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def samples(seed: int, n: int = 10) -> list[dict]:
    """A mixed per-rank batch: text, captions (with images), instructions with and without an image."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = int(rng.integers(0, 3))
        ids = rng.integers(0, 256, int(rng.integers(3, 30))).astype(np.int32)
        sample = {"source_id": kind, "position": 100 + i}
        if kind == 0:
            sample["input_ids"] = ids
        elif kind == 1:
            sample.update(caption_ids=ids, image=png(i))
        else:
            mask = (np.arange(len(ids)) >= len(ids) // 2).astype(np.uint8)
            sample.update(input_ids=ids, loss_mask=mask, image=png(i) if rng.random() < 0.5 else b"")
        out.append(sample)
    return out


def collate(batch: list[dict], packing: bool) -> dict:
    return Collator(KINDS, None, seq_len=SEQ, vocab=VOCAB, visual_tokens=VT, image_size=32, packing=packing)(batch)


def tiny_model(seed: int = 0) -> VLM:
    torch.manual_seed(seed)
    return VLM(build_hf_model(ModelConfig(), VOCAB, SEQ), len(KINDS))


def loss_and_grads(model: VLM, batch: dict) -> tuple[float, list]:
    model.zero_grad()
    loss = model.loss(model(batch), batch)
    loss.backward()
    return float(loss), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@given(st.lists(st.integers(1, 20), max_size=60), st.integers(20, 40))
def test_first_fit_places_each_item_in_the_first_row_with_room(lengths: list[int], capacity: int) -> None:
    rows = first_fit(np.array(lengths, np.int64), capacity)
    fill: list[int] = []
    for n, row in zip(lengths, rows.tolist()):
        assert row == next((r for r, used in enumerate(fill) if used + n <= capacity), len(fill))
        if row == len(fill):
            fill.append(0)
        fill[row] += n
    assert all(used <= capacity for used in fill)


def test_packing_fills_fewer_rows() -> None:
    batch = samples(1)
    assert len(collate(batch, True)["input_ids"]) < len(batch)


@settings(max_examples=15)  # each example collates up to 24 samples twice, images included
@given(st.integers(0, 2**31), st.integers(1, 24))
def test_packed_layout_restarts_positions_and_never_targets_a_document_start(seed: int, n: int) -> None:
    batch = samples(seed, n)
    packed, plain = collate(batch, True), collate(batch, False)
    rows = len(packed["input_ids"])
    assert rows <= len(batch) and num_samples(packed) == num_samples(plain) == len(batch)
    assert int(packed["attention_mask"].sum()) == int(plain["attention_mask"].sum())
    assert int((packed["labels"][:, 1:] != IGNORE).sum()) == int((plain["labels"][:, 1:] != IGNORE).sum())
    assert int(packed["has_image"].sum()) == int(plain["has_image"].sum())
    assert sorted(packed["position"][packed["source_id"] >= 0].tolist()) == plain["position"].tolist()
    for r in range(rows):
        doc = packed["doc_ids"][r]
        for d in doc.unique().tolist():
            at = (doc == d).nonzero().flatten()
            if d == 0:
                continue
            assert packed["position_ids"][r, at].tolist() == list(range(len(at)))
            assert packed["labels"][r, at[0]] == IGNORE
            sample = packed["position"][r, d - 1].item() - 100
            assert packed["input_ids"][r, at].tolist() == plain["input_ids"][sample, :len(at)].tolist()
    assert sum(len(c["input_ids"]) for c in split_rows(packed, 2)) == rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_equals_unpacked_loss_sums_and_gradients(seed: int) -> None:
    batch = samples(seed)
    model = tiny_model(seed)
    plain_loss, plain_grads = loss_and_grads(model, collate(batch, False))
    plain_stats = model.source_stats.clone()
    model.reset_source_stats()
    packed_loss, packed_grads = loss_and_grads(model, collate(batch, True))
    assert packed_loss == pytest.approx(plain_loss, rel=1e-5)
    assert torch.equal(model.source_stats[1:], plain_stats[1:])  # label tokens, samples, budget tokens
    assert torch.allclose(model.source_stats[0], plain_stats[0], rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(packed_grads, plain_grads))


def test_no_attention_across_documents() -> None:
    batch = samples(3)
    model = tiny_model().eval()
    packed = collate(batch, True)
    row = int(np.argmax((packed["source_id"] >= 0).sum(1).numpy()))
    assert (packed["source_id"][row] >= 0).sum() >= 2
    changed = {k: v.clone() for k, v in packed.items()}
    first = packed["doc_ids"][row] == 1
    text = first & (packed["input_ids"][row] < 256)  # its text tokens (its image tokens stay image tokens)
    changed["input_ids"][row, text] = (changed["input_ids"][row, text] + 7) % 256
    with torch.no_grad():
        a, b = model(packed), model(changed)
    later = packed["doc_ids"][row] > 1
    assert torch.equal(a[row, later], b[row, later]) and not torch.equal(a[row, first], b[row, first])


def test_source_sums_charge_each_token_to_its_sample() -> None:
    batch = collate(samples(4), True)
    losses = torch.ones(batch["labels"][:, 1:].shape, dtype=torch.float32)
    mask = batch["labels"][:, 1:] != IGNORE
    stats = source_sums(losses * mask, mask, batch, len(KINDS))
    valid = batch["source_id"] >= 0
    for sid in range(len(KINDS)):
        assert stats[2, sid] == int((batch["source_id"][valid] == sid).sum())
        assert stats[0, sid] == stats[1, sid]


def test_bf16_autocast_keeps_fp32_weights_and_a_close_loss() -> None:
    batch = collate(samples(5), True)
    model = tiny_model()
    fp32, _ = loss_and_grads(model, batch)
    if not torch.cuda.is_available():  # Composer refuses amp_bf16 on CPU: the model autocasts itself
        assert precision_for(model, "amp_bf16") == "fp32" and model.cpu_autocast
        with pytest.raises(MixtureError, match="amp_fp16 needs a GPU"):
            precision_for(tiny_model(), "amp_fp16")
    assert model(batch).dtype == torch.bfloat16
    bf16, grads = loss_and_grads(model, batch)
    assert np.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=2e-2)
    assert all(p.dtype == torch.float32 for p in model.parameters()) and all(g.dtype == torch.float32 for g in grads)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    batch = collate(samples(6), True)
    plain = tiny_model().train()
    checkpointed = tiny_model().train()
    configure_speed(checkpointed.hf, activation_checkpointing=True, compile=False)
    loss_a, grads_a = loss_and_grads(plain, batch)
    loss_b, grads_b = loss_and_grads(checkpointed, batch)
    assert loss_a == loss_b and all(torch.allclose(a, b, rtol=1e-6, atol=1e-8) for a, b in zip(grads_a, grads_b))


@pytest.mark.slow  # inductor compiles C++ kernels: about a minute on 2 idle cores
def test_compiled_layers_train_one_step_like_eager() -> None:
    batch = collate(samples(7), True)
    eager = tiny_model()
    compiled = tiny_model()
    configure_speed(compiled.hf, activation_checkpointing=False, compile=True)
    loss_a, grads_a = loss_and_grads(eager, batch)
    loss_b, grads_b = loss_and_grads(compiled, batch)
    assert loss_b == pytest.approx(loss_a, rel=1e-4)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(grads_a, grads_b))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_label_logits_only_gives_the_full_logits_loss_and_gradients(seed: int, packing: bool) -> None:
    """The trainer's model runs the LM head only where a label is predicted: same loss, per-source sums and
    gradients as from every position's logits, packed or not, on a mixed batch (text, captions, prompts)."""
    batch = collate(samples(seed), packing)
    model = tiny_model()
    full, full_grads = loss_and_grads(model, batch)
    full_stats = model.source_stats.clone()
    model.reset_source_stats()
    model.label_logits_only = True
    logits = model(batch)
    labels = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert logits.shape == (labels, model.hf.config.text_config.vocab_size)
    kept, kept_grads = loss_and_grads(model, batch)
    assert kept == pytest.approx(full, rel=1e-6, abs=1e-7)
    assert torch.allclose(model.source_stats, full_stats, rtol=1e-6, atol=1e-7)
    assert len(kept_grads) == len(full_grads)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(kept_grads, full_grads))
    model.label_logits_only = False
    assert model(batch).shape[:2] == batch["input_ids"].shape  # off: every position's logits again
