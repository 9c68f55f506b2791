"""``mixture ingest ...`` and ``mixture index``: thin parsers over the ingest library.

Cheap to import (the CLI imports it at start-up): streaming, torch, img2dataset and transformers are
imported inside the handlers only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_VISUAL_TOKENS = 729  # keep in step with streaming_data.sample_index (not imported here: cheap start)


def register(subparsers: Any) -> None:
    """Add ``ingest`` (text, image-caption, instruction, train-tokenizer) and ``index``."""
    ingest = subparsers.add_parser("ingest", help="turn raw data into MDS plus a sample index")
    kinds = ingest.add_subparsers(dest="ingest_kind", metavar="KIND", required=True)
    _add_text(kinds)
    _add_image_caption(kinds)
    _add_instruction(kinds)
    _add_train_tokenizer(kinds)
    index = subparsers.add_parser("index", help="build samples.parquet for an MDS dataset made elsewhere")
    index.add_argument("location", help="MDS directory (local path or URL)")
    index.add_argument("--visual-tokens", type=int, default=DEFAULT_VISUAL_TOKENS,
                       help="visual tokens per image (image-caption, instruction)")
    index.add_argument("--eos-id", type=int, default=None, help="end-of-sequence id, to count packed documents")
    index.add_argument("--tokenizer", default=None,
                       help="for text stored as strings: `bytes` or a local Hugging Face tokenizer path")
    index.add_argument("--overwrite", action="store_true", help="replace an existing samples.parquet")
    index.set_defaults(func=_run_index)


def _common_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", required=True, help="output MDS directory: local path or s3://... URL")
    parser.add_argument("--work-dir", default=None,
                        help="local work directory for a remote --out (default: a temp dir keyed by the URL)")
    parser.add_argument("--overwrite", action="store_true", help="replace a complete or unfinished output")
    parser.add_argument("--size-limit", default="64mb", help="MDS shard size limit (default 64mb)")
    parser.add_argument("--compression", default=None, help="MDS shard compression, e.g. zstd (default none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or lines (as --quiet)")


def _tokenizer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", default="bytes",
                        help="`bytes` (no files) or a local Hugging Face tokenizer directory / tokenizer.json")
    parser.add_argument("--eos-token", default=None, help="end-of-sequence token (default: from the tokenizer)")


def _image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--visual-tokens", type=int, default=DEFAULT_VISUAL_TOKENS,
                        help=f"visual tokens per image, counted in `tokens` (default {DEFAULT_VISUAL_TOKENS})")
    parser.add_argument("--verify", choices=("structure", "decode", "header"), default="structure",
                        help="structure (default: size + end marker, catches truncation), decode (full "
                        "decode, catches corrupt data too) or header (size only)")


def _add_text(kinds: Any) -> None:
    text = kinds.add_parser("text", help="JSONL, parquet or plain text -> tokenized MDS")
    text.add_argument("inputs", nargs="+", help="files, globs or fsspec URLs")
    _common_output(text)
    _tokenizer_options(text)
    text.add_argument("--seq-len", type=int, default=2048,
                      help="packed sequence length (default 2048); 0 writes one sample per document")
    text.add_argument("--text-field", default="text", help="JSONL field / parquet column (default text)")
    text.add_argument("--format", dest="fmt", choices=("jsonl", "parquet", "txt"), default=None,
                      help="input format (default: from each file's extension)")
    text.add_argument("--line-documents", action="store_true", help="plain text: one document per line")
    text.add_argument("--tail", choices=("keep", "drop"), default="keep",
                      help="the last, shorter packed sequence: keep (default) or drop")
    text.add_argument("--docs-per-part", type=int, default=100_000, help="documents per resumable part")
    text.set_defaults(func=_run_text)


def _add_image_caption(kinds: Any) -> None:
    images = kinds.add_parser("image-caption", help="image-caption pairs -> MDS (original image bytes kept)")
    source = images.add_mutually_exclusive_group(required=True)
    source.add_argument("--urls", help="URL list (parquet/CSV/TSV/JSONL with url and caption columns) to "
                        "download with img2dataset")
    source.add_argument("--img2dataset", dest="img2dataset_dir", help="an img2dataset output folder to convert")
    source.add_argument("--images", dest="images_dir", help="a local folder of images")
    images.add_argument("--captions", help="with --images: CSV/JSONL/parquet of image path + caption "
                        "(default: <image>.txt beside each image)")
    _common_output(images)
    _tokenizer_options(images)
    _image_options(images)
    images.add_argument("--url-column", default="url", help="URL column of --urls (default url)")
    images.add_argument("--caption-column", default="caption", help="caption column (default caption)")
    images.add_argument("--image-column", default="image", help="image path column of --captions (default image)")
    images.add_argument("--processes", type=int, default=1, help="img2dataset processes (default 1)")
    images.add_argument("--threads", type=int, default=16, help="img2dataset threads per process (default 16)")
    images.add_argument("--distributor", choices=("multiprocessing", "pyspark"), default="multiprocessing",
                        help="img2dataset distributor (pyspark where a Spark session exists)")
    images.add_argument("--resize", type=int, default=None,
                        help="let img2dataset resize to this many pixels (lossy re-encode; default: keep bytes)")
    images.add_argument("--images-per-part", type=int, default=10_000,
                        help="--images: images per resumable part (default 10000)")
    images.add_argument("--workers", type=int, default=0,
                        help="processes converting parts (shards) in parallel (default: one per core)")
    images.set_defaults(func=_run_image_caption)


def _add_instruction(kinds: Any) -> None:
    chat = kinds.add_parser("instruction", help="LLaVA-format conversations -> MDS with an assistant loss mask")
    chat.add_argument("inputs", nargs="+", help="LLaVA JSON (a list) or JSONL files, globs")
    chat.add_argument("--image-root", default=None, help="directory the records' image paths are relative to")
    _common_output(chat)
    _tokenizer_options(chat)
    _image_options(chat)
    chat.add_argument("--max-tokens", type=int, default=0,
                      help="cut conversations to this many tokens (default 0: keep whole)")
    chat.add_argument("--records-per-part", type=int, default=10_000,
                      help="conversations per resumable part (default 10000)")
    chat.set_defaults(func=_run_instruction)


def _add_train_tokenizer(kinds: Any) -> None:
    train = kinds.add_parser("train-tokenizer", help="train a small byte-level BPE tokenizer on your text")
    train.add_argument("inputs", nargs="+", help="files, globs or fsspec URLs (JSONL, parquet, txt)")
    train.add_argument("-o", "--out", required=True, help="directory to write tokenizer.json into")
    train.add_argument("--vocab-size", type=int, default=8192, help="vocabulary size (default 8192)")
    train.add_argument("--min-frequency", type=int, default=2, help="minimum pair count to merge (default 2)")
    train.add_argument("--text-field", default="text", help="JSONL field / parquet column (default text)")
    train.add_argument("--format", dest="fmt", choices=("jsonl", "parquet", "txt"), default=None)
    train.add_argument("--line-documents", action="store_true", help="plain text: one document per line")
    train.set_defaults(func=_run_train_tokenizer)


def _print(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2, sort_keys=True))


def _run_text(args: argparse.Namespace) -> int:
    from streaming_data.text import TextIngestConfig, ingest_text

    config = TextIngestConfig(
        inputs=tuple(args.inputs), out=args.out, tokenizer=args.tokenizer, eos_token=args.eos_token,
        seq_len=args.seq_len or None, text_field=args.text_field, fmt=args.fmt,
        line_documents=args.line_documents, tail=args.tail, docs_per_part=args.docs_per_part,
        size_limit=args.size_limit, compression=args.compression,
    )
    _print(ingest_text(config, work_dir=args.work_dir, overwrite=args.overwrite,
                       show_progress=_show_progress(args)))
    return 0


def _run_image_caption(args: argparse.Namespace) -> int:
    from streaming_data.image_caption import ImageCaptionIngestConfig, ingest_image_caption

    config = ImageCaptionIngestConfig(
        out=args.out, img2dataset_dir=args.img2dataset_dir, images_dir=args.images_dir, captions=args.captions,
        urls=args.urls, url_column=args.url_column, caption_column=args.caption_column,
        image_column=args.image_column, tokenizer=args.tokenizer, eos_token=args.eos_token,
        visual_tokens=args.visual_tokens, verify=args.verify, processes=args.processes, threads=args.threads,
        distributor=args.distributor, resize=args.resize, images_per_part=args.images_per_part, workers=args.workers,
        size_limit=args.size_limit, compression=args.compression,
    )
    _print(ingest_image_caption(config, work_dir=args.work_dir, overwrite=args.overwrite,
                                show_progress=_show_progress(args)))
    return 0


def _run_instruction(args: argparse.Namespace) -> int:
    from streaming_data.instruction import InstructionIngestConfig, ingest_instruction

    config = InstructionIngestConfig(
        inputs=tuple(args.inputs), out=args.out, image_root=args.image_root, tokenizer=args.tokenizer,
        eos_token=args.eos_token, visual_tokens=args.visual_tokens, verify=args.verify,
        max_tokens=args.max_tokens, records_per_part=args.records_per_part, size_limit=args.size_limit,
        compression=args.compression,
    )
    _print(ingest_instruction(config, work_dir=args.work_dir, overwrite=args.overwrite,
                              show_progress=_show_progress(args)))
    return 0


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress  # on a terminal a bar, otherwise log lines (mixture.progress); --quiet: none


def _run_train_tokenizer(args: argparse.Namespace) -> int:
    from streaming_data.inputs import expand_inputs, iter_documents
    from streaming_data.tokenizer import train_bpe

    docs = iter_documents(expand_inputs(args.inputs), text_field=args.text_field, fmt=args.fmt,
                          line_documents=args.line_documents)
    out = train_bpe(docs, args.out, vocab_size=args.vocab_size, min_frequency=args.min_frequency)
    _print({"tokenizer": out})
    return 0


def _run_index(args: argparse.Namespace) -> int:
    from streaming_data.sample_index import build_index

    _print(build_index(args.location, visual_tokens=args.visual_tokens, eos_id=args.eos_id,
                       tokenizer=args.tokenizer, overwrite=args.overwrite))
    return 0
