"""Where image-caption pairs come from: img2dataset output folders (webdataset tars or parquet), a local
folder of images with captions, and URL lists downloaded by img2dataset itself.

Each source is a list of *parts* (one img2dataset shard, or a run of local files); a part yields
:class:`Pair` records in a fixed order, so a resumed ingest re-reads exactly the same part. Rows that
img2dataset failed to fetch are not pairs: they are counted per part by reason from the shard's own
metadata parquet (its ``status`` and ``error_message`` columns).
"""

from __future__ import annotations

import glob
import mmap
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mixture.errors import MixtureError
from streaming_data.inputs import iter_records
from streaming_data.url_policy import refusal_reason

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Pair:
    """One image with its caption, or a reason it cannot be one (``image`` is then ``None``)."""

    key: str
    image: bytes | None
    caption: str
    drop: str = ""


@dataclass(frozen=True)
class Part:
    """A unit of resumable work: a name (for the journal) and a way to read its pairs."""

    name: str
    read: Callable[[], Iterator[Pair]]
    failed: Callable[[], Counter[str]] = Counter


def download_reason(error_message: str | None) -> str:
    """A short, countable reason for an img2dataset failure message."""
    message = error_message or ""
    if refused := refusal_reason(message):
        return refused
    if match := re.search(r"HTTP Error (\d+)", message):
        return f"download_http_{match.group(1)}"
    for needle, reason in (("timed out", "download_timeout"), ("disallowed", "download_disallowed"),
                           ("hash mismatch", "hash_mismatch"), ("decoding", "decode_error"),
                           ("too small", "image_too_small"), ("too large", "image_too_large")):
        if needle in message:
            return reason
    return "download_error"


def img2dataset_parts(folder: str) -> list[Part]:
    """The shards of an img2dataset output folder, webdataset (``*.tar``) or parquet, in shard order."""
    tars = sorted(glob.glob(os.path.join(folder, "*.tar")))
    if tars:
        return [Part(os.path.basename(t), _tar_reader(t), _failures_reader(t[:-4] + ".parquet")) for t in tars]
    parquets = sorted(p for p in glob.glob(os.path.join(folder, "*.parquet")) if not p.endswith("_stats.parquet"))
    if not parquets:
        raise MixtureError(f"{folder}: no img2dataset shards (*.tar or *.parquet)",
                           hint="run img2dataset with output_format webdataset or parquet, or pass --urls")
    return [Part(os.path.basename(p), _parquet_reader(p), _failures_reader(p)) for p in parquets]


def _failures_reader(path: str) -> Callable[[], Counter[str]]:
    def failures() -> Counter[str]:
        import pyarrow.parquet as pq

        if not os.path.exists(path):
            return Counter()
        table = pq.read_table(path, columns=["status", "error_message"])
        return Counter(download_reason(m) for s, m in zip(table.column("status").to_pylist(),
                                                          table.column("error_message").to_pylist())
                       if s != "success")

    return failures


def _tar_reader(path: str) -> Callable[[], Iterator[Pair]]:
    def read() -> Iterator[Pair]:
        # webdataset keeps a sample's files consecutive (key.jpg, key.txt, key.json): group by key as we go
        key, files = None, {}
        for name, data in tar_members(path):
            stem, _, ext = os.path.basename(name).partition(".")
            stem = os.path.join(os.path.dirname(name), stem)
            if stem != key and key is not None:
                yield _pair_from_files(key, files)
                files = {}
            key = stem
            files[ext.lower()] = data
        if key is not None:
            yield _pair_from_files(key, files)

    return read


