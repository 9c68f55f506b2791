"""One broken file per error path: each must fail with FILE:LINE:COL: path: message, never a traceback.

Each file in tests/mixture/broken/ ends with a comment ``# expect: TEXT`` (an error of `mixture validate`)
or ``# compile-expect: TEXT`` (an error of `mixture compile`); TEXT must appear in what the CLI prints.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mixture.cli import main

BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, str]:
    for line in path.read_text().splitlines():
        for tag in ("# expect: ", "# compile-expect: "):
            if line.startswith(tag):
                return tag.strip("# :"), line[len(tag):]
    raise AssertionError(f"{path} has no expectation line")


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
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
