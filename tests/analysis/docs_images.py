"""The pictures in docs/: every report page made from real outputs, screenshot in headless Chromium.

Real outputs, nothing invented: small sources made with the ingest commands (tests/trainer/train_helpers),
a sweep over the cooldown's image share and the seed compiled with ``mixture compile``, four tiny
training runs with held-out and VQA evaluation, and the full-scale compile of examples/paper_1b.yaml.
Then ``mixture stats``, ``report`` (schedule only and with a run) and ``compare`` write their pages, each
page is screenshot with Debian's chromium (``apt-get install chromium``) and its main plots are copied.

Run from the repository root: ``OMP_NUM_THREADS=1 .venv/bin/python -m tests.analysis.docs_images [WORK_DIR]``
(about 10 minutes on 2 busy cores; WORK_DIR keeps the outputs for a look, default a temporary directory).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
sys.path.insert(0, str(ROOT / "tests" / "trainer"))
import train_helpers as h  # noqa: E402

from mixture.cli import main as cli  # noqa: E402


def _sweep(data: Path) -> dict:
    spec = h.mixture(data, text_batches=8)
    spec["sweep"] = {"axes": {"images": {"field": "phases.cooldown.mix", "values": [
        {"text": 0.9, "images": 0.1}, {"text": 0.7, "images": 0.3}]},
        "seed": {"field": "seed", "values": [7, 8]}}}
    return spec


def _runs(work: Path, raw: dict[str, Path]) -> list[Path]:
    spec_path = work / "study.yaml"
    spec_path.write_text(yaml.safe_dump(_sweep(work / "data"), sort_keys=False))
    assert cli(["compile", str(spec_path), "-o", str(work / "schedules")]) == 0
    evaluation = {"interval": "4ba", "heldout": {"text": {"location": str(work / "data" / "text"), "samples": 32}},
                  "vqa": {"file": str(raw["vqa"])}}
    runs = []
    for schedule in sorted(p for p in (work / "schedules").iterdir() if (p / "manifest.json").exists()):
        run_dir = work / "runs" / schedule.name.replace(",", "_").replace("=", "")
        config = h.run_config(work / f"{run_dir.name}.yaml", schedule, run_dir, eval=evaluation)
        if not (run_dir / "results.json").exists():
            assert cli(["train", str(config)]) == 0
        runs.append(run_dir)
    return runs


def _screenshot(html: Path, png: Path, height: int = 3000) -> None:
    profile = tempfile.mkdtemp()
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size=1400,{height}",
                    html.as_uri()], check=True, capture_output=True, timeout=300)
    shutil.rmtree(profile, ignore_errors=True)


def main(work: Path) -> None:
    """Make the outputs, the pages, the screenshots and the plot copies."""
    raw = h.make_raw(work / "raw", num_docs=240, num_images=64, num_chats=32)
    if not (work / "data" / "instruct").exists():
        h.ingest(raw, work / "data")
    runs = _runs(work, raw)
    sources = [str(work / "data" / n) for n in ("text", "images", "instruct")]
    assert cli(["stats", *sources, "-o", str(work / "stats"), "--figures"]) == 0
    first = sorted((work / "schedules").iterdir())[0]
    assert cli(["report", str(first), "--run", str(runs[0]), "-o", str(work / "report_run"), "--figures"]) == 0
    assert cli(["compare", *map(str, runs), "-o", str(work / "compare"), "--figures"]) == 0
    if not (work / "paper_1b" / "manifest.json").exists():
        assert cli(["compile", str(ROOT / "examples" / "paper_1b.yaml"), "-o", str(work / "paper_1b")]) == 0
    assert cli(["report", str(work / "paper_1b"), "-o", str(work / "report_paper"), "--figures"]) == 0
    pages = {"stats": "page_stats.png", "report_run": "page_report_run.png", "compare": "page_compare.png",
             "report_paper": "page_report_paper_1b.png"}
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    for folder, name in pages.items():
        _screenshot(work / folder / "report.html", DOCS_IMG / name, 4200 if folder != "compare" else 1700)
    copies = {"stats/figures/stats_tokens_all.png": "analysis_stats_tokens.png",
              "stats/figures/stats_images_distributions.png": "analysis_stats_captions.png",
              "report_paper/figures/report_share_overview.png": "analysis_report_overview.png",
              "report_paper/figures/report_phase_cooldown.png": "analysis_report_cooldown.png",
              "report_run/figures/report_run_losses.png": "analysis_report_run.png",
              "compare/figures/compare_images.png": "analysis_compare.png"}
    for source, target in copies.items():
        if (work / source).exists():
            shutil.copyfile(work / source, DOCS_IMG / target)
        else:
            print(f"missing: {source}")
    print(f"wrote {', '.join(sorted([*pages.values(), *copies.values()]))} in {DOCS_IMG}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
