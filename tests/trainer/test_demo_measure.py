"""The demo's measurement pieces (trainer.demo.measure) and the sweep's resume note, on small inputs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from trainer.demo import scenes
from trainer.demo.measure import _derangement, answer_prior, mean_se, question_kind, training_answers
from trainer.demo.summary import VariantResult
from trainer.sweep.execute import _start_note
from trainer.sweep.records import SweepRun


@given(st.integers(0, 50), st.sampled_from(["train", "heldout"]), st.integers(0, 10_000))
def test_question_kind_reads_every_generated_question(seed: int, split: str, index: int) -> None:
    scene = scenes.make_scene(seed, split, index)
    for question in scenes.questions(scene, seed, split, index, len(scenes.QUESTION_KINDS)):
        assert question_kind(question.question) == question.kind


def test_question_kind_refuses_other_questions() -> None:
    with pytest.raises(ValueError, match="not a demo question"):
        question_kind("Why is the sky blue?")


def _conversation(*pairs: tuple[str, str]) -> dict:
    turns = []
    for k, (question, answer) in enumerate(pairs):
        turns += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + question},
                  {"from": "gpt", "value": answer}]
    return {"id": "x", "image": "scenes/train/000000.png", "conversations": turns}


def test_answer_prior_answers_each_kinds_most_common_training_answer(tmp_path: Path) -> None:
    records = [_conversation(("How many shapes are there?", "2"), ("What color is the circle?", "red")),
               _conversation(("How many shapes are there?", "2"), ("What color is the square?", "blue")),
               _conversation(("How many shapes are there?", "3"), ("What color is the square?", "blue"))]
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps(records))
    assert training_answers(path)["count"] == {"2": 2, "3": 1}
    rows = [{"kind": "count", "answers": scenes.vqa_answers("2")},   # "2" right (synonym "two" too)
            {"kind": "count", "answers": scenes.vqa_answers("1")},
            {"kind": "color", "answers": scenes.vqa_answers("blue")},
            {"kind": "shape", "answers": scenes.vqa_answers("circle")}]  # a kind never trained: no answer
    assert answer_prior(path, rows) == [1.0, 0.0, 1.0, 0.0]


@given(st.integers(1, 300))
def test_derangement_moves_every_image(n: int) -> None:
    order = _derangement(n)
    assert sorted(order) == list(range(n))
    assert n == 1 or all(i != j for i, j in enumerate(order))


def test_mean_se() -> None:
    assert mean_se([1.0, 0.0, 1.0, 0.0]) == pytest.approx((0.5, math.sqrt(1 / 3 / 4)))
    assert mean_se([0.25]) == (0.25, 0.0)
    assert all(math.isnan(x) for x in mean_se([]))


def _run(tmp_path: Path, after: str | None = None) -> SweepRun:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    config = run_dir / "run.yaml"
    config.write_text(yaml.safe_dump({"checkpoint": {"save_at": [10]}}))
    return SweepRun("r", str(config), str(run_dir), 100 if after else 0, 200, after,
                    None, ("r",), "0" * 32)


def test_start_note_says_which_checkpoint_a_run_resumes_from(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert _start_note(run, 0) == "from scratch"
    assert _start_note(run, 37) == "from scratch (it reached batch 37 before, with no checkpoint saved)"
    folder = Path(run.run_dir) / "checkpoints"
    (folder / "ba40-rank0.pt").write_bytes(b"")
    os.symlink("ba40-rank0.pt", folder / "latest-rank0.pt")
    assert _start_note(run, 57) == "resuming from its checkpoint at batch 40; batches 41-57 are trained again"
    assert _start_note(run, 41) == "resuming from its checkpoint at batch 40; batch 41 is trained again"
    assert _start_note(run, 40) == "resuming from its checkpoint at batch 40"


def test_start_note_of_a_branch_without_its_own_checkpoint(tmp_path: Path) -> None:
    run = _run(tmp_path, after="trunk")
    assert _start_note(run, 0) == "from trunk at batch 100"


def test_progress_line_names_the_run_batch_speed_and_loss(tmp_path: Path) -> None:
    from trainer.demo.progress import Progress
    from trainer.sweep.records import SweepFile, VariantEntry, write_sweep

    run = _run(tmp_path)
    variant = VariantEntry({"intro": "0%"}, "r", run.run_dir, 200, True, None)
    write_sweep(tmp_path, SweepFile("s", "m.yaml", "b.yaml", (run,), {"r": variant}, {}))
    metrics = Path(run.run_dir) / "metrics.jsonl"
    metrics.write_text(json.dumps({"batch": 3, "loss/train": 4.25}) + "\n")
    progress = Progress(tmp_path, print)
    assert progress.line() == "r: batch 3/200, loss 4.250"
    with metrics.open("a") as handle:  # an evaluation line last: the training line before it counts
        handle.write(json.dumps({"batch": 7, "loss/train": 3.5}) + "\n" + json.dumps({"batch": 7, "eval/x": 1}) + "\n")
    line = progress.line()
    assert line is not None and line.startswith("r: batch 7/200, ") and " s/batch, run ETA " in line
    assert line.endswith("loss 3.500")


def _variant(percent: int, correct: int, questions: int = 100) -> VariantResult:
    losses = {"caption_loss": 1.0, "caption_loss_shuffled_images": 1.02, "text_loss": 6.0}
    vqa = tuple([1.0] * correct + [0.0] * (questions - correct))
    return VariantResult(percent, 100 + percent, vqa, (correct / questions,), losses, losses)


def test_findings_set_every_earlier_point_against_the_last() -> None:
    """The best point alone beating 100% is not the paper's shape: the other points are named with their SE."""
    from trainer.demo.summary import DemoResult, findings

    variants = [_variant(0, 48), _variant(40, 31), _variant(80, 33), _variant(100, 37)]
    result = DemoResult(Path("out"), Path("out/report.html"), variants, [0.0] * 100, math.log(4097), [17], 100)
    shows = findings(result)[0]
    assert "images at 0% beat 100% by 0.110" in shows
    se = math.sqrt(0.31 * 0.69 / 99 + 0.37 * 0.63 / 99)  # the two means' standard errors, combined
    assert f"against 100%, the other points: 40%: -0.060 ± {se:.3f}, 80%: -0.040 ±" in shows
    alone = findings(DemoResult(Path("out"), Path("r"), [_variant(0, 48), _variant(100, 37)], [0.0] * 100,
                                math.log(4097), [17], 100))[0]
    assert "the other points" not in alone


