"""Durations are parsed once, by resolve: the compiler and the LR plan read ``Resolved.durations``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["compiler.py", "lr.py"])
def test_the_compiler_and_the_lr_plan_do_not_parse_durations(module: str) -> None:
    tree = ast.parse((ROOT / "mixture" / module).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "parse_duration" not in names
