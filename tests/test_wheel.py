"""The distribution as a user gets it: a wheel built with ``uv build``, installed into a fresh venv with its
dependencies at the lock's versions (from uv's cache where it has them, else the registry), run from a directory outside the repository.

It proves that every subcommand registers from the installed packages (nothing read through a repository
path, no subpackage left out of the wheel). The demo's own run from a wheel belongs to its tests; this
module gives them ``installed_mixture``. Needs ``uv`` on PATH (the project's package manager) and its
lock; skipped where uv is missing.
"""

from __future__ import annotations

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


def _run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


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