def test_findings_say_what_finetuning_did_to_the_text() -> None:
    from trainer.demo.summary import DemoResult, findings

    def variant(percent: int, before: float, after: float) -> VariantResult:
        losses = {"caption_loss": 1.0, "caption_loss_shuffled_images": 1.02}
        return VariantResult(percent, 100, (1.0, 0.0), (0.5,), {**losses, "text_loss": before},
                             {**losses, "text_loss": after})

    result = DemoResult(Path("out"), Path("r"), [variant(0, 6.5, 6.25), variant(100, 5.75, 10.5)], [0.0, 0.0],
                        math.log(4097), [17], 2)
    assert ("Fine-tuning moved held-out text loss by -0.25 to +4.75 nats/token (before 5.75-6.50, after "
            "6.25-10.50; a uniform guess 8.32).") in findings(result)[0]


def test_several_seeds_are_shown_one_by_one(tmp_path: Path) -> None:
    """With --seeds 2 the printed table and the figure give each seed's VQA beside the mean."""
    from trainer.demo.summary import DemoResult, figure, summary

    def variant(percent: int, scores: tuple[float, float]) -> VariantResult:
        losses = {"caption_loss": 1.0, "caption_loss_shuffled_images": 1.02, "text_loss": 6.0}
        return VariantResult(percent, 100, (1.0, 0.0), scores, losses, losses)

    result = DemoResult(tmp_path, tmp_path / "r.html", [variant(0, (0.25, 0.75)), variant(100, (0.5, 0.5))],
                        [0.0, 0.0], math.log(4097), [17, 18], 2)
    printed = summary(result)
    assert "VQA per seed" in printed and "0.250 0.750" in printed and "0.500 0.500" in printed
    assert "the seeds' VQA differ by up to 0.500 (at 0%)" in printed
    figure(result, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