def tar_members(path: str) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` of each regular file of an uncompressed tar, in order.

    Why by hand: ``tarfile`` spends ~80 us of Python per member (three per webdataset sample), more than
    the MDS write of the sample; img2dataset's tars are plain ustar, whose 512-byte headers read directly
    in a few microseconds. A tar with anything else (pax or GNU long names, links) goes to ``tarfile``.
    """
    if os.path.getsize(path) == 0:
        return
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        members, offset, end = [], 0, len(view)
        while offset + 512 <= end and view[offset] != 0:
            header = view[offset : offset + 512]
            kind = header[156:157]
            size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            if kind not in (b"0", b"\0", b"5"):
                members = None
                break
            if kind != b"5":
                name = header[:100].rstrip(b"\0")
                prefix = header[345:500].rstrip(b"\0") if header[257:262] == b"ustar" else b""
                members.append(((prefix + b"/" + name if prefix else name).decode(), offset + 512, size))
            offset += 512 + (size + 511) // 512 * 512
        if members is not None:
            for name, start, size in members:
                yield name, view[start : start + size]
            return
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                yield member.name, handle.read() if handle else b""


def _pair_from_files(key: str, files: dict[str, bytes]) -> Pair:
    image = next((files[e] for e in ("jpg", "jpeg", "png", "webp") if e in files), None)
    caption = files.get("txt", b"").decode("utf-8", errors="replace")
    return Pair(key, image, caption, "" if image is not None else "missing_image")


def _parquet_reader(path: str) -> Callable[[], Iterator[Pair]]:
    def read() -> Iterator[Pair]:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        image_column = next((c for c in ("jpg", "png", "webp") if c in names), None)
        if image_column is None:
            raise MixtureError(f"{path}: no image column (jpg, png or webp)",
                               hint="is this img2dataset output with output_format parquet?")
        columns = [c for c in ("key", image_column, "txt", "status") if c in names]
        for batch in parquet.iter_batches(columns=columns, batch_size=512):
            for row in batch.to_pylist():
                if row.get("status", "success") == "success":
                    yield Pair(str(row.get("key", "")), row[image_column], row.get("txt") or "")

    return read


def folder_parts(folder: str, captions: str | None, *, image_column: str = "image",
                 caption_column: str = "caption", per_part: int = 10_000) -> list[Part]:
    """A local folder of images, captioned by a table (``captions``) or by ``<image>.txt`` beside each.

    Args:
        folder: The image root (searched recursively when captions come from sidecar files).
        captions: CSV, JSONL or parquet with an image path (relative to ``folder``) and a caption per row.
        image_column: Column of ``captions`` holding the image path.
        caption_column: Column of ``captions`` holding the caption.
        per_part: Images per resumable part.
    """
    if not os.path.isdir(folder):
        raise MixtureError(f"{folder} is not a directory", hint="pass the folder that holds the images")
    if captions:
        entries = [_caption_entry(r, captions, image_column, caption_column) for r in iter_records(captions)]
    else:
        files = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                       if p.lower().endswith(IMAGE_EXTENSIONS))
        entries = [(os.path.relpath(p, folder), None) for p in files]
    if not entries:
        raise MixtureError(f"{folder}: no images found", hint=f"image files end in {', '.join(IMAGE_EXTENSIONS)}")
    return [Part(f"images-{i // per_part:05d}", _folder_reader(folder, entries[i : i + per_part]))
            for i in range(0, len(entries), per_part)]


def _caption_entry(record: dict[str, Any], path: str, image_column: str, caption_column: str) -> tuple[str, str]:
    missing = [c for c in (image_column, caption_column) if c not in record]
    if missing:
        raise MixtureError(f"{path}: no column {missing[0]!r} (columns: {sorted(record)})",
                           hint="name the columns with --image-column / --caption-column")
    return str(record[image_column]), "" if record[caption_column] is None else str(record[caption_column])


def _folder_reader(folder: str, entries: list[tuple[str, str | None]]) -> Callable[[], Iterator[Pair]]:
    def read() -> Iterator[Pair]:
        for relative, caption in entries:
            path = os.path.join(folder, relative)
            if caption is None:  # sidecar caption file
                sidecar = os.path.splitext(path)[0] + ".txt"
                if not os.path.exists(sidecar):
                    yield Pair(relative, None, "", "missing_caption")
                    continue
                with open(sidecar, encoding="utf-8", errors="replace") as handle:
                    caption = handle.read().strip()
            if not os.path.isfile(path):
                yield Pair(relative, None, caption, "missing_image")
                continue
            with open(path, "rb") as handle:
                yield Pair(relative, handle.read(), caption)

    return read


def run_img2dataset(url_list: str, output_folder: str, *, url_column: str = "url", caption_column: str = "caption",
                    processes: int = 1, threads: int = 16, distributor: str = "multiprocessing",
                    resize: int | None = None, per_shard: int = 10_000, timeout: int = 10) -> str:
    """Download a URL list (parquet, CSV, TSV or JSONL) with img2dataset into webdataset shards.

    Keeps the original bytes (``disable_all_reencoding``) unless ``resize`` asks for img2dataset's lossy
    resize to ``resize`` pixels. Reruns resume: img2dataset skips the shards it already finished. Only
    http(s) URLs are fetched, and redirects only to http(s) (:mod:`streaming_data.url_policy`).
    """
    _check_url_list(url_list, url_column, caption_column, distributor)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from img2dataset import download

    name = url_list.lower()
    formats = {".parquet": "parquet", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
    input_format = next((f for ext, f in formats.items() if name.endswith(ext)), "csv")
    options: dict[str, Any] = (
        {"resize_mode": "keep_ratio", "image_size": resize, "resize_only_if_bigger": True} if resize
        else {"resize_mode": "no", "disable_all_reencoding": True}
    )
    from streaming_data.url_downloader import http_only_downloads

    with http_only_downloads():  # only http(s) URLs, and no redirect to another scheme
        download(url_list=url_list, output_folder=output_folder, input_format=input_format, url_col=url_column,
                 caption_col=caption_column, output_format="webdataset", processes_count=processes,
                 thread_count=threads, distributor=distributor, number_sample_per_shard=per_shard,
                 timeout=timeout, enable_wandb=False, incremental_mode="incremental", compute_hash=None, **options)
    return output_folder


def _check_url_list(url_list: str, url_column: str, caption_column: str, distributor: str) -> None:
    """Fail before img2dataset starts (and prints tracebacks from its workers) on a bad URL list."""
    if distributor == "pyspark":
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise MixtureError("--distributor pyspark needs pyspark installed and a Spark session",
                               hint="install pyspark on the cluster, or use --distributor multiprocessing") from None
    first = next(iter_records(url_list), None)
    if not isinstance(first, dict):
        raise MixtureError(f"URL list {url_list} has no rows" if first is None else f"URL list {url_list}: rows "
                           "must be records with a URL and a caption")
    missing = [c for c in (url_column, caption_column) if c not in first]
    if missing:
        raise MixtureError(f"URL list {url_list}: no column {missing[0]!r} (columns: {sorted(first)})",
                           hint="name the columns with --url-column / --caption-column")
