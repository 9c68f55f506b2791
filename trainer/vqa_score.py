"""Scoring of the in-training VQA set (``eval.vqa``: a JSONL of ``{image, question, answers}``), pure Python.

With ten or more human answers a prediction is scored exactly as the official VQA script scores it
(:func:`trainer.evaluation.answers.vqa_accuracy`). Generated data often has one answer, where the official
leave-one-annotator-out rule would score every prediction 0, so with fewer answers both sides are normalised
the official way and the score is ``min(1, matches / min(3, n))``.
"""

from __future__ import annotations

from trainer.evaluation.answers import normalize_answer
from trainer.evaluation.answers import vqa_accuracy as official_accuracy

__all__ = ["normalize_answer", "vqa_accuracy"]


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Accuracy of one prediction against the human answers (see the module docstring)."""
    if len(answers) >= 10:
        return official_accuracy(prediction, answers)
    pred = normalize_answer(prediction)
    matches = sum(normalize_answer(a) == pred for a in answers)
    return min(1.0, matches / min(3, max(len(answers), 1)))
