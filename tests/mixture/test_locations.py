"""The one rule for locations (mixture/locations.py), and that no other module writes its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mixture.locations import is_relative, is_remote, is_url, local_path, storage_options

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("location", "url", "relative", "remote"), [
    ("data/text", False, True, False),
    ("./text", False, True, False),
    ("/abs/text", False, False, False),
    ("file:///abs/text", True, False, False),
    ("s3://bucket/text", True, False, True),
    ("gs://bucket/text", True, False, True),
])
def test_kinds_of_location(location: str, url: bool, relative: bool, remote: bool) -> None:
    assert (is_url(location), is_relative(location), is_remote(location)) == (url, relative, remote)


def test_local_path_and_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_path("file:///abs/text") == "/abs/text" and local_path("data/text") == "data/text"
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    assert storage_options("s3://bucket/x") == {}
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert storage_options("s3://bucket/x") == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    assert storage_options("gs://bucket/x") == {} and storage_options("/abs") == {}


def test_no_module_tests_a_location_on_its_own() -> None:
    """A ``"://"`` or ``"file://"`` test outside mixture/locations.py is a second rule that can drift."""
    ad_hoc = re.compile(r"""["'](file)?://["']\s*(not\s+)?in\b|(startswith|removeprefix)\(\s*["']file://""")
    found = [f"{path.relative_to(ROOT)}:{number}"
             for package in ("mixture", "streaming_data", "trainer", "analysis")
             for path in sorted((ROOT / package).rglob("*.py")) if path != ROOT / "mixture" / "locations.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if ad_hoc.search(line)]
    assert found == []
