"""Instruction ingest: LLaVA-format conversations -> token ids + a loss mask on assistant turns -> MDS.

A record is ``{"id", "image" (optional, relative to --image-root), "conversations": [{"from", "value"}]}``
(JSON list or JSONL). Roles ``human``/``user``, ``gpt``/``assistant`` and ``system`` are rendered with a
plain template that needs no chat-template support from the tokenizer::

    System: {text}\\n        loss 0
    User: {text}\\n          loss 0
    Assistant: {text}<eos>   loss 0 on "Assistant: ", 1 on {text}<eos>

Each piece is tokenized on its own, so the mask boundaries are exact.

Images (``image``: one path, or a list of paths in placeholder order) and ``<image>`` placeholders:

- one image: the placeholder (at most one) is removed from the text and the image's visual tokens go before
  the text (DESIGN.md), wherever the placeholder was; a record without a placeholder is accepted too;
- several images: there must be one placeholder per image; each placeholder (with the newline right after
  it) is replaced by its image's visual tokens, in order. The text is cut into pieces at the placeholders,
  so a tokenizer never merges across an image, as the exported processor does (it splits at ``<image>``).

The collator inserts the visual tokens; ingest stores where: ``image_layout["offsets"]`` holds, per image,
the index in ``input_ids`` before which its tokens go (0 for a single image). The first image's bytes are
``image`` (as for one image), the others' are ``extra_images`` back to back (lengths in
``image_layout["extra_sizes"]``); :func:`sample_images` reads them back. A conversation with a missing or
undecodable image, no assistant turn, or placeholders that do not match its images is dropped with a reason
(docs/ingest.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mixture.errors import MixtureError
from streaming_data.image_check import inspect_image
from streaming_data.inputs import batched
from streaming_data.progress import progress
from streaming_data.sample_index import DEFAULT_VISUAL_TOKENS, INDEX_SCHEMAS, INSTRUCTION, MDS_COLUMNS, index_row
from streaming_data.tokenizer import Tokenizer, load_tokenizer
from streaming_data.writer import Drop, Ingest, PartResult

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "User", "user": "User", "gpt": "Assistant", "assistant": "Assistant", "system": "System"}
_PLACEHOLDER = re.compile(re.escape(IMAGE_PLACEHOLDER) + r"\n?")
_BATCH = 256


@dataclass(frozen=True)
class InstructionIngestConfig:
    """Settings of one instruction ingest (all go into the journal; a resume must match them).

    Attributes:
        inputs: LLaVA-format JSON (a list) or JSONL files.
        out: Output MDS directory (local path or remote URL).
        image_root: Directory the records' image paths are relative to.
        tokenizer: ``bytes`` or a local Hugging Face tokenizer path.
        eos_token: End-of-sequence token of a Hugging Face tokenizer.
        visual_tokens: Visual tokens per image, counted in ``tokens``.
        verify: ``structure``, ``decode`` or ``header`` (see image_check).
        max_tokens: Cut conversations to this many tokens (0: keep whole); one left with no trained
            token is dropped (``no_answer_within_max_tokens``).
        records_per_part: Conversations per resumable part.
        size_limit, compression: MDS shard settings.
    """

    inputs: tuple[str, ...]
    out: str
    image_root: str | None = None
    tokenizer: str = "bytes"
    eos_token: str | None = None
    visual_tokens: int = DEFAULT_VISUAL_TOKENS
    verify: str = "structure"
    max_tokens: int = 0
    records_per_part: int = 10_000
    size_limit: str = "64mb"
    compression: str | None = None


@dataclass(frozen=True)
class Rendered:
    """A conversation cut into template pieces, each with its loss flag, ready to tokenize.

    ``images[k]`` is the piece before which image ``k``'s visual tokens go; ``eos`` marks the pieces that
    end an assistant answer (they get the EOS token: every trained piece, unless placeholders split an
    answer)."""

    pieces: list[str]
    trained: list[bool]
    num_turns: int
    images: tuple[int, ...]
    eos: tuple[bool, ...]


def render(conversations: list[dict[str, Any]], num_images: int = 0) -> Rendered:
    """Template pieces of one conversation with ``num_images`` images; raises :class:`Drop` for one that
    cannot be trained on (see the module docstring for where images go)."""
    placeholders = sum(str(t.get("value", "")).count(IMAGE_PLACEHOLDER) for t in conversations if isinstance(t, dict))
    if placeholders > max(num_images, 1) or (num_images == 0 and placeholders):
        raise Drop("placeholders_exceed_images")
    if num_images > 1 and placeholders < num_images:
        raise Drop("images_exceed_placeholders")
    in_place = num_images > 1
    pieces, trained, eos, images = [], [], [], []
    for turn in conversations:
        if not isinstance(turn, dict) or "value" not in turn or turn.get("from") not in ROLES:
            raise Drop("bad_turn")
        role, value = ROLES[turn["from"]], str(turn["value"])
        texts = _PLACEHOLDER.split(value) if in_place else [_PLACEHOLDER.sub("", value)]
        answer = role == "Assistant"
        if answer:
            pieces.append("Assistant: ")
            trained.append(False)
            eos.append(False)
        for k, text in enumerate(texts):
            if k:
                images.append(len(pieces))
            first, last = k == 0, k == len(texts) - 1
            piece = text if answer else f"{role}: " * first + text + "\n" * last
            pieces.append(piece)
            trained.append(answer)
            eos.append(answer and last)
    if not any(trained):
        raise Drop("no_assistant_turn")
    return Rendered(pieces, trained, len(conversations), tuple(images) if in_place else (0,) * num_images,
                    tuple(eos))


def tokenize(rendered: Rendered, ids: list[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``loss_mask`` of a rendered conversation from its pieces' token ids."""
    chunks, masks = [], []
    for piece_ids, train, ends in zip(ids, rendered.trained, rendered.eos):
        if ends:  # an assistant answer ends with EOS, which is trained on too
            piece_ids = np.append(piece_ids, np.int32(eos_id))
        chunks.append(piece_ids.astype(np.int32))
        masks.append(np.full(len(piece_ids), 1 if train else 0, np.uint8))
    return np.concatenate(chunks), np.concatenate(masks)


