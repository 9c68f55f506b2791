"""The benchmarks' official metrics, with question-level standard errors and a no-image baseline.

=========  =====================================================================================
kind       metric
=========  =====================================================================================
vqav2      VQA accuracy: the prediction normalised (:mod:`.answers`), ``min(1, matches / 3)`` averaged
vizwiz     over the ten leave-one-annotator-out subsets of the human answers ("unanswerable" is an
           answer like any other); human answers punctuation-processed when they disagree.
textvqa    the same accuracy with TextVQA's processor applied to both sides.
gqa        exact match of the normalised prediction and the normalised answer.
pope       yes = positive: accuracy, precision, recall, F1, yes-ratio. The answer's first word decides
           when it is yes or no ("Yes, there is a dog." -> yes); otherwise POPE's own rule (its first
           sentence is "no" if it has the word no or not).
=========  =====================================================================================

Standard errors are over questions: the sample standard deviation of the per-question scores over
sqrt(n) for means, the binomial ``sqrt(p (1 - p) / m)`` for precision, recall and yes-ratio, and a
seeded bootstrap (1000 resamples) for F1. The baseline is what a model that ignores the image and the
question scores: the answer prior (the most frequent normalised human answer, given to every question)
for VQA-style benchmarks and GQA, and "always yes" for POPE.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainer.evaluation.answers import loo_accuracy, normalize_answer, punctuation_only

VQA_KINDS = ("vqav2", "textvqa", "vizwiz")
KINDS = (*VQA_KINDS, "gqa", "pope")
_BOOTSTRAP = 1000


def gold_answers(kind: str, answers: Sequence[str]) -> list[str]:
    """The human answers as the official script compares them with a normalised prediction."""
    if kind == "textvqa":
        return [normalize_answer(a, True) for a in answers]
    if kind == "gqa":
        return [normalize_answer(a) for a in answers]
    return [punctuation_only(a) for a in answers] if len(set(answers)) > 1 else list(answers)


def prediction_key(kind: str, prediction: str) -> str:
    """A prediction normalised for comparison with :func:`gold_answers`."""
    return normalize_answer(prediction, kind == "textvqa")


def pope_answer(text: str) -> str:
    """``yes`` or ``no`` read from a free-form answer (see the module docstring)."""
    words = normalize_answer(text).split()
    if words and words[0] in ("yes", "no"):
        return words[0]
    first = text.split(".")[0].replace(",", "")
    return "no" if {"no", "not", "No"} & set(first.split(" ")) else "yes"


def mean_se(scores: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and its standard error (0 for fewer than two scores)."""
    values = np.asarray(scores, np.float64)
    if len(values) == 0:
        return 0.0, 0.0
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def _proportion(hits: int, total: int) -> tuple[float, float]:
    if total == 0:
        return 0.0, 0.0
    p = hits / total
    return p, math.sqrt(p * (1 - p) / total)


def question_scores(kind: str, golds: Sequence[Sequence[str]], predictions: Sequence[str]) -> list[float]:
    """Per-question scores (VQA accuracy or exact match) of predictions against their human answers."""
    out = []
    for answers, prediction in zip(golds, predictions):
        gold = gold_answers(kind, answers)
        pred = prediction_key(kind, prediction)
        if kind == "gqa":
            out.append(float(pred in gold))
        else:
            out.append(loo_accuracy(gold.count(pred), len(gold)))
    return out


def answer_prior(kind: str, golds: Sequence[Sequence[str]]) -> str:
    """The most frequent normalised human answer (ties: the alphabetically first)."""
    counts = Counter(prediction_key(kind, a) for answers in golds for a in answers)
    if not counts:
        return ""
    top = max(counts.values())
    return min(a for a, c in counts.items() if c == top)


def score_answers(kind: str, golds: Sequence[Sequence[str]], predictions: Sequence[str]) -> tuple[dict[str, Any],
                                                                                                   list[float]]:
    """Metrics of a VQA-style or GQA benchmark and the per-question scores.

    Returns:
        ``{"accuracy", "accuracy_se", "n", "baseline": {"answer", "accuracy", "accuracy_se"}}`` and the
        per-question scores in the order given.
    """
    scores = question_scores(kind, golds, predictions)
    accuracy, se = mean_se(scores)
    prior = answer_prior(kind, golds)
    base, base_se = mean_se(question_scores(kind, golds, [prior] * len(golds)))
    return {"accuracy": accuracy, "accuracy_se": se, "n": len(scores),
            "baseline": {"answer": prior, "accuracy": base, "accuracy_se": base_se}}, scores


def _binary(labels: np.ndarray, said_yes: np.ndarray) -> dict[str, float]:
    tp = int((labels & said_yes).sum())
    precision, precision_se = _proportion(tp, int(said_yes.sum()))
    recall, recall_se = _proportion(tp, int(labels.sum()))
    accuracy, accuracy_se = _proportion(int((labels == said_yes).sum()), len(labels))
    yes_ratio, yes_ratio_se = _proportion(int(said_yes.sum()), len(labels))
    return {"accuracy": accuracy, "accuracy_se": accuracy_se, "precision": precision, "precision_se": precision_se,
            "recall": recall, "recall_se": recall_se, "f1": _f1(labels, said_yes), "yes_ratio": yes_ratio,
            "yes_ratio_se": yes_ratio_se, "n": len(labels)}


def _f1(labels: np.ndarray, said_yes: np.ndarray) -> float:
    tp = float((labels & said_yes).sum())
    denominator = float(labels.sum() + said_yes.sum())
    return 2 * tp / denominator if denominator else 0.0


def _f1_se(labels: np.ndarray, said_yes: np.ndarray) -> float:
    if len(labels) < 2:
        return 0.0
    rng = np.random.default_rng(zlib.crc32(b"pope-f1-bootstrap"))
    picks = rng.integers(0, len(labels), (_BOOTSTRAP, len(labels)))
    lab, yes = labels[picks], said_yes[picks]
    tp = (lab & yes).sum(1).astype(np.float64)
    den = (lab.sum(1) + yes.sum(1)).astype(np.float64)
    f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
    return float(f1.std(ddof=1))


def score_pope(labels: Sequence[str], predictions: Sequence[str]) -> tuple[dict[str, Any], list[float]]:
    """POPE metrics (yes = positive) with standard errors, the always-yes baseline, and per-question
    correctness (1.0 or 0.0)."""
    truth = np.array([str(x).strip().lower() == "yes" for x in labels], bool)
    said = np.array([pope_answer(p) == "yes" for p in predictions], bool)
    out: dict[str, Any] = _binary(truth, said)
    out["f1_se"] = _f1_se(truth, said)
    always = _binary(truth, np.ones_like(truth))
    out["baseline"] = {"answer": "yes", **{k: always[k] for k in ("accuracy", "accuracy_se", "f1")}}
    return out, [float(t == s) for t, s in zip(truth, said)]


def average(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The paper-style average: the mean of the benchmarks' accuracies (standard error assuming
    independent benchmarks)."""
    if not results:
        return {"accuracy": 0.0, "accuracy_se": 0.0, "benchmarks": []}
    accs = [float(r["accuracy"]) for r in results.values()]
    ses = [float(r.get("accuracy_se", 0.0)) for r in results.values()]
    return {"accuracy": sum(accs) / len(accs), "accuracy_se": math.sqrt(sum(s * s for s in ses)) / len(ses),
            "benchmarks": sorted(results)}
