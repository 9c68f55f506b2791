"""VQAv2-style answer scoring (pure Python: usable without torch).

Answers are normalised (case, punctuation, articles, number words to digits). With 10 human answers a
prediction scores the leave-one-out mean of ``min(1, matches / 3)``, as the VQAv2 evaluation does; with
fewer answers (generated data often has one) it scores ``min(1, matches / min(3, n))``.
"""

from __future__ import annotations

import re

_NUMBERS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$:.']")


def normalize_answer(text: str) -> str:
    """VQAv2-style answer normalisation."""
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQAv2 accuracy of one prediction against the human answers."""
    pred = normalize_answer(prediction)
    gold = [normalize_answer(a) for a in answers]
    if len(gold) >= 10:
        scores = [min(1.0, sum(g == pred for j, g in enumerate(gold) if j != i) / 3) for i in range(len(gold))]
        return sum(scores) / len(scores)
    return min(1.0, sum(g == pred for g in gold) / min(3, max(len(gold), 1)))
