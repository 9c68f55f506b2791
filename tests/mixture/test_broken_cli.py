"""Misuses of the command line and damaged schedule directories: exit 2, one line per problem, no traceback.

The damaged directories are made here from one good compile (a truncated order, a missing lr.npy, a flipped
byte, an edited manifest, ...); each is refused by `explain`, and the commands that read orders (`export`,
`report`, `train`'s run-config check) refuse a sample of them. Everything runs in-process through
``mixture.cli.main``; two checks run the real console script.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mixture.cli import main

# Each line names where the problem is: FILE:LINE:COL:, FILE:, DIR:, --flag: or -o PATH:.
LOCATED = re.compile(r"^(-o )?[^\s:]+(:\d+:\d+)?: .")

GOOD = """\
name: good
seed: 7
run:
  seq_len: 256
  global_batch_size: 8
  lr: {peak: 1e-3, warmup: 5ba}
sources:
  web: {kind: text, declared: {samples: 5000, tokens_per_sample: 100}}
  img: {kind: image_caption, declared: {samples: 3000, caption_tokens: {mean: 20, std: 5, min: 1, max: 40}}}
phases:
  - {name: a, duration: 20k tok, mix: {web: 1}}
  - {name: b, duration: 100k tok, mix: {web: 0.7, img: 0.3}, ramp: {length: 30k tok}, lr: {cooldown: {to: 0}}}
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding good.yaml, its compiled schedule sched/, and run.yaml training on it."""
    root = tmp_path_factory.mktemp("cli")
    (root / "good.yaml").write_text(GOOD)
    assert main(["compile", str(root / "good.yaml"), "-o", str(root / "sched")]) == 0
    (root / "run.yaml").write_text("schedule: sched\nrun_dir: out/run\n")
    (root / "a_file").write_text("not a directory\n")
    (root / "user_dir").mkdir()
    (root / "user_dir" / "notes.txt").write_text("precious\n")
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _refused(code: int, err: str, expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert expected in err, err
    lines = err.strip().splitlines()
    assert lines and all(LOCATED.match(line) for line in lines), err


# (id, argv with {D} = the fixture's directory, expected text)
MISUSES = [
    ("validate_missing_file", ["validate", "{D}/nope.yaml"], "nope.yaml: cannot read this mixture file or run config: no such file"),
    ("validate_directory", ["validate", "{D}/sched"], "sched: cannot read this mixture file or run config: it is a directory"),
    ("compile_missing_file", ["compile", "{D}/nope.yaml", "-o", "{D}/x"], "no such file"),
    ("compile_onto_a_file", ["compile", "{D}/good.yaml", "-o", "{D}/a_file"], "a_file is a file, not a directory"),
    ("compile_under_a_file", ["compile", "{D}/good.yaml", "-o", "{D}/a_file/sub"], "a_file is a file"),
    ("compile_onto_user_data", ["compile", "{D}/good.yaml", "-o", "{D}/user_dir"],
     "user_dir is a directory that is not a compiled schedule"),
    ("compile_unknown_variant", ["compile", "{D}/good.yaml", "-o", "{D}/x", "--variant", "s=9"],
     "--variant: no variant named 's=9'"),
    ("explain_missing", ["explain", "{D}/nowhere"], "nowhere: cannot read this mixture file: no such file"),
    ("explain_user_dir", ["explain", "{D}/user_dir"], "user_dir: not a compiled schedule (no manifest.json)"),
    ("explain_run_config", ["explain", "{D}/run.yaml"], "run.yaml:1:1: name: required field is missing"),
    ("export_onto_directory", ["export", "{D}/sched", "-o", "{D}/user_dir"], "user_dir: is a directory"),
    ("export_missing_parent", ["export", "{D}/sched", "-o", "{D}/no/such/o.parquet"], "no directory"),
    ("export_range_past_end", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "0:99999999"],
     "--range: 0:99999999 is not inside the schedule's"),
    ("export_range_start_past_end", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "99999999:"],
     "--range: 99999999:"),
    ("export_range_reversed", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "50:10"],
     "--range: 50:10 is not inside"),
    ("export_range_empty", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "10:10"], "--range: 10:10"),
    ("export_range_words", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "a:b"],
     "--range: cannot read 'a:b'"),
    ("export_range_three_parts", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range", "1:2:3"],
     "--range: cannot read"),
    ("export_range_negative", ["export", "{D}/sched", "-o", "{D}/o.parquet", "--range=-5:10"], "--range: -5:10"),
    ("export_from_a_file", ["export", "{D}/a_file", "-o", "{D}/o.parquet"],
     "a_file: not a compiled schedule (it is a file)"),
    ("export_from_user_dir", ["export", "{D}/user_dir", "-o", "{D}/o.parquet"], "user_dir: not a compiled schedule"),
    ("export_from_nowhere", ["export", "{D}/nowhere", "-o", "{D}/o.parquet"],
     "nowhere: not a compiled schedule (no such directory)"),
    ("train_stop_at_word", ["train", "{D}/run.yaml", "--stop-at", "half"], "--stop-at: cannot read 'half'"),
    ("train_stop_at_bare", ["train", "{D}/run.yaml", "--stop-at", "40"], "--stop-at: a bare number '40' has no unit"),
    ("train_stop_at_epochs", ["train", "{D}/run.yaml", "--stop-at", "2 ep"], "--stop-at: '2 ep': stop at a positive number of batches"),
    ("train_stop_at_past_end", ["train", "{D}/run.yaml", "--stop-at", "9999ba"],
     "--stop-at: '9999ba' is outside the schedule's batches 1..123"),
    ("train_stop_at_comma", ["train", "{D}/run.yaml", "--stop-at", "1,5k ba"], "--stop-at: '1,5k ba': a comma"),
    ("train_missing_config", ["train", "{D}/nope.yaml"], "nope.yaml: cannot read this run config: no such file"),
    ("train_config_is_a_directory", ["train", "{D}/sched"], "it is a directory"),
    ("train_mixture_as_config", ["train", "{D}/good.yaml"], "good.yaml:1:1: name: unknown key 'name'"),
]


@pytest.mark.parametrize(("argv", "expected"), [m[1:] for m in MISUSES], ids=[m[0] for m in MISUSES])
def test_misuse_is_refused_in_one_line(good: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                       expected: str) -> None:
    code, err = _run([a.replace("{D}", str(good)) for a in argv], capsys)
    _refused(code, err, expected)
    assert (good / "user_dir" / "notes.txt").read_text() == "precious\n"  # never deleted by a refused compile
    assert not (good / "o.parquet").exists()


def _flip(name: str, offset: int) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        data = bytearray((d / name).read_bytes())
        data[offset] ^= 0x01
        (d / name).write_bytes(bytes(data))
    return damage


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes((d / name).read_bytes()[:keep])


def _append(name: str, extra: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes((d / name).read_bytes() + extra)


def _edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        manifest = json.loads((d / "manifest.json").read_text())
        change(manifest)
        (d / "manifest.json").write_text(json.dumps(manifest))
    return damage


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda m: m.__setitem__(key, value)


# (id, damage, expected text)
DAMAGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("order_truncated", _truncate("order.bin", 100), "order.bin has 100 bytes, the manifest implies"),
    ("order_empty", _truncate("order.bin", 0), "order.bin has 0 bytes"),
    ("order_extended", _append("order.bin", b"\x00" * 8), "order.bin has"),
    ("order_missing", lambda d: (d / "order.bin").unlink(), "order.bin is missing"),
    ("order_byte_flipped", _flip("order.bin", 200), "its contents give fingerprint"),
    ("checkpoints_missing", lambda d: (d / "checkpoints.npy").unlink(), "checkpoints.npy is missing"),
    ("checkpoints_truncated", _truncate("checkpoints.npy", 140), "checkpoints.npy has 140 bytes"),
    ("checkpoints_byte_flipped", lambda d: _flip("checkpoints.npy", (d / "checkpoints.npy").stat().st_size - 3)(d),
     "its contents give fingerprint"),
    ("checkpoints_garbage", lambda d: (d / "checkpoints.npy").write_bytes(b"garbage"),
     "checkpoints.npy is not a NumPy array file"),
    ("batch_tokens_missing", lambda d: (d / "batch_tokens.npy").unlink(), "batch_tokens.npy is missing"),
    ("batch_tokens_truncated", _truncate("batch_tokens.npy", 300), "batch_tokens.npy has 300 bytes"),
    ("batch_tokens_wrong_shape", lambda d: np.save(d / "batch_tokens.npy", np.zeros(3, np.int64)),
     "batch_tokens.npy has shape (3,)"),
    ("lr_missing", lambda d: (d / "lr.npy").unlink(), "lr.npy is missing"),
    ("lr_truncated", _truncate("lr.npy", 200), "lr.npy has 200 bytes"),
    ("lr_wrong_shape", lambda d: np.save(d / "lr.npy", np.zeros(2)), "lr.npy has shape (2,)"),
    ("manifest_missing", lambda d: (d / "manifest.json").unlink(), ": not a compiled schedule (no manifest.json)"),
    ("manifest_truncated", _truncate("manifest.json", 50), "manifest.json is not valid JSON"),
    ("manifest_not_utf8", lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{}"), "manifest.json is not valid"),
    ("manifest_a_list", lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json is not a JSON object"),
    ("manifest_field_missing", _edit(lambda m: m.pop("num_positions")), "field 'num_positions' is missing"),
    ("manifest_field_retyped", _edit(_set("global_batch_size", "8")), "field 'global_batch_size' is missing or"),
    ("manifest_fingerprint_edited", _edit(_set("fingerprint", "0" * 32)), "the manifest records 000000"),
    ("manifest_phase_stop_edited", _edit(lambda m: m["phases"][1].__setitem__("stop", m["phases"][1]["stop"] + 8)),
     "order.bin has"),
    ("manifest_source_size_edited", _edit(lambda m: m["sources"][0].__setitem__("num_samples", 7)),
     "its contents give fingerprint"),
    ("manifest_num_batches_edited", _edit(_set("num_batches", 3)), "num_batches disagrees"),
    ("manifest_dtype_unknown", _edit(_set("order_dtype", "float64")), "unknown order_dtype 'float64'"),
    ("manifest_phase_lacks_fields", _edit(lambda m: m["phases"][0].pop("start")), "phases[0] lacks one of"),
    ("manifest_no_lr_flag", _edit(_set("has_lr", None)), "field 'has_lr' is missing"),
]


@pytest.fixture
def damaged(good: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    target = tmp_path / "sched"
    shutil.copytree(good / "sched", target)
    request.param(target)
    return target


@pytest.mark.parametrize(("damaged", "expected"), [(d[1], d[2]) for d in DAMAGES], ids=[d[0] for d in DAMAGES],
                         indirect=["damaged"])
def test_a_damaged_schedule_is_refused_before_use(damaged: Path, expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["explain", str(damaged)], capsys)
    _refused(code, err, expected)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("damaged", "expected"), [(d[1], d[2]) for d in DAMAGES[::4]],
                         ids=[d[0] for d in DAMAGES[::4]], indirect=["damaged"])
def test_export_and_a_run_config_refuse_a_damaged_schedule(damaged: Path, expected: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["export", str(damaged), "-o", str(tmp_path / "o.parquet")], capsys)
    _refused(code, err, expected)
    assert not (tmp_path / "o.parquet").exists()
    (tmp_path / "run.yaml").write_text(f"schedule: {damaged}\nrun_dir: out\n")
    for argv in (["validate", str(tmp_path / "run.yaml")], ["train", str(tmp_path / "run.yaml")]):
        code, err = _run(argv, capsys)
        _refused(code, err, expected)
        assert f"{tmp_path / 'run.yaml'}:1:1: schedule:" in err


def test_report_refuses_a_damaged_schedule(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sched"
    shutil.copytree(good / "sched", target)
    (target / "lr.npy").unlink()
    code, err = _run(["-q", "report", str(target), "-o", str(tmp_path / "report")], capsys)
    _refused(code, err, "lr.npy is missing")


def test_the_good_schedule_passes_every_check(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(good / "sched")]) == 0
    assert main(["export", str(good / "sched"), "-o", str(tmp_path / "o.parquet"), "--range", "8:16"]) == 0
    assert main(["validate", str(good / "run.yaml")]) == 0
    assert "run config" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["train", "{D}/run.yaml", "--stop-at", "half"], ["explain", "{D}/user_dir"]])
def test_the_console_script_prints_one_line_and_exits_2(good: Path, argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "mixture", *(a.replace("{D}", str(good)) for a in argv)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_a_just_compiled_schedule_is_not_read_back_but_a_later_change_is_caught(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiler vouches for what it has just written (it hashed order.bin as it wrote it), so
    ``compile_variant`` does not hash the order a second time; a file changed afterwards is verified again."""
    import mixture.schedule_check as check
    from mixture.api import compile_variant, variants
    from mixture.errors import MixtureError
    from mixture.schedule import load_schedule

    (tmp_path / "good.yaml").write_text(GOOD)
    (variant,) = variants(tmp_path / "good.yaml")
    recompute = check.recomputed_fingerprint
    calls: list[Path] = []

    def counted(path: Path, manifest: dict | None = None) -> str:
        calls.append(Path(path))
        return recompute(path, manifest)

    monkeypatch.setattr(check, "recomputed_fingerprint", counted)
    schedule = compile_variant(variant, tmp_path / "sched")
    assert calls == [] and len(schedule) > 0
    assert load_schedule(tmp_path / "sched").fingerprint == schedule.fingerprint and calls == []
    _truncate("order.bin", 100)(tmp_path / "sched")
    with pytest.raises(MixtureError, match="order.bin has 100 bytes, the manifest implies"):
        load_schedule(tmp_path / "sched")
    copy = tmp_path / "copy"
    compile_variant(variant, tmp_path / "sched2")
    shutil.copytree(tmp_path / "sched2", copy)  # the same bytes at another path: verified in full
    assert load_schedule(copy).fingerprint == schedule.fingerprint and calls == [copy]
