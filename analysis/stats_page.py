"""The `mixture stats` report: overview, dropped rows, duplicates, then one section per source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.html import Page, write_report
from analysis.plots import colors, grid, histogram
from analysis.stats import source_stats

_DIST_COLUMNS = ["measure", "count", "sum", "mean", "std", "min", "p50", "p90", "p99", "max"]


def overview_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source: the overview table of the page and of the terminal summary."""
    rows = []
    for s in data["sources"]:
        tokens = s["distributions"]["tokens"]
        dups = s["duplicates"] or {}
        rows.append({"source": s["name"], "kind": s["kind"], "samples": s["num_samples"], "tokens": tokens["sum"],
                     "mean tokens": tokens["mean"], "p99 tokens": tokens["p99"],
                     "shards": (s["shards"] or {}).get("num_shards"), "dropped": s["dropped_total"],
                     "duplicate images": dups.get("extra_copies")})
    return rows


def dropped_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Dropped rows by source and reason, with their share of what the ingest read."""
    rows = []
    for s in data["sources"]:
        read = s["num_samples"] + s["dropped_total"]
        for reason, n in s["dropped"].items():
            rows.append({"source": s["name"], "reason": reason, "rows": n,
                         "share of input": n / read if read else None})
    return rows


def notes(data: dict[str, Any]) -> list[str]:
    """Every source's notes (empty sources, missing columns, index.json disagreements)."""
    out = [n for s in data["sources"] for n in s["notes"]]
    for s in data["sources"]:
        if s["shards"] and s["shards"].get("index_json_agrees") is False:
            out.append(f"{s['name']}: samples per shard in samples.parquet differ from index.json")
    return out


def stats_report(sources: list[str], out_dir: str | Path, figures: bool = False,
                 storage_options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Compute the statistics of ``sources`` and write the report into ``out_dir``.

    Returns:
        The report's data (also written as ``report.json``) and the paths written.

    Raises:
        MixtureError: If a source is missing, unreadable or has no ``tokens`` column.
    """
    data = source_stats(sources, storage_options)
    page = Page("Dataset statistics", f"{len(sources)} source{'s' * (len(sources) > 1)}: "
                + ", ".join(s["name"] for s in data["sources"]))
    page.notes(notes(data))
    page.heading("Overview")
    page.text("Samples and budget tokens per source (tokens as the sample index prices them at ingest), "
              "rows dropped at ingest, and images stored more than once.")
    page.table(overview_rows(data), left=("source", "kind"))
    _comparison(page, data)
    _dropped_and_duplicates(page, data)
    for source in data["sources"]:
        _source_section(page, source)
    return data, write_report(out_dir, page, data, figures)


def _comparison(page: Page, data: dict[str, Any]) -> None:
    live = [s for s in data["sources"] if s["num_samples"]]
    if len(live) < 2:
        return
    page.heading("Tokens per sample, all sources")
    page.text("How long each source's samples are, overlaid: the budget tokens one sample costs, as a share "
              "of each source's own samples (so a small source is as visible as a large one).")
    fig, (ax,) = grid(1, width=10, row_height=3.4)
    palette = colors([s["name"] for s in live])
    for s in live:
        hist = s["distributions"]["tokens"]["hist"]
        total = sum(hist["counts"]) or 1
        histogram(ax, {**hist, "counts": [c / total for c in hist["counts"]]}, palette[s["name"]], s["name"],
                  step=True)
    ax.set_xlabel("budget tokens per sample")
    ax.set_ylabel("share of the source's samples")
    ax.legend(frameon=False)
    page.figure(fig, "stats_tokens_all", "Budget tokens per sample, one line per source.")


def _dropped_and_duplicates(page: Page, data: dict[str, Any]) -> None:
    dropped = dropped_rows(data)
    page.heading("Dropped rows")
    page.text("Rows the ingest read but did not keep, by reason (from the index's mixture:dropped metadata).")
    if dropped:
        page.table(dropped, left=("source", "reason"))
    else:
        page.text("No rows were dropped.")
    across = data["duplicates_across"]
    if across is None:
        return
    page.heading("Duplicate images")
    page.text("Images whose content hash occurs more than once: within a source (extra copies beyond the "
              "first) and across the sources that have a content_hash column.")
    rows = [{"source": s["name"], **s["duplicates"]} for s in data["sources"] if s["duplicates"] is not None]
    rows.append({"source": "across " + ", ".join(across["sources"]), "distinct_hashes": across["distinct_hashes"],
                 "duplicated_hashes": across["hashes_in_several_sources"], "extra_copies": None})
    page.table(rows, ["source", "distinct_hashes", "duplicated_hashes", "extra_copies"], left=("source",))


def _source_section(page: Page, source: dict[str, Any]) -> None:
    page.heading(f"{source['name']} ({source['kind']})")
    page.text(f"{source['location']}: {source['num_samples']:,} samples. Exact distributions of every per-sample "
              "column the index has (quantiles are nearest-rank).")
    dists = source["distributions"]
    page.table([{"measure": d["label"], **d} for d in dists.values()], _DIST_COLUMNS, left=("measure",))
    if not source["num_samples"]:
        return
    fig, axes = grid(len(dists))
    color = colors([source["name"]])[source["name"]]
    for ax, d in zip(axes, dists.values()):
        histogram(ax, d["hist"], color)
        ax.set_title(d["label"], fontsize=10)
        ax.set_ylabel("samples", fontsize=8)
    page.figure(fig, f"stats_{source['name']}_distributions", f"{source['name']}: distributions per sample.")
    _shards(page, source)


def _shards(page: Page, source: dict[str, Any]) -> None:
    shards = source["shards"]
    if not shards or not shards["ids"]:
        return
    with_bytes = "bytes" in shards and any(b for b in shards["bytes"] if b)
    fig, axes = grid(2 if with_bytes else 1, ncols=2, row_height=2.6)
    color = colors([source["name"]])[source["name"]]
    from matplotlib.ticker import MaxNLocator

    axes[0].bar(shards["ids"], shards["samples"], width=0.8, color=color)
    axes[0].set_title("samples per shard", fontsize=10)
    if with_bytes:
        axes[1].bar(shards["ids"], [(b or 0) / 2**20 for b in shards["bytes"]], width=0.8, color=color, alpha=0.7)
        axes[1].set_title("MiB per shard (index.json)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("shard")
        if len(shards["ids"]) <= 10:
            ax.set_xticks(shards["ids"])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
        ax.set_xlim(min(shards["ids"]) - 0.6, max(shards["ids"]) + 0.6)
    samples = sorted(shards["samples"])
    page.text(f"{shards['num_shards']:,} shards; samples per shard: min {samples[0]:,}, median "
              f"{samples[len(samples) // 2]:,}, max {samples[-1]:,}.")
    page.figure(fig, f"stats_{source['name']}_shards", f"{source['name']}: shard sizes.")
