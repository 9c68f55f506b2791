"""One broken file per error path: each must fail with FILE:LINE:COL: path: message, never a traceback.

Each file in tests/mixture/broken/ ends with a comment ``# expect: TEXT`` (an error of `mixture validate`)
or ``# compile-expect: TEXT`` (an error of `mixture compile`); TEXT must appear in what the CLI prints, and
every line printed is one problem located in the file. Some files hold bytes that are not UTF-8 text or
control characters on purpose. Inputs too big to check in (a 300 KB value, a wide alias bomb) are made
here.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest

from mixture.cli import main

HERE = Path(__file__).parent
# Mixture files, then run configs (their `_*.yaml` are the valid files they point at).
BROKEN = sorted((HERE / "broken").glob("*.yaml")) + sorted((HERE / "broken_runs").glob("[!_]*.yaml"))
LOCATED = re.compile(r"^[^\s:]+(:\d+:\d+)?: .")  # FILE:LINE:COL: (or FILE: for a file-wide problem)


def _expectation(path: Path) -> tuple[str, str]:
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        for tag in ("# expect: ", "# compile-expect: "):
            if line.startswith(tag):
                return tag.strip("# :"), line[len(tag):]
    raise AssertionError(f"{path} has no expectation line")


@pytest.mark.parametrize("path", BROKEN, ids=[f"{p.parent.name}/{p.stem}" for p in BROKEN])
def test_broken_file_is_reported_where_it_is_wrong(path, tmp_path, capsys):
    kind, expected = _expectation(path)
    if kind == "expect":
        code = main(["validate", str(path)])
    else:
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
        code = main(["compile", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert expected in err, err
    if expected[0].isdigit():  # a located expectation "LINE:COL: ..." is prefixed by the file name
        assert f"{path}:{expected}" in err
    assert all(LOCATED.match(line) for line in err.splitlines()), err  # one located line per problem
    if kind == "compile-expect":
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text((Path(__file__).parent / "broken" / "undefined_source.yaml").read_text().replace(
        "phases:", "phases:\n  - {name: z, duration: 30sp, mix: {web: 0.5, img: 0.1}}"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "sum to 0.6" in err[0] and "'wbe'" in err[1]


def test_every_schema_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text((Path(__file__).parent / "broken" / "unknown_key.yaml").read_text().replace(
        "seed: 7", "seed: seven"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "seed" in err[0] and "duraton" in err[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text(text)
    return path


def test_a_huge_value_is_not_echoed(tmp_path, capsys):
    base = (Path(__file__).parent / "broken" / "unknown_duration_unit.yaml").read_text()
    path = _write(tmp_path, base.replace("5 parsecs", "5 " + "parsecs" * 45_000))  # a 315 KB value
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1_000 and "315,002 characters" in err and f"{path}:12:15:" in err, err


def test_a_wide_alias_bomb_is_refused_in_bounded_memory(tmp_path, capsys):
    levels = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 50) + "]\n" for i in range(1, 7))
    path = _write(tmp_path, "l0: &l0 [lol, lol]\n" + levels)  # 2 * 50**6 values once expanded
    tracemalloc.start()
    try:
        code = main(["validate", str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:4:5: this value expands to 377,551 values" in err, err
    assert peak < 20 * 2**20


def test_deep_flow_nesting_is_refused_before_the_composer_recurses(tmp_path, capsys):
    path = _write(tmp_path, "name: x\nseed: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:2:71: nested more than 64 levels deep" in capsys.readouterr().err
