"""Instruction samples with several images: where each image's tokens go, per-sample drop reasons for
placeholders that do not match the images, the budget price (text + images x visual tokens) through the
compiler's token-unit mix, ``mixture explain`` and ``mixture stats``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from ingest_helpers import bpe_dir, make_image, read_mds  # noqa: F401 (fixture)

from mixture.cli import main
from streaming_data.instruction import render, sample_images
from streaming_data.tokenizer import load_tokenizer

TWO = {"id": "two", "image": ["a.png", "b.png"], "conversations": [
    {"from": "human", "value": "<image>\nLeft one. <image>\nRight one. Same colour?"},
    {"from": "gpt", "value": "No, they differ."}]}
THREE = {"id": "three", "image": ["a.png", "b.png", "c.png"], "conversations": [
    {"from": "human", "value": "First <image> then <image>"}, {"from": "gpt", "value": "seen"},
    {"from": "human", "value": "and <image>\nnow?"}, {"from": "gpt", "value": "also"}]}
ONE = {"id": "one", "image": "c.png", "conversations": [
    {"from": "human", "value": "What is <image>\nthis?"}, {"from": "gpt", "value": "noise"}]}
ONE_IN_A_LIST = {"id": "one-list", "image": ["a.png"], "conversations": [
    {"from": "human", "value": "Describe."}, {"from": "gpt", "value": "noise"}]}
TEXT = {"id": "text", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}
BROKEN = {  # each dropped for the reason named by its id
    "images_exceed_placeholders": {"image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "<image> only one placeholder"}, {"from": "gpt", "value": "z"}]},
    "placeholders_exceed_images": {"image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "<image><image><image>"}, {"from": "gpt", "value": "z"}]},
    "placeholders_exceed_images#1": {"image": "a.png", "conversations": [
        {"from": "human", "value": "<image> and <image>"}, {"from": "gpt", "value": "z"}]},
    "placeholders_exceed_images#0": {"conversations": [
        {"from": "human", "value": "<image> without an image"}, {"from": "gpt", "value": "z"}]},
    "missing_image": {"image": ["a.png", "gone.png"], "conversations": [
        {"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "z"}]},
    "bad_image_entry": {"image": ["a.png", 7], "conversations": [
        {"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "z"}]},
}
VT = 16


def _write(tmp_path: Path, records: list[dict]) -> Path:
    images = {"a.png": make_image(12, 10, "PNG", seed=1), "b.png": make_image(14, 8, "PNG", seed=2),
              "c.png": make_image(9, 9, "PNG", seed=3)}
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "chat.json").write_text(json.dumps(records))
    return tmp_path / "chat.json"


def _ingest(tmp_path: Path, records: list[dict], *extra: str) -> str:
    out = str(tmp_path / "mds")
    assert main(["ingest", "instruction", str(_write(tmp_path, records)), "--image-root", str(tmp_path), "-o", out,
                 "--visual-tokens", str(VT), "--no-progress", *extra]) == 0
    return out


def _text(ids: np.ndarray) -> bytes:
    return bytes(int(i) for i in ids if i < 256)


def test_each_placeholder_marks_its_image_in_order(tmp_path: Path) -> None:
    out = _ingest(tmp_path, [TWO, THREE, ONE, ONE_IN_A_LIST, TEXT])
    two, three, one, one_list, text = read_mds(out)
    files = {name: (tmp_path / name).read_bytes() for name in ("a.png", "b.png", "c.png")}
    placed = sample_images(two)
    assert [data for data, _ in placed] == [files["a.png"], files["b.png"]] and two["num_images"] == 2
    ids = two["input_ids"]
    (a, _), (b, _) = placed[0], placed[1]
    offsets = [offset for _, offset in placed]
    # Each placeholder (and the newline after it) is replaced by its image: the text splits exactly there.
    assert _text(ids[:offsets[0]]) == b"User: " and _text(ids[offsets[0]:offsets[1]]) == b"Left one. "
    assert _text(ids[offsets[1]:]).startswith(b"Right one. Same colour?\nAssistant: No, they differ.")
    assert [o for _, o in sample_images(three)] == [len(b"User: First "), len(b"User: First  then "),
                                                     len(b"User: First  then \nAssistant: seen") + 1 + len(
                                                         b"User: and ")]
    assert [d for d, _ in sample_images(three)] == [files["a.png"], files["b.png"], files["c.png"]]
    # One image keeps the single-image layout: tokens first, placeholder removed, the same text as before.
    assert sample_images(one) == [(files["c.png"], 0)] and _text(one["input_ids"]).startswith(b"User: What is this?")
    assert sample_images(one_list) == [(files["a.png"], 0)] and one_list["num_images"] == 1
    assert (one["width"], one["height"]) == (9, 9) and (two["width"], two["height"]) == (12, 10)
    assert sample_images(text) == [] and text["num_images"] == 0
    # The answers (and their EOS) carry the loss, whatever images sit between the turns.
    trained = _text(three["input_ids"][three["loss_mask"] > 0])
    assert trained == b"seenalso" and int((three["loss_mask"] > 0).sum()) == len(b"seenalso") + 2


def test_placeholders_that_do_not_match_the_images_are_dropped_by_reason(tmp_path: Path) -> None:
    out = _ingest(tmp_path, [TWO, *BROKEN.values(), TEXT])
    assert len(read_mds(out)) == 2
    meta = pq.read_table(f"{out}/samples.parquet").schema.metadata
    expected: dict[str, int] = {}
    for key in BROKEN:
        expected[key.split("#")[0]] = expected.get(key.split("#")[0], 0) + 1
    assert json.loads(meta[b"mixture:dropped"]) == expected


def test_bpe_pieces_split_at_the_placeholders(tmp_path: Path, bpe_dir: str) -> None:  # noqa: F811
    """A BPE never merges across an image: each text piece is tokenized on its own (as the exported
    processor, which splits its input at the <image> special token)."""
    out = _ingest(tmp_path, [TWO], "--tokenizer", bpe_dir)
    (sample,) = read_mds(out)
    tok = load_tokenizer(bpe_dir)
    rendered = render(TWO["conversations"], 2)
    assert rendered.pieces == ["User: ", "Left one. ", "Right one. Same colour?\n", "Assistant: ",
                               "No, they differ."] and rendered.images == (1, 2)
    pieces = tok.encode_batch(rendered.pieces)
    offsets = [o for _, o in sample_images(sample)]
    assert offsets == [len(pieces[0]), len(pieces[0]) + len(pieces[1])]
    np.testing.assert_array_equal(sample["input_ids"], np.concatenate([*pieces, [tok.eos_id]]))


def test_max_tokens_drops_the_images_past_the_cut(tmp_path: Path) -> None:
    answer_first = {"id": "cut", "image": ["a.png", "b.png"], "conversations": [
        {"from": "gpt", "value": "An answer long enough."},
        {"from": "human", "value": "<image> <image>"}, {"from": "gpt", "value": "late"}]}
    first = len(b"Assistant: An answer long enough.") + 1 + len(b"User: ")
    out = _ingest(tmp_path, [answer_first], "--max-tokens", str(first + 1))  # the second image is at first + 1
    (sample,) = read_mds(out)
    assert len(sample["input_ids"]) == first + 1 and [o for _, o in sample_images(sample)] == [first]
    assert sample["num_images"] == 1
    table = pq.read_table(f"{out}/samples.parquet")
    assert json.loads(table.schema.metadata[b"mixture:stats"]) == {"truncated": 1, "images_cut": 1}
    assert table.to_pylist()[0]["tokens"] == first + 1 + VT


@pytest.mark.parametrize("visual", [VT, 100])
def test_price_is_text_plus_images_times_visual_tokens_in_compile_explain_and_stats(tmp_path: Path, visual: int,
                                                                                    capsys: pytest.CaptureFixture
                                                                                    ) -> None:
    records = [dict(r, id=f"{r['id']}{i}") for i in range(6) for r in (TWO, THREE, ONE, TEXT)]
    out = _ingest(tmp_path, records)
    rows = pq.read_table(f"{out}/samples.parquet").to_pylist()
    assert [r["num_images"] for r in rows[:4]] == [2, 3, 1, 0]
    assert all(r["tokens"] == r["text_tokens"] + VT * r["num_images"] for r in rows)
    if visual == VT:  # `mixture index` reads the shards back to the same rows
        assert main(["index", out, "--visual-tokens", str(VT), "--overwrite"]) == 0
        again = pq.read_table(f"{out}/samples.parquet")
        assert again.select(["tokens", "text_tokens", "num_images"]).to_pylist() == [
            {k: r[k] for k in ("tokens", "text_tokens", "num_images")} for r in rows]
        assert again.schema.metadata[b"mixture:kind"] == b"instruction"
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"text": "words " * 30}) + "\n" for _ in range(40)))
    assert main(["ingest", "text", str(tmp_path / "text.jsonl"), "-o", str(tmp_path / "text"), "--seq-len", "32",
                 "--no-progress"]) == 0
    spec = {"name": "multi", "seed": 1, "run": {"seq_len": 512, "global_batch_size": 4},
            "sources": {"text": {"kind": "text", "location": str(tmp_path / "text")},
                        "chat": {"kind": "instruction", "location": out, "visual_tokens_per_image": visual}},
            "phases": [{"name": "mix", "duration": "6ba", "mix": {"text": 0.5, "chat": 0.5}, "unit": "tokens"}]}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(spec))
    assert main(["compile", str(tmp_path / "mix.yaml"), "-o", str(tmp_path / "sched")]) == 0
    from mixture.schedule import load_schedule

    schedule = load_schedule(tmp_path / "sched")
    src, samples = schedule.take(0, len(schedule))
    chat = schedule.source_names.index("chat")
    priced = schedule.tokens(src, samples)
    expected = np.array([rows[s]["text_tokens"] + visual * rows[s]["num_images"] for s in samples[src == chat]])
    np.testing.assert_array_equal(priced[src == chat], expected)
    assert schedule.batch_tokens()[-1] == int(priced.sum())
    capsys.readouterr()
    assert main(["explain", str(tmp_path / "sched"), "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    explained = explained[0]["rows"] if isinstance(explained, list) else explained["rows"]
    (row,) = [r for r in explained if r["source"] == "chat"]
    assert row["tokens"] == int(expected.sum()) and row["samples"] == int((src == chat).sum())
    # The token-unit mix balances budget tokens, images included: each source within one sample of half.
    text_tokens = int(priced[src != chat].sum())
    assert abs(int(expected.sum()) - text_tokens) <= 2 * max(int(expected.max()), 32)
    from analysis.stats import source_stats

    images = source_stats([out])["sources"][0]["distributions"]["num_images"]
    assert (images["count"], images["sum"], images["min"], images["max"]) == (24, 36, 0, 3)
    hist = dict(zip(images["hist"]["edges"], images["hist"]["counts"]))
    assert [hist[float(k)] for k in range(4)] == [6, 6, 6, 6]
