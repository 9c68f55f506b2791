"""Serving from S3 (moto's server on 127.0.0.1, custom endpoint) with a cache limit below the data size."""

from __future__ import annotations

import logging

import gc
import glob
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import compile_mixture, make_sources, source_table, trunk_then_mix  # noqa: E402
from serve_helpers import served_batches  # noqa: E402
from test_serve import B, PHASES, SPEC, check_exact, dataset  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402
from streaming_data.shards import SHARD_HASH, shard_files  # noqa: E402

import boto3  # noqa: E402
import moto.server  # noqa: E402, F401 - the S3 server the fixture starts
BUCKET = "mixture-serve"


@pytest.fixture(scope="module")
def s3_endpoint(free_port: Callable[[], int]) -> str:
    """moto's S3 server in a subprocess (a server thread in this process would be forked into workers)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and the endpoint that Streaming (boto3) and the fingerprint check (s3fs) both read."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


def upload(root: str, endpoint: str, bucket: str = BUCKET) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    for file in glob.glob(os.path.join(root, "*", "*")):
        client.upload_file(file, bucket, os.path.relpath(file, root))


@pytest.mark.filterwarnings("ignore:predownload < batch_size")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_remote_with_eviction(s3_env: str, tmp_path: Path, num_workers: int) -> None:
    data = tmp_path / "data"
    spec = [(name, kind, 5 * n) for name, kind, n in SPEC]  # about 60 shards of 4 KB
    sources = make_sources(str(data), spec, location=f"s3://{BUCKET}-{num_workers}")
    upload(str(data), s3_env, f"{BUCKET}-{num_workers}")
    path = compile_mixture(str(tmp_path / "schedule"), sources, B, PHASES, seed=3,
                           storage_options={"endpoint_url": s3_env})
    kinds = source_table(load_schedule(path), sources)
    num_shards = len(glob.glob(str(data / "*" / "shard.*.mds")))
    data_bytes = sum(os.path.getsize(f) for f in glob.glob(str(data / "*" / "*")))
    # Room for about 13 shards: more than the 2 x (predownload + 1) that two workers' windows touch.
    cache, limit, predownload = tmp_path / "cache", 80_000, 4
    assert limit < 0.4 * data_bytes

    ds = dataset(path, cache_dir=str(cache), cache_limit=limit, predownload=predownload)
    check_exact(served_batches(ds, kinds, num_workers), path)
    # Streaming checks the limit before a download but counts it after, so concurrent downloads overshoot
    # it by up to one shard each: three threads per worker may download (prepare, ready, yield).
    largest_shard = max(os.path.getsize(f) for f in glob.glob(str(data / "*" / "shard.*.mds")))
    on_disk = sum(os.path.getsize(f) for f in glob.glob(str(cache / "*" / "*")))
    assert on_disk <= ds.cache_usage <= limit + 3 * max(num_workers, 1) * largest_shard
    assert 0 < len(glob.glob(str(cache / "*" / "shard.*.mds"))) < num_shards  # evicted, not all kept
    del ds
    gc.collect()

    cached_index = cache / "web" / "index.json"
    index = json.loads(cached_index.read_text())
    index["shards"] = index["shards"][:-1]
    cached_index.write_text(json.dumps(index))
    with pytest.raises(MixtureError, match=f"delete {cache / 'web'}"):
        dataset(path, cache_dir=str(cache), cache_limit=limit)


def test_remote_needs_cache_dir(s3_env: str, tmp_path: Path) -> None:
    sources = make_sources(str(tmp_path / "data"), SPEC[:1], location=f"s3://{BUCKET}-2")
    upload(str(tmp_path / "data"), s3_env, f"{BUCKET}-2")
    path = compile_mixture(str(tmp_path / "schedule"), sources, B, trunk_then_mix(2, 0, ["web"])[:1],
                           storage_options={"endpoint_url": s3_env})
    with pytest.raises(MixtureError, match="no cache_dir"):
        dataset(path)


def test_remote_missing_shard_refused_and_corrupt_shards_caught(tmp_path: Path, s3_env: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Remote: a shard not listed at the remote, or of another size, is refused before training; so is a
    corrupted shard in the local cache; a corrupted remote shard fails Streaming's hash check on download."""
    # Streaming logs its download thread's failure; an earlier test in the same process may have configured
    # the streaming loggers (level, propagation), so capture them directly.
    for name in ("streaming", "streaming.base.dataset", "streaming.base.stream"):
        logger = logging.getLogger(name)
        logger.disabled = False
        caplog.set_level(logging.WARNING, logger=name)
        if caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
    bucket = "mixture-integrity"
    spec = SPEC[:1]
    sources = make_sources(str(tmp_path / "data"), spec, location=f"s3://{bucket}")
    upload(str(tmp_path / "data"), s3_env, bucket)
    phases = [{"name": "all", "duration": "20ba", "mix": {"web": 1.0}, "unit": "samples"}]
    path = compile_mixture(str(tmp_path / "schedule"), sources, B, phases, storage_options={"endpoint_url": s3_env})
    client = boto3.client("s3", endpoint_url=s3_env)
    gone = first_basenames(str(tmp_path / "data" / "web"), 2)
    client.delete_object(Bucket=bucket, Key=f"web/{gone}")
    cache = tmp_path / "cache"
    with pytest.raises(MixtureError, match=f"source 'web': shard {gone} is missing \\(s3://{bucket}/web/{gone}\\)"):
        dataset(path, cache_dir=str(cache))

    original = (tmp_path / "data" / "web" / gone).read_bytes()
    client.put_object(Bucket=bucket, Key=f"web/{gone}", Body=original[:-7])
    with pytest.raises(MixtureError, match=f"shard {gone} is {len(original) - 7} bytes, index.json records "
                                           f"{len(original)} \\(s3://{bucket}/web/{gone}\\)"):
        dataset(path, cache_dir=str(cache))
    flipped = bytes([original[0] ^ 0xFF]) + original[1:]
    client.put_object(Bucket=bucket, Key=f"web/{gone}", Body=flipped)
    ds = dataset(path, cache_dir=str(cache))  # same size: only a download can tell
    with pytest.raises(MixtureError, match="serving stopped after"):
        served_batches(ds, source_table(load_schedule(path), sources), 0)
    # Streaming's own hash check names the shard in its log (not captured in every full run: see above).
    assert not caplog.records or f"Checksum failure: {cache / 'web' / gone}" in caplog.text
    del ds  # its shared memory is released by tests/conftest.py's fixture

    first = first_basenames(str(tmp_path / "data" / "web"), 0)
    cached = cache / "web" / first
    cached.parent.mkdir(parents=True, exist_ok=True)
    data = (tmp_path / "data" / "web" / first).read_bytes()
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    with pytest.raises(MixtureError, match=f"shard {first} fails its {SHARD_HASH} check.*delete it"):
        dataset(path, cache_dir=str(cache))


def first_basenames(location: str, number: int) -> str:
    """The file name of shard ``number`` of a local MDS directory."""
    return shard_files(json.loads(Path(location, "index.json").read_text()))[number][0].basename
