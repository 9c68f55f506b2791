"""Benchmark readers on fixture layouts, `mixture eval --predictions` end to end, and the one-line errors
for missing files, malformed records and unknown names (torch-free)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import bench_fixtures as bf  # noqa: E402

from mixture.cli import main as cli  # noqa: E402
from mixture.errors import MixtureError  # noqa: E402
from trainer.evaluation.layouts import read_benchmark  # noqa: E402
from trainer.evaluation.store import AnswerStore  # noqa: E402


@pytest.fixture()
def benches(tmp_path: Path) -> dict[str, Path]:
    return bf.write_all(tmp_path / "bench")


def test_readers_find_questions_answers_and_images(benches: dict[str, Path]) -> None:
    vqa = read_benchmark("vqav2", benches["vqav2"])
    assert [q.question_id for q in vqa] == ["10000", "10010", "10020", "10030"]
    assert vqa[1].answers == tuple(["green"] * 8 + ["white"] * 2) and vqa[1].image.is_file()
    assert read_benchmark("textvqa", benches["textvqa"])[0].image.name == "img000.jpg"
    assert read_benchmark("gqa", benches["gqa"])[2].answers == ("red",)
    pope = read_benchmark("pope", benches["pope"])
    assert len(pope) == 8 and pope[0].question_id == "random/1" and pope[4].question_id == "adversarial/1"
    assert all(q.image.is_file() and q.answers[0] in ("yes", "no") for q in pope)
    viz = read_benchmark("vizwiz", benches["vizwiz"])
    assert viz[0].question_id == "VizWiz_val_00000000.jpg" and viz[0].answers[0] == "unanswerable"


def _predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_scores_predictions_without_a_model(benches: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    rows = [{"benchmark": "vqav2", "question_id": 10000, "answer": "Blue."},  # 7 of 10 agree: 1.0
            {"benchmark": "vqav2", "question_id": 10010, "answer": "white"},  # 2 of 10: 0.6
            {"benchmark": "vqav2", "question_id": 10020, "answer": "a red one"},  # "red 1": 0
            {"benchmark": "vizwiz", "question_id": "VizWiz_val_00000000.jpg", "answer": "Unanswerable"},
            {"benchmark": "pope", "split": "random", "question_id": 1, "answer": "Yes, there is."},
            {"benchmark": "pope", "question_id": "random/2", "answer": "No"}]
    pred = _predictions(tmp_path / "pred.jsonl", rows)
    out = tmp_path / "out"
    args = ["eval", "--predictions", str(pred), "-o", str(out), "--bench", f"vqav2={benches['vqav2']}",
            "--bench", f"vizwiz={benches['vizwiz']}", "--bench", f"pope={benches['pope']}"]
    assert cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    vqa = results["benchmarks"]["vqav2"]
    assert vqa["n"] == 3 and vqa["missing"] == 1
    assert vqa["accuracy"] == pytest.approx((1.0 + (2 * (1 / 3) + 8 * (2 / 3)) / 10 + 0.0) / 3)
    assert results["benchmarks"]["vizwiz"]["accuracy"] == 1.0
    pope = results["benchmarks"]["pope"]
    assert pope["n"] == 2 and pope["accuracy"] == 1.0 and set(pope["splits"]) == {"random"}
    assert results["average"]["benchmarks"] == ["pope", "vizwiz", "vqav2"]
    lines = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {"benchmark", "question_id", "answer", "score"} <= set(lines[0])
    assert "vqav2: accuracy" in capsys.readouterr().out
    gqa = _predictions(tmp_path / "gqa.jsonl", [{"benchmark": "gqa", "question_id": "2000000", "answer": "Red"}])
    assert cli(["eval", "--predictions", str(gqa), "-o", str(out), "--bench", f"gqa={benches['gqa']}"]) == 0
    kept = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(kept) == 7 and kept[0]["benchmark"] == "gqa"  # the first evaluation's answers stay


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[0]


def test_bad_input_is_one_line_naming_file_and_record(benches: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = ["-o", str(tmp_path / "out")]
    pred = _predictions(tmp_path / "p.jsonl", [{"benchmark": "gqa", "question_id": "2000000", "answer": "red"}])
    assert "unknown benchmark 'okvqa'" in _one_line_error(
        ["eval", "--predictions", str(pred), "--bench", f"okvqa={tmp_path}", *out], capsys)
    (benches["textvqa"] / "TextVQA_0.5.1_val.json").unlink()
    msg = _one_line_error(["eval", "--predictions", str(pred), "--bench", f"textvqa={benches['textvqa']}", *out],
                          capsys)
    assert "TextVQA_0.5.1_val.json: missing" in msg
    data = json.loads((benches["vizwiz"] / "val.json").read_text())
    del data[2]["question"]
    (benches["vizwiz"] / "val.json").write_text(json.dumps(data))
    msg = _one_line_error(["eval", "--predictions", str(pred), "--bench", f"vizwiz={benches['vizwiz']}", *out], capsys)
    assert "val.json: [2]: missing 'question'" in msg
    with (benches["pope"] / "coco_pope_random.json").open("a") as handle:
        handle.write('{"question_id": 9, "image": "x.jpg", "text": "Is there?", "label": "maybe"}\n')
    msg = _one_line_error(["eval", "--predictions", str(pred), "--bench", f"pope={benches['pope']}", *out], capsys)
    assert "coco_pope_random.json:5: label is 'maybe'" in msg
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"benchmark": "gqa", "question_id": "2000000", "answer": "red"}\n{"benchmark": "gqa"\n')
    msg = _one_line_error(["eval", "--predictions", str(bad), "--bench", f"gqa={benches['gqa']}", *out], capsys)
    assert msg.startswith(f"{bad}:2: not a JSON object")
    typo = _predictions(tmp_path / "t.jsonl", [{"benchmark": "gqa", "question_id": "2000009", "answer": "red"}])
    msg = _one_line_error(["eval", "--predictions", str(typo), "--bench", f"gqa={benches['gqa']}", *out], capsys)
    assert "t.jsonl:1: gqa has no question '2000009'" in msg
    assert "--limit 0" in _one_line_error(["eval", "--predictions", str(typo), "--bench", f"gqa={benches['gqa']}",
                                           "--limit", "0", *out], capsys)
    other = _predictions(tmp_path / "o.jsonl", [{"benchmark": "vqav2", "question_id": 1, "answer": "x"}])
    msg = _one_line_error(["eval", "--predictions", str(other), "--bench", f"gqa={benches['gqa']}", *out], capsys)
    assert "o.jsonl:1: benchmark 'vqav2' is not being evaluated" in msg


def test_missing_annotation_names_the_question(benches: dict[str, Path]) -> None:
    path = benches["vqav2"] / "v2_mscoco_val2014_annotations.json"
    data = json.loads(path.read_text())
    data["annotations"].pop(1)
    path.write_text(json.dumps(data))
    with pytest.raises(MixtureError, match=r"questions\[1\]: question_id 10010 has no annotation"):
        read_benchmark("vqav2", benches["vqav2"])


def test_store_drops_torn_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text('{"benchmark": "gqa", "question_id": "1", "answer": "red"}\n'
                    '{"benchmark": "gqa", "question_id": "2", "answer": 3}\n'
                    '{"benchmark": "gqa", "question_id": "3", "ans')
    store = AnswerStore(path, ["gqa"])
    assert store.answers == {"gqa": {"1": "red"}} and store.dropped == 2
    store.append("gqa", {"2": "blue"})
    assert AnswerStore(path, ["gqa"]).answers == {"gqa": {"1": "red", "2": "blue"}}


@given(st.lists(st.tuples(st.sampled_from(["gqa", "pope"]), st.text(max_size=8), st.text(max_size=12)),
                max_size=8), st.data())
def test_a_torn_answers_file_never_yields_a_wrong_answer(tmp_path_factory: pytest.TempPathFactory,
                                                         rows: list[tuple[str, str, str]], data: st.DataObject) -> None:
    """Whatever byte the file was cut at, every answer read back is one that was written, for its question."""
    path = tmp_path_factory.mktemp("store") / "answers.jsonl"
    written: dict[tuple[str, str], set[str]] = {}
    text = ""
    for name, qid, answer in rows:
        text += json.dumps({"benchmark": name, "question_id": qid, "answer": answer}) + "\n"
        written.setdefault((name, qid), set()).add(answer)
    raw = text.encode()
    path.write_bytes(raw[: data.draw(st.integers(0, len(raw)))])
    store = AnswerStore(path, ["gqa", "pope"])
    for name, answers in store.answers.items():
        assert all(answer in written[(name, qid)] for qid, answer in answers.items())
    assert AnswerStore(path, ["gqa", "pope"]).dropped == 0  # the torn line was removed from the file
