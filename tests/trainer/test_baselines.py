"""The baselines runs record (trainer.baselines): the answer prior per question kind and the uniform guess."""

from __future__ import annotations

import math

import pytest

from trainer.baselines import answer_prior, eval_answers, most_common_answers, run_baselines, uniform_loss


def test_the_prior_answers_each_kinds_most_common_answer() -> None:
    rows = [{"kind": "count", "answers": ["2"] * 10}, {"kind": "count", "answers": ["3"] * 10},
            {"kind": "count", "answers": ["2"] * 9 + ["3"]}, {"kind": "color", "answers": ["red"] * 10},
            {"answers": ["yes"] * 3}]  # a row without a kind is of kind ""
    assert eval_answers(rows) == {"count": "2", "color": "red", "": "yes"}
    assert answer_prior(rows, eval_answers(rows)) == pytest.approx([1.0, 0.0, 1.0, 1.0, 1.0])
    assert answer_prior(rows, {"count": "3"}) == pytest.approx([0.0, 1.0, 0.3, 0.0, 0.0])  # unknown kind: ""
    assert most_common_answers([("k", "b"), ("k", "a"), ("k", "a"), ("k", "b")]) == {"k": "b"}  # tie: first seen


def test_the_prior_counts_answers_as_they_are_scored() -> None:
    """"Yes", "yes." and "YES" score as one answer, so they are one answer of the prior too (counted verbatim,
    "no" x2 would win over three spellings of yes)."""
    rows = [{"kind": "yn", "answers": ["Yes", "yes.", "YES", "no", "no"]}]
    assert eval_answers(rows) == {"yn": "yes"}
    assert answer_prior(rows, eval_answers(rows)) == pytest.approx([1.0])


def test_run_baselines_name_the_scores_they_belong_to() -> None:
    rows = [{"kind": "k", "answers": ["a"]}, {"kind": "k", "answers": ["a"]}, {"kind": "k", "answers": ["b"]}]
    found = run_baselines(rows, ["eval/loss/text", "eval/loss/images"], 4096)
    assert set(found) == {"eval/vqa/accuracy", "eval/loss/text", "eval/loss/images"}
    prior = found["eval/vqa/accuracy"]
    assert prior.value == pytest.approx(2 / 3) and prior.se == pytest.approx(math.sqrt(1 / 3 / 3))
    assert found["eval/loss/text"].value == pytest.approx(math.log(4096)) == uniform_loss(4096)
    assert run_baselines(None, [], 10) == {}
    assert "(3 questions)" in prior.what and "evaluation file" in prior.what
