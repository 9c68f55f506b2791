"""Everyday use of the command line: --version, help for every subcommand, --json, init, progress lines."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mixture.cli import build_parser, main
from mixture.progress import Board, duration, human, track
from mixture.schedule import load_schedule
from tests.mixture.helpers import compile_text, spec_text

PHASES = [{"name": "text", "duration": "96sp", "mix": {"web": 1}},
          {"name": "cool", "duration": "30k tok", "mix": {"web": 0.9, "img": 0.1}}]
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_subcommands(sub, f"{prefix}{name} "))
    return found


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"mixture \S+\n", capsys.readouterr().out)


def test_every_subcommand_has_a_description_and_quiet() -> None:
    subs = _subcommands(build_parser())
    assert {"validate", "compile", "explain", "init", "sweep status", "ingest text", "train"} <= set(subs)
    for name, sub in subs.items():
        assert sub.description, f"`mixture {name} --help` has no description"
        text = sub.format_help()
        assert "%%" not in text, f"`mixture {name} --help` shows an escaped %"
        assert "--quiet" in text, name


def test_validate_and_explain_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = compile_text(spec_text(PHASES), tmp_path)
    capsys.readouterr()
    assert main(["explain", str(schedule.path), "--json"]) == 0
    [table] = json.loads(capsys.readouterr().out)
    assert table["num_positions"] == len(schedule) and table["fingerprint"] == schedule.fingerprint
    assert [p["name"] for p in table["phases"]] == ["text", "cool"]
    assert sum(r["samples"] for r in table["rows"]) == len(schedule)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nseed: 1\nrun: {seq_len: 8, global_batch_size: 2}\nsources: {}\nphases: []\nfoo: 1\n")
    assert main(["validate", str(bad), "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and any(p["path"] == "foo" and p["line"] == 6 for p in result["problems"])


def test_init_writes_files_that_validate_and_compile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "new")]) == 0
    mix, run = tmp_path / "new" / "mixture.yaml", tmp_path / "new" / "run.yaml"
    assert mix.read_text().startswith("#") and run.read_text().startswith("#")
    assert f"wrote {mix}" in capsys.readouterr().out
    assert main(["validate", str(mix), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phases"] == ["text", "cooldown", "finetune"]
    assert main(["-q", "compile", str(mix), "-o", str(tmp_path / "sched")]) == 0
    assert (tmp_path / "sched" / "manifest.json").exists()
    from trainer.config import load_run_config

    config, _ = load_run_config(run)
    assert config.schedule == "mixture.yaml" and config.model.lm.preset == "tiny"
    assert main(["init", str(tmp_path / "new")]) == 2
    assert "already exist" in capsys.readouterr().err


def test_take_named_names_the_sources(tmp_path: Path) -> None:
    schedule = compile_text(spec_text(PHASES), tmp_path)
    ids, samples = schedule.take(80, 200)
    names, named_samples = schedule.take_named(80, 200)
    assert names.tolist() == [schedule.source_names[i] for i in ids] and np.array_equal(samples, named_samples)
    assert set(names[:16]) == {"web"} and "img" in set(names)


def test_plain_progress_lines_have_time_rate_and_eta() -> None:
    now = [0.0]
    out = io.StringIO()
    with Board(stream=out, interval=10, clock=lambda: now[0], quiet=False) as board:
        task = board.task("train", total=400, unit="batches")
        for i in range(100):
            now[0] += 0.5
            task.advance(1, info=f"loss {4 - i / 100:.2f}")
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines) and len(lines) == 6  # every 10 s of 50, and the end
    assert lines[0].endswith("train: 20/400 batches (5.0%), 2 batches/s, ETA 3m10s, loss 3.81")
    assert lines[-1].endswith("train: 100/400 batches (25.0%), 2 batches/s, ETA 2m30s, loss 3.01 - stopped")


def test_quiet_and_terminal_progress() -> None:
    out = io.StringIO()
    with track("x", 10, "items", stream=out, quiet=True, interval=0) as task:
        task.advance(10)
    assert out.getvalue() == ""
    with track("compiling", 10, "positions", stream=out, quiet=False, terminal=True) as task:
        task.advance(10)
    assert "compiling" in out.getvalue() and "10/10" in out.getvalue()


def test_compile_logs_progress_when_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTURE_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("MIXTURE_QUIET", raising=False)
    spec = tmp_path / "mix.yaml"
    spec.write_text(spec_text(PHASES + [{"name": "ft", "duration": "64sp", "mix": {"chat": 1}}]))
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 4 and all(LINE.match(line) for line in lines)
    expected = re.search(r"compiling \S+mix.yaml: 0/([\d,]+) positions \(0\.0%\)$", lines[0])
    assert expected, lines[0]  # the expected total, before any phase is compiled
    # after the text phase (the first count: no rate yet) the mixed phase gives a rate, and an ETA for the rest
    assert re.search(r": 96/[\d,]+ positions \(\d+\.\d%\)$", lines[1]), lines[1]
    assert any(re.search(r"positions \(\d+\.\d%\), [\d.]+k? positions/s, ETA \d+s$", line) for line in lines[2:])
    total = load_schedule(tmp_path / "out").manifest.num_positions
    assert lines[-1].endswith(f": {total:,}/{total:,} positions (100.0%), " + lines[-1].split(", ", 1)[1])
    assert re.search(r"positions/s - done$", lines[-1])
    assert main(["compile", str(spec), "-o", str(tmp_path / "out2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("phases", [PHASES, [{"name": "mix", "duration": "200k tok", "unit": "samples",
                                               "mix": {"web": 0.5, "img": 0.3, "chat": 0.2}}]])
def test_expected_positions_are_near_what_the_compile_writes(tmp_path: Path, phases: list[dict]) -> None:
    from mixture.api import expected_positions, variants
    from mixture.sourcedata import load_source

    schedule = compile_text(spec_text(phases), tmp_path)
    (variant,) = variants(tmp_path / "spec.yaml")
    spec = variant.resolved.spec
    data = {n: load_source(n, spec.sources[n], spec.seed, variant.base_dir) for n in variant.resolved.used_sources}
    expected, actual = expected_positions(variant.resolved, data), schedule.manifest.num_positions
    assert expected % 8 == 0 and abs(expected - actual) <= 0.02 * actual + 8, (expected, actual)


def test_human_numbers() -> None:
    assert [human(x) for x in (3_440_000_368_640.0, 28e9, 665_000, 512, 0.25)] == \
        ["3.44T", "28B", "665k", "512", "0.25"]
    assert [duration(s) for s in (3, 245, 7620)] == ["3s", "4m05s", "2h07m"]


def test_busy_step_logs_start_heartbeat_and_end() -> None:
    import threading

    from mixture.progress import busy

    out, now, ticked = io.StringIO(), [0.0], threading.Event()
    with busy("report of x", stream=out, quiet=False, interval=0.05, clock=lambda: now[0]) as board:
        now[0] = 42.0
        while "running" not in out.getvalue():  # the heartbeat thread writes within an interval
            ticked.wait(0.01)
        board.line("reading the order")
    lines = out.getvalue().splitlines()
    assert all(LINE.match(line) for line in lines)
    assert lines[0].endswith("report of x: started") and lines[-1].endswith("report of x: done in 42s")
    assert any(line.endswith("report of x: running, 42s") for line in lines)
    assert any(line.endswith("reading the order") for line in lines)


def test_sweep_lines_count_runs() -> None:
    from mixture.progress import count_lines

    out, now = io.StringIO(), [0.0]
    with Board(stream=out, quiet=False, interval=0, clock=lambda: now[0]) as board:
        say = count_lines(board.task("sweep", 3, "runs"))
        for line in ("skip a: done (batch 4)", "train b: batches 4 -> 8, branch", "done b: batch 8",
                     "train c: batches 8 -> 12, branch"):
            now[0] += 30
            say(line)
    lines = out.getvalue().splitlines()
    assert lines[1].endswith("sweep: 1/3 runs (33.3%), train b")
    assert lines[2].endswith("sweep: 2/3 runs (66.7%), 0.0167 runs/s, ETA 1m00s")  # one run in 60 s
    assert lines[-1].endswith("sweep: 2/3 runs (66.7%), 0.0111 runs/s, ETA 1m30s, train c - stopped")  # c never finished


def test_a_start_up_display_ends_when_the_first_board_opens() -> None:
    from mixture.progress import end_starting, starting

    out = io.StringIO()
    starting("train x: starting", stream=out, quiet=False, interval=60)
    with Board(stream=out, quiet=False, interval=0) as board:
        board.task("train x", 2, "batches").advance(2)
    end_starting()  # nothing left to end
    lines = [line[20:] for line in out.getvalue().splitlines()]
    assert lines[0] == "train x: starting: started" and re.fullmatch(r"train x: starting: done in \d+s", lines[1])
    assert lines[2].startswith("train x: 2/2 batches (100.0%)") and lines[-1].endswith(" - done")
