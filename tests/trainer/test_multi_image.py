"""Instruction conversations with several images, from a real ingest to the loss: served from a compiled
schedule, collated packed and unpacked, each image's features at its own placeholder's tokens, packed ==
unpacked, and the Hugging Face export (AutoProcessor + LlavaForConditionalGeneration) giving our logits."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

torch = pytest.importorskip("torch")

from mixture.cli import main as cli  # noqa: E402
from streaming_data.instruction import sample_images  # noqa: E402
from trainer.batch import IGNORE, Collator, Vocab  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.model import VLM, build_hf_model, pixel_values, set_feature_norm  # noqa: E402

VOCAB = Vocab(text_vocab_size=257, eos_id=256)  # the byte tokenizer
VT, SEQ = 16, 160  # the tiny encoder: 32 px, patch 8
COLOURS = [(220, 30, 30), (30, 180, 30), (30, 30, 220), (230, 220, 30)]


def _png(i: int) -> bytes:
    rng = np.random.default_rng(i)
    pixels = np.clip(np.array(COLOURS[i % 4]) + rng.integers(-30, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        if i % 4 == 0:
            out.append({"id": str(i), "image": [f"{i}.png", f"{i + 1}.png"], "conversations": [
                {"from": "human", "value": "<image>\nThis one, and <image>\nthat one: same colour?"},
                {"from": "gpt", "value": "no" if i % 8 else "they differ"}]})
        elif i % 4 == 1:
            out.append({"id": str(i), "image": [f"{i}.png", f"{i + 1}.png", f"{i + 2}.png"], "conversations": [
                {"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "two squares"},
                {"from": "human", "value": "And <image>\nnow?"}, {"from": "gpt", "value": "a third"}]})
        elif i % 4 == 2:
            out.append({"id": str(i), "image": f"{i}.png", "conversations": [
                {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]})
        else:
            out.append({"id": str(i), "conversations": [{"from": "human", "value": "Hi"},
                                                         {"from": "gpt", "value": "Hello."}]})
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real instruction ingest of 16 conversations (0-3 images each) and a 3-batch schedule over it."""
    root = tmp_path_factory.mktemp("multi")
    raw = root / "raw"
    raw.mkdir()
    for i in range(20):
        (raw / f"{i}.png").write_bytes(_png(i))
    (raw / "chat.json").write_text(json.dumps(_records(16)))
    assert cli(["ingest", "instruction", str(raw / "chat.json"), "--image-root", str(raw), "-o", str(root / "chat"),
                "--visual-tokens", str(VT), "--no-progress"]) == 0
    spec = {"name": "multi", "seed": 3, "run": {"seq_len": SEQ, "global_batch_size": 4},
            "sources": {"chat": {"kind": "instruction", "location": str(root / "chat"),
                                 "visual_tokens_per_image": VT}},
            "phases": [{"name": "finetune", "duration": "3ba", "mix": {"chat": 1}}]}
    (root / "mix.yaml").write_text(yaml.safe_dump(spec))
    assert cli(["compile", str(root / "mix.yaml"), "-o", str(root / "sched")]) == 0
    return {"root": root, "raw": raw, "schedule": root / "sched", "data": root / "chat"}


def collator(packing: bool, schedule: Path | None = None) -> Collator:
    return Collator(["instruction"], None if schedule is None else str(schedule), seq_len=SEQ, vocab=VOCAB,
                    visual_tokens=VT, image_size=32, packing=packing)


def tiny_model(seed: int = 0) -> VLM:
    torch.manual_seed(seed)
    return VLM(build_hf_model(ModelConfig(), VOCAB, SEQ), 1).eval()


def lm_inputs(model: VLM, batch: dict) -> torch.Tensor:
    """The decoder's input embeddings for ``batch`` (after the image features were scattered in)."""
    seen = {}
    hook = model.hf.model.language_model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True)
    try:
        with torch.no_grad():
            model(batch)
    finally:
        hook.remove()
    return seen["embeds"]


def served(schedule: Path, packing: bool) -> list[tuple[list[dict], dict]]:
    """(samples, batch) of every global batch, served by the scheduled dataset and collated."""
    from streaming_data.serve import ScheduledDataset, build_dataloader

    collate = collator(packing, schedule)
    loader = build_dataloader(ScheduledDataset(str(schedule)), collate_fn=lambda s: (s, collate(s)))
    return list(loader)