def image_offsets(rendered: Rendered, ids: list[np.ndarray]) -> list[int]:
    """Per image, the index in ``input_ids`` (of :func:`tokenize`) before which its visual tokens go."""
    starts = np.concatenate([[0], np.cumsum([len(p) + int(e) for p, e in zip(ids, rendered.eos)])])
    return [int(starts[piece]) for piece in rendered.images]


def sample_images(sample: dict[str, Any]) -> list[tuple[bytes, int]]:
    """``(image bytes, offset in input_ids)`` of each image of an ingested instruction sample, in order.

    A sample written before several images were supported (no ``image_layout``) has its one image first."""
    first = sample.get("image") or b""
    layout = sample.get("image_layout")
    if not layout:
        return [(first, 0)] if first else []
    offsets, sizes = layout["offsets"], layout.get("extra_sizes", [])
    extra = sample.get("extra_images") or b""
    ends = np.cumsum([0, *sizes]).tolist()
    blobs = [first, *(extra[a:b] for a, b in zip(ends[:-1], ends[1:]))]
    return list(zip(blobs, (int(o) for o in offsets)))


def image_columns(images: list[tuple[bytes, int]]) -> dict[str, Any]:
    """The MDS columns that hold ``(image bytes, offset)`` pairs (the inverse of :func:`sample_images`)."""
    blobs = [data for data, _ in images]
    return {"image": blobs[0] if blobs else b"", "extra_images": b"".join(blobs[1:]),
            "image_layout": {"offsets": [offset for _, offset in images], "extra_sizes": [len(b) for b in blobs[1:]]},
            "num_images": len(images)}


def read_records(path: str) -> list[Any]:
    """Records of a LLaVA JSON list or JSONL file (local path or fsspec URL)."""
    from streaming_data.inputs import iter_records

    if not path.lower().endswith((".json", ".jsonl", ".ndjson")):
        raise MixtureError(f"{path}: expected a LLaVA .json list or a .jsonl file",
                           hint="LLaVA format: [{\"id\": ..., \"image\": ..., \"conversations\": [...]}, ...]")
    return list(iter_records(path))


