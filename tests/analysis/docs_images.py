"""The pictures in docs/analysis.md: each report built from small generated data, its plots copied to docs/img.

Run from the repository root: ``.venv/bin/python -m tests.analysis.docs_images`` (about a minute). The
data is made up (sizes, scores); the reports and their plots are exactly what the commands produce.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml

from analysis.compare import compare
from analysis.report import report
from analysis.stats_page import stats_report
from tests.analysis.fixtures import order_table, random_rows, write_index, write_run
from tests.mixture.helpers import compile_text, spec_text

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

PHASES = [
    {"name": "text", "duration": "1500ba", "mix": {"web": 1}},
    {"name": "cooldown", "duration": "2M tok", "unit": "tokens", "mix": {"web": 0.85, "img": 0.15},
     "ramp": {"length": "500000 tok", "shape": "cosine"}},
    {"name": "finetune", "duration": "1 ep", "mix": {"chat": 1}},
]


def _copy(figures: Path, names: dict[str, str]) -> None:
    for name, target in names.items():
        shutil.copyfile(figures / f"{name}.png", DOCS_IMG / target)


def _stats(tmp: Path) -> None:
    dirs = [write_index(tmp, "captions", "image_caption", random_rows("image_caption", 5000, 1, hashes=4600),
                        dropped={"download_http_404": 412, "not_an_image": 37, "truncated": 5}, shard_rows=700),
            write_index(tmp, "web", "text", random_rows("text", 8000, 2), shard_rows=1000),
            write_index(tmp, "chat", "instruction", random_rows("instruction", 1200, 3),
                        dropped={"no_assistant_turn": 9}, shard_rows=500)]
    _, paths = stats_report([str(d) for d in dirs], tmp / "stats", figures=True)
    _copy(paths["figures"], {"stats_tokens_all": "analysis_stats_tokens.png",
                             "stats_captions_distributions": "analysis_stats_captions.png"})


def _plausible(run: Path, lr: np.ndarray) -> None:
    """Loss curves that look like training (write_run's are straight lines) and the schedule's LR."""
    rng = np.random.default_rng(0)
    floor = {"web": 2.6, "img": 3.1, "chat": 1.7}
    lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        b = line["batch"]
        for key in [k for k in line if k.startswith(("loss/train/", "eval/loss/"))]:
            src = key.rsplit("/", 1)[1]
            noise = 0 if key.startswith("eval/") else rng.normal(0, 0.04)
            line[key] = floor[src] + 4.0 * np.exp(-b / 300) + noise
        if "lr" in line:
            line["lr"] = float(lr[b - 1])
            line["loss/train"] = 2.5 + 4.0 * np.exp(-b / 300) + rng.normal(0, 0.03)
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _report(tmp: Path) -> None:
    doc = yaml.safe_load(spec_text(PHASES, batch=64))
    doc["run"]["lr"] = {"peak": 3e-3, "warmup": "100ba", "schedule": "cosine", "plan": "1500ba"}
    doc["phases"][1]["lr"] = {"cooldown": {"to": 0}}
    doc["phases"][2]["lr"] = {"rewarm": {"warmup": "10%", "peak": 1e-4}}
    schedule = compile_text(yaml.safe_dump(doc, sort_keys=False), tmp)
    run = write_run(tmp / "runs", schedule, order_table(schedule, tmp), "demo", every=4)
    _plausible(run, schedule.lr())
    _, paths = report(schedule.path, tmp / "report", run_dir=run, figures=True)
    _copy(paths["figures"], {"report_share_overview": "analysis_report_overview.png",
                             "report_phase_cooldown": "analysis_report_cooldown.png",
                             "report_run_losses": "analysis_report_run.png"})


def _compare(tmp: Path) -> None:
    from tests.analysis.test_compare import _run

    runs = []
    for intro in (20, 40, 60, 80):
        for share in (0.05, 0.1, 0.3):
            vqa = 0.70 + 0.0004 * intro + 0.08 * share - 0.25 * share * share
            scores = {"eval/vqa/accuracy": vqa, "eval/text/arc_easy": 0.60 - 0.08 * share + 0.0003 * intro,
                      "eval/text/agieval": 0.30 - 0.05 * share, "eval/loss/web": 2.9 + 0.2 * share}
            runs.append(_run(tmp / "sweep", f"intro{intro}_share{share:g}",
                             {"intro": f"{intro}% of text_plan", "share": share}, scores))
    _, paths = compare([str(r) for r in runs], tmp / "compare", figures=True)
    _copy(paths["figures"], {"compare_intro": "analysis_compare_intro.png"})


def main() -> None:
    """Build the three reports and copy their main plots into docs/img."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for step in (_stats, _report, _compare):
            (Path(tmp) / step.__name__).mkdir()
            step(Path(tmp) / step.__name__)
    print(f"wrote {', '.join(sorted(p.name for p in DOCS_IMG.glob('analysis_*.png')))}")


if __name__ == "__main__":
    main()
