"""Image-caption ingest: pairs from img2dataset output, a local folder or a URL list -> MDS.

Samples keep the image's original encoded bytes (no re-encode), the caption, its token ids, width, height
and a sha256 content hash. An image that is not whole is dropped with a reason, never crashed on (how
thoroughly it is checked: ``--verify``, see :mod:`streaming_data.image_check`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any

from mixture.errors import MixtureError
from mixture.locations import is_url
from streaming_data.image_check import VERIFY_MODES, inspect_image
from streaming_data.images import Pair, Part, folder_parts, img2dataset_parts, run_img2dataset
from streaming_data.inputs import batched
from streaming_data.parallel import default_workers, run_parts
from streaming_data.progress import progress
from streaming_data.sample_index import DEFAULT_VISUAL_TOKENS, IMAGE_CAPTION, INDEX_SCHEMAS, MDS_COLUMNS, index_row
from streaming_data.tokenizer import Tokenizer, load_tokenizer
from streaming_data.writer import Drop, Ingest, PartResult

_BATCH = 256


@dataclass(frozen=True)
class ImageCaptionIngestConfig:
    """Settings of one image-caption ingest (all go into the journal; a resume must match them).

    Attributes:
        out: Output MDS directory (local path or remote URL).
        img2dataset_dir: An img2dataset output folder (webdataset or parquet) to convert.
        images_dir: A local folder of images (with ``captions`` or ``<image>.txt`` sidecars).
        captions: Table of image path + caption for ``images_dir``.
        urls: A URL list (parquet/CSV with url and caption columns) to download with img2dataset first.
        url_column: URL column of ``urls``.
        caption_column: Caption column of ``urls`` or ``captions``.
        image_column: Image path column of ``captions``.
        tokenizer: ``bytes`` or a local Hugging Face tokenizer path (for caption tokens).
        eos_token: End-of-sequence token of a Hugging Face tokenizer.
        visual_tokens: Visual tokens per image, counted in ``tokens``.
        verify: ``decode`` (full decode) or ``header``.
        processes, threads, distributor, resize: img2dataset settings for ``urls``.
        images_per_part: Images per resumable part (local folder).
        workers: Processes converting parts in parallel (0: one per core).
        size_limit, compression: MDS shard settings.
    """

    out: str
    img2dataset_dir: str | None = None
    images_dir: str | None = None
    captions: str | None = None
    urls: str | None = None
    url_column: str = "url"
    caption_column: str = "caption"
    image_column: str = "image"
    tokenizer: str = "bytes"
    eos_token: str | None = None
    visual_tokens: int = DEFAULT_VISUAL_TOKENS
    verify: str = "structure"
    processes: int = 1
    threads: int = 16
    distributor: str = "multiprocessing"
    resize: int | None = None
    images_per_part: int = 10_000
    workers: int = 0
    size_limit: str = "64mb"
    compression: str | None = None

    def check(self) -> None:
        """Raise :class:`MixtureError` for settings that cannot work."""
        given = [n for n in ("img2dataset_dir", "images_dir", "urls") if getattr(self, n)]
        if len(given) != 1:
            raise MixtureError("give exactly one input: --urls FILE, --img2dataset DIR or --images DIR",
                               hint=f"got {len(given)}")
        if self.verify not in VERIFY_MODES:
            raise MixtureError(f"--verify must be one of {VERIFY_MODES}, got {self.verify!r}")
        if self.visual_tokens < 0:
            raise MixtureError(f"--visual-tokens must be >= 0, got {self.visual_tokens}")


def ingest_image_caption(config: ImageCaptionIngestConfig, *, work_dir: str | None = None, overwrite: bool = False,
                         show_progress: bool = True) -> dict[str, Any]:
    """Convert image-caption pairs to MDS plus ``samples.parquet``; resumes an interrupted run.

    Returns:
        A summary: out, samples, shards, dropped.
    """
    config.check()
    tokenizer = load_tokenizer(config.tokenizer, config.eos_token)
    journal = {**_settings(config), "kind": IMAGE_CAPTION, "tokenizer_description": tokenizer.description}
    ingest = Ingest(config.out, journal, work_dir=work_dir, overwrite=overwrite)
    parts = _parts(config, ingest.work)

    def write_part(index: int) -> int:
        read = 0
        with ingest.part(index, MDS_COLUMNS[IMAGE_CAPTION], size_limit=config.size_limit,
                         compression=config.compression) as (writer, result):
            result.dropped.update(parts[index].failed())
            for batch in batched(parts[index].read(), _BATCH):
                write_pairs(batch, tokenizer, config, writer, result)
                read += len(batch)
        return read

    todo = [i for i in range(len(parts)) if not ingest.is_done(i)]
    with progress({"images": None}, enabled=show_progress) as counters:
        for read in run_parts(todo, write_part, config.workers or default_workers()):
            counters.advance("images", read)
    metadata = {"tokenizer": tokenizer.description, "visual_tokens_per_image": config.visual_tokens,
                "verify": config.verify, "parts": [p.name for p in parts]}
    return ingest.finalize(kind=IMAGE_CAPTION, schema=INDEX_SCHEMAS[IMAGE_CAPTION], metadata=metadata)


def _settings(config: ImageCaptionIngestConfig) -> dict[str, Any]:
    """The settings a resume must match (the number of workers does not change the output)."""
    settings = asdict(config)
    settings.pop("workers")
    return settings


def _parts(config: ImageCaptionIngestConfig, work: str) -> list[Part]:
    if config.urls:
        if not is_url(config.urls) and not os.path.exists(config.urls):
            raise MixtureError(f"URL list {config.urls} does not exist")
        folder = run_img2dataset(config.urls, os.path.join(work, "img2dataset"), url_column=config.url_column,
                                 caption_column=config.caption_column, processes=config.processes,
                                 threads=config.threads, distributor=config.distributor, resize=config.resize)
        return img2dataset_parts(folder)
    if config.img2dataset_dir:
        return img2dataset_parts(config.img2dataset_dir)
    assert config.images_dir is not None  # check() guarantees one input
    return folder_parts(config.images_dir, config.captions, image_column=config.image_column,
                        caption_column=config.caption_column, per_part=config.images_per_part)


def write_pairs(pairs: list[Pair], tokenizer: Tokenizer, config: ImageCaptionIngestConfig, writer: Any,
                result: PartResult) -> None:
    """Check, tokenize and write one batch of pairs; count the dropped ones by reason."""
    kept: list[tuple[Pair, tuple[int, int]]] = []
    for pair in pairs:
        if pair.image is None:
            result.dropped[pair.drop] += 1
            continue
        try:
            kept.append((pair, inspect_image(pair.image, config.verify)))
        except Drop as drop:
            result.dropped[drop.reason] += 1
    for (pair, (width, height)), ids in zip(kept, tokenizer.encode_batch([p.caption for p, _ in kept])):
        assert pair.image is not None
        sample = {"image": pair.image, "caption": pair.caption, "caption_ids": ids, "width": width,
                  "height": height, "content_hash": hashlib.sha256(pair.image).hexdigest()}
        writer.write(sample)
        result.add(index_row(IMAGE_CAPTION, sample, visual_tokens=config.visual_tokens))
