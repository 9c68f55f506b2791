"""Batched greedy answers from a Hugging Face export, through its own ``AutoProcessor``.

The prompt is the export's chat template with one user turn (the image, then the question) and the
generation prompt: exactly the fine-tuning format (``<image tokens>User: {question}\\n`` then
``Assistant: ``), so what this module generates is what any Hugging Face tool generates from the export.
Batches are left-padded; decoding is greedy (``do_sample=False``) with transformers' KV cache, and stops at
the tokenizer's end of text or after ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from trainer.evaluation.layouts import Question


class Generator:
    """An exported model and its processor, answering questions in batches.

    Args:
        export_dir: A directory written by :func:`trainer.export.save_hf`.
        device: ``cpu``, ``cuda``, ... (``None``: CUDA when available).
        max_new_tokens: Answer length cap in tokens.
        suffix: Text appended to every question (e.g. a short-answer instruction), ``""`` for none.
    """

    def __init__(self, export_dir: str | Path, *, device: str | None = None, max_new_tokens: int = 16,
                 suffix: str = "") -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.processor = AutoProcessor.from_pretrained(export_dir)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(export_dir, dtype=dtype).to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.suffix = suffix

    def prompt(self, question: str) -> str:
        """The chat-template prompt of one question."""
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question + self.suffix}]}]
        return self.processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)

    @torch.no_grad()
    def answer(self, questions: Sequence[Question]) -> list[str]:
        """Greedy answers, one per question, in order."""
        images = []
        for q in questions:
            with Image.open(q.image) as img:
                images.append(img.convert("RGB"))
        inputs = self.processor(images=images, text=[self.prompt(q.question) for q in questions],
                                return_tensors="pt", padding=True).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        eos = self.processor.tokenizer.eos_token_id
        out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  eos_token_id=eos, pad_token_id=eos)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
