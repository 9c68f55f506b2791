"""``mixture eval-text``: text benchmarks of an exported model through EleutherAI's lm-evaluation-harness.

The export's ``language_model/`` is a plain ``LlamaForCausalLM`` with its tokenizer, which the harness's
Hugging Face backend (``hf``) loads like any model. Tasks are the harness's own task YAML; ``--include``
adds a directory (or one YAML file) of local tasks, e.g. an ARC-Easy-format multiple-choice task over a
local JSONL (docs/evaluation.md). Datasets are read offline (``HF_DATASETS_OFFLINE=1``): a task whose data
is not local or cached fails with the harness's message. The harness is the optional ``eval`` extra
(``uv sync --extra eval``; ``make setup`` installs it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError


def _text_model(model_dir: str) -> Path:
    path = Path(model_dir)
    if (path / "export" / "language_model" / "config.json").exists():
        path = path / "export"
    if (path / "language_model" / "config.json").exists():
        path = path / "language_model"
    if not (path / "config.json").exists():
        raise MixtureError(f"{model_dir} is not an exported model", hint="pass RUN_DIR or RUN_DIR/export from `mixture train`")
    return path


def _include_dir(include: str | None) -> str | None:
    """The directory of local task YAML (a file given as ``--include`` adds its folder)."""
    if include is None:
        return None
    path = Path(include)
    if not path.exists():
        raise MixtureError(f"--include {include}: no such file or directory")
    return str(path.parent if path.is_file() else path)


def evaluate_text(model_dir: str, tasks: list[str], *, include: str | None = None, limit: int | None = None,
                  batch_size: int = 8, device: str = "cpu") -> dict[str, Any]:
    """The harness's results (task -> metrics) of the exported text model.

    Raises:
        MixtureError: If the harness is not installed, the directory is not an export or a task is unknown.
    """
    path = _text_model(model_dir)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MixtureError("EleutherAI's lm-eval harness is not installed",
                           hint="install the optional extra: uv sync --extra eval (make setup does)") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    manager = TaskManager(include_path=_include_dir(include))
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise MixtureError(f"unknown lm-eval task(s): {', '.join(unknown)}",
                           hint="name a harness task, or pass --include DIR with its YAML")
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={path},tokenizer={path}", tasks=tasks,
                                  task_manager=manager, limit=limit, batch_size=batch_size, device=device)
    return out["results"]
