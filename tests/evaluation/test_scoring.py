"""The official scorers against hand-computed values, one test per tricky case (torch-free)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.evaluation.answers import CONTRACTIONS, loo_accuracy, normalize_answer, vqa_accuracy
from trainer.evaluation.scoring import average, pope_answer, score_answers, score_pope


@pytest.mark.parametrize("text, expected", [
    ("Two", "2"), ("none", "0"), ("ten dogs", "10 dogs"), ("eleven", "eleven"),  # number words, up to ten
    ("A dog", "dog"), ("the Dog an apple", "dog apple"), ("Anthem", "anthem"),  # articles are whole words
    ("dont", "don't"), ("DONT know", "don't know"), ("couldnt've", "couldn't've"), ("couldntve", "couldntve"),
    ("somebody'd", "somebodyd"),  # the script's table maps this one backwards
    ("  Yes\tsir\n ", "yes sir"),  # whitespace
    ("red-white", "red white"),  # punctuation between words becomes a space ...
    ("red - white", "red white"),  # ... and is deleted when it touches a space
    ("hello ,world", "hello world"),  # the space-touching test sees the comma next to a space: deleted
    ("1,000", "1000"), ("1,000 red-white", "1000 redwhite"),  # a digit-comma-digit deletes all punctuation
    ("3.5", "3.5"), ("dog.", "dog"), ("u.s.a.", "usa"), ("2.", "2"),  # periods go unless a digit follows
    ("what?!", "what"), ("don't", "don't"),  # the apostrophe is not punctuation
    ("Yes, there is a dog.", "yes there is dog"),
])
def test_normalisation_hand_computed(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_only_32_periods_are_stripped() -> None:
    # the script passes re.UNICODE (32) as re.sub's count
    assert normalize_answer("a" + ".b" * 40) == "a" + "b" * 32 + ".b" * 8


def test_contraction_table_keys_are_the_scripts() -> None:
    assert len(CONTRACTIONS) == 118  # the script's 120 entries less its two that map a word to itself
    assert CONTRACTIONS["yall'd've"] == CONTRACTIONS["y'alld've"] == CONTRACTIONS["y'all'dve"] == "y'all'd've"
    assert "yalldve" not in CONTRACTIONS


def test_textvqa_tokenize_step() -> None:
    assert normalize_answer("Coca-Cola's, Inc?", True) == "coca cola 's inc"
    assert normalize_answer("Coca-Cola's, Inc?") == "coca cola's inc"


@pytest.mark.parametrize("matches, expected", [
    (0, 0.0), (1, 0.9 * (1 / 3)), (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10), (3, (3 * (2 / 3) + 7) / 10), (4, 1.0),
    (10, 1.0),
])
def test_partial_annotator_agreement(matches: int, expected: float) -> None:
    answers = ["red"] * matches + ["blue"] * (10 - matches)
    assert vqa_accuracy("Red.", answers) == pytest.approx(expected)
    assert loo_accuracy(matches, 10) == pytest.approx(expected)


def test_unanswerable_is_an_answer_like_any_other() -> None:
    answers = ["unanswerable"] * 6 + ["grey"] * 4
    assert vqa_accuracy("unanswerable", answers, style="vizwiz") == 1.0
    assert vqa_accuracy("grey", answers, style="vizwiz") == pytest.approx((4 * 1.0 + 6 * 1.0) / 10)
    assert vqa_accuracy("gray", answers, style="vizwiz") == 0.0


def test_human_answers_get_punctuation_only_when_they_disagree() -> None:
    # unanimous answers are compared as they are (not normalised) ...
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    # ... disagreeing ones are punctuation-processed but keep case and number words
    assert vqa_accuracy("red white", ["red-white"] * 9 + ["x"]) == 1.0
    assert vqa_accuracy("2", ["two"] * 9 + ["x"]) == 0.0
    # TextVQA normalises both sides fully
    assert vqa_accuracy("2", ["Two"] * 10, style="textvqa") == 1.0


@given(st.lists(st.sampled_from(["red", "blue", "Red.", "two", "2"]), min_size=1, max_size=12),
       st.sampled_from(["red", "blue", "2", "green"]))
def test_loo_formula_equals_the_explicit_subsets(answers: list[str], prediction: str) -> None:
    pred = normalize_answer(prediction)
    gold = [normalize_answer(a) for a in answers]
    explicit = [min(1.0, sum(g == pred for j, g in enumerate(gold) if j != i) / 3) for i in range(len(gold))]
    assert loo_accuracy(gold.count(pred), len(gold)) == pytest.approx(sum(explicit) / len(explicit))


@pytest.mark.parametrize("text, expected", [
    ("Yes, there is a dog.", "yes"), ("yes", "yes"), ("No.", "no"), ("NO, it is not", "no"),
    ("There is no dog in the image.", "no"), ("There is a dog.", "yes"), ("I do not see one", "no"),
    ("The dog is there. No cat.", "yes"),  # POPE's rule reads the first sentence only
])
def test_pope_reads_the_answer(text: str, expected: str) -> None:
    assert pope_answer(text) == expected


def test_pope_metrics_hand_computed() -> None:
    labels = ["yes", "yes", "yes", "no", "no"]
    preds = ["Yes, there is a dog.", "no", "yes", "Yes.", "No, there is not."]
    metrics, per_question = score_pope(labels, preds)
    # tp=2 fp=1 fn=1 tn=1
    assert per_question == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3) and metrics["yes_ratio"] == pytest.approx(3 / 5)
    assert metrics["accuracy_se"] == pytest.approx(math.sqrt(0.6 * 0.4 / 5))
    assert metrics["precision_se"] == pytest.approx(math.sqrt((2 / 3) * (1 / 3) / 3))
    assert metrics["f1_se"] > 0
    base = metrics["baseline"]  # always yes: accuracy 3/5, precision 3/5, recall 1
    assert base["accuracy"] == pytest.approx(0.6) and base["f1"] == pytest.approx(2 * 0.6 / 1.6)


def test_vqa_summary_standard_error_and_prior_baseline() -> None:
    golds = [["yes"] * 10, ["yes"] * 6 + ["no"] * 4, ["2"] * 10]
    metrics, scores = score_answers("vqav2", golds, ["yes", "no", "two"])
    assert scores == [1.0, pytest.approx(1.0), 1.0]  # 4 "no" of 10: every subset has >= 3
    assert metrics["accuracy"] == pytest.approx(1.0) and metrics["accuracy_se"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["baseline"]["answer"] == "yes"
    assert metrics["baseline"]["accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["baseline"]["accuracy_se"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))


def test_gqa_exact_match_after_normalisation() -> None:
    metrics, scores = score_answers("gqa", [["left"], ["the man"], ["no"]], ["Left.", "man", "yes"])
    assert scores == [1.0, 1.0, 0.0] and metrics["accuracy"] == pytest.approx(2 / 3)


def test_average_is_the_mean_of_the_benchmarks() -> None:
    avg = average({"a": {"accuracy": 0.5, "accuracy_se": 0.3}, "b": {"accuracy": 0.7, "accuracy_se": 0.4}})
    assert avg["accuracy"] == pytest.approx(0.6) and avg["accuracy_se"] == pytest.approx(0.25)
