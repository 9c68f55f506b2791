"""`mixture demo` end to end at scale 0.05: data, the six-point sweep with its shared trunk, the report.

One module fixture runs the demo through the CLI (as `make demo` does, in-process); a second call must
reuse the data and every finished run and train nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mixture.cli import main as cli  # noqa: E402

INTRO_POINTS = ["0%", "20%", "40%", "60%", "80%", "100%"]
SCALE, QUESTIONS = "0.05", "20"


def _demo(out: Path) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(["demo", "-o", str(out), "--scale", SCALE, "--questions", QUESTIONS])
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    code, printed = _demo(out)
    assert code == 0, printed
    return out, printed


def test_report_has_one_row_per_introduction_point(demo: tuple[Path, str]) -> None:
    out, _ = demo
    assert (out / "report" / "report.html").is_file()
    assert (out / "report" / "figures" / "compare_intro.png").is_file()
    report = json.loads((out / "report" / "report.json").read_text())
    assert [row["intro"].split(" of ")[0] for row in report["table"]] == INTRO_POINTS
    for row in report["table"]:
        assert row["status"] == "done"
        assert 0 <= row["eval/vqa/accuracy"] <= 1
        assert row["eval/loss/text"] > 0 and row["eval/loss/images"] > 0


def test_every_run_has_metrics_and_results(demo: tuple[Path, str]) -> None:
    out, _ = demo
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    assert len(sweep["variants"]) == 6
    for run in sweep["runs"]:
        run_dir = Path(run["run_dir"])
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["batch"] == run["stop_batch"]
        results = json.loads((run_dir / "results.json").read_text())["eval"]
        assert results["eval/vqa/num_questions"] == int(QUESTIONS)


def test_sweep_shared_the_trunk(demo: tuple[Path, str]) -> None:
    out, _ = demo
    plan = json.loads((out / "sweep" / "plan.json").read_text())
    totals = plan["totals"]
    assert totals["saved_batches"] > 0
    assert totals["plan_batches"] + totals["saved_batches"] == totals["scratch_batches"]
    # Six runs: 0% (images from batch 0) and 20% start from scratch; 40-100% each branch from the one before.
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    assert sum(run["after"] is not None for run in sweep["runs"]) == 4


def test_summary_is_printed(demo: tuple[Path, str]) -> None:
    out, printed = demo
    assert f"report: {out / 'report' / 'report.html'}" in printed
    table = printed[printed.index("images introduced at"):].splitlines()[1:7]
    assert [line.split()[0] for line in table] == INTRO_POINTS
    assert "shared trunk:" in printed and "saved" in printed
    assert "What it cannot show:" in printed
    for step in ("data", "compile", "train", "report", "total"):
        assert f"{step} " in printed[printed.index("time: "):]


def test_rerun_reuses_data_and_runs(demo: tuple[Path, str]) -> None:
    out, first = demo
    code, printed = _demo(out)
    assert code == 0
    said = [line.split("] ", 1)[-1].strip() for line in printed.splitlines() if line.startswith("[demo")]
    assert sum(line.startswith("skip ") for line in said) == 6 and not any(line.startswith("train ") for line in said)
    assert sum(line.startswith("reused ") for line in said) == 6 and not any("compiled " in line for line in said)
    assert first[first.index("images introduced at"):].split("shared trunk")[0] == \
        printed[printed.index("images introduced at"):].split("shared trunk")[0]
