"""Interrupt-and-resume of an ingest, atomic finalisation, and remote output to moto's S3 server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ingest_helpers import make_documents, make_image_set, read_mds, write_jsonl

from mixture.cli import main
from mixture.errors import MixtureError
from mixture.sources import read_sample_index, source_fingerprint
from streaming_data import text as text_module
from streaming_data.image_caption import ImageCaptionIngestConfig, ingest_image_caption
from streaming_data.text import TextIngestConfig, ingest_text
from streaming_data.tokenizer import ByteTokenizer


class _Crash(Exception):
    """Stands in for a kill in the middle of an ingest."""


class _CountingTokenizer(ByteTokenizer):
    """Byte tokenizer that counts documents and raises after ``crash_after`` batches."""

    def __init__(self, crash_after: int | None = None) -> None:
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "crash_after", crash_after)

    def encode_batch(self, texts):  # type: ignore[no-untyped-def]
        if self.crash_after is not None and len(self.calls) == self.crash_after:
            raise _Crash()
        self.calls.append(len(texts))
        return super().encode_batch(texts)


def _config(tmp_path: Path, out: str) -> TextIngestConfig:
    src = tmp_path / "docs.jsonl"
    if not src.exists():
        write_jsonl(src, [{"text": d} for d in make_documents(300, seed=7)])
    return TextIngestConfig(inputs=(str(src),), out=out, seq_len=100, docs_per_part=40, batch_docs=20,
                            size_limit="4kb")


def test_interrupted_text_ingest_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = str(tmp_path / "reference")
    ingest_text(_config(tmp_path, reference), show_progress=False)
    out = str(tmp_path / "out")
    crashing = _CountingTokenizer(crash_after=7)  # parts hold 2 batches: 3 parts finish, the 4th dies
    monkeypatch.setattr(text_module, "load_tokenizer", lambda *a: crashing)
    with pytest.raises(_Crash):
        ingest_text(_config(tmp_path, out), show_progress=False)
    assert not Path(out, "index.json").exists() and not Path(out, "samples.parquet").exists()
    with pytest.raises(MixtureError, match="does not exist"):
        source_fingerprint(out)  # an unfinished ingest is not a source the compiler can read
    Path(out, "part-00004").mkdir()  # debris of a writer killed mid-part: must be cleared, not trusted
    Path(out, "part-00004", "shard.00000.mds").write_bytes(b"half")
    resumed = _CountingTokenizer()
    monkeypatch.setattr(text_module, "load_tokenizer", lambda *a: resumed)
    ingest_text(_config(tmp_path, out), show_progress=False)
    assert sum(resumed.calls) == 300 - 3 * 40  # finished parts are not tokenized again
    got, want = read_mds(out), read_mds(reference)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert pq.read_table(f"{out}/samples.parquet").equals(pq.read_table(f"{reference}/samples.parquet"))
    assert not Path(out, ".ingest").exists()


def test_resume_with_other_settings_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "out")
    monkeypatch.setattr(text_module, "load_tokenizer", lambda *a: _CountingTokenizer(crash_after=3))
    with pytest.raises(_Crash):
        ingest_text(_config(tmp_path, out), show_progress=False)
    monkeypatch.undo()
    other = TextIngestConfig(**{**_config(tmp_path, out).__dict__, "seq_len": 50})
    with pytest.raises(MixtureError, match="unfinished ingest made with other settings"):
        ingest_text(other, show_progress=False)
    ingest_text(other, overwrite=True, show_progress=False)
    assert read_sample_index(out).columns["tokens"].max() == 50


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with a bucket ``ingest``; yields the endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("S3_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="ingest")
    yield endpoint
    server.stop()


@pytest.mark.slow
def test_remote_output_to_s3_and_back(tmp_path: Path, s3: str) -> None:
    url = "s3://ingest/captions"
    images = {k: v for k, v in make_image_set(8).items() if not k.startswith("broken")}
    for name, (data, caption) in images.items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text(caption)
    summary = ingest_image_caption(ImageCaptionIngestConfig(out=url, images_dir=str(tmp_path), images_per_part=3),
                                   work_dir=str(tmp_path / "work"), show_progress=False)
    assert summary["samples"] == len(images)
    options = {"client_kwargs": {"endpoint_url": s3}}
    index = read_sample_index(url, storage_options=options)
    assert index.kind == "image_caption" and index.num_samples == len(images)
    assert source_fingerprint(url, storage_options=options)
    samples = read_mds(str(tmp_path / "cache"), remote=url)
    assert sorted(s["image"] for s in samples) == sorted(d for d, _ in images.values())
    assert index.columns["shard"].tolist() == sorted(index.columns["shard"].tolist())
    # `mixture index` on the remote dataset rebuilds the same table
    assert main(["index", url, "--overwrite"]) == 0
    rebuilt = read_sample_index(url, storage_options=options)
    for name, column in index.columns.items():
        np.testing.assert_array_equal(rebuilt.columns[name], column)
    with pytest.raises(MixtureError, match="already holds a complete dataset"):
        ingest_image_caption(ImageCaptionIngestConfig(out=url, images_dir=str(tmp_path)), show_progress=False)
    assert not Path(tmp_path, "work", ".ingest").exists() and not Path(tmp_path, "work", "part-00000").exists()
    assert json.loads(Path(tmp_path, "cache", "index.json").read_text())["shards"]


@pytest.mark.slow
def test_text_from_s3_globs_to_s3(tmp_path: Path, s3: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    docs = make_documents(50, seed=11)
    for i in range(2):
        body = "".join(json.dumps({"text": d}) + "\n" for d in docs[i * 25 : (i + 1) * 25])
        client.put_object(Bucket="ingest", Key=f"raw/docs-{i}.jsonl", Body=body.encode())
    url = "s3://ingest/text"
    config = TextIngestConfig(inputs=("s3://ingest/raw/*.jsonl",), out=url, seq_len=None, docs_per_part=10)
    summary = ingest_text(config, work_dir=str(tmp_path / "work"), show_progress=False)
    kept = [d for d in docs if d]
    assert summary["samples"] == len(kept)
    samples = read_mds(str(tmp_path / "cache"), remote=url)
    assert [bytes(s["input_ids"][:-1].astype(np.uint8)).decode() for s in samples] == kept
    client.put_object(Bucket="ingest", Key="text/README.txt", Body=b"keep me")
    again = ingest_text(TextIngestConfig(**{**config.__dict__, "seq_len": 16}), work_dir=str(tmp_path / "work"),
                        overwrite=True, show_progress=False)
    assert client.get_object(Bucket="ingest", Key="text/README.txt")["Body"].read() == b"keep me"
    assert read_sample_index(url, storage_options={"client_kwargs": {"endpoint_url": s3}}).num_samples == \
        again["samples"] > summary["samples"]


def test_parallel_image_parts_resume_out_of_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streaming_data import image_caption

    images = {k: v for k, v in make_image_set(12).items() if not k.startswith("broken")}
    (tmp_path / "imgs").mkdir()
    for name, (data, caption) in images.items():
        (tmp_path / "imgs" / name).write_bytes(data)
        (tmp_path / "imgs" / name).with_suffix(".txt").write_text(caption)

    def config(out: str) -> ImageCaptionIngestConfig:
        return ImageCaptionIngestConfig(out=out, images_dir=str(tmp_path / "imgs"), images_per_part=3, workers=2)

    reference = str(tmp_path / "reference")
    ingest_image_caption(config(reference), show_progress=False)
    real = image_caption.write_pairs

    def failing(pairs, *args):  # type: ignore[no-untyped-def]
        if any(p.key == "img004.jpg" for p in pairs):  # the second part dies, in its worker process
            raise RuntimeError("worker killed")
        return real(pairs, *args)

    monkeypatch.setattr(image_caption, "write_pairs", failing)
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="worker killed"):
        ingest_image_caption(config(out), show_progress=False)
    assert not Path(out, "index.json").exists()
    monkeypatch.setattr(image_caption, "write_pairs", real)
    ingest_image_caption(ImageCaptionIngestConfig(**{**config(out).__dict__, "workers": 1}), show_progress=False)
    assert pq.read_table(f"{out}/samples.parquet").equals(pq.read_table(f"{reference}/samples.parquet"))
    assert [s["image"] for s in read_mds(out)] == [s["image"] for s in read_mds(reference)]


@pytest.mark.slow
def test_sigkill_mid_ingest_then_rerun_the_same_command(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    src = write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in make_documents(20_000, seed=3, max_words=30)])
    out = tmp_path / "out"
    argv = ["ingest", "text", str(src), "-o", str(out), "--seq-len", "64", "--docs-per-part", "50",
            "--no-progress"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mixture.cli", *argv], env=env, cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".ingest"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_dir() and len([p for p in journal.iterdir() if p.suffix == ".parquet"]) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "index.json").exists(), "killed too late: make the input larger"
    assert main(argv) == 0
    reference = tmp_path / "reference"
    assert main([*argv[:3], "-o", str(reference), *argv[5:]]) == 0
    assert pq.read_table(out / "samples.parquet").equals(pq.read_table(reference / "samples.parquet"))
    got, want = read_mds(str(out)), read_mds(str(reference))
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(got, want)) and len(got) == len(want)
