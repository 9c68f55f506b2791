"""`mixture stats`: every number equals one computed independently (NumPy, pyarrow) from the same files."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.stats import source_stats
from analysis.stats_page import stats_report
from mixture.cli import main
from mixture.errors import MixtureError
from tests.analysis.fixtures import assert_self_contained, random_rows, write_index


def _expected(values: np.ndarray) -> dict[str, object]:
    """Count, sum, min, max, nearest-rank quantiles and mean of a column, the plain NumPy way."""
    v = np.sort(np.asarray(values, np.int64))
    rank = {q: v[max(math.ceil(q / 100 * len(v)), 1) - 1] for q in (50, 90, 99)}
    return {"count": len(v), "sum": int(v.sum()), "min": int(v[0]), "max": int(v[-1]), "p50": int(rank[50]),
            "p90": int(rank[90]), "p99": int(rank[99]), "mean": float(v.mean())}


def _check_source(got: dict, path: Path, kind: str) -> None:
    table = pq.read_table(path / "samples.parquet")
    assert got["num_samples"] == table.num_rows
    for column in ("tokens", "text_tokens", "caption_tokens", "width", "num_turns", "loss_tokens"):
        if column in table.column_names:
            want = _expected(table.column(column).to_numpy())
            dist = got["distributions"][column]
            assert {k: dist[k] for k in want} == pytest.approx(want), column
            assert sum(dist["hist"]["counts"]) == table.num_rows
            assert dist["hist"]["edges"][0] <= want["min"] and dist["hist"]["edges"][-1] > want["max"]
    shards = Counter(table.column("shard").to_pylist())
    assert dict(zip(got["shards"]["ids"], got["shards"]["samples"])) == dict(shards)
    if kind == "image_caption":
        counts = Counter(table.column("content_hash").to_pylist())
        assert got["duplicates"] == {"distinct_hashes": len(counts),
                                     "duplicated_hashes": sum(c > 1 for c in counts.values()),
                                     "extra_copies": sum(c - 1 for c in counts.values())}
        w, h = table.column("width").to_numpy(), table.column("height").to_numpy()
        assert got["distributions"]["aspect"]["count"] == int(((w > 0) & (h > 0)).sum())


@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=3), seed=st.integers(0, 1000),
       kinds=st.lists(st.sampled_from(["text", "image_caption", "instruction"]), min_size=3, max_size=3))
def test_numbers_equal_an_independent_computation(tmp_path_factory: pytest.TempPathFactory, sizes: list[int],
                                                  seed: int, kinds: list[str]) -> None:
    root = tmp_path_factory.mktemp("stats")
    dirs = [write_index(root, f"s{i}", kinds[i], random_rows(kinds[i], n, seed + i, hashes=max(n // 2, 1)),
                        dropped={"decode_error": i}) for i, n in enumerate(sizes)]
    got = source_stats([str(d) for d in dirs])
    for i, (source, d) in enumerate(zip(got["sources"], dirs)):
        _check_source(source, d, kinds[i])
        assert source["dropped"] == {"decode_error": i}
        assert source["shards"]["index_json_agrees"] is True
    hashed = [set(pq.read_table(d / "samples.parquet").column("content_hash").to_pylist())
              for d, k in zip(dirs, kinds) if k == "image_caption"]
    if hashed:
        across = Counter(h for hashes in hashed for h in hashes)
        assert got["duplicates_across"]["hashes_in_several_sources"] == sum(c > 1 for c in across.values())
    assert got["totals"]["tokens"] == sum(int(pq.read_table(d / "samples.parquet").column("tokens").to_numpy().sum())
                                          for d in dirs)


def test_report_files_and_figures(tmp_path: Path) -> None:
    a = write_index(tmp_path, "images", "image_caption", random_rows("image_caption", 300, 1, hashes=200),
                    dropped={"not_an_image": 4, "truncated": 1})
    b = write_index(tmp_path, "text", "text", random_rows("text", 200, 2))
    data, paths = stats_report([str(a), str(b / "samples.parquet")], tmp_path / "out", figures=True)
    assert json.loads(paths["json"].read_text())["totals"] == data["totals"]
    assert {p.name for p in paths["figures"].iterdir()} == {
        "stats_tokens_all.png", "stats_images_distributions.png", "stats_images_shards.png",
        "stats_text_distributions.png", "stats_text_shards.png"}
    page = paths["html"].read_text()
    assert "not_an_image" in page and "Duplicate images" in page
    assert_self_contained(paths["html"])


def test_the_same_name_twice_is_told_apart(tmp_path: Path) -> None:
    a = write_index(tmp_path / "x", "data", "text", random_rows("text", 5))
    b = write_index(tmp_path / "y", "data", "text", random_rows("text", 6))
    assert [s["name"] for s in source_stats([str(a), str(b)])["sources"]] == ["data", "data#2"]


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_one_row_sources(tmp_path: Path, n: int, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_index(tmp_path, "tiny", "image_caption", random_rows("image_caption", n))
    assert main(["stats", str(src), "-o", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    tokens = data["sources"][0]["distributions"]["tokens"]
    if n == 0:
        assert tokens["count"] == 0 and tokens["mean"] is None
        assert "note: tiny has no samples" in capsys.readouterr().out
    else:
        assert tokens["p50"] == tokens["p99"] == tokens["min"] == tokens["max"] and tokens["std"] == 0


def test_every_row_dropped_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_index(tmp_path, "gone", "image_caption", random_rows("image_caption", 0),
                      dropped={"download_http_404": 7, "not_an_image": 2})
    other = write_index(tmp_path, "kept", "text", random_rows("text", 3))
    assert main(["stats", str(src), str(other), "-o", str(tmp_path / "out")]) == 0
    assert ("note: gone has no samples: all 9 rows were dropped at ingest (download_http_404 7, not_an_image 2)"
            in capsys.readouterr().out)


def test_missing_optional_columns_are_noted(tmp_path: Path) -> None:
    rows = random_rows("image_caption", 20)
    del rows["width"], rows["content_hash"]
    src = write_index(tmp_path, "bare", "image_caption", rows)
    (got,) = source_stats([str(src)])["sources"]
    assert "aspect" not in got["distributions"] and got["duplicates"] is None
    assert any("no width, content_hash columns" in n for n in got["notes"])


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    (tmp_path / "notokens").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "notokens" / "samples.parquet")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "samples.parquet").write_text("not parquet")
    cases = {"missing": "does not exist", "notokens": "has no 'tokens' column", "junk": "cannot be read as parquet"}
    for name, message in cases.items():
        assert main(["stats", str(tmp_path / name), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_index_json_disagreement_is_noted(tmp_path: Path) -> None:
    src = write_index(tmp_path, "t", "text", random_rows("text", 20))
    index = json.loads((src / "index.json").read_text())
    index["shards"][0]["samples"] += 1
    (src / "index.json").write_text(json.dumps(index))
    data, _ = stats_report([str(src)], tmp_path / "out")
    assert data["sources"][0]["shards"]["index_json_agrees"] is False


def test_remote_source_through_fsspec(tmp_path: Path) -> None:
    import fsspec

    local = write_index(tmp_path, "imgs", "image_caption", random_rows("image_caption", 50, 3))
    fs = fsspec.filesystem("memory")
    for name in ("samples.parquet", "index.json"):
        fs.pipe(f"/bucket/imgs/{name}", (local / name).read_bytes())
    remote = source_stats(["memory://bucket/imgs"])["sources"][0]
    here = source_stats([str(local)])["sources"][0]
    assert remote["distributions"] == here["distributions"] and remote["shards"] == here["shards"]
    assert remote["duplicates"] == here["duplicates"]


def test_missing_source_raises_mixture_error(tmp_path: Path) -> None:
    with pytest.raises(MixtureError, match="does not exist"):
        source_stats([str(tmp_path / "nothing")])


def test_a_dominated_histogram_gets_a_log_axis_so_the_rest_shows() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots import histogram

    fig, (dominated, even) = plt.subplots(1, 2)
    histogram(dominated, {"edges": [24.0, 34.0, 44.0, 54.0, 65.0], "counts": [1, 0, 0, 1010]}, "C0")
    histogram(even, {"edges": [1.0, 2.0, 3.0], "counts": [770, 241]}, "C0")
    assert dominated.get_yscale() == "log" and dominated.get_ylim()[0] < 1
    assert even.get_yscale() == "linear"
    plt.close(fig)
