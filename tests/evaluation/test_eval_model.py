"""`mixture eval` with a tiny trained model, end to end on CPU: answers for fixture benchmarks, resume after a
torn answers file, a run without an export (its checkpoint), and the Hugging Face round trip: a fresh Python
process that never imports this project loads the export with AutoProcessor + AutoModelForImageTextToText and
generates the same answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "trainer"))
import bench_fixtures as bf  # noqa: E402
import train_helpers as h  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("composer")

from mixture.cli import main as cli  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_study: dict) -> dict:
    from trainer.run import train

    root = tmp_path_factory.mktemp("evalrun")
    config = h.run_config(root / "run.yaml", tiny_study["schedule"], root / "run", checkpoint={"interval": "8ba"})
    result = train(config)
    benches = bf.write_all(root / "bench", n=4)
    return {"root": root, "run": result.run_dir, "export": result.export_dir, "config": config, "benches": benches}


@pytest.fixture(scope="module")
def evaluated(trained: dict) -> dict:
    out = trained["root"] / "eval_out"
    results = _eval(trained, str(trained["run"]), out)
    return {"out": out, "results": results, "answers": _answers(out)}


def _eval(trained: dict, model: str, out: Path, *extra: str) -> dict:
    b = trained["benches"]
    args = ["eval", model, "-o", str(out), "--bench", f"vqav2={b['vqav2']}", "--bench", f"pope={b['pope']}",
            "--bench", f"gqa={b['gqa']}", "--batch-size", "3", "--max-new-tokens", "6", "--device", "cpu", *extra]
    assert cli(args) == 0
    return json.loads((out / "results.json").read_text())


def _answers(out: Path) -> dict[tuple[str, str], str]:
    rows = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    return {(r["benchmark"], r["question_id"]): r["answer"] for r in rows}


def test_eval_run_dir_then_resume_after_a_torn_file(trained: dict, evaluated: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(evaluated["out"], out)
    results = evaluated["results"]
    assert {k: v["n"] for k, v in results["benchmarks"].items()} == {"vqav2": 4, "pope": 8, "gqa": 4}
    assert 0.0 <= results["average"]["accuracy"] <= 1.0 and results["model"] == str(trained["export"].resolve())
    first = evaluated["answers"]
    lines = (out / "answers.jsonl").read_text().splitlines()
    (out / "answers.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:17])  # a crash mid-line
    again = _eval(trained, str(trained["run"]), out)
    assert _answers(out) == first and again["benchmarks"] == results["benchmarks"]
    assert cli(["eval", str(trained["run"]), "-o", str(out), "--bench", f"gqa={trained['benches']['gqa']}",
                "--suffix", " Answer briefly."]) == 2  # answers of another prompt are not mixed in
    limited = _eval(trained, str(trained["export"]), tmp_path / "limited", "--limit", "2")
    assert limited["benchmarks"]["vqav2"]["n"] == 2 and limited["benchmarks"]["pope"]["n"] == 2


def test_run_without_export_evaluates_its_checkpoint(trained: dict, evaluated: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run, ignore=shutil.ignore_patterns("export"))
    assert cli(["eval", str(run), "-o", str(tmp_path / "x"), "--bench", f"gqa={trained['benches']['gqa']}"]) == 2
    assert "pass --config" in capsys.readouterr().err
    out = tmp_path / "out"
    via_checkpoint = _eval(trained, str(run), out, "--config", str(trained["config"]))
    assert (out / "checkpoint_export" / "processor_config.json").exists()
    assert _answers(out) == evaluated["answers"]  # the checkpoint is the final model
    assert via_checkpoint["benchmarks"] == evaluated["results"]["benchmarks"]


def test_missing_images_are_named_before_generating(trained: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    gqa = shutil.copytree(trained["benches"]["gqa"], tmp_path / "gqa")
    (gqa / "images" / "n1.jpg").unlink()
    assert cli(["eval", str(trained["export"]), "--bench", f"gqa={gqa}", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "benchmark gqa: 1 image(s) missing" in err and "n1.jpg (question 2000001)" in err


ROUND_TRIP = r"""
import json, sys
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
export, questions = sys.argv[1], json.loads(sys.argv[2])
processor = AutoProcessor.from_pretrained(export)
model = AutoModelForImageTextToText.from_pretrained(export).eval()
out = {}
for key, image, question in questions:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.open(image), text=prompt, return_tensors="pt")
    ids = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    out[key] = processor.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
ours = [m for m in sys.modules if m.split(".")[0] in ("mixture", "trainer", "streaming_data", "analysis")]
print(json.dumps({"answers": out, "project_modules": ours}))
"""


def test_hugging_face_round_trip_gives_the_same_answers(trained: dict, evaluated: dict, tmp_path: Path) -> None:
    from trainer.evaluation.layouts import read_benchmark

    ours = evaluated["answers"]
    questions = [[f"{name}|{q.question_id}", str(q.image), q.question] for name in ("vqav2", "pope")
                 for q in read_benchmark(name, trained["benches"][name])[:3]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(trained["export"]), json.dumps(questions)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["project_modules"] == []
    assert {tuple(k.split("|", 1)): v for k, v in theirs["answers"].items()} == \
        {(n, q): a for (n, q), a in ours.items() if f"{n}|{q}" in theirs["answers"]}
    assert len(theirs["answers"]) == 6


ARC_STYLE_TASK = """task: tiny_arc_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_eval_text_runs_a_local_arc_format_task(trained: dict, tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    rows = [{"id": f"q{i}", "question": f"What colour is a {c} square?", "answerKey": "ABCD"[i],
             "choices": {"text": list(bf.NAMES), "label": list("ABCD")}} for i, c in enumerate(bf.NAMES)]
    data = tmp_path / "tiny_arc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny_arc_local.yaml").write_text(ARC_STYLE_TASK.format(data=data))
    out = tmp_path / "text.json"
    assert cli(["eval-text", str(trained["run"]), "--tasks", "tiny_arc_local", "--include", str(tmp_path / "tasks"),
                "--batch-size", "4", "-o", str(out)]) == 0
    acc = json.loads(out.read_text())["tiny_arc_local"]["acc,none"]
    assert acc in (0.0, 0.25, 0.5, 0.75, 1.0)
