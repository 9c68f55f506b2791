"""`mixture compare`: runs side by side, ordered and plotted by their sweep axis values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from analysis.compare import axis_key, axis_label, compare
from mixture.cli import main
from tests.analysis.fixtures import assert_self_contained


def _run(root: Path, name: str, values: dict[str, Any], scores: dict[str, float] | None, status: str = "done",
         in_manifest: bool = False, baselines: dict[str, Any] | None = None) -> Path:
    out = root / name
    out.mkdir(parents=True)
    info: dict[str, Any] = {"name": name, "schedule": str(out / "schedule"), "schedule_fingerprint": "f" * 32,
                            "global_batch_size": 8, "world_size": 1, "status": status, "last_batch": 40}
    if in_manifest:  # an older run.json without variant: the compiled schedule's manifest says
        (out / "schedule").mkdir()
        (out / "schedule" / "manifest.json").write_text(json.dumps({"variant": {"name": name, "values": values}}))
    else:
        info["variant"] = {"name": name, "values": values}
    (out / "run.json").write_text(json.dumps(info))
    evals = [{"batch": b, "eval/vqa/accuracy": 0.2 + b / 100, "eval/vqa/num_questions": 10} for b in (10, 20, 40)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    if scores is not None:
        (out / "results.json").write_text(json.dumps({"batch": 40, "eval": scores,
                                                       **({"baselines": baselines} if baselines else {})}))
    return out


def _scores(intro: float, share: float) -> dict[str, float]:
    return {"eval/vqa/accuracy": 0.5 + intro / 1000 + share, "eval/vqa/num_questions": 100,
            "eval/text/arc_easy": 0.6 - share, "eval/text/hellaswag": 0.4, "eval/loss/web": 2.0 + share}


def test_sweep_is_ordered_and_plotted_by_axis(tmp_path: Path) -> None:
    runs = []
    for intro in ("80% of text_plan", "20% of text_plan", "40% of text_plan"):
        for share in (0.1, 0.05):
            number = float(intro.split("%")[0])
            runs.append(_run(tmp_path, f"i{number:g}_s{share}", {"intro": intro, "share": share},
                             _scores(number, share), in_manifest=share == 0.05))
    data, paths = compare([str(r) for r in runs], tmp_path / "out", figures=True)
    assert data["axes"] == ["intro", "share"]
    assert [row["run"] for row in data["table"]] == ["i20_s0.05", "i20_s0.1", "i40_s0.05", "i40_s0.1",
                                                     "i80_s0.05", "i80_s0.1"]
    first = data["table"][0]
    assert first["eval/vqa/accuracy"] == "0.570 ± 0.050"  # sqrt(0.57 * 0.43 / 100 questions)
    assert first["eval/text/mean"] == pytest.approx((0.55 + 0.4) / 2)
    assert "eval/vqa/num_questions" not in first
    assert data["scores"][:2] == ["eval/vqa/accuracy", "eval/text/mean"]
    assert {p.name for p in paths["figures"].iterdir()} == {"compare_intro.png", "compare_share.png",
                                                            "compare_eval_curves.png"}
    assert json.loads(paths["json"].read_text())["table"] == data["table"]
    assert_self_contained(paths["html"])


def test_axis_values_sort_numerically_and_label_compactly() -> None:
    values = ["80%", "100%", "5%", "2 ep", 3, {"dclm": 0.9, "img": 0.1}]
    assert sorted(values, key=axis_key)[:5] == ["2 ep", 3, "5%", "80%", "100%"]
    assert axis_label({"dclm": 0.9, "img": 0.1}) == "dclm 0.9, img 0.1"
    assert axis_label(0.10000) == "0.1"


def test_runs_without_a_sweep_get_bars_and_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uniform = {"value": 8.318, "se": 0.0, "name": "uniform guess", "what": "ln(4,096)"}
    a = _run(tmp_path, "a", {}, _scores(0, 0.1), baselines={"eval/loss/web": uniform})
    b = _run(tmp_path, "b", {}, None, status="running")  # no results yet: its last eval line counts
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "out"), "--figures"]) == 0
    out = capsys.readouterr().out
    assert "b: status 'running'" in out
    assert "baseline eval/loss/web: 8.318 (uniform guess): ln(4,096)" in out
    assert (tmp_path / "out" / "figures" / "compare_runs.png").exists()
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["table"][1]["eval/vqa/accuracy"] == "0.600 ± 0.155"  # the last eval line: 0.6 over 10 questions


def test_nothing_to_compare_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, "bare", {"intro": "20%"}, None)
    (run / "metrics.jsonl").unlink()
    assert main(["compare", str(run), "-o", str(tmp_path / "out")]) == 2
    assert "none of the runs has evaluation results" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2


def test_zip_companions_follow_their_axis(tmp_path: Path) -> None:
    """A zip sweep (the demo's): the re-warm's warm-up and peak go with the introduction point, so they get
    no figure of their own and the introduction-point figure has one line, not one point per line."""
    from analysis.compare import companion_of

    zipped = [("0%", "10%", 3e-3), ("40%", "0%", 2.1e-3), ("80%", "0%", 3.4e-4), ("100%", "10%", 3.4e-4)]
    runs = [_run(tmp_path, f"i{i}", {"intro": intro, "warmup": warmup, "peak": peak}, _scores(i, 0.1))
            for i, (intro, warmup, peak) in enumerate(zipped)]
    data, paths = compare([str(r) for r in runs], tmp_path / "out", figures=True)
    assert {p.name for p in paths["figures"].iterdir()} == {"compare_intro.png", "compare_eval_curves.png"}
    assert [companion_of(data["runs"], a, data["axes"]) for a in data["axes"]] == [None, "intro", "intro"]
    assert "warmup, peak change with it" in paths["html"].read_text()


def test_baselines_from_results_are_drawn_and_tabled(tmp_path: Path) -> None:
    prior = {"value": 0.31, "se": 0.02, "name": "answer prior", "what": "each kind's most common answer"}
    uniform = {"value": 8.318, "se": 0.0, "name": "uniform guess", "what": "ln(4,096)"}
    runs = [_run(tmp_path, f"i{p}_s{seed}", {"intro": f"{p}% of text_plan", "seed": seed}, _scores(p, 0.1),
                 baselines={"eval/vqa/accuracy": prior, "eval/loss/web": uniform} if p else None)
            for p in (0, 40, 80) for seed in (1, 2)]  # the intro 0 runs: results.json from before baselines
    data, paths = compare([str(r) for r in runs], tmp_path / "out", figures=True)
    assert data["baselines"] == {"eval/vqa/accuracy": prior, "eval/loss/web": uniform}
    assert [row["run"] for row in data["table"]][-1] == "i80_s2"  # report.json's table: runs only
    html = paths["html"].read_text()  # the page's table ends with the baseline row
    assert re.search(r"<td[^>]*>baseline</td>(<td[^>]*></td>)+<td[^>]*>0\.310 ± 0\.020 \(answer prior\)</td>",
                     html.replace("\n", "")), html[html.find(">baseline<") - 200:html.find(">baseline<") + 400]
    assert "8.318 (uniform guess)" in html
    assert "Dashed grey lines: the answer prior (each kind&#x27;s most common answer)" in html or \
        "Dashed grey lines: the answer prior (each kind's most common answer)" in html
    assert json.loads(paths["json"].read_text())["baselines"]["eval/loss/web"]["value"] == 8.318
    other = _run(tmp_path, "odd", {"intro": "20% of text_plan", "seed": 1}, _scores(20, 0.1),
                 baselines={"eval/vqa/accuracy": {**prior, "value": 0.5}})
    data, _ = compare([str(r) for r in runs] + [str(other)], tmp_path / "out2")
    assert any("recorded different baselines (0.31 and 0.5)" in n for n in data["notes"])


def test_each_score_with_different_recorded_baselines_gets_its_note(tmp_path: Path) -> None:
    """One note per score: a note about eval/loss/ab is not taken for one about eval/loss/a."""
    uniform = {"value": 8.318, "se": 0.0, "name": "uniform guess", "what": "ln(4,096)"}
    runs = [_run(tmp_path, f"r{i}", {"intro": f"{p}% of text_plan", "seed": 1}, _scores(p, 0.1),
                 baselines={"eval/loss/ab": {**uniform, "value": 8.0 + i}, "eval/loss/a": {**uniform, "value": 7.0 + i}})
            for i, p in enumerate((0, 40))]
    data, _ = compare([str(r) for r in runs], tmp_path / "out")
    notes = [n for n in data["notes"] if "recorded different baselines" in n]
    assert sorted(n.split(":")[0] for n in notes) == ["eval/loss/a", "eval/loss/ab"], data["notes"]


def test_given_baselines_replace_the_recorded_ones(tmp_path: Path) -> None:
    from mixture.run_dir import Baseline

    recorded = {"value": 0.5, "se": 0.05, "name": "answer prior", "what": "the evaluation file"}
    runs = [_run(tmp_path, f"i{p}", {"intro": f"{p}% of text_plan"}, _scores(p, 0.1),
                 baselines={"eval/vqa/accuracy": recorded}) for p in (20, 40)]
    given = Baseline(0.27, 0.06, "answer prior", "the fine-tuning conversations")
    data, paths = compare([str(r) for r in runs], tmp_path / "out", baselines={"eval/vqa/accuracy": given})
    assert data["baselines"]["eval/vqa/accuracy"] == {"value": 0.27, "se": 0.06, "name": "answer prior",
                                                      "what": "the fine-tuning conversations"}
    assert "0.270 ± 0.060 (answer prior)" in paths["html"].read_text()
