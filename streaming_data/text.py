"""Text ingest: documents -> token ids -> packed fixed-length sequences or one sample per document -> MDS.

Every document is followed by the tokenizer's end-of-sequence id. Packing concatenates documents in input
order and cuts the stream every ``seq_len`` tokens, so a document may span two samples and no token is lost
or repeated; the tokens left over after one part are carried into the next (and saved with the part, so a
resumed ingest continues the same stream). What is left at the very end becomes one shorter last sample
(``tail="keep"``) or is dropped (``tail="drop"``, counted as ``packing_tail``).
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError
from streaming_data.inputs import batched, expand_inputs, iter_documents
from streaming_data.progress import Counters, progress
from streaming_data.sample_index import INDEX_SCHEMAS, MDS_COLUMNS, TEXT, index_row
from streaming_data.tokenizer import Tokenizer, load_tokenizer
from streaming_data.writer import Ingest, PartResult


@dataclass(frozen=True)
class TextIngestConfig:
    """Settings of one text ingest (all of them go into the journal: a resume must match them).

    Attributes:
        inputs: Paths, globs or fsspec URLs of JSONL, parquet or plain text files.
        out: Output MDS directory (local path or remote URL).
        tokenizer: ``bytes`` or a local Hugging Face tokenizer path.
        eos_token: End-of-sequence token of a Hugging Face tokenizer (default: from its config).
        seq_len: Packed sequence length; ``None`` writes one sample per document.
        text_field: JSONL field or parquet column holding the text.
        fmt: Force the input format (``jsonl``, ``parquet``, ``txt``).
        line_documents: For plain text, one document per line.
        tail: ``keep`` the last, shorter packed sequence or ``drop`` it.
        docs_per_part: Documents per resumable part.
        batch_docs: Documents tokenized per batch.
        size_limit: MDS shard size limit.
        compression: MDS shard compression (``zstd``, ...) or ``None``.
    """

    inputs: tuple[str, ...]
    out: str
    tokenizer: str = "bytes"
    eos_token: str | None = None
    seq_len: int | None = 2048
    text_field: str = "text"
    fmt: str | None = None
    line_documents: bool = False
    tail: str = "keep"
    docs_per_part: int = 100_000
    batch_docs: int = 1024
    size_limit: str = "64mb"
    compression: str | None = None

    def check(self) -> None:
        """Raise :class:`MixtureError` for settings that cannot work."""
        if self.seq_len is not None and self.seq_len < 1:
            raise MixtureError(f"--seq-len must be a positive number of tokens, got {self.seq_len}")
        if self.tail not in ("keep", "drop"):
            raise MixtureError(f"--tail must be keep or drop, got {self.tail!r}")
        if self.docs_per_part < 1 or self.batch_docs < 1:
            raise MixtureError("--docs-per-part and --batch-docs must be positive")


class Packer:
    """Cuts a stream of documents (each followed by EOS) into ``seq_len``-token sequences."""

    def __init__(self, seq_len: int, eos_id: int, carry: NDArray[np.int32] | None = None) -> None:
        self.seq_len, self.eos_id = seq_len, eos_id
        self.carry = carry if carry is not None else np.zeros(0, np.int32)

    def add(self, docs: list[NDArray[np.int32]]) -> Iterator[NDArray[np.int32]]:
        """Append documents; yield every sequence that is now full."""
        eos = np.array([self.eos_id], np.int32)
        stream = np.concatenate([self.carry, *itertools.chain.from_iterable((d, eos) for d in docs)])
        num_full = len(stream) // self.seq_len
        for i in range(num_full):
            yield stream[i * self.seq_len : (i + 1) * self.seq_len]
        self.carry = stream[num_full * self.seq_len :].copy()


def ingest_text(config: TextIngestConfig, *, work_dir: str | None = None, overwrite: bool = False,
                show_progress: bool = True) -> dict[str, Any]:
    """Tokenize text files into MDS plus ``samples.parquet``; resumes an interrupted run.

    Returns:
        A summary: out, samples, shards, dropped.
    """
    config.check()
    files = expand_inputs(config.inputs)
    tokenizer = load_tokenizer(config.tokenizer, config.eos_token)
    journal = {**asdict(config), "inputs": files, "kind": TEXT, "tokenizer_description": tokenizer.description}
    ingest = Ingest(config.out, journal, work_dir=work_dir, overwrite=overwrite)
    done = ingest.done_parts()
    start = len(done)
    packer = Packer(config.seq_len, tokenizer.eos_id, ingest.carry(start - 1) if start else None) \
        if config.seq_len else None
    docs = iter_documents(files, text_field=config.text_field, fmt=config.fmt, line_documents=config.line_documents)
    next_index = start
    with progress({"documents": None, "tokens": None}, enabled=show_progress) as counters:
        for index, chunk in enumerate(_parts(docs, config.docs_per_part)):
            if index < start:  # finished in an earlier run: read past it without tokenizing
                for _ in chunk:
                    pass
                continue
            with ingest.part(index, MDS_COLUMNS[TEXT], size_limit=config.size_limit,
                             compression=config.compression) as (writer, result):
                _write_chunk(chunk, tokenizer, packer, config.batch_docs, writer, result, counters)
            next_index = index + 1
        if packer is not None and len(packer.carry):  # empty when the tail part itself had finished
            with ingest.part(next_index, MDS_COLUMNS[TEXT], size_limit=config.size_limit,
                             compression=config.compression) as (writer, result):
                _write_tail(packer, config.tail, tokenizer.eos_id, writer, result)
    metadata = {"tokenizer": tokenizer.description, "eos_id": tokenizer.eos_id, "seq_len": config.seq_len,
                "packed": config.seq_len is not None, "tail": config.tail, "inputs": files}
    return ingest.finalize(kind=TEXT, schema=INDEX_SCHEMAS[TEXT], metadata=metadata)


def _write_chunk(chunk: Iterable[str], tokenizer: Tokenizer, packer: Packer | None, batch_docs: int, writer: Any,
                 result: PartResult, counters: Counters) -> None:
    eos = np.array([tokenizer.eos_id], np.int32)
    for batch, ids in encode_ahead(batched(chunk, batch_docs), tokenizer):
        kept = [d for d in ids if len(d)]
        result.dropped["empty_document"] += len(ids) - len(kept)
        result.stats["documents"] += len(kept)
        result.stats["chars"] += sum(map(len, batch))
        samples = packer.add(kept) if packer else (np.concatenate([d, eos]) for d in kept)
        for sample in samples:
            writer.write({"input_ids": sample})
            result.add(index_row(TEXT, {"input_ids": sample}, eos_id=tokenizer.eos_id))
            counters.advance("tokens", len(sample))
        counters.advance("documents", len(batch))
    if packer is not None:
        result.carry = packer.carry


def encode_ahead(batches: Iterable[list[str]], tokenizer: Tokenizer) -> Iterator[tuple[list[str], list[NDArray[np.int32]]]]:
    """``(batch, ids)`` for each batch, tokenizing the next batch in a thread while the caller writes this one.

    The Rust tokenizer releases the GIL while it encodes, so reading, packing and writing overlap with
    tokenization instead of adding to it (the benchmark compares against tokenization alone).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        pending: tuple[list[str], Future[list[NDArray[np.int32]]]] | None = None
        for batch in batches:
            future = pool.submit(tokenizer.encode_batch, batch)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (batch, future)
        if pending is not None:
            yield pending[0], pending[1].result()


def _write_tail(packer: Packer, tail: str, eos_id: int, writer: Any, result: PartResult) -> None:
    if tail == "drop":
        result.dropped["packing_tail"] += 1
    else:
        writer.write({"input_ids": packer.carry})
        result.add(index_row(TEXT, {"input_ids": packer.carry}, eos_id=eos_id))
    packer.carry = np.zeros(0, np.int32)
    result.carry = packer.carry


def _parts(docs: Iterable[str], size: int) -> Iterator[Iterator[str]]:
    """Consecutive runs of ``size`` documents, each an iterator (consume one before the next)."""
    iterator = iter(docs)
    end = object()
    while (first := next(iterator, end)) is not end:
        yield itertools.chain([first], itertools.islice(iterator, size - 1))