def ingest_instruction(config: InstructionIngestConfig, *, work_dir: str | None = None, overwrite: bool = False,
                       show_progress: bool = True) -> dict[str, Any]:
    """Convert LLaVA-format conversations to MDS plus ``samples.parquet``; resumes an interrupted run."""
    from streaming_data.inputs import expand_inputs

    files = expand_inputs(config.inputs)
    tokenizer = load_tokenizer(config.tokenizer, config.eos_token)
    journal = {**asdict(config), "inputs": files, "kind": INSTRUCTION, "tokenizer_description": tokenizer.description}
    ingest = Ingest(config.out, journal, work_dir=work_dir, overwrite=overwrite)
    records = [record for path in files for record in read_records(path)]
    with progress({"conversations": len(records)}, enabled=show_progress) as counters:
        for index, part in enumerate(batched(records, config.records_per_part)):
            if ingest.is_done(index):
                counters.advance("conversations", len(part))
                continue
            with ingest.part(index, MDS_COLUMNS[INSTRUCTION], size_limit=config.size_limit,
                             compression=config.compression) as (writer, result):
                for batch in batched(part, _BATCH):
                    _write_batch(batch, tokenizer, config, writer, result)
                    counters.advance("conversations", len(batch))
    metadata = {"tokenizer": tokenizer.description, "eos_id": tokenizer.eos_id,
                "visual_tokens_per_image": config.visual_tokens, "template": "System:/User:/Assistant: v1",
                "inputs": files}
    return ingest.finalize(kind=INSTRUCTION, schema=INDEX_SCHEMAS[INSTRUCTION], metadata=metadata)


def _write_batch(batch: list[Any], tokenizer: Tokenizer, config: InstructionIngestConfig, writer: Any,
                 result: PartResult) -> None:
    prepared = []
    for record in batch:
        try:
            conversations = _conversations(record)
            paths = _image_paths(record)
            rendered = render(conversations, len(paths))
            prepared.append(([_load_image(path, config) for path in paths], rendered))
        except Drop as drop:
            result.dropped[drop.reason] += 1
    flat = tokenizer.encode_batch([piece for _, rendered in prepared for piece in rendered.pieces])
    pieces = iter(flat)
    for images, rendered in prepared:
        ids = [next(pieces) for _ in rendered.pieces]
        input_ids, loss_mask = tokenize(rendered, ids, tokenizer.eos_id)
        placed = [(data, offset) for (data, _), offset in zip(images, image_offsets(rendered, ids))]
        if config.max_tokens and len(input_ids) > config.max_tokens:
            input_ids, loss_mask = input_ids[: config.max_tokens], loss_mask[: config.max_tokens]
            result.stats["truncated"] += 1
            if not loss_mask.any():
                result.dropped["no_answer_within_max_tokens"] += 1
                continue
            kept = [(data, offset) for data, offset in placed if offset < config.max_tokens]
            if len(kept) < len(placed):  # images whose placeholder lies past the cut go too
                result.stats["images_cut"] += len(placed) - len(kept)
            placed = kept
        width, height = images[0][1] if images else (0, 0)
        sample = {"input_ids": input_ids, "loss_mask": loss_mask, **image_columns(placed),
                  "num_turns": rendered.num_turns, "width": width, "height": height}
        writer.write(sample)
        result.add(index_row(INSTRUCTION, sample, visual_tokens=config.visual_tokens))


def _conversations(record: Any) -> list[dict[str, Any]]:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise Drop("bad_record")
    return record["conversations"]


def _image_paths(record: dict[str, Any]) -> list[str]:
    """The record's image paths in placeholder order (``image``: absent, one path or a list of paths)."""
    image = record.get("image")
    if image is None or image == "":
        return []
    paths = image if isinstance(image, list) else [image]
    if not all(isinstance(p, str) and p for p in paths):
        raise Drop("bad_image_entry")
    return paths


def _load_image(image: str, config: InstructionIngestConfig) -> tuple[bytes, tuple[int, int]]:
    path = os.path.join(config.image_root or ".", image)
    if not os.path.isfile(path):
        raise Drop("missing_image")
    with open(path, "rb") as handle:
        data = handle.read()
    return data, inspect_image(data, config.verify)


def iter_assistant_spans(loss_mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of ones in a loss mask (for tests and statistics)."""
    padded = np.concatenate([[0], loss_mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    yield from zip(edges[::2].tolist(), edges[1::2].tolist())
