"""Shard integrity: ingest records a hash per shard; serving refuses a flipped byte, a missing or resized
shard before the first batch, naming the source and the shard; older sources without hashes still serve."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ingest_helpers import make_documents, write_jsonl  # noqa: E402
from serve_helpers import SourceRef, compile_mixture, make_sources, served_batches, source_table  # noqa: E402
from test_serve import B, PHASES, SPEC, check_exact  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402
import streaming_data.serve as serve  # noqa: E402
from streaming_data.shards import SHARD_HASH, file_digest, shard_files  # noqa: E402


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The three test sources, written once (each test copies them before damaging them)."""
    root = str(tmp_path_factory.mktemp("pristine"))
    make_sources(root, SPEC)
    return root


def _world(pristine: str, tmp_path: Path, strip_hashes: bool = False) -> tuple[str, list]:
    shutil.copytree(pristine, tmp_path / "data")
    refs = []
    for name, kind, _ in SPEC:
        location = str(tmp_path / "data" / name)
        if strip_hashes:
            index_file = Path(location, "index.json")
            index = json.loads(index_file.read_text())
            for shard in index["shards"]:
                shard["raw_data"]["hashes"] = {}
            index_file.write_text(json.dumps(index))
        refs.append(SourceRef(name, kind, location))
    return compile_mixture(str(tmp_path / "schedule"), refs, B, PHASES, seed=1), refs


def _shard(location: str, number: int) -> str:
    return shard_files(json.loads(Path(location, "index.json").read_text()))[number][0].basename


def test_every_ingested_shard_records_its_hash(tmp_path: Path) -> None:
    from streaming_data.text import TextIngestConfig, ingest_text

    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in make_documents(150)])
    out = str(tmp_path / "mds")
    ingest_text(TextIngestConfig(inputs=(str(docs),), out=out, seq_len=32, docs_per_part=40, size_limit="2kb"),
                show_progress=False)
    shards = shard_files(json.loads(Path(out, "index.json").read_text()))
    assert len(shards) > 3
    for (file,) in shards:
        assert file.hashes[SHARD_HASH] == file_digest(SHARD_HASH, os.path.join(out, file.basename))


def test_flipped_byte_is_refused_before_the_first_batch_naming_the_shard(pristine: str, tmp_path: Path) -> None:
    path, sources = _world(pristine, tmp_path)
    caps = sources[1].location
    basename = _shard(caps, 3)
    with open(os.path.join(caps, basename), "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(MixtureError) as error:
        serve.ScheduledDataset(path)
    message = str(error.value)
    assert f"source 'caps': shard {basename} fails its {SHARD_HASH} check" in message
    assert "web" not in message and "chat" not in message


def test_missing_and_resized_shards_are_refused_before_training(pristine: str, tmp_path: Path) -> None:
    path, sources = _world(pristine, tmp_path)
    web, chat = sources[0].location, sources[2].location
    missing, last = _shard(web, 1), _shard(web, 2)
    os.remove(os.path.join(web, missing))
    os.remove(os.path.join(web, last))
    resized = _shard(chat, 0)
    with open(os.path.join(chat, resized), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(MixtureError) as error:
        serve.ScheduledDataset(path)
    message = str(error.value)
    assert f"source 'web': shard {missing} is missing ({os.path.join(web, missing)}) (and 1 more bad shards)" in message
    assert f"source 'chat': shard {resized} is " in message and "index.json records" in message


def test_source_without_hashes_serves_with_a_warning_and_still_needs_every_shard(pristine: str,
                                                                                  tmp_path: Path) -> None:
    path, sources = _world(pristine, tmp_path, strip_hashes=True)
    with pytest.warns(UserWarning, match="source 'web' .* records no shard hashes"):
        ds = serve.ScheduledDataset(path)
    check_exact(served_batches(ds, source_table(load_schedule(path), sources), 0), path)
    del ds
    gone = _shard(sources[2].location, 1)
    os.remove(os.path.join(sources[2].location, gone))
    with pytest.warns(UserWarning), pytest.raises(MixtureError, match=f"source 'chat': shard {gone} is missing"):
        serve.ScheduledDataset(path)



def test_ranks_of_a_node_split_the_hashing_and_all_check_presence(pristine: str, tmp_path: Path) -> None:
    from streaming_data.shards import check_source_shards

    shutil.copytree(pristine, tmp_path / "data")
    web = str(tmp_path / "data" / "web")
    flipped = _shard(web, 1)
    data = Path(web, flipped).read_bytes()
    Path(web, flipped).write_bytes(bytes([data[0] ^ 0x80]) + data[1:])
    found = [check_source_shards("web", web, remote=False, share=(k, 2)) for k in range(2)]
    assert found[0] is None and f"shard {flipped} fails its {SHARD_HASH} check" in found[1].message
    os.remove(os.path.join(web, _shard(web, 0)))
    assert all(f"shard {_shard(web, 0)} is missing" in check_source_shards("web", web, remote=False,
                                                                           share=(k, 2)).message for k in range(2))
