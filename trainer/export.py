"""Export a trained VLM in Hugging Face form, loadable with nothing but transformers:

- ``DIR``: ``LlavaForConditionalGeneration`` (``AutoModelForImageTextToText``) weights and config, and a
  ``LlavaProcessor`` (``AutoProcessor``): a SigLIP image processor with the encoder's size, bicubic resize
  and the ``(x / 255 - 0.5) / 0.5`` normalisation the trainer applies; the tokenizer with ``<image>`` added
  as the special token whose id is the model's image token; a chat template that renders the fine-tuning
  format of :mod:`streaming_data.instruction` (one image: its tokens first, then ``User: {text}\\n``,
  ``Assistant: {text}<eos>``; several images: each image part's ``<image>`` where it stands in its message,
  which the processor expands to that image's tokens, in the order of ``images=[...]``;
  ``add_generation_prompt`` ends with ``Assistant: ``).
- ``DIR/language_model``: the text model alone (``LlamaForCausalLM``) with its tokenizer, which text
  benchmarks such as EleutherAI's lm-eval harness load directly.

The byte tokenizer (``bytes``) is exported as a ``tokenizers`` byte-level model with no merges whose ids are
the bytes, so it encodes exactly as training did. Under FSDP the full state dict is gathered (every rank
takes part) and rank 0 writes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from mixture.errors import MixtureError

IMAGE_TOKEN = "<image>"
BYTE_EOS = "<|endoftext|>"
MODEL_INPUTS = ["input_ids", "attention_mask"]  # no token_type_ids: generate() refuses them
# The training format (streaming_data/instruction.py): one image's tokens go first wherever it appears;
# several images each go where their image part stands.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(images=0) -%}"
    "{%- for m in messages -%}{%- if m['content'] is not string -%}{%- for p in m['content'] -%}"
    "{%- if p['type'] == 'image' -%}{%- set ns.images = ns.images + 1 -%}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if ns.images == 1 -%}{{ '<image>' }}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set text = m['content'] -%}"
    "{%- else -%}{%- set text = namespace(s='') -%}{%- for p in m['content'] -%}"
    "{%- if p['type'] == 'text' -%}{%- set text.s = text.s + p['text'] -%}"
    "{%- elif p['type'] == 'image' and ns.images > 1 -%}{%- set text.s = text.s + '<image>' -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = text.s -%}{%- endif -%}"
    "{%- if m['role'] == 'assistant' -%}{{ 'Assistant: ' + text + eos_token }}"
    "{%- elif m['role'] == 'system' -%}{{ 'System: ' + text + '\n' }}"
    "{%- else -%}{{ 'User: ' + text + '\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant: ' }}{%- endif -%}"
)


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
    """Save a LLaVA state dict, its processor and its text model as Hugging Face directories (atomically:
    written to ``OUT.partial`` and renamed)."""
    from transformers import LlamaForCausalLM, LlavaForConditionalGeneration

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    llava = LlavaForConditionalGeneration(config)
    llava.load_state_dict(state)
    processor = build_processor(config, tokenizer_dir)
    eos = processor.tokenizer.eos_token_id
    llava.generation_config.eos_token_id = eos
    llava.generation_config.pad_token_id = eos
    llava.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    text = LlamaForCausalLM(config.text_config)
    text.model.load_state_dict(llava.model.language_model.state_dict())
    text.lm_head.load_state_dict(llava.lm_head.state_dict())
    text.generation_config.eos_token_id = eos
    text.generation_config.pad_token_id = eos
    text.save_pretrained(tmp / "language_model")
    processor.tokenizer.save_pretrained(tmp / "language_model")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def byte_tokenizer() -> Any:
    """The trainer's byte tokenizer (ids 0-255 = UTF-8 bytes, 256 = end of text) as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()  # the 256 printable stand-ins of the bytes, in byte order below
    table = _bytes_to_unicode()
    assert sorted(table.values()) == sorted(alphabet)
    core = Tokenizer(models.BPE(vocab={table[b]: b for b in range(256)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=BYTE_EOS, pad_token=BYTE_EOS,
                                        model_input_names=MODEL_INPUTS)
    assert tokenizer.eos_token_id == 256
    return tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def load_tokenizer_fast(tokenizer_dir: str | None) -> Any:
    """The training tokenizer as a ``PreTrainedTokenizerFast`` (no BOS or other tokens added)."""
    from transformers import PreTrainedTokenizerFast

    if not tokenizer_dir or tokenizer_dir == "bytes":
        return byte_tokenizer()
    from streaming_data.tokenizer import HFTokenizer

    ours = HFTokenizer(tokenizer_dir)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=ours.file, eos_token=ours.eos_token, pad_token=ours.eos_token,
                                        model_input_names=MODEL_INPUTS)
    tokenizer._tokenizer.post_processor = None  # ingest adds no special tokens; neither may the export
    return tokenizer


def build_processor(config: Any, tokenizer_dir: str | None) -> Any:
    """The ``LlavaProcessor`` of a model config and its training tokenizer (see the module docstring)."""
    from transformers import LlavaProcessor, SiglipImageProcessor

    from trainer.model import PIXEL_MEAN, PIXEL_STD

    tokenizer = load_tokenizer_fast(tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != config.image_token_id:
        raise MixtureError(f"tokenizer {tokenizer_dir}: {IMAGE_TOKEN} would get id "
                           f"{tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}, the model's image token is "
                           f"{config.image_token_id}", hint="export with the tokenizer the model was trained with")
    tokenizer.padding_side = "left"  # batched generation
    vision = config.vision_config
    images = SiglipImageProcessor(size={"height": vision.image_size, "width": vision.image_size}, resample=3,
                                  do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                  image_mean=[PIXEL_MEAN] * 3, image_std=[PIXEL_STD] * 3, do_convert_rgb=True)
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision.patch_size,
                          vision_feature_select_strategy=config.vision_feature_select_strategy,
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN, num_additional_image_tokens=0)
