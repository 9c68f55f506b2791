"""Text ingest: round trip through StreamingDataset, packing, tokenizers, the sample index, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ingest_helpers import bpe_dir, make_documents, read_mds, write_jsonl  # noqa: F401 (fixture)

from mixture.cli import main
from mixture.errors import MixtureError
from mixture.sources import read_sample_index, source_fingerprint
from streaming_data.tokenizer import ByteTokenizer, load_tokenizer
from streaming_data.text import TextIngestConfig, ingest_text


def _ingest(tmp_path: Path, docs: list[str], **kwargs: object) -> tuple[str, list[dict]]:
    src = write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in docs])
    out = str(tmp_path / "mds")
    config = TextIngestConfig(inputs=(str(src),), out=out, **kwargs)  # type: ignore[arg-type]
    ingest_text(config, show_progress=False)
    return out, read_mds(out)


def test_packing_loses_and_duplicates_no_token(tmp_path: Path) -> None:
    docs = make_documents(200)
    out, samples = _ingest(tmp_path, docs, seq_len=64, docs_per_part=37, size_limit="4kb")
    tok = ByteTokenizer()
    expected = np.concatenate([np.append(ids, tok.eos_id) for ids in tok.encode_batch(docs) if len(ids)])
    got = np.concatenate([s["input_ids"] for s in samples])
    np.testing.assert_array_equal(got, expected)
    assert all(len(s["input_ids"]) == 64 for s in samples[:-1]) and 0 < len(samples[-1]["input_ids"]) <= 64
    index = pq.read_table(f"{out}/samples.parquet")
    assert index.column("tokens").to_pylist() == [len(s["input_ids"]) for s in samples]
    meta = index.schema.metadata
    assert json.loads(meta[b"mixture:dropped"]) == {"empty_document": sum(1 for d in docs if not d)}
    assert meta[b"mixture:kind"] == b"text"


def test_one_sample_per_document_with_bpe(tmp_path: Path, bpe_dir: str) -> None:  # noqa: F811
    docs = [d for d in make_documents(60, seed=3) if d]
    out, samples = _ingest(tmp_path, docs, seq_len=None, tokenizer=bpe_dir)
    tok = load_tokenizer(bpe_dir)
    assert len(samples) == len(docs)
    for sample, ids in zip(samples, tok.encode_batch(docs)):
        np.testing.assert_array_equal(sample["input_ids"], np.append(ids, tok.eos_id))
    index = read_sample_index(out)
    assert index.kind == "text" and index.num_samples == len(docs)
    assert pq.read_table(f"{out}/samples.parquet").column("num_documents").to_pylist() == [1] * len(docs)


def test_trained_bpe_loads_in_transformers_with_the_same_ids(bpe_dir: str) -> None:  # noqa: F811
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(bpe_dir)
    text = make_documents(3, seed=9)[2]
    assert hf.encode(text, add_special_tokens=False) == load_tokenizer(bpe_dir).encode_batch([text])[0].tolist()
    assert hf.eos_token_id == load_tokenizer(bpe_dir).eos_id


def test_sample_index_agrees_with_shards_and_mixture_index_rebuilds_it(tmp_path: Path) -> None:
    out, samples = _ingest(tmp_path, make_documents(120), seq_len=50, size_limit="2kb")
    written = pq.read_table(f"{out}/samples.parquet")
    index_json = json.loads(Path(out, "index.json").read_text())
    counts = np.bincount(written.column("shard").to_numpy(), minlength=len(index_json["shards"]))
    assert counts.tolist() == [s["samples"] for s in index_json["shards"]]
    assert len(index_json["shards"]) > 1
    Path(out, "samples.parquet").rename(tmp_path / "original.parquet")
    assert main(["index", out, "--eos-id", "256"]) == 0
    rebuilt = pq.read_table(f"{out}/samples.parquet")
    assert rebuilt.column_names == written.column_names
    assert rebuilt.to_pylist() == written.to_pylist()
    assert source_fingerprint(out)


def test_mixture_index_reads_other_tools_text_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streaming import MDSWriter

    docs = [d for d in make_documents(30, seed=4) if d]
    with MDSWriter(columns={"text": "str"}, out=str(tmp_path / "raw")) as writer:
        for doc in docs:
            writer.write({"text": doc})
    assert main(["index", str(tmp_path / "raw")]) == 2
    assert "pass --tokenizer" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "raw"), "--tokenizer", "bytes"]) == 0
    index = read_sample_index(str(tmp_path / "raw"))
    assert index.kind == "text" and index.columns["tokens"].tolist() == [len(d.encode()) for d in docs]
    with MDSWriter(columns={"tokens": "ndarray:int32"}, out=str(tmp_path / "foundry")) as writer:
        for n in (5, 7):
            writer.write({"tokens": np.arange(n, dtype=np.int32)})
    assert main(["index", str(tmp_path / "foundry")]) == 0
    assert read_sample_index(str(tmp_path / "foundry")).columns["tokens"].tolist() == [5, 7]


def test_cli_text_and_train_tokenizer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    txt = tmp_path / "corpus.txt"
    txt.write_text("\n".join(make_documents(80, seed=5)))
    assert main(["ingest", "train-tokenizer", str(txt), "-o", str(tmp_path / "tok"), "--vocab-size", "300",
                 "--line-documents"]) == 0
    assert main(["ingest", "text", str(tmp_path / "*.txt"), "-o", str(tmp_path / "mds"), "--tokenizer",
                 str(tmp_path / "tok"), "--seq-len", "32", "--line-documents", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.split("}\n", 1)[1])
    assert summary["samples"] == read_sample_index(str(tmp_path / "mds")).num_samples > 0


def test_user_errors_are_mixture_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "text", str(tmp_path / "missing*.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err
    src = write_jsonl(tmp_path / "d.jsonl", [{"body": "x"}])
    with pytest.raises(MixtureError, match="no field 'text'"):
        ingest_text(TextIngestConfig(inputs=(str(src),), out=str(tmp_path / "o")), show_progress=False)
    with pytest.raises(MixtureError, match="no tokenizer.json"):
        load_tokenizer(str(tmp_path))
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(MixtureError, match=r"bad.jsonl:2:2: not valid JSON"):
        ingest_text(TextIngestConfig(inputs=(str(tmp_path / "bad.jsonl"),), out=str(tmp_path / "o2")),
                    show_progress=False)
    (tmp_path / "again").mkdir()
    _ingest(tmp_path / "again", ["abc"])
    with pytest.raises(MixtureError, match="already holds a complete dataset"):
        _ingest(tmp_path / "again", ["abc"])


def test_parquet_gzipped_jsonl_and_plain_text_inputs_in_order(tmp_path: Path) -> None:
    import gzip

    import pyarrow as pa

    docs = [d for d in make_documents(30, seed=8) if d]
    pq.write_table(pa.table({"body": docs[:10], "n": list(range(10))}), tmp_path / "a.parquet")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps({"body": d}) + "\n" for d in docs[10:20])
    (tmp_path / "c.txt").write_text(docs[20])
    config = TextIngestConfig(inputs=(str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl.gz"), str(tmp_path / "c.txt")),
                              out=str(tmp_path / "mds"), seq_len=None, text_field="body")
    ingest_text(config, show_progress=False)
    got = [bytes(s["input_ids"][:-1].astype(np.uint8)).decode() for s in read_mds(str(tmp_path / "mds"))]
    assert got == docs[:21]
