"""The per-source sample index (``samples.parquet``): its columns per kind, and building it from shards.

One function per kind turns an MDS sample (the dict written to, or read back from, the shards) into its
index row; the ingest commands and ``mixture index`` both call it, so the index cannot disagree with the
shards. Column meanings (see docs/ingest.md):

=============== ===================================================================================
all kinds       ``tokens`` (int64, the sample's cost in the token budget), ``shard`` (int32)
text            ``text_tokens``, ``num_documents`` (documents with a token in the sample)
image_caption   ``caption_tokens``, ``num_images`` (=1), ``width``, ``height``, ``content_hash``,
                ``caption_chars``; ``tokens`` = visual tokens per image + caption tokens
instruction     ``text_tokens``, ``loss_tokens`` (assistant tokens), ``num_turns``, ``num_images`` (0, 1 or
                several); ``tokens`` = text tokens + num_images x visual tokens
=============== ===================================================================================
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from mixture.errors import MixtureError
from mixture.sources import INDEX_JSON, content_hash
from streaming_data.locations import is_remote, local_path

TEXT, IMAGE_CAPTION, INSTRUCTION = "text", "image_caption", "instruction"
KINDS = (TEXT, IMAGE_CAPTION, INSTRUCTION)
DEFAULT_VISUAL_TOKENS = 729  # SigLIP So400M at 384 px, the paper's encoder (PAPER.md)

#: MDS columns written per kind (name -> Streaming MDS encoding). Stable: the serving side reads these.
MDS_COLUMNS: dict[str, dict[str, str]] = {
    TEXT: {"input_ids": "ndarray:int32"},
    IMAGE_CAPTION: {"image": "bytes", "caption": "str", "caption_ids": "ndarray:int32", "width": "int",
                    "height": "int", "content_hash": "str"},
    INSTRUCTION: {"input_ids": "ndarray:int32", "loss_mask": "ndarray:uint8", "image": "bytes",
                  "num_images": "int", "num_turns": "int", "width": "int", "height": "int",
                  "extra_images": "bytes", "image_layout": "json"},
}
#: Columns added with several images per instruction sample (streaming_data.instruction): data ingested
#: before them has one image at most, first, and is still recognised as instruction data.
LATER_COLUMNS = {"extra_images", "image_layout"}

#: Sample-index column types per kind (``shard`` is added at finalisation).
INDEX_SCHEMAS: dict[str, pa.Schema] = {
    TEXT: pa.schema([("tokens", pa.int64()), ("text_tokens", pa.int64()), ("num_documents", pa.int32())]),
    IMAGE_CAPTION: pa.schema([("tokens", pa.int64()), ("caption_tokens", pa.int64()), ("num_images", pa.int32()),
                              ("width", pa.int32()), ("height", pa.int32()), ("content_hash", pa.string()),
                              ("caption_chars", pa.int32())]),
    INSTRUCTION: pa.schema([("tokens", pa.int64()), ("text_tokens", pa.int64()), ("loss_tokens", pa.int64()),
                            ("num_turns", pa.int32()), ("num_images", pa.int32())]),
}


def count_documents(ids: np.ndarray, eos_id: int | None) -> int:
    """Documents with at least one token in ``ids``: end-of-sequence tokens, plus one unfinished."""
    if len(ids) == 0:
        return 0
    if eos_id is None:
        return 1
    return int(np.count_nonzero(ids == eos_id)) + int(ids[-1] != eos_id)


def index_row(kind: str, sample: dict[str, Any], *, visual_tokens: int = DEFAULT_VISUAL_TOKENS,
              eos_id: int | None = None) -> dict[str, Any]:
    """The sample-index row of one MDS sample of ``kind``."""
    if kind == TEXT:
        ids = sample["input_ids"]
        return {"tokens": len(ids), "text_tokens": len(ids), "num_documents": count_documents(ids, eos_id)}
    if kind == IMAGE_CAPTION:
        caption_tokens = len(sample["caption_ids"])
        return {"tokens": visual_tokens + caption_tokens, "caption_tokens": caption_tokens, "num_images": 1,
                "width": int(sample["width"]), "height": int(sample["height"]),
                "content_hash": sample["content_hash"], "caption_chars": len(sample["caption"])}
    if kind == INSTRUCTION:
        text_tokens, num_images = len(sample["input_ids"]), int(sample["num_images"])
        return {"tokens": text_tokens + num_images * visual_tokens, "text_tokens": text_tokens,
                "loss_tokens": int(np.count_nonzero(sample["loss_mask"])),
                "num_turns": int(sample["num_turns"]), "num_images": num_images}
    raise MixtureError(f"unknown kind {kind!r}", hint=f"one of {', '.join(KINDS)}")


def detect_kind(column_names: list[str]) -> str:
    """The kind whose MDS columns a dataset has (``mixture index`` on data made elsewhere)."""
    names = set(column_names)
    for kind in (INSTRUCTION, IMAGE_CAPTION):  # most specific first
        if set(MDS_COLUMNS[kind]) - LATER_COLUMNS <= names:
            return kind
    if names & {"input_ids", "tokens", "text"}:
        return TEXT
    raise MixtureError(
        f"cannot tell the kind of a dataset with columns {sorted(names)}",
        hint="expected the columns of `mixture ingest` (docs/ingest.md): input_ids (text); "
        "image, caption, caption_ids, width, height, content_hash (image_caption); "
        "input_ids, loss_mask, image, num_images, num_turns (instruction); or another tool's text layout: "
        "tokens (an int array) or text (a string, with --tokenizer)",
    )


def as_ingested(kind: str, sample: dict[str, Any], tokenizer: Any = None) -> dict[str, Any]:
    """A sample of another tool's text layout in ours: its ``tokens`` array, or its ``text`` tokenized."""
    if kind != TEXT or "input_ids" in sample:
        return sample
    if isinstance(sample.get("tokens"), np.ndarray):
        return {"input_ids": sample["tokens"]}
    if isinstance(sample.get("text"), str):
        if tokenizer is None:
            raise MixtureError("the dataset stores raw `text`: its tokens depend on the tokenizer",
                               hint="pass --tokenizer (`bytes` or a local Hugging Face tokenizer path)")
        return {"input_ids": tokenizer.encode_batch([sample["text"]])[0]}
    raise MixtureError(f"text sample without input_ids, an int array `tokens` or a string `text`: {sorted(sample)}")


