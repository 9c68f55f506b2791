"""Instruction ingest: LLaVA-format conversations -> token ids + a loss mask on assistant turns -> MDS.

A record is ``{"id", "image" (optional, relative to --image-root), "conversations": [{"from", "value"}]}``
(JSON list or JSONL). Roles ``human``/``user``, ``gpt``/``assistant`` and ``system`` are rendered with a
plain template that needs no chat-template support from the tokenizer::

    System: {text}\\n        loss 0
    User: {text}\\n          loss 0
    Assistant: {text}<eos>   loss 0 on "Assistant: ", 1 on {text}<eos>

Each piece is tokenized on its own, so the mask boundaries are exact. The ``<image>`` placeholder is
removed from the text: the image's visual tokens go before the text (DESIGN.md), which the trainer does.
A conversation with a missing or undecodable image, no assistant turn, or more than one image is dropped
with a reason.
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
    """A conversation cut into template pieces, each with its loss flag, ready to tokenize."""

    pieces: list[str]
    trained: list[bool]
    num_turns: int


def render(conversations: list[dict[str, Any]]) -> Rendered:
    """Template pieces of one conversation; raises :class:`Drop` for one that cannot be trained on."""
    pieces, trained = [], []
    for turn in conversations:
        if not isinstance(turn, dict) or "value" not in turn or turn.get("from") not in ROLES:
            raise Drop("bad_turn")
        role, text = ROLES[turn["from"]], _PLACEHOLDER.sub("", str(turn["value"]))
        if role == "Assistant":
            pieces += ["Assistant: ", text]
            trained += [False, True]
        else:
            pieces.append(f"{role}: {text}\n")
            trained.append(False)
    if not any(trained):
        raise Drop("no_assistant_turn")
    return Rendered(pieces, trained, len(conversations))


def tokenize(rendered: Rendered, ids: list[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``loss_mask`` of a rendered conversation from its pieces' token ids."""
    chunks, masks = [], []
    for piece_ids, train in zip(ids, rendered.trained):
        if train:  # an assistant answer ends with EOS, which is trained on too
            piece_ids = np.append(piece_ids, np.int32(eos_id))
        chunks.append(piece_ids.astype(np.int32))
        masks.append(np.full(len(piece_ids), 1 if train else 0, np.uint8))
    return np.concatenate(chunks), np.concatenate(masks)


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
            prepared.append((_load_image(record, config), render(_conversations(record))))
        except Drop as drop:
            result.dropped[drop.reason] += 1
    flat = tokenizer.encode_batch([piece for _, rendered in prepared for piece in rendered.pieces])
    offsets = iter(flat)
    for image, rendered in prepared:
        input_ids, loss_mask = tokenize(rendered, [next(offsets) for _ in rendered.pieces], tokenizer.eos_id)
        if config.max_tokens and len(input_ids) > config.max_tokens:
            input_ids, loss_mask = input_ids[: config.max_tokens], loss_mask[: config.max_tokens]
            result.stats["truncated"] += 1
            if not loss_mask.any():
                result.dropped["no_answer_within_max_tokens"] += 1
                continue
        data, (width, height) = image if image else (b"", (0, 0))
        sample = {"input_ids": input_ids, "loss_mask": loss_mask, "image": data, "num_images": int(bool(image)),
                  "num_turns": rendered.num_turns, "width": width, "height": height}
        writer.write(sample)
        result.add(index_row(INSTRUCTION, sample, visual_tokens=config.visual_tokens))


def _conversations(record: Any) -> list[dict[str, Any]]:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise Drop("bad_record")
    return record["conversations"]


def _load_image(record: Any, config: InstructionIngestConfig) -> tuple[bytes, tuple[int, int]] | None:
    image = record.get("image") if isinstance(record, dict) else None
    if isinstance(image, list):
        if len(image) > 1:
            raise Drop("multiple_images")
        image = image[0] if image else None
    if not image:
        return None
    path = os.path.join(config.image_root or ".", str(image))
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