def check_images_in_place(model: VLM, samples: list[dict], batch: dict) -> int:
    """Every sample's images, in its order, sit at the tokens of its placeholders, and the decoder's inputs
    there are exactly those images' projected features. Returns the number of images checked."""
    col = collator(False)
    embeds = lm_inputs(model, batch)
    rows = len(batch["input_ids"])
    pixels = batch["pixels"] if batch["pixels"].dim() == 5 else batch["pixels"][:, None]
    has_image = batch["has_image"].view(rows, -1)
    positions = batch["position"].view(rows, -1)
    by_position = {int(s["position"]): s for s in samples}
    checked = 0
    for row in range(rows):
        images = iter(pixels[row][has_image[row]])
        for slot in range(positions.shape[1]):
            if positions[row, slot] < 0:
                continue
            sample = by_position[int(positions[row, slot])]
            start = int((batch["doc_ids"][row] == slot + 1).nonzero()[0]) if "doc_ids" in batch else 0
            text = np.asarray(sample["input_ids"])
            for k, (data, offset) in enumerate(sample_images(sample)):
                at = start + offset + k * VT
                assert batch["input_ids"][row, at:at + VT].eq(VOCAB.image_token_id).all()
                assert (batch["labels"][row, at:at + VT] == IGNORE).all()
                if offset:  # the text token right before the image
                    assert int(batch["input_ids"][row, at - 1]) == int(text[offset - 1])
                assert int(batch["input_ids"][row, at + VT]) == int(text[offset])  # and right after it
                image = next(images)
                assert torch.equal(image, torch.from_numpy(col.pixels(data)))
                with torch.no_grad():
                    features = model.core.image_features(pixel_values(image[None]))[0]
                assert torch.allclose(embeds[row, at:at + VT], features, atol=1e-6)
                checked += 1
        assert next(images, None) is None
    return checked


@pytest.mark.parametrize("packing", [True, False])
def test_multi_image_conversations_from_ingest_to_loss(study: dict, packing: bool) -> None:
    model = tiny_model()
    batches = served(study["schedule"], packing)
    assert len(batches) == 3
    images, losses = 0, []
    for samples, batch in batches:
        assert (batch["position"] >= 0).sum() == 4
        if not packing:  # a batch with a several-image sample: one image slot per image
            counts = [len(sample_images(s)) for s in samples]
            assert batch["has_image"].view(4, -1).sum(1).tolist() == counts
        images += check_images_in_place(model, samples, batch)
        loss = model.loss(model(batch), batch)
        assert torch.isfinite(loss)
        losses.append(float(loss))
    per_sample = [len(sample_images(s)) for samples, _ in batches for s in samples]
    assert images == sum(per_sample) and max(per_sample) == 3 and 2 in per_sample


def test_each_image_reaches_its_own_placeholder(study: dict) -> None:
    """Changing the second image changes the logits from its placeholder on, never before it; swapping the
    two changes them from the first placeholder on; the loss moves with them."""
    from streaming import LocalDataset

    sample = {**LocalDataset(local=str(study["data"]))[0], "source_id": 0}
    (_, first), (_, second) = sample_images(sample)
    first_at, second_at = first, second + VT
    model = tiny_model(1)
    batch = collator(False)([sample])
    assert batch["pixels"].shape == (1, 2, 3, 32, 32)

    def run(pixels: torch.Tensor) -> tuple[torch.Tensor, float]:
        changed = {**batch, "pixels": pixels}
        with torch.no_grad():
            logits = model(changed)
            return logits[0], float(model.loss(logits, changed))

    base, base_loss = run(batch["pixels"])
    other = batch["pixels"].clone()
    other[0, 1] = torch.from_numpy(collator(False).pixels(_png(3)))
    changed, changed_loss = run(other)
    assert torch.equal(base[:second_at], changed[:second_at])
    assert not torch.allclose(base[second_at:], changed[second_at:], atol=1e-4) and changed_loss != base_loss
    swapped, swapped_loss = run(batch["pixels"][:, [1, 0]])
    assert torch.equal(base[:first_at], swapped[:first_at])
    assert not torch.allclose(base[first_at:second_at], swapped[first_at:second_at], atol=1e-4)
    assert not torch.allclose(base[second_at:], swapped[second_at:], atol=1e-4) and swapped_loss != base_loss


