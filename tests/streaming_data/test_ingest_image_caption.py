"""Image-caption ingest: local folder, img2dataset output, URL list through img2dataset; bad images."""

from __future__ import annotations

import csv
import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import make_image_set, read_mds

from mixture.sources import read_sample_index
from streaming_data.image_caption import ImageCaptionIngestConfig, ingest_image_caption
from streaming_data.image_check import VERIFY_MODES, inspect_image
from streaming_data.writer import Drop
from streaming_data.tokenizer import ByteTokenizer


def _check_round_trip(out: str, expected: dict[str, tuple[bytes, str]]) -> list[dict]:
    """Every sample equals its source (bytes, caption, token ids) and samples.parquet agrees."""
    samples = read_mds(out)
    by_hash = {hashlib.sha256(data).hexdigest(): (data, caption) for data, caption in expected.values()}
    assert len(samples) == len(expected)
    table = pq.read_table(f"{out}/samples.parquet")
    for sample, row in zip(samples, table.to_pylist()):
        data, caption = by_hash[sample["content_hash"]]
        assert sample["image"] == data and sample["caption"] == caption
        np.testing.assert_array_equal(sample["caption_ids"], ByteTokenizer().encode_batch([caption])[0])
        assert row["content_hash"] == sample["content_hash"] and row["width"] == sample["width"]
        assert row["tokens"] == 729 + len(sample["caption_ids"]) == 729 + row["caption_tokens"]
    assert table.schema.metadata[b"mixture:visual_tokens_per_image"] == b"729"
    return samples


def _good(images: dict[str, tuple[bytes, str]]) -> dict[str, tuple[bytes, str]]:
    return {k: v for k, v in images.items() if not k.startswith("broken")}


