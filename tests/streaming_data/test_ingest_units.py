"""Unit and property tests of ingest pieces: packing, tar reading, img2dataset parquet shards, reasons."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import make_image_set, read_mds

from streaming_data.image_caption import ImageCaptionIngestConfig, ingest_image_caption
from streaming_data.images import download_reason, img2dataset_parts, tar_members
from streaming_data.text import Packer

EOS = 99


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 98), max_size=40), max_size=30), st.integers(1, 17),
       st.integers(1, 7))
def test_packing_is_the_eos_joined_stream_cut_every_seq_len(docs: list[list[int]], seq_len: int,
                                                            batch: int) -> None:
    packer = Packer(seq_len, EOS)
    arrays = [np.array(d, np.int32) for d in docs]
    out = [s for i in range(0, len(arrays), batch) for s in packer.add(arrays[i : i + batch])]
    stream = [t for d in docs for t in (*d, EOS)]
    assert all(len(s) == seq_len for s in out)
    assert np.concatenate([*out, packer.carry]).tolist() == stream  # nothing lost, nothing repeated
    assert len(packer.carry) < seq_len


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tar_members_matches_tarfile_and_falls_back_for_long_names(tmp_path: Path) -> None:
    members = [("a/0001.jpg", b"x" * 513), ("a/0001.txt", b""), ("a/0002.jpg", b"y" * 512), ("b" * 150 + ".txt", b"z")]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        path = tmp_path / f"{fmt}.tar"
        usable = members if fmt != tarfile.USTAR_FORMAT else members[:3]
        with tarfile.open(path, "w", format=fmt) as tar:
            for name, data in usable:
                _add(tar, name, data)
        assert list(tar_members(str(path))) == usable
    (tmp_path / "empty.tar").write_bytes(b"")
    assert list(tar_members(str(tmp_path / "empty.tar"))) == []


def test_download_reasons() -> None:
    assert download_reason("HTTP Error 404: Not Found") == "download_http_404"
    assert download_reason("HTTP Error 503: Service Unavailable") == "download_http_503"
    assert download_reason("<urlopen error timed out>") == "download_timeout"
    assert download_reason("Use of image disallowed by X-Robots-Tag directive") == "download_disallowed"
    assert download_reason(None) == download_reason("connection reset") == "download_error"


def test_converts_an_img2dataset_parquet_folder(tmp_path: Path) -> None:
    images = make_image_set(5)
    rows = [{"key": name, "jpg": data, "txt": caption, "status": "success", "error_message": None}
            for name, (data, caption) in images.items()]
    rows.append({"key": "gone", "jpg": None, "txt": None, "status": "failed_to_download",
                 "error_message": "HTTP Error 404: Not Found"})
    (tmp_path / "i2d").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:3]), tmp_path / "i2d" / "00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[3:]), tmp_path / "i2d" / "00001.parquet")
    assert [p.name for p in img2dataset_parts(str(tmp_path / "i2d"))] == ["00000.parquet", "00001.parquet"]
    out = str(tmp_path / "mds")
    summary = ingest_image_caption(ImageCaptionIngestConfig(out=out, img2dataset_dir=str(tmp_path / "i2d")),
                                   show_progress=False)
    assert summary["dropped"] == {"download_http_404": 1, "not_an_image": 1, "truncated": 1}
    good = [(d, c) for n, (d, c) in images.items() if not n.startswith("broken")]
    assert [(s["image"], s["caption"]) for s in read_mds(out)] == good
