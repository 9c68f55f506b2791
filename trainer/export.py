"""Export a trained VLM in Hugging Face form: ``LlavaForConditionalGeneration.from_pretrained(DIR)`` loads it
without this project's code, and ``DIR/language_model`` holds the text model alone (``LlamaForCausalLM``), which
text benchmarks such as EleutherAI's lm-eval harness load directly. The tokenizer is copied beside both.

Under FSDP the full state dict is gathered (every rank takes part) and rank 0 writes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch


def export_run(model: Any, out_dir: Path, tokenizer_dir: str | None) -> Path:
    """Write ``model`` (a :class:`trainer.model.VLM`, possibly FSDP-sharded) to ``out_dir``; returns it."""
    from composer.utils import dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from trainer.model import export_state

    hf = model.hf
    if dist.get_world_size() > 1:
        state = get_model_state_dict(hf, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = {k: v.detach().cpu() for k, v in hf.state_dict().items()}
    if dist.get_global_rank() == 0:
        save_hf(hf.config, export_state(model, state), out_dir, tokenizer_dir)
    dist.barrier()
    return out_dir


def save_hf(config: Any, state: dict[str, torch.Tensor], out_dir: Path, tokenizer_dir: str | None) -> None:
    """Save a LLaVA state dict and its text model as Hugging Face model directories."""
    from transformers import LlamaForCausalLM, LlavaForConditionalGeneration

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    llava = LlavaForConditionalGeneration(config)
    llava.load_state_dict(state)
    llava.save_pretrained(tmp)
    text = LlamaForCausalLM(config.text_config)
    text.model.load_state_dict(llava.model.language_model.state_dict())
    text.lm_head.load_state_dict(llava.lm_head.state_dict())
    text.save_pretrained(tmp / "language_model")
    if tokenizer_dir and tokenizer_dir != "bytes":
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if Path(tokenizer_dir, name).exists():
                for target in (tmp, tmp / "language_model"):
                    shutil.copy(Path(tokenizer_dir, name), target / name)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
