"""The ingest CLI: cheap to import, its flag set frozen, bad input reported without a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mixture.cli import main

HEAVY = ("torch", "streaming", "composer", "img2dataset", "transformers")


def test_cli_module_imports_nothing_heavy() -> None:
    code = ("import sys, streaming_data, streaming_data.cli; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_flag_set_is_frozen() -> None:
    from streaming_data.cli import register

    root = argparse.ArgumentParser()
    register(root.add_subparsers())
    commands = root._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    kinds = commands["ingest"]._subparsers._group_actions[0].choices
    output = {"-h", "--help", "-o", "--out", "--work-dir", "--overwrite", "--size-limit", "--compression",
              "--no-progress", "--tokenizer", "--eos-token"}
    images = {"--visual-tokens", "--verify"}
    assert _flags(kinds["text"]) == output | {"--seq-len", "--text-field", "--format", "--line-documents", "--tail",
                                              "--docs-per-part"}
    assert _flags(kinds["image-caption"]) == output | images | {
        "--urls", "--img2dataset", "--images", "--captions", "--url-column", "--caption-column", "--image-column",
        "--processes", "--threads", "--distributor", "--resize", "--images-per-part", "--workers"}
    assert _flags(kinds["instruction"]) == output | images | {"--image-root", "--max-tokens", "--records-per-part"}
    assert _flags(kinds["train-tokenizer"]) == {"-h", "--help", "-o", "--out", "--vocab-size", "--min-frequency",
                                                "--text-field", "--format", "--line-documents"}
    assert _flags(commands["index"]) == {"-h", "--help", "--visual-tokens", "--eos-id", "--tokenizer", "--overwrite"}


@pytest.mark.parametrize("argv, message", [
    (["ingest", "image-caption", "--images", "{tmp}/nowhere", "-o", "{tmp}/o"], "is not a directory"),
    (["ingest", "image-caption", "--img2dataset", "{tmp}", "-o", "{tmp}/o"], "no img2dataset shards"),
    (["ingest", "instruction", "{tmp}/none.json", "-o", "{tmp}/o"], "matches no file"),
    (["ingest", "text", "{tmp}/x.txt", "-o", "{tmp}/o", "--tokenizer", "{tmp}"], "no tokenizer.json"),
    (["ingest", "train-tokenizer", "{tmp}/x.txt", "-o", "{tmp}/tok", "--vocab-size", "10"], "at least 300"),
    (["index", "{tmp}"], "no index.json"),
    (["ingest", "image-caption", "--urls", "{tmp}/urls.csv", "-o", "{tmp}/o"], "no column 'url'"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.txt").write_text("some text")
    (tmp_path / "urls.csv").write_text("link,caption\nhttp://127.0.0.1:9/a.jpg,a\n")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