def test_packed_equals_unpacked_with_several_images(study: dict) -> None:
    from streaming import LocalDataset

    data = LocalDataset(local=str(study["data"]))
    samples = [{**data[i], "source_id": 0, "position": i} for i in range(len(data))]
    model = tiny_model(2).train()
    results = []
    for packing in (False, True):
        batch = collator(packing)(samples)
        assert int(batch["has_image"].sum()) == sum(len(sample_images(s)) for s in samples)
        model.zero_grad()
        model.reset_source_stats()
        loss = model.loss(model(batch), batch)
        loss.backward()
        results.append((float(loss), model.source_stats.clone(),
                        [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (plain, plain_stats, plain_grads), (packed, packed_stats, packed_grads) = results
    assert len(collator(True)(samples)["input_ids"]) < len(samples)
    assert packed == pytest.approx(plain, rel=1e-5) and torch.equal(packed_stats[1:], plain_stats[1:])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(packed_grads, plain_grads))


def test_images_that_do_not_fit_are_left_out_whole() -> None:
    ids = np.arange(60, dtype=np.int32) % 200
    sample = {"source_id": 0, "input_ids": ids, "loss_mask": np.ones(60, np.uint8), "image": _png(0),
              "extra_images": _png(1) + _png(2),
              "image_layout": {"offsets": [5, 20, 50], "extra_sizes": [len(_png(1)), len(_png(2))]}}
    col = Collator(["instruction"], None, seq_len=80, vocab=VOCAB, visual_tokens=VT, image_size=32)
    got_ids, labels, images = col.tokens(sample)
    # 5 + 16 + 15 + 16 = 52 tokens to the third image's place; it would end at 52 + 30 + 16 > 80
    assert images == [_png(0), _png(1)] and len(got_ids) == 5 + VT + 15 + VT + 28 == 80
    assert (got_ids == VOCAB.image_token_id).sum() == 2 * VT
    assert got_ids[-1] == ids[47]  # cut before the third image's place (50) and at seq_len
    short = Collator(["instruction"], None, seq_len=60, vocab=VOCAB, visual_tokens=VT, image_size=32)
    got_ids, _, images = short.tokens(sample)
    # the second image would end at 20 + 32 = 52 <= 60, the third does not fit: text stops at min(50, 60 - 32)
    assert images == [_png(0), _png(1)] and len(got_ids) == 28 + 2 * VT


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.lists(st.integers(0, 60), max_size=4), st.integers(20, 120), st.integers(1, 8))
def test_collated_layout_keeps_text_order_and_whole_images(length: int, raw_offsets: list[int], seq_len: int,
                                                           visual: int) -> None:
    """For any offsets, V and seq_len: the text is a prefix of the sample's ids in order, each kept image is V
    whole image tokens at offset + k V, kept images are a prefix of the sample's, nothing exceeds seq_len."""
    offsets = sorted(min(o, length) for o in raw_offsets)
    ids = (np.arange(length, dtype=np.int32) % 200) + 1
    blobs = [bytes([k]) for k in range(len(offsets))]
    sample = {"source_id": 0, "input_ids": ids, "loss_mask": np.ones(length, np.uint8),
              "image": blobs[0] if blobs else b"", "extra_images": b"".join(blobs[1:]),
              "image_layout": {"offsets": offsets, "extra_sizes": [1] * max(len(offsets) - 1, 0)}}
    col = Collator(["instruction"], None, seq_len=seq_len, vocab=VOCAB, visual_tokens=visual, image_size=8)
    got, labels, images = col.tokens(sample)
    assert len(got) <= seq_len and images == blobs[:len(images)]
    is_image = got == VOCAB.image_token_id
    assert int(is_image.sum()) == len(images) * visual and (labels[is_image] == IGNORE).all()
    text = got[~is_image]
    assert text.tolist() == ids[:len(text)].tolist()
    for k, offset in enumerate(offsets[:len(images)]):
        assert is_image[offset + k * visual:offset + (k + 1) * visual].all()
        assert offset + (k + 1) * visual <= seq_len
    if len(images) < len(offsets):  # the first image left out did not fit, and no text follows its place
        assert offsets[len(images)] + (len(images) + 1) * visual > seq_len and len(text) <= offsets[len(images)]
    else:
        assert len(text) == min(length, seq_len - len(images) * visual)


def test_export_gives_our_logits_on_a_multi_image_sample(study: dict, tmp_path: Path) -> None:
    """AutoProcessor renders the conversation with an <image> per image part where it stands, expands each
    to the image's tokens and returns pixel_values [2, ...]; the exported LLaVA's logits are ours."""
    from streaming import LocalDataset
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from trainer.export import save_hf
    from trainer.model import export_state

    torch.manual_seed(4)
    model = VLM(build_hf_model(ModelConfig(feature_norm="channel"), VOCAB, SEQ), 1, feature_norm=True).eval()
    set_feature_norm(model.core, torch.from_numpy(np.stack([collator(False).pixels(_png(i)) for i in range(8)])))
    state = {k: v.detach().cpu() for k, v in model.hf.state_dict().items()}
    save_hf(model.hf.config, export_state(model, state), tmp_path / "export", "bytes")
    processor = AutoProcessor.from_pretrained(tmp_path / "export")
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path / "export").eval()

    sample = {**LocalDataset(local=str(study["data"]))[0], "source_id": 0}  # record 0: two images
    record = _records(1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "This one, and "},
                                             {"type": "image"}, {"type": "text", "text": "that one: same colour?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": record["conversations"][1]["value"]}]}]
    text = processor.apply_chat_template(messages)
    images = [Image.open(study["raw"] / name) for name in record["image"]]
    inputs = processor(images=images, text=text, return_tensors="pt")
    batch = collator(False)([sample])
    length = int(batch["attention_mask"].sum())
    assert inputs["input_ids"][0].tolist() == batch["input_ids"][0, :length].tolist()
    assert inputs["pixel_values"].shape == (2, 3, 32, 32)
    ours_pixels = pixel_values(batch["pixels"][0])
    assert torch.allclose(inputs["pixel_values"], ours_pixels, atol=1e-6)
    with torch.no_grad():
        theirs = hf(**inputs).logits[0]
        ours = model(batch)[0, :length]
    assert torch.allclose(theirs, ours, atol=1e-4)


