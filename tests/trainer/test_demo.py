"""`mixture demo` end to end at scale 0.05: data, the four-point sweep with its shared trunk, measurement,
summary.json, the figure and the report.

One module fixture runs the demo through the CLI (as `make demo` does, in-process); a second call must
reuse the data, every finished run and every measurement, and train nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from mixture.cli import main as cli

INTRO_POINTS = [0, 40, 80, 100]
SCALE, QUESTIONS = "0.05", "20"
VARIANT_KEYS = {"intro_percent", "vqa_accuracy", "caption_loss", "caption_loss_shuffled_images",
                "text_loss_before_finetune", "text_loss"}


def _demo(out: Path) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(["demo", "-o", str(out), "--scale", SCALE, "--questions", QUESTIONS, "--threads", "1"])
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    code, printed = _demo(out)
    assert code == 0, printed
    return out, printed


def test_summary_json_has_the_specified_form(demo: tuple[Path, str]) -> None:
    out, _ = demo
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["answer_prior"] <= 1
    data = json.loads((out / "data" / "demo_data.json").read_text())
    assert summary["uniform_text_loss"] == pytest.approx(math.log(data["vocab_size"]))
    assert {"total", "data", "compile", "train", "measure", "report"} <= set(summary["seconds"])
    assert summary["seconds"]["total"] >= summary["seconds"]["train"] > 0
    assert [v["intro_percent"] for v in summary["variants"]] == INTRO_POINTS
    for variant in summary["variants"]:
        assert VARIANT_KEYS <= set(variant)
        vqa = variant["vqa_accuracy"]
        assert 0 <= vqa["mean"] <= 1 and vqa["se"] >= 0 and len(vqa["per_seed"]) == 1
        for key in VARIANT_KEYS - {"intro_percent", "vqa_accuracy"}:
            assert 0 < variant[key] < 20, key


def test_figure_and_report(demo: tuple[Path, str]) -> None:
    out, printed = demo
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report" / "report.json").read_text())
    assert [int(row["intro"].split("%")[0]) for row in report["table"]] == INTRO_POINTS
    assert all(row["status"] == "done" for row in report["table"])
    assert f"summary: {out / 'summary.json'}" in printed
    assert "What this shows:" in printed and "What it cannot show:" in printed


def test_every_variant_was_measured_before_and_after_finetuning(demo: tuple[Path, str]) -> None:
    out, _ = demo
    sweep = json.loads((out / "sweeps" / "seed-17" / "sweep.json").read_text())
    assert len(sweep["variants"]) == len(INTRO_POINTS)
    for name in sweep["variants"]:
        before = json.loads((out / "measure" / "seed-17" / f"{name}.before.json").read_text())
        after = json.loads((out / "measure" / "seed-17" / f"{name}.after.json").read_text())
        assert Path(before["key"]["checkpoint"]).is_file() and Path(after["key"]["checkpoint"]).is_file()
        assert before["scores"]["vqa"] == [] and len(after["scores"]["vqa"]) == int(QUESTIONS)
    for run in sweep["runs"]:
        lines = [json.loads(x) for x in (Path(run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["batch"] == run["stop_batch"]


def test_finished_runs_keep_only_the_checkpoints_still_read(demo: tuple[Path, str]) -> None:
    """Interval checkpoints of finished runs are removed; branch points, fine-tuning starts and each run's
    final checkpoint stay (the rerun test below reuses every run and measurement from them)."""
    import yaml

    out, printed = demo
    assert "interval checkpoints of finished runs" in printed
    sweep = json.loads((out / "sweeps" / "seed-17" / "sweep.json").read_text())
    for run in sweep["runs"]:
        config = yaml.safe_load(Path(run["config"]).read_text())
        kept = {int(p.name[2:].split("-")[0]) for p in (Path(run["run_dir"]) / "checkpoints").glob("ba*-rank0.pt")}
        assert kept == {*config["checkpoint"]["save_at"], run["stop_batch"]}, (run["id"], kept)


def test_sweep_shared_the_trunk(demo: tuple[Path, str]) -> None:
    out, _ = demo
    plan = json.loads((out / "sweeps" / "seed-17" / "plan.json").read_text())
    totals = plan["totals"]
    assert totals["saved_batches"] > 0
    assert totals["plan_batches"] + totals["saved_batches"] == totals["scratch_batches"]


def test_rerun_reuses_data_runs_and_measurements(demo: tuple[Path, str]) -> None:
    out, first = demo
    code, printed = _demo(out)
    assert code == 0
    said = [line.split("] ", 1)[-1].strip() for line in printed.splitlines() if line.startswith("[demo")]
    assert not any(": train " in line for line in said) and not any("measuring" in line for line in said)
    assert sum(line.startswith("reused ") for line in said) == len(INTRO_POINTS)
    table = printed[printed.index("images at"):].split("time:")[0]
    assert table == first[first.index("images at"):].split("time:")[0]