def iter_samples(location: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every sample of an MDS dataset in MDS order, as ``(shard position, sample)``.

    Reads the shards directly with Streaming's readers (no StreamingDataset, no shared memory); a remote
    dataset is downloaded shard by shard into a temporary directory, each shard removed once read.
    """
    from streaming.base.format import reader_from_json
    from streaming.base.storage.download import CloudDownloader

    remote = is_remote(location)

    def fetch(root: str, basename: str) -> None:
        if remote and not os.path.exists(os.path.join(root, basename)):
            try:
                CloudDownloader.direct_download(f"{location.rstrip('/')}/{basename}", os.path.join(root, basename), 60)
            except Exception as exc:  # Streaming raises plain exceptions for missing remote files
                raise MixtureError(f"{location}/{basename} cannot be read ({exc})") from None

    with tempfile.TemporaryDirectory() as tmp:
        root = tmp if remote else local_path(location)
        fetch(root, INDEX_JSON)
        if not os.path.exists(os.path.join(root, INDEX_JSON)):
            raise MixtureError(f"{location}: no {INDEX_JSON}", hint="point at an MDS dataset directory")
        with open(os.path.join(root, INDEX_JSON)) as handle:
            shards = json.load(handle)["shards"]
        for position, shard in enumerate(shards):
            basename = _stored_file(shard)
            fetch(root, basename)
            if basename != shard["raw_data"]["basename"]:
                _decompress(root, shard)
            reader = reader_from_json(root, None, shard)
            for i in range(reader.samples):
                yield position, reader.get_item(i)
            if remote:
                for name in {basename, shard["raw_data"]["basename"]}:
                    os.remove(os.path.join(root, name))


def _stored_file(shard: dict[str, Any]) -> str:
    """The shard file to read: the raw one, or the compressed one where only that is kept."""
    info = shard.get("zip_data") or shard["raw_data"]
    return info["basename"]


def _decompress(root: str, shard: dict[str, Any]) -> None:
    from streaming.base.compression import decompress

    if os.path.exists(os.path.join(root, shard["raw_data"]["basename"])):
        return
    with open(os.path.join(root, shard["zip_data"]["basename"]), "rb") as handle:
        data = decompress(shard["compression"], handle.read())
    with open(os.path.join(root, shard["raw_data"]["basename"]), "wb") as handle:
        handle.write(data)


def with_index_metadata(table: pa.Table, kind: str, dropped: dict[str, int], extra: dict[str, Any]) -> pa.Table:
    """``table`` with the sample index's key-value metadata: ``mixture:kind``, ``mixture:dropped`` and
    ``mixture:<key>`` for each extra item (strings as they are, anything else as JSON), and
    ``mixture:content_sha256``, the content hash that makes the source's fingerprint cheap."""
    columns = {name: table.column(name) for name in table.column_names}
    meta = {"kind": kind, "dropped": dict(sorted(dropped.items())), **extra, "content_sha256": content_hash(columns)}
    encoded = {f"mixture:{k}".encode(): (v if isinstance(v, str) else json.dumps(v)).encode() for k, v in meta.items()}
    return table.replace_schema_metadata(encoded)


def build_index(location: str, *, visual_tokens: int = DEFAULT_VISUAL_TOKENS, eos_id: int | None = None,
                tokenizer: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """``mixture index``: write ``samples.parquet`` for an MDS dataset by reading its shards once.

    Args:
        location: The MDS directory (local path or URL).
        visual_tokens: Visual tokens per image, for image-caption and instruction datasets.
        eos_id: End-of-sequence id, to count documents in packed text (unknown: 1 per sample).
        tokenizer: For text stored as strings: ``bytes`` or a local Hugging Face tokenizer path.
        overwrite: Replace an existing ``samples.parquet``.

    Returns:
        A summary: kind, samples, output path.
    """
    import fsspec
    import pyarrow.parquet as pq

    from mixture.sources import SAMPLE_INDEX
    from streaming_data.locations import publish, storage_options

    target = f"{location.rstrip('/')}/{SAMPLE_INDEX}"
    fs, path = fsspec.core.url_to_fs(target, **storage_options(target))
    if fs.exists(path) and not overwrite:
        raise MixtureError(f"{target} already exists", hint="pass --overwrite to rebuild it")
    from streaming_data.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer) if tokenizer else None
    if tok is not None and eos_id is None:
        eos_id = tok.eos_id
    kind, rows, shards = "", {}, []
    for shard, sample in iter_samples(location):
        kind = kind or detect_kind(list(sample))
        sample = as_ingested(kind, sample, tok)
        for name, value in index_row(kind, sample, visual_tokens=visual_tokens, eos_id=eos_id).items():
            rows.setdefault(name, []).append(value)
        shards.append(shard)
    schema = INDEX_SCHEMAS[kind or TEXT]
    table = pa.Table.from_pydict(rows, schema=schema) if rows else schema.empty_table()
    table = table.append_column(pa.field("shard", pa.int32()), pa.array(shards, pa.int32()))
    description = tok.description if tok else "as stored in the shards (indexed by `mixture index`)"
    extra: dict[str, Any] = {"tokenizer": description, "indexed_by": "mixture index"}
    if kind != TEXT:
        extra["visual_tokens_per_image"] = visual_tokens
    table = with_index_metadata(table, kind or TEXT, {}, extra)
    with tempfile.TemporaryDirectory() as staging:
        pq.write_table(table, os.path.join(staging, SAMPLE_INDEX))
        publish(staging, location, (SAMPLE_INDEX,))
    return {"kind": kind or TEXT, "samples": table.num_rows, "out": target}
