"""The baselines a score is read against: the answer prior (VQA) and the uniform guess (held-out loss).

- **Answer prior**: the VQA accuracy of answering every question with its kind's most common answer,
  without looking at the image. The kind of an evaluation question is its row's ``kind`` (one kind for a
  file without it). Where the answers come from is the caller's: the trainer counts the human answers of
  the evaluation file itself (nothing else is known to every run), which is the most a model that ignores
  the image could reach on that file; the demo counts the answers of its fine-tuning conversations
  (:func:`trainer.demo.measure.answer_prior`: what such a model can learn) and gives that prior to its
  comparison report, so its report and summary.json show one number. Ties: the answer seen first.
- **Uniform guess**: ``ln(V)`` nats per token, the loss of spreading probability evenly over the ``V``
  entries of the tokenizer.

The trainer records both in ``results.json`` (:class:`mixture.run_dir.Baseline`), keyed by the score they
belong to; ``mixture compare`` draws them next to the scores. Pure Python (no torch).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mixture.run_dir import Baseline
from trainer.evaluation.scoring import mean_se
from trainer.vqa_score import normalize_answer, vqa_accuracy

ANSWER_PRIOR, UNIFORM_GUESS = "answer prior", "uniform guess"


def uniform_loss(vocab_size: int) -> float:
    """ln(vocabulary size): the mean loss of a uniform guess over the tokenizer's entries."""
    return math.log(vocab_size)


def most_common_answers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each kind's most common answer over ``(kind, answer)`` pairs (ties: the answer seen first)."""
    counts: dict[str, Counter[str]] = {}
    for kind, answer in pairs:
        counts.setdefault(kind, Counter())[answer] += 1
    return {kind: counter.most_common(1)[0][0] for kind, counter in counts.items()}


def row_kind(row: Mapping[str, Any]) -> str:
    """The kind of an evaluation question (``""`` for a row without one)."""
    return str(row.get("kind") or "")


def answer_prior(rows: Sequence[Mapping[str, Any]], answers: Mapping[str, str]) -> list[float]:
    """Per-question VQA accuracy of answering each question's kind's answer in ``answers``."""
    return [vqa_accuracy(answers.get(row_kind(row), ""), list(row["answers"])) for row in rows]


def eval_answers(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each kind's most common human answer in an evaluation file's rows, counted as they are scored (VQA's
    normalisation: "Yes", "yes." and "yes" are one answer)."""
    return most_common_answers((row_kind(row), normalize_answer(str(a))) for row in rows for a in row["answers"])


def prior_baseline(scores: Sequence[float], answers_from: str) -> Baseline:
    """The answer prior as a :class:`Baseline`: the mean of its per-question ``scores`` ± their standard error."""
    value, se = mean_se(scores)
    return Baseline(value, se, ANSWER_PRIOR, f"each question kind's most common answer in {answers_from} "
                                             f"({len(scores):,} questions)")


def run_baselines(vqa_rows: Sequence[Mapping[str, Any]] | None, loss_keys: Iterable[str],
                  vocab_size: int) -> dict[str, Baseline]:
    """The baselines a run records: the answer prior of its VQA file (from that file's answers) under
    ``eval/vqa/accuracy``, and the uniform guess under every held-out loss key."""
    out: dict[str, Baseline] = {}
    if vqa_rows:
        out["eval/vqa/accuracy"] = prior_baseline(answer_prior(vqa_rows, eval_answers(vqa_rows)),
                                                  "the evaluation file")
    for key in loss_keys:
        out[key] = Baseline(uniform_loss(vocab_size), 0.0, UNIFORM_GUESS,
                            f"ln({vocab_size:,}): equal odds for every tokenizer entry")
    return out
