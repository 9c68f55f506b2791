"""`mixture stats`: what a set of ingested sources holds, computed by polars over their sample indexes.

Every distribution is one lazy ``group_by`` on the column's exact value (token counts, caption lengths,
image sizes: a few thousand distinct values at most, so the groups stay small however many rows there
are), run by polars' streaming engine, all sources and measures in one ``collect_all``. Counts, sums,
means, quantiles and histograms are then exact functions of those value counts; nothing per row reaches
Python. Duplicate images are found from a 64-bit hash of ``content_hash`` (memory grows with the number of
distinct images, about 16 bytes each; a 64-bit collision among 100M hashes has odds of about 3e-4).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from analysis.indexes import IndexFile, open_index

HIST_BINS = 60


@dataclass(frozen=True)
class Measure:
    """A per-sample quantity whose distribution the report shows."""

    name: str
    label: str
    columns: tuple[str, ...]


MEASURES: tuple[Measure, ...] = (
    Measure("tokens", "budget tokens per sample", ("tokens",)),
    Measure("text_tokens", "text tokens per sample", ("text_tokens",)),
    Measure("num_documents", "documents per sample", ("num_documents",)),
    Measure("caption_tokens", "caption tokens", ("caption_tokens",)),
    Measure("caption_chars", "caption length (characters)", ("caption_chars",)),
    Measure("width", "image width (px)", ("width",)),
    Measure("height", "image height (px)", ("height",)),
    Measure("aspect", "aspect ratio (width / height, to 0.01)", ("width", "height")),
    Measure("loss_tokens", "tokens with loss (answers)", ("loss_tokens",)),
    Measure("num_turns", "turns per conversation", ("num_turns",)),
    Measure("num_images", "images per sample", ("num_images",)),
)

#: Columns each kind's ingest writes (docs/ingest.md); a missing one is reported, not fatal.
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text_tokens", "num_documents", "shard"),
    "image_caption": ("caption_tokens", "num_images", "width", "height", "content_hash", "caption_chars", "shard"),
    "instruction": ("text_tokens", "loss_tokens", "num_turns", "num_images", "shard"),
}


def _value_expr(measure: Measure) -> Any:  # noqa: ANN401 - a polars expression
    import polars as pl

    if measure.name == "aspect":
        w, h = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
        return pl.when((w > 0) & (h > 0)).then((w / h).round(2)).otherwise(None)
    return pl.col(measure.name)


def _queries(index: IndexFile, measures: list[Measure]) -> list[Any]:
    """Lazy frames for one source: value counts per measure, then per-shard rows and tokens."""
    import polars as pl

    lf = index.scan()
    out = [lf.select(_value_expr(m).alias("v")).drop_nulls().group_by("v").agg(pl.len().alias("n"))
           for m in measures]
    if "shard" in index.columns:
        out.append(lf.group_by("shard").agg(pl.len().alias("n"), pl.col("tokens").sum().alias("tokens")))
    return out


def _duplicate_queries(indexes: Sequence[IndexFile]) -> list[Any]:
    """Per source: distinct hashes, hashes seen more than once, extra copies; across: hashes in >1 source."""
    import polars as pl

    frames = [ix.scan().select(pl.col("content_hash").drop_nulls().hash().alias("h"), pl.lit(i, pl.Int32).alias("src"))
              for i, ix in enumerate(indexes) if "content_hash" in ix.columns]
    if not frames:
        return []
    groups = pl.concat(frames).group_by("h", "src").agg(pl.len().alias("n"))
    per_source = groups.group_by("src").agg(pl.len().alias("distinct"), (pl.col("n") > 1).sum().alias("hashes"),
                                            (pl.col("n") - 1).sum().alias("extra_rows"))
    across = groups.group_by("h").agg(pl.len().alias("k")).select(
        (pl.col("k") > 1).sum().alias("hashes"), pl.len().alias("distinct"))
    return [per_source, across]


def distribution(values: np.ndarray, counts: np.ndarray, integer: bool) -> dict[str, Any]:
    """Summary and histogram of a distribution given as exact value counts.

    Args:
        values: Distinct values (any order).
        counts: How many samples have each value.
        integer: Values are integers (histogram bins then hold whole numbers).

    Returns:
        ``count``, ``sum``, ``mean``, ``std``, ``min``, ``p50``, ``p90``, ``p99``, ``max`` and
        ``hist`` (``edges``, ``counts``); empty input gives ``count`` 0 and None elsewhere.
    """
    order = np.argsort(values, kind="stable")
    values, counts = np.asarray(values)[order], np.asarray(counts, dtype=np.int64)[order]
    total = int(counts.sum())
    if total == 0:
        return {"count": 0, "sum": 0, "mean": None, "std": None, "min": None, "p50": None, "p90": None,
                "p99": None, "max": None, "hist": {"edges": [], "counts": []}}
    as_py = (lambda v: int(v)) if integer else (lambda v: float(v))
    exact_sum = sum(int(v) * int(c) for v, c in zip(values, counts)) if integer else float(values @ counts)
    mean = float(values @ counts) / total
    var = float(((values - mean) ** 2) @ counts) / total
    cum = np.cumsum(counts)
    # Nearest-rank quantiles: the smallest value with at least q of the samples at or below it.
    quantile = {f"p{q}": as_py(values[int(np.searchsorted(cum, math.ceil(q / 100 * total)))]) for q in (50, 90, 99)}
    return {"count": total, "sum": exact_sum if integer else float(exact_sum), "mean": mean,
            "std": math.sqrt(max(var, 0.0)), "min": as_py(values[0]), **quantile, "max": as_py(values[-1]),
            "hist": _histogram(values, counts, integer)}


def _histogram(values: np.ndarray, counts: np.ndarray, integer: bool) -> dict[str, list]:
    lo, hi = float(values[0]), float(values[-1])
    if integer:
        width = max(1, math.ceil((hi - lo + 1) / HIST_BINS))
        edges = np.arange(lo, hi + width + 1, width, dtype=np.float64)[: HIST_BINS + 1]
        if edges[-1] <= hi:
            edges = np.append(edges, edges[-1] + width)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, HIST_BINS + 1)
    hist, _ = np.histogram(values, bins=edges, weights=counts)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in hist]}


def _shards(index: IndexFile, frame: Any | None) -> dict[str, Any] | None:  # noqa: ANN401 - a polars frame
    if frame is None:
        return None
    frame = frame.sort("shard")
    ids, rows, tokens = (frame[c].to_numpy() for c in ("shard", "n", "tokens"))
    out: dict[str, Any] = {"num_shards": len(ids), "ids": ids.tolist(), "samples": rows.tolist(),
                           "tokens": tokens.tolist()}
    if index.shard_files is not None:
        out["bytes"] = [index.shard_files[i]["bytes"] if 0 <= i < len(index.shard_files) else None for i in ids]
        declared = [index.shard_files[i]["samples"] if 0 <= i < len(index.shard_files) else None for i in ids]
        out["index_json_agrees"] = declared == rows.tolist() and len(ids) == len(index.shard_files)
    return out


def _notes(index: IndexFile) -> list[str]:
    notes = []
    if index.num_rows == 0:
        dropped = sum(index.dropped.values())
        why = (f": all {dropped:,} rows were dropped at ingest ("
               + ", ".join(f"{r} {n:,}" for r, n in sorted(index.dropped.items())) + ")") if dropped else ""
        notes.append(f"{index.name} has no samples{why}")
    missing = [c for c in KIND_COLUMNS.get(index.kind, ()) if c not in index.columns]
    if missing:
        notes.append(f"{index.name}: no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                     f"(a {index.kind} index from `mixture ingest` has them): those statistics are left out")
    if not index.kind:
        notes.append(f"{index.name}: no mixture:kind in the parquet metadata (not written by `mixture ingest`)")
    return notes


def source_stats(sources: Sequence[str], storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Statistics of one or more ingested sources: what `mixture stats` shows.

    Args:
        sources: Source directories (local or fsspec URLs) or their ``samples.parquet`` files.
        storage_options: fsspec options for remote sources.

    Returns:
        A JSON-able dict: ``sources`` (per source: counts, distributions, shards, duplicates, dropped rows,
        notes), ``duplicates_across`` and ``totals``.

    Raises:
        MixtureError: If a source is missing, unreadable or has no ``tokens`` column.
    """
    import polars as pl

    indexes = _distinct_names([open_index(s, storage_options) for s in sources])
    plans, queries = [], []
    for ix in indexes:
        measures = [m for m in MEASURES if all(c in ix.columns for c in m.columns)]
        frames = _queries(ix, measures)
        plans.append((measures, len(queries), len(frames)))
        queries += frames
    dup_at = len(queries)
    queries += _duplicate_queries(indexes)
    results = pl.collect_all(queries, engine="streaming") if queries else []
    dups = _duplicates(indexes, results[dup_at:])
    out = [_one_source(ix, measures, results[at:at + n], dups["per_source"].get(i))
           for i, (ix, (measures, at, n)) in enumerate(zip(indexes, plans))]
    totals = {"sources": len(out), "samples": sum(s["num_samples"] for s in out),
              "tokens": sum(s["distributions"]["tokens"]["sum"] for s in out),
              "dropped": sum(s["dropped_total"] for s in out)}
    return {"kind": "stats", "sources": out, "duplicates_across": dups["across"], "totals": totals}


