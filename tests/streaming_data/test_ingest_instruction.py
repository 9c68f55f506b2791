"""Instruction ingest: loss masks cover exactly the assistant turns; images; drops; round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from ingest_helpers import bpe_dir, make_image, read_mds  # noqa: F401 (fixture)

from mixture.cli import main
from streaming_data.instruction import iter_assistant_spans
from streaming_data.tokenizer import load_tokenizer


def _records() -> list[dict]:
    return [
        {"id": "a", "image": "img/a.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "A noisy square."},
            {"from": "human", "value": "Colours?"}, {"from": "gpt", "value": "Many, naïvely random."}]},
        {"id": "b", "conversations": [
            {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello."}]},
        {"id": "c", "image": "img/missing.jpg", "conversations": [
            {"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "y"}]},
        {"id": "d", "conversations": [{"from": "human", "value": "only a question"}]},
        {"id": "e", "image": ["img/a.jpg", "img/a.jpg"], "conversations": [{"from": "gpt", "value": "z"}]},
    ]


def test_loss_mask_covers_exactly_the_assistant_turns(tmp_path: Path, bpe_dir: str) -> None:  # noqa: F811
    (tmp_path / "img").mkdir()
    image = make_image(20, 10)
    (tmp_path / "img" / "a.jpg").write_bytes(image)
    (tmp_path / "llava.json").write_text(json.dumps(_records()))
    out = str(tmp_path / "mds")
    assert main(["ingest", "instruction", str(tmp_path / "llava.json"), "--image-root", str(tmp_path), "-o", out,
                 "--tokenizer", bpe_dir, "--no-progress"]) == 0
    samples = read_mds(out)
    tok = load_tokenizer(bpe_dir)
    assert len(samples) == 2
    for sample, record in zip(samples, _records()[:2]):
        answers = [t["value"] for t in record["conversations"] if t["from"] == "gpt"]
        spans = list(iter_assistant_spans(sample["loss_mask"]))
        assert len(spans) == len(answers)
        for (start, stop), answer in zip(spans, answers):
            expected = np.append(tok.encode_batch([answer])[0], tok.eos_id)
            np.testing.assert_array_equal(sample["input_ids"][start:stop], expected)
        assert len(sample["loss_mask"]) == len(sample["input_ids"])
    assert samples[0]["image"] == image and (samples[0]["width"], samples[0]["height"]) == (20, 10)
    assert samples[1]["image"] == b"" and samples[1]["num_images"] == 0
    table = pq.read_table(f"{out}/samples.parquet")
    rows = table.to_pylist()
    assert [r["loss_tokens"] for r in rows] == [int(s["loss_mask"].sum()) for s in samples]
    assert rows[0]["tokens"] == rows[0]["text_tokens"] + 729 and rows[1]["tokens"] == rows[1]["text_tokens"]
    assert [r["num_turns"] for r in rows] == [4, 3]
    assert json.loads(table.schema.metadata[b"mixture:dropped"]) == {
        "missing_image": 1, "no_assistant_turn": 1, "images_exceed_placeholders": 1}
    from tokenizers import Tokenizer

    decoded = Tokenizer.from_file(f"{bpe_dir}/tokenizer.json").decode(samples[0]["input_ids"].tolist())
    assert decoded.startswith("User: What is shown?\nAssistant: A noisy square.") and "<image>" not in decoded


def test_text_only_conversations_with_the_byte_tokenizer(tmp_path: Path) -> None:
    records = [r for r in _records() if r["id"] == "b"]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = str(tmp_path / "mds")
    assert main(["ingest", "instruction", str(tmp_path / "chat.jsonl"), "-o", out, "--no-progress"]) == 0
    (sample,) = read_mds(out)
    text = bytes(i for i in sample["input_ids"].tolist() if i < 256).decode()
    assert text == "System: Be brief.\nUser: Hi\nAssistant: Hello."
    trained = bytes(i for i, m in zip(sample["input_ids"].tolist(), sample["loss_mask"]) if m and i < 256)
    assert trained == b"Hello." and sample["input_ids"][-1] == 256 and sample["loss_mask"][-1] == 1


def test_max_tokens_cuts_and_drops_conversations_without_an_answer(tmp_path: Path) -> None:
    records = [{"id": "long", "conversations": [{"from": "human", "value": "q" * 50}, {"from": "gpt", "value": "a"}]},
               {"id": "short", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a" * 50}]}]
    (tmp_path / "chat.json").write_text(json.dumps(records))
    out = str(tmp_path / "mds")
    assert main(["ingest", "instruction", str(tmp_path / "chat.json"), "-o", out, "--max-tokens", "30",
                 "--no-progress"]) == 0
    (sample,) = read_mds(out)
    assert len(sample["input_ids"]) == len(sample["loss_mask"]) == 30 and sample["loss_mask"][-1] == 1
    meta = pq.read_table(f"{out}/samples.parquet").schema.metadata
    assert json.loads(meta[b"mixture:dropped"]) == {"no_answer_within_max_tokens": 1}
    assert json.loads(meta[b"mixture:stats"]) == {"truncated": 2}
