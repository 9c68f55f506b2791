"""The distribution as a user gets it: a wheel built with ``uv build``, installed into a fresh venv with its
dependencies at the lock's versions (from uv's cache where it has them, else the registry), run from a directory outside the repository.

It proves that every subcommand registers from the installed packages (nothing read through a repository
path, no subpackage left out of the wheel) and that the CI-scale demo (the scale of
``tests/trainer/test_demo.py``: 0.05, 20 questions) runs from it to its summary, figure and report. Needs
``uv`` on PATH (the project's package manager) and its lock; skipped where uv is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("init", "validate", "compile", "explain", "export", "sweep", "ingest", "index", "train", "eval", "eval-text",
               "demo", "stats", "report", "compare")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")]


@pytest.fixture(scope="module")
def installed_mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``mixture`` script of a fresh venv holding only the built wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(["uv", "build", "--wheel", "-o", str(root / "dist"), str(ROOT)], check=True, env=env,
                   capture_output=True)
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run(["uv", "venv", "-q", "-p", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)],
                   check=True, env=env, capture_output=True)
    # The dependencies at the lock's versions (what `make setup` installs; most come from uv's cache), then the
    # wheel itself: resolving afresh offline fails on versions the cache never saw.
    requirements = root / "requirements.txt"
    subprocess.run(["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "-q", "-o",
                    str(requirements)], check=True, env=env, capture_output=True, cwd=ROOT)
    subprocess.run(["uv", "pip", "install", "-q", "-r", str(requirements), str(wheel)], check=True,
                   capture_output=True, env={**env, "VIRTUAL_ENV": str(venv)})
    return venv / "bin" / "mixture"


def _run(script: Path, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_subcommand_registers_from_the_wheel(installed_mixture: Path, tmp_path: Path) -> None:
    proc = _run(installed_mixture, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^    (\S+)", proc.stdout, re.MULTILINE)
    assert set(SUBCOMMANDS) <= set(listed), listed
    for args in (["sweep", "--help"], ["demo", "--help"], ["train", "--help"]):
        proc = _run(installed_mixture, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr


def test_the_wheel_runs_its_own_code_not_the_checkout(installed_mixture: Path, tmp_path: Path) -> None:
    python = installed_mixture.parent / "python"
    code = "import mixture, trainer.sweep.cli; print(mixture.__file__); print(trainer.sweep.cli.__file__)"
    proc = _run(python, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert Path(line).is_relative_to(installed_mixture.parents[1]) and not Path(line).is_relative_to(ROOT)


def test_the_ci_scale_demo_runs_from_the_wheel(installed_mixture: Path, tmp_path: Path) -> None:
    """`mixture demo` at tests/trainer/test_demo.py's scale, from a directory outside the checkout: its
    templates come from the installed package, and it ends with every variant measured and reported."""
    out = tmp_path / "demo"
    proc = _run(installed_mixture, "demo", "-o", str(out), "--scale", "0.05", "--questions", "20", "--threads", "1",
                cwd=tmp_path, timeout=540)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [variant["intro_percent"] for variant in summary["variants"]] == [0, 40, 80, 100]
    assert all(len(variant["vqa_accuracy"]["per_seed"]) == 1 for variant in summary["variants"])
    report = json.loads((out / "report" / "report.json").read_text())
    assert [row["status"] for row in report["table"]] == ["done"] * 4
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"summary: {out / 'summary.json'}" in proc.stdout