def _distinct_names(indexes: list[IndexFile]) -> list[IndexFile]:
    """Sources that share a directory name are told apart as ``name``, ``name#2``, ..."""
    seen: Counter[str] = Counter()
    out = []
    for ix in indexes:
        seen[ix.name] += 1
        out.append(ix if seen[ix.name] == 1 else replace(ix, name=f"{ix.name}#{seen[ix.name]}"))
    return out


def _duplicates(indexes: Sequence[IndexFile], frames: list[Any]) -> dict[str, Any]:
    if not frames:
        return {"per_source": {}, "across": None}
    per_source, across = frames
    by_src = {int(r["src"]): {"distinct_hashes": int(r["distinct"]), "duplicated_hashes": int(r["hashes"]),
                              "extra_copies": int(r["extra_rows"])} for r in per_source.iter_rows(named=True)}
    names = [ix.name for ix in indexes if "content_hash" in ix.columns]
    row = across.row(0, named=True) if across.height else {"hashes": 0, "distinct": 0}
    return {"per_source": by_src, "across": {"sources": names, "hashes_in_several_sources": int(row["hashes"] or 0),
                                             "distinct_hashes": int(row["distinct"] or 0)}}


def _one_source(ix: IndexFile, measures: list[Measure], frames: list[Any],
                dups: dict[str, int] | None) -> dict[str, Any]:
    dists = {}
    for m, frame in zip(measures, frames):
        dists[m.name] = {"label": m.label, **distribution(frame["v"].to_numpy(), frame["n"].to_numpy(),
                                                           integer=m.name != "aspect")}
    shards = _shards(ix, frames[len(measures)] if len(frames) > len(measures) else None)
    if "content_hash" in ix.columns and dups is None:  # every hash null, or no rows
        dups = {"distinct_hashes": 0, "duplicated_hashes": 0, "extra_copies": 0}
    return {"name": ix.name, "location": ix.location, "kind": ix.kind or "unknown", "num_samples": ix.num_rows,
            "columns": list(ix.columns), "dropped": dict(sorted(ix.dropped.items())),
            "dropped_total": sum(ix.dropped.values()), "metadata": ix.metadata, "distributions": dists,
            "shards": shards, "duplicates": dups, "notes": _notes(ix)}
