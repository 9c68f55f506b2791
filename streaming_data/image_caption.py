"""Image-caption ingest: pairs from img2dataset output, a local folder or a URL list -> MDS.

Samples keep the image's original encoded bytes (no re-encode), the caption, its token ids, width, height
and a sha256 content hash. An image that does not decode is dropped with a reason (``not_an_image``,
``truncated``, ``decode_error``), never crashed on. ``verify="decode"`` (the default) decodes every image
fully, because a truncated JPEG has a valid header and only fails in the entropy-coded data; JPEGs decode
at 1/8 scale (libjpeg's DCT scaling reads every byte of the stream but skips most of the maths).
``verify="header"`` reads only the header (fast; misses truncation).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from typing import Any

from mixture.errors import MixtureError
from streaming_data.images import Pair, Part, folder_parts, img2dataset_parts, run_img2dataset
from streaming_data.inputs import batched
from streaming_data.progress import progress
from streaming_data.sample_index import DEFAULT_VISUAL_TOKENS, IMAGE_CAPTION, INDEX_SCHEMAS, MDS_COLUMNS, index_row
from streaming_data.tokenizer import Tokenizer, load_tokenizer
from streaming_data.writer import Drop, Ingest, PartResult

VERIFY_MODES = ("decode", "header")
_BATCH = 256


def inspect_image(data: bytes, verify: str = "decode") -> tuple[int, int]:
    """Width and height of an encoded image; raises :class:`Drop` if it does not decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            if verify == "decode":
                if image.format == "JPEG":
                    image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
    except UnidentifiedImageError:
        raise Drop("not_an_image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Drop("truncated" if "truncated" in str(exc) else "decode_error") from None
    except Image.DecompressionBombError:
        raise Drop("too_large") from None
    return size


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
    verify: str = "decode"
    processes: int = 1
    threads: int = 16
    distributor: str = "multiprocessing"
    resize: int | None = None
    images_per_part: int = 10_000
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
    journal = {**asdict(config), "kind": IMAGE_CAPTION, "tokenizer_description": tokenizer.description}
    ingest = Ingest(config.out, journal, work_dir=work_dir, overwrite=overwrite)
    parts = _parts(config, ingest.work)
    with progress({"images": None}, enabled=show_progress) as counters:
        for index, part in enumerate(parts):
            if ingest.is_done(index):
                continue
            with ingest.part(index, MDS_COLUMNS[IMAGE_CAPTION], size_limit=config.size_limit,
                             compression=config.compression) as (writer, result):
                result.dropped.update(part.failed())
                for batch in batched(part.read(), _BATCH):
                    write_pairs(batch, tokenizer, config, writer, result)
                    counters.advance("images", len(batch))
    metadata = {"tokenizer": tokenizer.description, "visual_tokens_per_image": config.visual_tokens,
                "verify": config.verify, "parts": [p.name for p in parts]}
    return ingest.finalize(kind=IMAGE_CAPTION, schema=INDEX_SCHEMAS[IMAGE_CAPTION], metadata=metadata)


def _parts(config: ImageCaptionIngestConfig, work: str) -> list[Part]:
    if config.urls:
        if not os.path.exists(config.urls) and "://" not in config.urls:
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
