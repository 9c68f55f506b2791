"""The run directory's typed records (mixture.run_dir): round trips, refusals, metrics lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture import run_dir as rd
from mixture.errors import MixtureError

ROOT = Path(__file__).resolve().parents[2]

_names = st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=8)
infos = st.builds(
    rd.RunInfo, name=_names, status=st.none() | st.sampled_from(rd.STATUSES), schedule=st.none() | _names,
    schedule_fingerprint=st.none() | _names,
    variant=st.none() | st.builds(rd.Variant, _names, st.dictionaries(_names, st.integers() | _names, max_size=3)),
    global_batch_size=st.none() | st.integers(1, 4096), world_size=st.none() | st.integers(1, 64),
    last_batch=st.integers(0, 10**9), stop_batch=st.none() | st.integers(1, 10**9),
    started=st.none() | st.floats(0, 2e9), finished=st.none() | st.floats(0, 2e9), export=st.none() | _names,
    same_as=st.none() | _names, trained_in=st.none() | _names)


@given(info=infos)
def test_run_info_round_trips_through_its_file(info: rd.RunInfo, tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    rd.write_info(run_dir, info)
    assert rd.read_info(run_dir) == info
    assert sorted(p.name for p in run_dir.iterdir()) == [rd.RUN_JSON]  # written whole, no partial left


def test_a_run_json_from_an_older_writer_reads_with_defaults(tmp_path: Path) -> None:
    (tmp_path / rd.RUN_JSON).write_text(json.dumps({"status": "done", "last_batch": None, "someday": 1}))
    info = rd.read_info(tmp_path)
    assert info.status == "done" and info.last_batch == 0 and info.variant is None and info.name == ""


@pytest.mark.parametrize(("content", "message"), [
    ({"status": "finished"}, "status 'finished' is not one of running, stopped, failed, done"),
    ({"variant": "a=1"}, "variant should be an object"),
])
def test_bad_run_json_is_refused_naming_the_file(tmp_path: Path, content: dict, message: str) -> None:
    (tmp_path / rd.RUN_JSON).write_text(json.dumps(content))
    with pytest.raises(MixtureError, match=message) as err:
        rd.read_info(tmp_path)
    assert str(tmp_path / rd.RUN_JSON) in str(err.value)
    assert rd.find_info(tmp_path) is None and rd.find_info(tmp_path / "absent") is None


def test_results_round_trip_and_refusal(tmp_path: Path) -> None:
    assert rd.read_results(tmp_path) is None
    rd.write_results(tmp_path, rd.Results(12, {"eval/loss/text": 3.5}))
    assert rd.read_results(tmp_path) == rd.Results(12, {"eval/loss/text": 3.5})
    (tmp_path / rd.RESULTS).write_text('{"batch": "12", "eval": {}}')
    with pytest.raises(MixtureError, match="integer 'batch'"):
        rd.read_results(tmp_path)


def test_results_carry_baselines_and_older_files_read_without(tmp_path: Path) -> None:
    prior = rd.Baseline(0.31, 0.013, "answer prior", "each kind's most common answer")
    results = rd.Results(12, {"eval/vqa/accuracy": 0.5}, {"eval/vqa/accuracy": prior})
    rd.write_results(tmp_path, results)
    assert json.loads((tmp_path / rd.RESULTS).read_text())["baselines"]["eval/vqa/accuracy"]["value"] == 0.31
    assert rd.read_results(tmp_path) == results
    (tmp_path / rd.RESULTS).write_text('{"batch": 12, "eval": {"eval/loss/text": 3.5}}')  # before baselines
    assert rd.read_results(tmp_path) == rd.Results(12, {"eval/loss/text": 3.5}, {})
    (tmp_path / rd.RESULTS).write_text('{"batch": 12, "eval": {}, "baselines": {"eval/loss/text": {"se": 0}}}')
    with pytest.raises(MixtureError, match="baselines.eval/loss/text needs a numeric 'value'"):
        rd.read_results(tmp_path)


def test_metrics_append_truncate_and_a_half_written_last_line(tmp_path: Path) -> None:
    for batch in (1, 2, 3):
        rd.append_metrics(tmp_path, {"batch": batch, "loss/train": 1.0 / batch})
    rd.append_metrics(tmp_path, {"batch": 3, "eval/loss/text": 2.0})
    rd.truncate_metrics(tmp_path, 2)
    lines, notes = rd.read_metrics(tmp_path)
    assert [line["batch"] for line in lines] == [1, 2] and notes == []
    with open(tmp_path / rd.METRICS, "a") as handle:
        handle.write('{"batch": 3, "loss/tr')
    lines, notes = rd.read_metrics(tmp_path)
    assert len(lines) == 2 and notes == [f"the last line of {rd.METRICS} is incomplete and was left out"]
    (tmp_path / rd.METRICS).write_text('{"batch": 1}\nnot json\n{"batch": 2}\n')
    with pytest.raises(MixtureError, match=r"metrics.jsonl:2: not a JSON object"):
        rd.read_metrics(tmp_path)
    assert rd.is_eval_line({"batch": 1, "eval/vqa/accuracy": 0.5}) and not rd.is_eval_line({"batch": 1})


def test_the_module_imports_nothing_heavy() -> None:
    code = ("import sys, mixture.run_dir; bad = {'torch', 'composer', 'streaming', 'numpy', 'polars'} & "
            "set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_checkpoint_file_names_round_trip() -> None:
    from mixture.run_dir import checkpoint_batch, checkpoint_file

    assert checkpoint_file(120) == "ba120-rank0.pt" and checkpoint_file(7, 3) == "ba7-rank3.pt"
    assert checkpoint_file("*", "*") == "ba*-rank*.pt"
    assert [checkpoint_batch(checkpoint_file(b, r)) for b, r in ((0, 0), (120, 1), (10**9, 7))] == [0, 120, 10**9]
    assert [checkpoint_batch(n) for n in ("latest-rank0.pt", "ba12-rank0.pt.tmp", "bax-rank0.pt", "ba1.pt")] == [None] * 4
