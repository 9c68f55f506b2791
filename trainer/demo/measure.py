"""The demo's measurements, taken from saved checkpoints after training: what the summary reports.

For each variant (and seed) two checkpoints are read: the one at the start of fine-tuning and the final
one. On them:

- **VQA accuracy per question** (VQAv2 scoring, greedy answers, the trainer's own prompt and generation),
  so that the mean comes with a question-level standard error;
- **caption loss with the right images and with shuffled images** (each held-out caption paired with
  another scene's image): the grounding control. A model that ignores the image scores the same on both;
- **held-out text loss** before and after fine-tuning (what fine-tuning on one-word answers costs).

The **answer prior** is the VQA accuracy of answering each question kind's most common answer in the
fine-tuning conversations (the training data): what a model that never looks at the image can reach.
Everything here runs in this process on one rank (the demo trains on one), without Composer.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.vqa_score import vqa_accuracy

# The question templates of trainer.demo.scenes, by kind (checked against every kind by the tests).
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("color", re.compile(r"^What color is ")), ("shape", re.compile(r"^What (shape is|is the shape of) ")),
    ("count", re.compile(r"^How many ")), ("position", re.compile(r"^Where is ")),
    ("size", re.compile(r" small or large\?$")), ("yes_no", re.compile(r"^Is there ")),
)
SHUFFLE_SEED = 12345  # the held-out images' derangement (fixed: every model sees the same pairs)


@dataclass(frozen=True)
class ModelScores:
    """One checkpoint's scores.

    Attributes:
        vqa: VQA accuracy of each question, in the VQA file's order (empty when not measured).
        caption_loss: Held-out caption loss, right images (mean nats per caption token).
        caption_loss_shuffled_images: The same captions with shuffled images.
        text_loss: Held-out text loss (mean nats per token).
    """

    vqa: tuple[float, ...]
    caption_loss: float
    caption_loss_shuffled_images: float
    text_loss: float


def mean_se(values: list[float] | tuple[float, ...]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n)); SE 0 for fewer than 2 values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def question_kind(question: str) -> str:
    """The kind (scenes.QUESTION_KINDS) of a demo question, from its wording.

    Raises:
        ValueError: Not a question the demo asks.
    """
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(question):
            return kind
    raise ValueError(f"not a demo question: {question!r}")


def training_answers(instruct_file: Path) -> dict[str, Counter[str]]:
    """Answer counts per question kind in the fine-tuning conversations (LLaVA JSON)."""
    counts: dict[str, Counter[str]] = {}
    for record in json.loads(instruct_file.read_text()):
        turns = record["conversations"]
        for human, gpt in zip(turns[::2], turns[1::2]):
            question = human["value"].replace("<image>", "").strip()
            counts.setdefault(question_kind(question), Counter())[gpt["value"].strip()] += 1
    return counts


def answer_prior(instruct_file: Path, vqa_rows: list[dict[str, Any]]) -> list[float]:
    """Per-question VQA accuracy of answering each kind's most common training answer (ties: first seen)."""
    from trainer.baselines import answer_prior as prior_scores

    counts = training_answers(instruct_file)
    return prior_scores(vqa_rows, {kind: c.most_common(1)[0][0] for kind, c in counts.items()})


def load_model(run_config: Path, checkpoint: Path, seq_len: int) -> tuple[Any, Any, dict[str, Any]]:
    """The VLM saved in a Composer checkpoint of a run, its tokenizer and the collator's arguments."""
    from streaming_data.tokenizer import load_tokenizer
    from trainer.batch import Vocab
    from trainer.config import load_run_config, resolve_path
    from trainer.model import VLM, build_hf_model, visual_tokens

    config, base = load_run_config(run_config)
    tokenizer = load_tokenizer(resolve_path(base, config.model.tokenizer) or "")
    vocab = Vocab(tokenizer.vocab_size, tokenizer.eos_id)
    hf = build_hf_model(config.model, vocab, seq_len)
    model = VLM(hf, 1, config.model.feature_norm == "channel")
    model.label_logits_only = True
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["model"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    collator_args = {"seq_len": seq_len, "vocab": vocab, "visual_tokens": visual_tokens(hf),
                     "image_size": hf.config.vision_config.image_size}
    return model.eval(), tokenizer, collator_args


def _mean_loss(model: Any, collator: Any, samples: list[dict[str, Any]], batch_size: int) -> float:
    """Mean token loss over samples (the collator's labels: caption tokens, or every text token)."""
    total, count = 0.0, 0
    for start in range(0, len(samples), batch_size):
        batch = collator([{**s, "source_id": 0} for s in samples[start:start + batch_size]])
        losses, mask = model.token_losses(model(batch), batch["labels"])
        total, count = total + float(losses.sum()), count + int(mask.sum())
    return total / max(count, 1)


def _derangement(n: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (every caption gets another image)."""
    generator = torch.Generator().manual_seed(SHUFFLE_SEED)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[(order.index(i) + 1) % n] for i in range(n)] if n > 1 else list(range(n))


def _samples(location: Path, num: int) -> list[dict[str, Any]]:
    from streaming import LocalDataset

    dataset = LocalDataset(local=str(location))
    return [dataset[i] for i in range(min(num, len(dataset)))]


@torch.no_grad()
def score(model: Any, tokenizer: Any, collator_args: dict[str, Any], data: Any, *,  # noqa: ANN401 - DemoData
          questions: int, samples: int, batch_size: int = 32) -> ModelScores:
    """Every measurement of one model on the demo's held-out data (``questions`` = 0: no VQA)."""
    from trainer.batch import Collator

    text = Collator(["text"], None, **collator_args)
    captions = Collator(["image_caption"], None, **collator_args)
    text_loss = _mean_loss(model, text, _samples(data.heldout["text"], samples), batch_size)
    pairs = _samples(data.heldout["images"], samples)
    right = _mean_loss(model, captions, pairs, batch_size)
    moved = [{**s, "image": pairs[j]["image"]} for s, j in zip(pairs, _derangement(len(pairs)))]
    shuffled = _mean_loss(model, captions, moved, batch_size)
    return ModelScores(tuple(vqa_scores(model, tokenizer, collator_args, data.vqa, questions, batch_size)),
                       right, shuffled, text_loss)


def vqa_rows(vqa_file: Path, questions: int) -> list[dict[str, Any]]:
    """The first ``questions`` rows of the held-out VQA file."""
    rows = [json.loads(line) for line in vqa_file.read_text().splitlines() if line.strip()]
    return rows[:questions]


def vqa_scores(model: Any, tokenizer: Any, collator_args: dict[str, Any], vqa_file: Path, questions: int,
               batch_size: int) -> list[float]:
    """VQA accuracy of each of the first ``questions`` questions (the trainer's prompt and greedy decoding)."""
    if questions <= 0:
        return []
    from trainer.batch import Collator
    from trainer.evaluate import VQASet

    vqa = VQASet(str(vqa_file), questions, 3, tokenizer, Collator([], None, **collator_args))
    found: list[float] = []
    for start in range(0, len(vqa.rows), batch_size):
        rows = vqa.rows[start:start + batch_size]
        found += [vqa_accuracy(a, r["answers"]) for a, r in zip(vqa.generate(model, rows), rows)]
    return found