def test_image_tokens_that_do_not_match_the_images_are_refused() -> None:
    sample = {"source_id": 0, "input_ids": np.arange(30, dtype=np.int32), "loss_mask": np.ones(30, np.uint8),
              "image": _png(0), "extra_images": _png(1),
              "image_layout": {"offsets": [2, 9], "extra_sizes": [len(_png(1))]}}
    batch = collator(False)([sample])
    batch["has_image"][0, 1] = False  # two images' tokens, one image's pixels
    with pytest.raises(ValueError, match="32 image tokens for 1 images of 16 visual tokens each"):
        tiny_model()(batch)


@pytest.mark.slow  # two 3-batch `mixture train` runs of the tiny model: about a minute on 2 cores
def test_training_runs_on_several_image_conversations_packed_or_not(study: dict) -> None:
    """Composer's trainer on the multi-image schedule: unpacked in microbatches of one row (the 5D pixels are
    split with their rows) and packed give the same losses and counts; the export loads and holds the weights."""
    from transformers import LlavaForConditionalGeneration

    from trainer.run import train

    root = study["root"]
    runs = {}
    for name, data, extra in (("plain", {"packing": False}, {"microbatch_size": 1}), ("packed", {}, {})):
        config = {"schedule": str(study["schedule"]), "run_dir": str(root / name), "seed": 3,
                  "model": {"lm": {"preset": "tiny"}, "vision": {"preset": "tiny"}}, "optimizer": {"lr": 1e-3},
                  "loggers": {"console": False}, "data": data, **extra}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        runs[name] = train(root / f"{name}.yaml")
    lines = {name: [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()
                    if "loss/train" in x] for name in runs}
    assert len(lines["plain"]) == 3 and all(np.isfinite(m["loss/train"]) for m in lines["plain"])
    assert [m["loss/train"] for m in lines["packed"]] == pytest.approx([m["loss/train"] for m in lines["plain"]],
                                                                        rel=1e-4)
    assert [m["tokens/train/chat"] for m in lines["packed"]] == [m["tokens/train/chat"] for m in lines["plain"]]
    hf = LlavaForConditionalGeneration.from_pretrained(runs["packed"].export_dir)
    assert hf.config.image_token_id == VOCAB.image_token_id


def test_feature_norm_reads_every_image_of_a_sample(study: dict) -> None:
    """The standardisation's statistics come from all images of the first samples, a sample's second and
    third images included, in order, up to the number asked for."""
    from types import SimpleNamespace

    from streaming import LocalDataset

    from streaming_data.instruction import sample_images
    from trainer.features import fit_feature_norm

    dataset = LocalDataset(local=str(study["data"]))
    expected = [image for i in range(len(dataset)) for image, _ in sample_images(dataset[i])][:7]
    assert len(sample_images(dataset[0])) == 2  # record 0 has two images: the first sample gives both
    read: list[bytes] = []

    def pixels(data: bytes) -> np.ndarray:
        read.append(data)
        return collator(False).pixels(data)

    torch.manual_seed(5)
    model = VLM(build_hf_model(ModelConfig(feature_norm="channel"), VOCAB, SEQ), 1, feature_norm=True)
    schedule = SimpleNamespace(sources=[SimpleNamespace(kind="instruction", location=str(study["data"]))])
    assert fit_feature_norm(model, schedule, pixels, 7) == 7
    assert read == expected
    torch.manual_seed(5)  # the same random encoder
    again = VLM(build_hf_model(ModelConfig(feature_norm="channel"), VOCAB, SEQ), 1, feature_norm=True)
    set_feature_norm(again.core, torch.from_numpy(np.stack([collator(False).pixels(b) for b in expected])))
    assert torch.equal(model.core.feature_mean, again.core.feature_mean)
