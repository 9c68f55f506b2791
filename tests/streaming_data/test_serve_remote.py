"""Serving from S3 (moto's server on 127.0.0.1, custom endpoint) with a cache limit below the data size."""

from __future__ import annotations

import gc
import glob
import json
import logging
import os
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import make_sources, write_fake_schedule  # noqa: E402
from test_serve import B, NUM_BATCHES, SPEC, batches, check_exact, dataset  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
BUCKET = "mixture-serve"


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and the endpoint that Streaming (boto3) and the fingerprint check (s3fs) both read."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


def upload(root: str, endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    for file in glob.glob(os.path.join(root, "*", "*")):
        client.upload_file(file, BUCKET, os.path.relpath(file, root))


def test_remote_with_eviction(s3_env: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    sources = make_sources(str(data), SPEC, location=f"s3://{BUCKET}")
    upload(str(data), s3_env)
    path = write_fake_schedule(str(tmp_path / "schedule"), sources, B, NUM_BATCHES, seed=3)
    kinds = {i: s.kind for i, s in enumerate(sources)}
    num_shards = len(glob.glob(str(data / "*" / "shard.*.mds")))
    data_bytes = sum(os.path.getsize(f) for f in glob.glob(str(data / "*" / "*")))
    cache, limit = tmp_path / "cache", 28_000
    assert limit < 0.6 * data_bytes

    ds = dataset(path, cache_dir=str(cache), cache_limit=limit)
    check_exact(batches(ds, kinds, 2), path)
    assert ds.cache_usage <= limit
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
    sources = make_sources(str(tmp_path / "data"), SPEC[:1], location=f"s3://{BUCKET}-none")
    path = write_fake_schedule(str(tmp_path / "schedule"), sources, B, 2)
    with pytest.raises(MixtureError, match="no cache_dir"):
        dataset(path)
