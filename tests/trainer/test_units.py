"""Fast checks without Composer: the collator's sequences and loss masks, run-config errors, VQA scoring,
the schedule's LR as a Composer scheduler."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
from PIL import Image

from mixture.errors import MixtureError
from trainer.batch import IGNORE, Collator, Vocab
from trainer.config import load_run_config
from trainer.lr import ScheduleLR
from trainer.vqa_score import normalize_answer, vqa_accuracy

VOCAB = Vocab(text_vocab_size=257, eos_id=256)
IMG = VOCAB.image_token_id


def png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def collator(seq_len: int = 12) -> Collator:
    return Collator(["text", "image_caption", "instruction"], None, seq_len=seq_len, vocab=VOCAB,
                    visual_tokens=4, image_size=8)


def test_text_is_labelled_everywhere_and_padded_without_loss() -> None:
    batch = collator()([{"source_id": 0, "input_ids": np.arange(1, 8, dtype=np.int32)}])
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 4, 5, 6, 7] + [256] * 5
    assert batch["labels"][0].tolist() == [1, 2, 3, 4, 5, 6, 7] + [IGNORE] * 5
    assert batch["attention_mask"][0].tolist() == [1] * 7 + [0] * 5
    assert not batch["has_image"][0] and batch["pixels"].abs().sum() == 0


def test_caption_follows_unlabelled_visual_tokens_and_ends_with_eos() -> None:
    sample = {"source_id": 1, "caption_ids": np.array([10, 11, 12], np.int32), "image": png((255, 0, 0))}
    batch = collator()([sample])
    assert batch["input_ids"][0].tolist() == [IMG] * 4 + [10, 11, 12, 256] + [256] * 4
    assert batch["labels"][0].tolist() == [IGNORE] * 4 + [10, 11, 12, 256] + [IGNORE] * 4
    assert batch["has_image"][0] and batch["pixels"].shape == (1, 3, 8, 8)
    assert batch["pixels"][0, :, 3, 3].tolist() == [255, 0, 0]  # resized, RGB, channels first


def test_long_caption_is_cut_but_visual_tokens_never_are() -> None:
    sample = {"source_id": 1, "caption_ids": np.arange(100, 130, dtype=np.int32), "image": png((0, 0, 255))}
    ids = collator()([sample])["input_ids"][0].tolist()
    assert ids[:4] == [IMG] * 4 and ids[-1] == 256 and len(ids) == 12


def test_instruction_loss_only_on_assistant_tokens() -> None:
    ids = np.array([5, 6, 7, 8, 9, 256], np.int32)
    mask = np.array([0, 0, 0, 1, 1, 1], np.uint8)
    text_only = collator()([{"source_id": 2, "input_ids": ids, "loss_mask": mask, "image": b""}])
    assert text_only["labels"][0].tolist()[:6] == [IGNORE] * 3 + [8, 9, 256]
    assert not text_only["has_image"][0]
    with_image = collator()([{"source_id": 2, "input_ids": ids, "loss_mask": mask, "image": png((0, 255, 0))}])
    assert with_image["input_ids"][0].tolist()[:10] == [IMG] * 4 + ids.tolist()
    assert with_image["labels"][0].tolist()[:10] == [IGNORE] * 7 + [8, 9, 256]


def test_visual_tokens_must_fit_the_sequence() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        Collator(["text"], None, seq_len=4, vocab=VOCAB, visual_tokens=4, image_size=8)


def test_run_config_errors_are_located(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("schedule: s\nrun_dir: r\nmodel:\n  lm: {presett: tiny}\nprecision: fp64\nstop_at: 5 parsecs\n")
    with pytest.raises(MixtureError) as info:
        load_run_config(path)
    text = str(info.value)
    assert f"{path}:4:8: model.lm.presett: unknown key 'presett' (did you mean 'preset'?)" in text
    assert f"{path}:5:1: precision:" in text and "fp64" in text
    assert "unknown unit 'parsecs'" in text


def test_vqa_scoring_like_vqav2() -> None:
    assert normalize_answer("Two!") == "2" and normalize_answer("The red one.") == "red 1"
    assert vqa_accuracy("red", ["red"]) == 1.0 and vqa_accuracy("blue", ["red"]) == 0.0
    ten = ["red"] * 2 + ["maroon"] * 8
    # leave-one-out: the 2 "red" annotators see 1 other match (1/3), the 8 others see 2 (2/3)
    assert vqa_accuracy("red", ten) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_accuracy("maroon", ten) == 1.0


def test_schedule_lr_multiplier_follows_the_array() -> None:
    lr = np.array([0.5, 1.0, 2.0, 1.0, 0.0])
    sched = ScheduleLR(lr)
    state = lambda b: types.SimpleNamespace(timestamp=types.SimpleNamespace(batch=b))  # noqa: E731
    assert [sched(state(b)) * sched.base for b in range(6)] == [0.5, 1.0, 2.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        ScheduleLR(np.array([1.0, np.nan]))


def test_run_config_reference_is_up_to_date() -> None:
    from trainer import docsgen

    assert docsgen.DOC_PATH.read_text(encoding="utf-8") == docsgen.render(), (
        "docs/run_config.md is stale: run `.venv/bin/python -m trainer.docsgen > docs/run_config.md`")


def test_example_run_configs_are_valid() -> None:
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "runs").glob("*.yaml"))
    assert examples
    for path in examples:
        load_run_config(path)


def test_eval_text_says_what_is_missing(tmp_path) -> None:
    from trainer.text_eval import evaluate_text

    with pytest.raises(MixtureError, match="not an exported model"):
        evaluate_text(str(tmp_path), ["arc_easy"])
    (tmp_path / "language_model").mkdir()
    (tmp_path / "language_model" / "config.json").write_text("{}")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        with pytest.raises(MixtureError, match="lm-eval harness is not installed"):
            evaluate_text(str(tmp_path), ["arc_easy"])
