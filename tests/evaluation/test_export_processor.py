"""The export's processor tokenises as instruction ingest + the collator did in training: the generation
prompt (system and user turns, the image) exactly for the byte tokenizer and a BPE tokenizer, whole
conversations with answers exactly for the byte tokenizer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from streaming_data.instruction import render, tokenize  # noqa: E402
from streaming_data.tokenizer import load_tokenizer, train_bpe  # noqa: E402
from trainer.export import build_processor  # noqa: E402

CONVERSATION = [{"from": "system", "value": "Be brief."},
                {"from": "human", "value": "<image>\nWhat color is the square?"},
                {"from": "gpt", "value": "red"},
                {"from": "human", "value": "And the background?"},
                {"from": "gpt", "value": "white, mostly"}]


def _messages(conversation: list[dict]) -> list[dict]:
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    out = []
    for turn in conversation:
        text = turn["value"].replace("<image>\n", "")
        content = [{"type": "text", "text": text}]
        if "<image>" in turn["value"]:
            content.insert(0, {"type": "image"})
        out.append({"role": roles[turn["from"]], "content": content})
    return out


@pytest.fixture(params=["bytes", "bpe"])
def tokenizer_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "bytes":
        return "bytes"
    texts = ["What color is the square? The background is white, mostly red. Be brief."] * 40
    return train_bpe(texts, str(tmp_path / "bpe"), vocab_size=300)


def _trained(tokenizer: object, conversation: list[dict], generation: bool) -> list[int]:
    """What training saw: ingest's pieces tokenised one by one, the visual tokens first (the collator)."""
    if generation:  # the pieces up to and including "Assistant: "
        pieces = render([*conversation, {"from": "gpt", "value": ""}], num_images=1).pieces[:-1]
        ids = np.concatenate(tokenizer.encode_batch(pieces))
    else:
        rendered = render(conversation, num_images=1)
        ids, _ = tokenize(rendered, tokenizer.encode_batch(rendered.pieces), tokenizer.eos_id)
    return [tokenizer.vocab_size] * 16 + ids.astype(np.int64).tolist()


def test_processor_reproduces_the_training_tokens(tokenizer_spec: str) -> None:
    ours = load_tokenizer(tokenizer_spec)
    config = SimpleNamespace(image_token_id=ours.vocab_size, vision_feature_select_strategy="full",
                             vision_config=SimpleNamespace(image_size=32, patch_size=8))
    processor = build_processor(config, tokenizer_spec)
    image = Image.new("RGB", (50, 40))
    # The generation prompt (what `mixture eval` and any HF tool feed the model): exact for every tokenizer.
    prompt = processor.apply_chat_template(_messages(CONVERSATION[:2]), add_generation_prompt=True)
    got = processor(images=image, text=prompt, return_tensors="np")
    assert got["input_ids"][0].tolist() == _trained(ours, CONVERSATION[:2], generation=True)
    assert got["pixel_values"].shape == (1, 3, 32, 32)
    assert prompt.endswith("User: What color is the square?\nAssistant: ")
    if tokenizer_spec == "bytes":  # whole conversations too (a BPE merges " red" across ingest's piece boundary)
        full = processor.apply_chat_template(_messages(CONVERSATION))
        got = processor(images=image, text=full, return_tensors="np")
        assert got["input_ids"][0].tolist() == _trained(ours, CONVERSATION, generation=False)


TWO_IMAGES = [{"from": "human", "value": "<image>\nThe left square, and <image>\nthe right one: same color?"},
              {"from": "gpt", "value": "red"}]


def test_processor_puts_each_of_several_images_at_its_placeholder(tokenizer_spec: str) -> None:
    """Several images: the processor's <image> per image part, expanded, lands where the collator puts the
    image's tokens (each placeholder of ingest), for the byte tokenizer and a BPE alike."""
    from streaming_data.instruction import image_offsets

    ours = load_tokenizer(tokenizer_spec)
    config = SimpleNamespace(image_token_id=ours.vocab_size, vision_feature_select_strategy="full",
                             vision_config=SimpleNamespace(image_size=32, patch_size=8))
    processor = build_processor(config, tokenizer_spec)
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "The left square, and "},
        {"type": "image"}, {"type": "text", "text": "the right one: same color?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == "User: <image>The left square, and <image>the right one: same color?\nAssistant: "
    got = processor(images=[Image.new("RGB", (50, 40)), Image.new("RGB", (20, 30))], text=prompt, return_tensors="np")
    assert got["pixel_values"].shape == (2, 3, 32, 32)
    rendered = render([*TWO_IMAGES[:1], {"from": "gpt", "value": ""}], num_images=2)
    pieces = ours.encode_batch(rendered.pieces[:-1])  # up to and including "Assistant: "
    ids = np.concatenate(pieces).astype(np.int64).tolist()
    expected = list(ids)
    for k, offset in enumerate(image_offsets(rendered, pieces)):
        at = offset + k * 16
        expected[at:at] = [ours.vocab_size] * 16
    assert got["input_ids"][0].tolist() == expected
    one = processor.apply_chat_template(_messages(CONVERSATION[:2]), add_generation_prompt=True)
    assert one.startswith("<image>System: Be brief.\nUser: What color")  # one image: first, as before
