"""`mixture sweep run|status` end to end on CPU: a three-point introduction sweep over tiny real data.

The variants enter images after 2, 4 and 6 text batches, under one LR plan, so the tree is a chain:
run ``intro=2ba,cap=50`` trains batches 0-8 from scratch, ``intro=4ba,...`` branches from it at batch 2 and
trains 2-10, ``intro=6ba,...`` branches from that at batch 4 and trains 4-12. A second axis (the images'
``max_epochs``, 50 or 60, never reached: the orders are identical) doubles the variants without adding runs:
each ``cap=60`` variant is served by its ``cap=50`` twin's run, and gets an alias run directory for ``mixture compare``. One module fixture prepares the sweep, trains
the first run, breaks the second one (stopped at batch 6, marked failed, with a metrics line past its
checkpoint as a crash leaves it) and re-runs ``mixture sweep run``, which must skip the first, resume the
second from its checkpoint and train the third. The second's losses must then equal training its schedule
from scratch, exactly: branching and resuming change nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

from mixture.cli import main as cli  # noqa: E402
from mixture.errors import MixtureError  # noqa: E402
from trainer.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("intro=2ba,cap=50", "intro=4ba,cap=50", "intro=6ba,cap=50")
TWINS = ("intro=2ba,cap=60", "intro=4ba,cap=60", "intro=6ba,cap=60")  # the planner finds them identical


def _cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(args)
    return code, out.getvalue()


def _batches(run_dir: Path) -> list[int]:
    return [m["batch"] for m in h.metrics(run_dir)]


def _losses(run_dir: Path) -> list[float]:
    return [m["loss/train"] for m in h.metrics(run_dir)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sweep")
    raw = h.make_raw(root / "raw")
    h.ingest(raw, root / "data")
    spec = h.mixture(root / "data") | {"name": "tiny-intro", "sweep": {"axes": {
        "intro": {"field": "phases.text.duration", "values": ["2ba", "4ba", "6ba"]},
        "cap": {"field": "sources.images.max_epochs", "values": [50, 60]}}}}
    (root / "intro.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # Relative paths, as a user writes them: relative to the base config's directory.
    base = {"seed": 3, "model": {"lm": {"preset": "tiny"}, "vision": {"preset": "tiny"}},
            "eval": {"heldout": {"text": {"location": "data/text", "samples": 16}},
                     "vqa": {"file": "raw/vqa.jsonl", "questions": 4}},
            "loggers": {"console": False}, "stop_at": "3ba"}
    (root / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    out = root / "sw"
    args = ["sweep", "run", str(root / "intro.yaml"), "--run-config", str(root / "base.yaml"), "-o", str(out)]
    code, commands = _cli([*args, "--print-commands", "--nproc", "2"])
    assert code == 0
    runs = {r: out / "runs" / r for r in RUNS}
    train(runs[RUNS[0]] / "run.yaml")
    # The second run breaks after its checkpoint at batch 6, having logged batch 7: status failed.
    train(runs[RUNS[1]] / "run.yaml", stop_at="6ba")
    with open(runs[RUNS[1]] / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**h.metrics(runs[RUNS[1]])[-1], "batch": 7, "loss/train": 99.0}) + "\n")
    info = json.loads((runs[RUNS[1]] / "run.json").read_text())
    (runs[RUNS[1]] / "run.json").write_text(json.dumps({**info, "status": "failed", "last_batch": 7}))
    broken = {"table": _cli(["sweep", "status", str(out)])[1],
              "results": _cli(["sweep", "status", str(out), "--results"])[1]}
    code, resumed = _cli(args)
    assert code == 0
    return {"root": root, "out": out, "runs": runs, "args": args, "commands": commands, "broken": broken,
            "resumed": resumed}


def test_run_configs_derive_from_the_base(sweep: dict) -> None:
    root, runs = sweep["root"], sweep["runs"]
    first, second = (yaml.safe_load((runs[r] / "run.yaml").read_text()) for r in RUNS[:2])
    assert first["schedule"] == str(sweep["out"] / "schedules" / RUNS[0]) and "branch" not in first
    assert first["checkpoint"]["save_at"] == [2, 8] and first["checkpoint"]["keep"] == -1
    assert second["branch"] == {"checkpoint": str(runs[RUNS[0]] / "checkpoints" / "ba2-rank0.pt"),
                                "schedule": str(sweep["out"] / "schedules" / RUNS[0])}
    assert second["eval"]["heldout"]["text"]["location"] == str(root / "data" / "text")
    assert second["eval"]["vqa"]["file"] == str(root / "raw" / "vqa.jsonl")
    assert "stop_at" not in second and second["seed"] == 3  # the base's stop_at is the sweep's to set


def test_print_commands_lists_parents_first(sweep: dict) -> None:
    lines = sweep["commands"].strip().splitlines()
    assert [line.split("  # ")[0] for line in lines] == [
        f"composer -n 2 -m mixture train {sweep['runs'][r] / 'run.yaml'}" for r in RUNS]
    assert "first: from scratch" in lines[0]
    assert f"after {RUNS[0]} (its checkpoint at batch 2)" in lines[1]
    assert f"after {RUNS[1]} (its checkpoint at batch 4)" in lines[2]


def test_status_of_a_broken_sweep(sweep: dict) -> None:
    table = sweep["broken"]["table"]
    rows = {r: next(line for line in table.splitlines() if r in line and "->" in line) for r in RUNS}
    assert "done" in rows[RUNS[0]] and "failed at 7" in rows[RUNS[1]] and "pending" in rows[RUNS[2]]
    assert "vqa/accuracy" in rows[RUNS[0]] and "saved 36 batches (60.0%)" in table
    assert sweep["broken"]["results"].split() == [str(sweep["runs"][RUNS[0]])]  # aliases are written at the end


def test_rerun_skips_finished_runs_and_resumes_the_broken_one(sweep: dict) -> None:
    printed, runs = sweep["resumed"], sweep["runs"]
    assert f"skip {RUNS[0]}: done (batch 8)" in printed
    assert f"train {RUNS[1]}: batches 2 -> 10, resuming from its checkpoint at batch 6; batch 7 is trained again" in printed
    assert f"train {RUNS[2]}: batches 4 -> 12, from {RUNS[1]} at batch 4" in printed
    assert _batches(runs[RUNS[0]]) == list(range(1, 9))
    assert _batches(runs[RUNS[1]]) == list(range(3, 11))  # resumed at 6: the crashed batch 7 logged once
    assert _batches(runs[RUNS[2]]) == list(range(5, 13))
    for r in RUNS:
        info = json.loads((runs[r] / "run.json").read_text())
        assert info["status"] == "done" and info["variant"]["name"] == r


def test_branches_and_resume_equal_training_from_scratch(sweep: dict) -> None:
    root, runs = sweep["root"], sweep["runs"]
    config = yaml.safe_load((runs[RUNS[1]] / "run.yaml").read_text())
    del config["branch"]
    config["run_dir"] = str(root / "scratch")
    (root / "scratch.yaml").write_text(yaml.safe_dump(config))
    scratch = train(root / "scratch.yaml")
    assert _losses(runs[RUNS[1]]) == _losses(root / "scratch")[2:]
    assert _losses(runs[RUNS[0]])[:2] == _losses(root / "scratch")[:2]
    results = json.loads((runs[RUNS[1]] / "results.json").read_text())
    assert results["eval"] == scratch.final_eval and results["batch"] == 10


def test_status_and_results_feed_mixture_compare(sweep: dict) -> None:
    out = sweep["out"]
    code, table = _cli(["sweep", "status", str(out)])
    assert code == 0 and table.count("done") >= 3 and "saved 36 batches (60.0%)" in table
    assert RUNS[1] in next(line for line in table.splitlines() if TWINS[1] in line)
    code, results = _cli(["sweep", "status", str(out), "--results"])
    aliases = [out / "variants" / t for t in TWINS]
    assert results.split() == [str(d) for pair in zip(sweep["runs"].values(), aliases) for d in pair]
    twin = json.loads((aliases[1] / "run.json").read_text())
    assert twin["variant"] == {"name": TWINS[1], "values": {"intro": "4ba", "cap": 60}}
    assert twin["trained_in"] == str(sweep["runs"][RUNS[1]]) and twin["last_batch"] == 10
    assert (aliases[1] / "results.json").read_text() == (sweep["runs"][RUNS[1]] / "results.json").read_text()
    code, _ = _cli(["compare", *results.split(), "-o", str(sweep["root"] / "compare")])
    report = json.loads((sweep["root"] / "compare" / "report.json").read_text())
    assert code == 0 and report["axes"] == ["intro", "cap"] and len(report["runs"]) == 6
    code, again = _cli(sweep["args"])
    assert code == 0 and again.count("skip") == 3


def test_a_failing_run_stops_the_sweep_naming_it_and_its_log(sweep: dict, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import trainer.run
    from trainer.sweep import prepare_sweep, run_sweep

    other = sweep["root"] / "sw_fail"
    prepare_sweep(sweep["root"] / "intro.yaml", sweep["root"] / "base.yaml", other)

    def boom(config: str) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(trainer.run, "train", boom)
    with pytest.raises(MixtureError, match=rf"sweep run {RUNS[0]} failed: RuntimeError: out of memory") as err:
        run_sweep(other, say=lambda _: None)
    log = other / "runs" / RUNS[0] / "train.log"
    assert str(log) in str(err.value) and "RuntimeError" in log.read_text()
    assert cli(["sweep", "status", str(other)]) == 0
    assert "failed: RuntimeError: out of memory" in capsys.readouterr().out
    assert cli(["sweep", "status", str(other), "--json"]) == 0
    runs = {r["run"]["id"]: r["state"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert runs[RUNS[0]]["status"] == "failed" and "out of memory" in runs[RUNS[0]]["error"]

    calls = []

    def launcher(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(subprocess, "run", launcher)
    with pytest.raises(MixtureError, match="exited with 3"):
        run_sweep(other, nproc=2, say=lambda _: None)
    cmd = calls[0]
    assert cmd[1:5] == ["-m", "composer.cli.launcher", "-n", "2"] and cmd[-1].endswith("run.yaml")


def test_sweep_commands_import_neither_torch_nor_composer() -> None:
    code = ("import sys, mixture.cli, trainer.sweep.cli, trainer.sweep.prepare, trainer.sweep.status, trainer.sweep.records; "
            "bad = {'torch', 'composer', 'streaming'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_mixture_eval_of_a_sweep_feeds_compare(sweep: dict, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "evaluation"))
    import bench_fixtures as bf

    gqa = bf.write_gqa(tmp_path / "gqa", n=2)
    code, printed = _cli(["eval", str(sweep["out"]), "--bench", f"gqa={gqa}", "-o", str(tmp_path / "ev"),
                          "--max-new-tokens", "4", "--device", "cpu"])
    assert code == 0 and printed.count("== ") == 6
    dirs = [*sweep["runs"].values(), *(sweep["out"] / "variants" / t for t in TWINS)]
    assert all(json.loads((d / "benchmarks.json").read_text())["benchmarks"]["gqa"]["n"] == 2 for d in dirs)
    code, _ = _cli(["compare", *map(str, dirs), "-o", str(tmp_path / "compare")])
    report = json.loads((tmp_path / "compare" / "report.json").read_text())
    assert code == 0 and report["scores"][:2] == ["bench/average", "bench/average/se"]
    assert all(" ± " in row["bench/gqa"] for row in report["table"])
