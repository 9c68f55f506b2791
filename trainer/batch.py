"""Turn served samples (text, image-caption, instruction) into one padded batch of tensors.

Every sample becomes one sequence of ``seq_len`` tokens:

=============  ===========================================  ==========================================
kind           input_ids                                    labels (loss where not IGNORE)
=============  ===========================================  ==========================================
text           the packed ids                               the same ids
image_caption  V image tokens + caption ids + EOS           IGNORE on the V image tokens; caption + EOS
instruction    the conversation's ids with V image tokens   the ids where ``loss_mask`` is 1 (assistant
               inserted per image: first for one image, at  answers and their EOS), else IGNORE
               each placeholder for several
=============  ===========================================  ==========================================

then right-padded with EOS (attention mask 0, label IGNORE). A sequence longer than ``seq_len`` is cut;
an image's visual tokens are never cut (a caption is shortened instead; an instruction sample keeps the
images whose tokens fit whole and ends where the first one that does not fit would have gone), so features
and image tokens always match. A batch whose samples have one image at most has ``pixels [batch, 3, S, S]``
and ``has_image [batch]``; one with a sample of several images has ``pixels [batch, images, 3, S, S]`` and
``has_image [batch, images]``, each row's images in token order (the order the model scatters them in).
Images are decoded with Pillow, converted to RGB and resized to the encoder's size; they stay uint8 until
the model normalises them, which keeps worker-to-trainer transfers 4x smaller. The budget tokens of each
sample (what the schedule charged for it) ride along for the per-source token counts; they come from the
schedule, by position.

**Packing** (``Collator(packing=True)``, the run config's ``data: {packing: true}``): the samples of the
rank's slice of a global batch are laid out as above but unpadded, then placed in order into rows of
``seq_len`` by first fit (:func:`mixture.padding.first_fit`: each sample goes into the first row with room).
Which samples form the batch never changes, only the rows. Each row says which document every token belongs
to (``doc_ids``: 1, 2, ... per row, 0 for padding) and restarts ``position_ids`` at 0 for each document; the
model turns ``doc_ids`` into a block-diagonal causal mask, so no token attends across a sample boundary. The
first token of every document gets label IGNORE: unpacked, it is never a target either (the loss predicts
token t+1 from token t), and packed it would otherwise be predicted from the previous document. Per-sample
fields become ``[rows, slots]`` (slot ``k`` of a row is its document ``k + 1``; -1 / 0 where a row has fewer
documents), and images ``[rows, images, 3, S, S]`` with ``has_image [rows, images]``, in token order, which is
the order the model scatters their features in. Every tensor's first dimension is the row, so Composer's
microbatching splits whole rows.
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
        packing: Pack the samples into rows with per-document attention (see the module docstring).
    """

    def __init__(self, kinds: Sequence[str], schedule_path: str | None, seq_len: int, vocab: Vocab,
                 visual_tokens: int, image_size: int, packing: bool = False) -> None:
        if visual_tokens >= seq_len:
            raise ValueError(f"{visual_tokens} visual tokens do not fit a {seq_len}-token sequence")
        self.kinds = list(kinds)
        self.schedule_path = schedule_path
        self.seq_len = seq_len
        self.vocab = vocab
        self.visual_tokens = visual_tokens
        self.image_size = image_size
        self.packing = packing
        self._schedule: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_schedule": None}  # workers re-open the schedule from its path

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.packing:
            return self.packed(samples)
        rows = [self.sequence(s) for s in samples]
        ids = torch.from_numpy(np.stack([r[0] for r in rows]))
        labels = torch.from_numpy(np.stack([r[1] for r in rows]))
        lengths = torch.tensor([r[2] for r in rows])
        pixels, has_image = self._stack_images([r[3] for r in rows])
        return {
            "input_ids": ids, "labels": labels,
            "attention_mask": (torch.arange(self.seq_len)[None, :] < lengths[:, None]).long(),
            "pixels": pixels, "has_image": has_image,
            "source_id": torch.tensor([int(s.get("source_id", 0)) for s in samples], dtype=torch.int64),
            "position": torch.tensor([int(s.get("position", -1)) for s in samples], dtype=torch.int64),
            "budget_tokens": torch.from_numpy(self.budget_tokens(samples)),
        }

    def sequence(self, sample: dict[str, Any]) -> tuple[NDArray[np.int64], NDArray[np.int64], int, list[bytes]]:
        """(input_ids, labels, length, images) of one sample, padded to ``seq_len``."""
        ids, labels, images = self.tokens(sample)
        return (*self._pad(ids, labels), images)

    def tokens(self, sample: dict[str, Any]) -> tuple[NDArray[np.int64], NDArray[np.int64], list[bytes]]:
        """(input_ids, labels, images in token order) of one sample, unpadded and cut to ``seq_len``."""
        kind = self.kinds[int(sample.get("source_id", 0))]
        images: list[bytes] = []
        if kind == "text":
            ids = np.asarray(sample["input_ids"], np.int64)
            labels = ids.copy()
        elif kind == "image_caption":
            caption = np.asarray(sample["caption_ids"], np.int64)[: self.seq_len - self.visual_tokens - 1]
            text = np.append(caption, self.vocab.eos_id)
            ids, labels = self._with_images(text, text, [0])
            images = [sample["image"]]
        elif kind == "instruction":
            from streaming_data.instruction import sample_images

            ids = np.asarray(sample["input_ids"], np.int64)
            labels = np.where(np.asarray(sample["loss_mask"]) > 0, ids, IGNORE)
            placed = sample_images(sample)
            fit = 0  # images whose visual tokens fit whole before seq_len, in order
            while fit < len(placed) and placed[fit][1] + (fit + 1) * self.visual_tokens <= self.seq_len:
                fit += 1
            stop = self.seq_len - fit * self.visual_tokens
            if fit < len(placed):  # nothing after the place of an image that did not fit
                stop = min(stop, placed[fit][1])
            images = [data for data, _ in placed[:fit]]
            ids, labels = self._with_images(ids[:stop], labels[:stop], [offset for _, offset in placed[:fit]])
        else:
            raise ValueError(f"unknown source kind {kind!r}")
        return ids[: self.seq_len], labels[: self.seq_len], images

    def packed(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The samples packed in order into rows of ``seq_len`` by first fit (see the module docstring)."""
        from mixture.padding import first_fit

        docs = [self.tokens(s) for s in samples]
        row_of = first_fit(np.array([max(len(d[0]), 1) for d in docs], np.int64), self.seq_len)
        num_rows = int(row_of.max()) + 1 if len(docs) else 0
        slots = np.bincount(row_of, minlength=num_rows)
        images = np.bincount(row_of, [len(d[2]) for d in docs], minlength=num_rows).astype(np.int64)
        out = _PackedRows(num_rows, self.seq_len, int(slots.max(initial=1)), int(images.max(initial=1)),
                          self.image_size, self.vocab.eos_id)
        budget = self.budget_tokens(samples)
        for i, ((ids, labels, doc_images), sample) in enumerate(zip(docs, samples)):
            out.add(int(row_of[i]), ids, labels, [self.pixels(image) for image in doc_images],
                    int(sample.get("source_id", 0)), int(sample.get("position", -1)), int(budget[i]))
        return out.tensors()

    def _with_images(self, ids: NDArray[np.int64], labels: NDArray[np.int64],
                     offsets: list[int]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``ids`` and ``labels`` with ``V`` image tokens (label IGNORE) inserted before each offset."""
        image = np.full(self.visual_tokens, self.vocab.image_token_id, np.int64)
        ignore = np.full(self.visual_tokens, IGNORE, np.int64)
        bounds = [0, *offsets, len(ids)]
        out_ids, out_labels = [ids[:bounds[1]]], [labels[:bounds[1]]]
        for k in range(len(offsets)):
            out_ids += [image, ids[bounds[k + 1]:bounds[k + 2]]]
            out_labels += [ignore, labels[bounds[k + 1]:bounds[k + 2]]]
        return np.concatenate(out_ids), np.concatenate(out_labels)

    def _stack_images(self, per_row: list[list[bytes]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixels`` and ``has_image`` of an unpacked batch (the layouts of the module docstring)."""
        width = max((len(images) for images in per_row), default=0)
        if width <= 1:
            pixels = np.stack([self.pixels(images[0] if images else None) for images in per_row])
            return torch.from_numpy(pixels), torch.tensor([bool(images) for images in per_row])
        blank = self.pixels(None)
        pixels = np.stack([np.stack([self.pixels(images[k]) if k < len(images) else blank for k in range(width)])
                           for images in per_row])
        has_image = torch.tensor([[k < len(images) for k in range(width)] for images in per_row])
        return torch.from_numpy(pixels), has_image

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


class _PackedRows:
    """The arrays of a packed batch, filled one document at a time (first-fit row already chosen)."""

    def __init__(self, num_rows: int, seq_len: int, num_slots: int, num_images: int, image_size: int,
                 eos_id: int) -> None:
        shape = (num_rows, seq_len)
        self.ids, self.labels = np.full(shape, eos_id, np.int64), np.full(shape, IGNORE, np.int64)
        self.position_ids, self.doc_ids = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        self.source_id, self.position = np.full((num_rows, num_slots), -1), np.full((num_rows, num_slots), -1)
        self.budget = np.zeros((num_rows, num_slots), np.int64)
        self.pixels = np.zeros((num_rows, num_images, 3, image_size, image_size), np.uint8)
        self.has_image = np.zeros((num_rows, num_images), bool)
        self.fill, self.docs = np.zeros(num_rows, np.int64), np.zeros(num_rows, np.int64)
        self.images = np.zeros(num_rows, np.int64)

    def add(self, row: int, ids: NDArray[np.int64], labels: NDArray[np.int64], pixels: list[NDArray[np.uint8]],
            source_id: int, position: int, budget: int) -> None:
        """Append one document (with its images' pixels in token order) to ``row``."""
        start, stop, slot = int(self.fill[row]), int(self.fill[row]) + len(ids), int(self.docs[row])
        self.ids[row, start:stop], self.labels[row, start:stop] = ids, labels
        if stop > start:
            self.labels[row, start] = IGNORE  # never a target unpacked either (see the module docstring)
        self.position_ids[row, start:stop] = np.arange(len(ids))
        self.doc_ids[row, start:stop] = slot + 1
        self.source_id[row, slot], self.position[row, slot], self.budget[row, slot] = source_id, position, budget
        for image in pixels:
            self.pixels[row, self.images[row]], self.has_image[row, self.images[row]] = image, True
            self.images[row] += 1
        self.fill[row], self.docs[row] = stop, slot + 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """The batch dict (the keys of an unpacked batch plus ``position_ids`` and ``doc_ids``)."""
        return {"input_ids": torch.from_numpy(self.ids), "labels": torch.from_numpy(self.labels),
                "attention_mask": torch.from_numpy((self.doc_ids > 0).astype(np.int64)),
                "position_ids": torch.from_numpy(self.position_ids), "doc_ids": torch.from_numpy(self.doc_ids),
                "pixels": torch.from_numpy(self.pixels), "has_image": torch.from_numpy(self.has_image),
                "source_id": torch.from_numpy(self.source_id.astype(np.int64)),
                "position": torch.from_numpy(self.position.astype(np.int64)),
                "budget_tokens": torch.from_numpy(self.budget)}


def num_samples(batch: dict[str, torch.Tensor]) -> int:
    """Samples in a batch, packed or not (Composer's sample count: what the serving state advances by)."""
    return int((batch["source_id"] >= 0).sum())


def split_rows(batch: dict[str, torch.Tensor], microbatch_size: int) -> list[dict[str, torch.Tensor]]:
    """Composer's microbatches: chunks of ``microbatch_size`` rows (a packed row is never split)."""
    rows = len(batch["input_ids"])
    return [{k: v[i:i + microbatch_size] for k, v in batch.items()} for i in range(0, rows, max(microbatch_size, 1))]
