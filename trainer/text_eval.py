"""Text benchmarks of an exported model through EleutherAI's lm-eval harness, where it is installed.

The export's ``language_model/`` is a plain ``LlamaForCausalLM`` with its tokenizer, which lm-eval's
Hugging Face backend loads as it would any model. lm-eval is optional (not a dependency of this project):
without it this says how to install it instead of failing with an import error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixture.errors import MixtureError


def evaluate_text(model_dir: str, tasks: list[str], *, limit: int | None = None, batch_size: int = 8) -> dict[str, Any]:
    """lm-eval results (task -> metrics) of the exported text model.

    Raises:
        MixtureError: If lm-eval is not installed or the directory is not an export.
    """
    path = Path(model_dir)
    if (path / "language_model" / "config.json").exists():
        path = path / "language_model"
    if not (path / "config.json").exists():
        raise MixtureError(f"{model_dir} is not an exported model", hint="pass RUN_DIR/export from `mixture train`")
    try:
        import lm_eval
    except ImportError:
        raise MixtureError("EleutherAI's lm-eval harness is not installed",
                           hint="pip install lm-eval (its tasks' datasets must be reachable or cached)") from None
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={path},tokenizer={path}", tasks=tasks,
                                  limit=limit, batch_size=batch_size, device="cpu")
    return out["results"]
