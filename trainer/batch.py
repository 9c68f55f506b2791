"""Turn served samples (text, image-caption, instruction) into one padded batch of tensors.

Every sample becomes one sequence of ``seq_len`` tokens:

=============  ===========================================  ==========================================
kind           input_ids                                    labels (loss where not IGNORE)
=============  ===========================================  ==========================================
text           the packed ids                               the same ids
image_caption  V image tokens + caption ids + EOS           IGNORE on the V image tokens; caption + EOS
instruction    [V image tokens] + the conversation's ids    the ids where ``loss_mask`` is 1 (assistant
                                                            answers and their EOS), else IGNORE
=============  ===========================================  ==========================================

then right-padded with EOS (attention mask 0, label IGNORE). A sequence longer than ``seq_len`` is cut;
an image's visual tokens are never cut (a caption is shortened instead), so features and image tokens
always match. Images are decoded with Pillow, converted to RGB and resized to the encoder's size; they stay
uint8 until the model normalises them, which keeps worker-to-trainer transfers 4x smaller.
The budget tokens of each sample (what the schedule charged for it) ride along for the per-source
token counts; they come from the schedule, by position.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image


IGNORE = -100
"""Label of a token without loss (visual tokens, padding, non-assistant turns)."""


@dataclass(frozen=True)
class Vocab:
    """Token ids the model and the collator agree on."""

    text_vocab_size: int
    eos_id: int

    @property
    def image_token_id(self) -> int:
        """One id past the tokenizer's vocabulary: never produced by the tokenizer."""
        return self.text_vocab_size

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary: the tokenizer's plus the image token."""
        return self.text_vocab_size + 1


class Collator:
    """Callable collate function for :func:`streaming_data.serve.build_dataloader` (picklable).

    Args:
        kinds: Kind of each source id (``text``, ``image_caption``, ``instruction``).
        schedule_path: The compiled schedule (for budget tokens by position); ``None`` for held-out data.
        seq_len: Tokens per sequence.
        vocab: EOS and image token ids.
        visual_tokens: Image tokens per image (the encoder's patches).
        image_size: The encoder's input size in pixels.
    """

    def __init__(self, kinds: Sequence[str], schedule_path: str | None, seq_len: int, vocab: Vocab,
                 visual_tokens: int, image_size: int) -> None:
        if visual_tokens >= seq_len:
            raise ValueError(f"{visual_tokens} visual tokens do not fit a {seq_len}-token sequence")
        self.kinds = list(kinds)
        self.schedule_path = schedule_path
        self.seq_len = seq_len
        self.vocab = vocab
        self.visual_tokens = visual_tokens
        self.image_size = image_size
        self._schedule: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_schedule": None}  # workers re-open the schedule from its path

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [self.sequence(s) for s in samples]
        ids = torch.from_numpy(np.stack([r[0] for r in rows]))
        labels = torch.from_numpy(np.stack([r[1] for r in rows]))
        lengths = torch.tensor([r[2] for r in rows])
        pixels = torch.from_numpy(np.stack([r[3] for r in rows]))
        return {
            "input_ids": ids, "labels": labels,
            "attention_mask": (torch.arange(self.seq_len)[None, :] < lengths[:, None]).long(),
            "pixels": pixels, "has_image": torch.tensor([r[4] for r in rows]),
            "source_id": torch.tensor([int(s.get("source_id", 0)) for s in samples], dtype=torch.int64),
            "position": torch.tensor([int(s.get("position", -1)) for s in samples], dtype=torch.int64),
            "budget_tokens": torch.from_numpy(self.budget_tokens(samples)),
        }

    def sequence(self, sample: dict[str, Any]) -> tuple[NDArray[np.int64], NDArray[np.int64], int, NDArray[np.uint8],
                                                         bool]:
        """(input_ids, labels, length, pixels, has_image) of one sample, padded to ``seq_len``."""
        kind = self.kinds[int(sample.get("source_id", 0))]
        image = None
        if kind == "text":
            ids = np.asarray(sample["input_ids"], np.int64)
            labels = ids.copy()
        elif kind == "image_caption":
            caption = np.asarray(sample["caption_ids"], np.int64)[: self.seq_len - self.visual_tokens - 1]
            text = np.append(caption, self.vocab.eos_id)
            ids, labels = self._with_image(text, text)
            image = sample["image"]
        elif kind == "instruction":
            ids = np.asarray(sample["input_ids"], np.int64)
            labels = np.where(np.asarray(sample["loss_mask"]) > 0, ids, IGNORE)
            if sample.get("image"):
                image = sample["image"]
                ids, labels = self._with_image(ids[: self.seq_len - self.visual_tokens],
                                               labels[: self.seq_len - self.visual_tokens])
        else:
            raise ValueError(f"unknown source kind {kind!r}")
        return (*self._pad(ids, labels), self.pixels(image), image is not None)

    def _with_image(self, ids: NDArray[np.int64], labels: NDArray[np.int64]) -> tuple[NDArray[np.int64],
                                                                                      NDArray[np.int64]]:
        prefix = np.full(self.visual_tokens, self.vocab.image_token_id, np.int64)
        return np.concatenate([prefix, ids]), np.concatenate([np.full(self.visual_tokens, IGNORE), labels])

    def _pad(self, ids: NDArray[np.int64], labels: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                                                               int]:
        n = min(len(ids), self.seq_len)
        out_ids = np.full(self.seq_len, self.vocab.eos_id, np.int64)
        out_labels = np.full(self.seq_len, IGNORE, np.int64)
        out_ids[:n], out_labels[:n] = ids[:n], labels[:n]
        return out_ids, out_labels, n

    def pixels(self, image: bytes | None) -> NDArray[np.uint8]:
        """uint8 ``[3, S, S]``: the decoded, resized image, or zeros without one."""
        size = self.image_size
        if image is None:
            return np.zeros((3, size, size), np.uint8)
        with Image.open(io.BytesIO(image)) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        return np.ascontiguousarray(np.asarray(rgb, np.uint8).transpose(2, 0, 1))

    def budget_tokens(self, samples: list[dict[str, Any]]) -> NDArray[np.int64]:
        """Budget tokens the schedule charged for each sample (0 for held-out data)."""
        positions = np.array([int(s.get("position", -1)) for s in samples], np.int64)
        if self.schedule_path is None or len(positions) == 0 or positions.min() < 0:
            return np.zeros(len(samples), np.int64)
        if self._schedule is None:
            from mixture.schedule import load_schedule

            self._schedule = load_schedule(self.schedule_path)
        lo, hi = int(positions.min()), int(positions.max()) + 1
        src, sample_ids = self._schedule.take(lo, hi)
        return self._schedule.tokens(src, sample_ids)[positions - lo]