@pytest.mark.parametrize("verify", ["structure", "decode"])
def test_inspect_image_drops_with_reasons(verify: str) -> None:
    images = make_image_set(4)
    assert inspect_image(images["img001.jpg"][0], verify) == (19, 14)
    assert inspect_image(images["img003.png"][0], verify) == (25, 18)
    png = images["img003.png"][0]
    cases = {"broken_text.jpg": "not_an_image", "broken_truncated.jpg": "truncated"}
    for name, reason in cases.items():
        with pytest.raises(Drop, match=reason):
            inspect_image(images[name][0], verify)
    with pytest.raises(Drop, match="truncated"):
        inspect_image(png[: len(png) // 2], verify)


def test_structure_check_agrees_with_pillow_on_sizes() -> None:
    from ingest_helpers import make_image

    for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
        data = make_image(33, 17, fmt)
        assert {inspect_image(data, mode) for mode in VERIFY_MODES} == {(33, 17)}


def test_local_folder_with_captions_file(tmp_path: Path) -> None:
    images = make_image_set(12)
    (tmp_path / "imgs").mkdir()
    for name, (data, _) in images.items():
        (tmp_path / "imgs" / name).write_bytes(data)
    with open(tmp_path / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows([(name, caption) for name, (_, caption) in images.items()] + [("gone.jpg", "missing")])
    out = str(tmp_path / "mds")
    summary = ingest_image_caption(ImageCaptionIngestConfig(
        out=out, images_dir=str(tmp_path / "imgs"), captions=str(tmp_path / "captions.csv"), images_per_part=5,
        size_limit="2kb"), show_progress=False)
    assert summary["dropped"] == {"not_an_image": 1, "truncated": 1, "missing_image": 1}
    samples = _check_round_trip(out, _good(images))
    assert [s["caption"] for s in samples] == [c for _, c in _good(images).values()]  # input order kept
    assert read_sample_index(out).dropped == summary["dropped"]


def test_local_folder_with_sidecar_captions(tmp_path: Path) -> None:
    images = _good(make_image_set(4))
    for name, (data, caption) in images.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text(caption)
    out = str(tmp_path / "mds")
    ingest_image_caption(ImageCaptionIngestConfig(out=out, images_dir=str(tmp_path)), show_progress=False)
    _check_round_trip(out, images)


@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 (free port) over tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_url_list_through_img2dataset_end_to_end(tmp_path: Path, http_server: tuple[str, Path]) -> None:
    base, root = http_server
    images = make_image_set(10)
    for name, (data, _) in images.items():
        (root / name).write_bytes(data)
    rows = [{"url": f"{base}/{name}", "caption": caption} for name, (_, caption) in images.items()]
    rows.append({"url": f"{base}/does_not_exist.jpg", "caption": "404"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "urls.parquet")
    out = str(tmp_path / "mds")
    summary = ingest_image_caption(ImageCaptionIngestConfig(
        out=out, urls=str(tmp_path / "urls.parquet"), processes=1, threads=4), show_progress=False)
    assert summary["dropped"] == {"download_http_404": 1, "not_an_image": 1, "truncated": 1}
    _check_round_trip(out, _good(images))
    assert not (tmp_path / "mds" / ".ingest").exists()


def test_converts_an_img2dataset_webdataset_folder(tmp_path: Path) -> None:
    import io
    import json
    import tarfile

    images = _good(make_image_set(6))
    folder = tmp_path / "i2d"
    folder.mkdir()
    for shard, names in enumerate([list(images)[:4], list(images)[4:]]):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
            for i, name in enumerate(names):
                for ext, data in (("jpg", images[name][0]), ("txt", images[name][1].encode()), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{shard:05d}{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        status = pa.table({"status": ["success"] * len(names) + ["failed_to_download"],
                           "error_message": [None] * len(names) + ["<urlopen error timed out>"]})
        pq.write_table(status, folder / f"{shard:05d}.parquet")
        (folder / f"{shard:05d}_stats.json").write_text(json.dumps({"count": len(names) + 1}))
    out = str(tmp_path / "mds")
    summary = ingest_image_caption(ImageCaptionIngestConfig(out=out, img2dataset_dir=str(folder)),
                                   show_progress=False)
    assert summary["dropped"] == {"download_timeout": 2}
    _check_round_trip(out, images)


def test_nothing_survives_gives_an_empty_complete_source(tmp_path: Path) -> None:
    images = {k: v for k, v in make_image_set(0).items()}  # only the two broken files
    for name, (data, caption) in images.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text(caption)
    out = str(tmp_path / "mds")
    summary = ingest_image_caption(ImageCaptionIngestConfig(out=out, images_dir=str(tmp_path)), show_progress=False)
    assert summary["samples"] == 0 and summary["dropped"] == {"not_an_image": 1, "truncated": 1}
    index = read_sample_index(out)
    assert index.num_samples == 0 and index.kind == "image_caption"


class _Redirects(SimpleHTTPRequestHandler):
    """Static files, plus ``/go?TARGET`` answering 302 with ``Location: TARGET``."""

    def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
        if self.path.startswith("/go?"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/go?"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_url_ingest_fetches_only_http_urls_and_redirects(tmp_path: Path) -> None:
    """A file:// or ftp:// row, and http redirects to file:// or ftp://, are dropped by reason; the local
    file is never read into the dataset; an http -> http redirect is followed."""
    root = tmp_path / "www"
    root.mkdir()
    images = {k: v for k, v in make_image_set(3).items() if not k.startswith("broken")}
    for name, (data, _) in images.items():
        (root / name).write_bytes(data)
    secret = make_image_set(4)["img003.png"][0]  # a valid image the server does not serve
    (tmp_path / "secret.jpg").write_bytes(secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Redirects, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    names = sorted(images)
    rows = [{"url": f"{base}/{names[0]}", "caption": images[names[0]][1]},
            {"url": f"{base}/go?/{names[1]}", "caption": images[names[1]][1]},
            {"url": f"{base}/go?{base}/{names[2]}", "caption": images[names[2]][1]},
            {"url": (tmp_path / "secret.jpg").as_uri(), "caption": "a local file"},
            {"url": f"{base}/go?{(tmp_path / 'secret.jpg').as_uri()}", "caption": "redirect to a local file"},
            {"url": f"{base}/go?ftp://127.0.0.1:1/secret.jpg", "caption": "redirect to ftp"},
            {"url": "ftp://127.0.0.1:1/secret.jpg", "caption": "ftp"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "urls.parquet")
    out = str(tmp_path / "mds")
    try:
        summary = ingest_image_caption(ImageCaptionIngestConfig(
            out=out, urls=str(tmp_path / "urls.parquet"), processes=1, threads=2), show_progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["dropped"] == {"url_scheme_not_allowed": 2, "redirect_not_allowed": 2}
    samples = _check_round_trip(out, images)
    assert hashlib.sha256(secret).hexdigest() not in {s["content_hash"] for s in samples}
