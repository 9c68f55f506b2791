"""Matplotlib helpers shared by the reports: one look (Agg backend, light grid), one colour per source."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def colors(names: Sequence[str]) -> dict[str, str]:
    """A colour per name that depends on the name alone, so a source has one colour on every plot and page.

    Each name takes the palette slot its CRC-32 picks; names whose slot is taken (in sorted order) take the
    next free one, so up to ten names never share a colour.
    """
    import zlib

    taken: dict[int, str] = {}
    for name in sorted(set(names)):
        slot = zlib.crc32(name.encode()) % len(_PALETTE)
        for step in range(len(_PALETTE)):
            if (slot + step) % len(_PALETTE) not in taken:
                slot = (slot + step) % len(_PALETTE)
                break
        taken.setdefault(slot, name)
    by_name = {name: _PALETTE[slot] for slot, name in taken.items()}
    return {n: by_name.get(n, _PALETTE[sorted(set(names)).index(n) % len(_PALETTE)]) for n in names}


def grid(count: int, ncols: int = 3, width: float = 11.0, row_height: float = 2.9) -> tuple[Any, list[Any]]:
    """A figure with ``count`` axes laid out ``ncols`` to a row; unused axes are hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, count))
    nrows = max(1, math.ceil(count / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    for ax in flat:
        ax.grid(True, color="#e6e9ed", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.set_layout_engine("constrained")
    return fig, flat[:count]


def histogram(ax: Any, hist: dict[str, list], color: str, label: str | None = None,  # noqa: ANN401
              step: bool = False) -> None:
    """Draw a histogram given as ``edges`` and ``counts`` (bars, or a step line for overlays)."""
    edges, counts = hist["edges"], hist["counts"]
    if not counts:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes, color="#5b6470")
        return
    filled = [i for i, c in enumerate(counts) if c]
    if len(filled) == 1 and not step:  # one value (or one narrow bin): a bar at it, not a full-width block
        i = filled[0]
        value = edges[i] if float(edges[i]).is_integer() or edges[i + 1] - edges[i] < 1e-6 else \
            (edges[i] + edges[i + 1]) / 2
        ax.bar([value], [counts[i]], width=max(abs(value), 1.0) * 0.04, color=color, alpha=0.75, label=label)
        ax.set_xlim(value - max(abs(value), 1.0) * 0.5, value + max(abs(value), 1.0) * 0.5)
        ax.text(0.97, 0.95, f"every sample: {value:g}", ha="right", va="top", transform=ax.transAxes,
                fontsize=9, color="#3c4550", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        ax.ticklabel_format(axis="x", useOffset=False, style="plain")
        return
    if step:
        ax.stairs(counts, edges, color=color, label=label, linewidth=1.6)
    elif all(float(e).is_integer() for e in edges) and all(b - a == 1 for a, b in zip(edges, edges[1:])):
        ax.bar(edges[:-1], counts, width=0.8, color=color, alpha=0.75, label=label)  # one bar per whole number
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    else:
        ax.stairs(counts, edges, color=color, fill=True, alpha=0.75, label=label)
    if not step and max(counts) >= 50 * min(counts[i] for i in filled):  # one value dominates: the rest
        ax.set_yscale("log")                                           # would be invisible on a linear axis
        ax.set_ylim(bottom=0.7)


def steps(ax: Any, edges: Sequence[float], values: Sequence[float], **style: Any) -> None:  # noqa: ANN401
    """A piecewise-constant curve: ``values[i]`` over ``[edges[i], edges[i + 1])`` (a line, not a patch:
    much faster to draw for thousands of bins)."""
    if len(values):
        ax.plot(edges, [*values, values[-1]], drawstyle="steps-post", **style)


def band(ax: Any, edges: Sequence[float], low: Sequence[float], high: Sequence[float],  # noqa: ANN401
         **style: Any) -> None:
    """A piecewise-constant band between ``low`` and ``high`` (same bins as :func:`steps`)."""
    if len(low):
        ax.fill_between(edges, [*low, low[-1]], [*high, high[-1]], step="post", linewidth=0, **style)


def phase_bands(ax: Any, spans: Sequence[tuple[float, float, str]], labels: bool = True) -> None:  # noqa: ANN401
    """Alternating shaded bands for phases ``(start, stop, name)`` and their names above the axes.

    A name that would run into the previous one on its row moves up a row, so names never overprint,
    however narrow their phase (a 28B-token cooldown after 3.44T tokens of text).
    """
    lo, hi = ax.get_xlim()
    width = max(hi - lo, 1e-300)
    rows_end: list[float] = []  # per label row: where its last name ends (axes fraction)
    for i, (a, b, name) in enumerate(spans):
        ax.axvspan(a, b, color="#eef1f5" if i % 2 else "#ffffff", zorder=0, linewidth=0)
        if i:
            ax.axvline(a, color="#8a939e", linewidth=0.8, linestyle="--", zorder=1)
        if not labels:
            continue
        start = max((a - lo) / width, 0.0)
        size = 0.0085 * (len(name) + 1)  # characters at 8 pt on an 11-inch axis, as a fraction
        row = next((r for r, end in enumerate(rows_end) if start >= end), len(rows_end))
        if row == len(rows_end):
            rows_end.append(0.0)
        rows_end[row] = start + size
        ax.text(start, 1.01 + 0.075 * row, name, transform=ax.transAxes, fontsize=8, color="#3c4550",
                va="bottom", ha="left", clip_on=False)


def si_axis(ax: Any, label: str, axis: str = "x") -> None:  # noqa: ANN401
    """An axis of amounts written short (``1.5T``, ``28B``), at most seven ticks, never two alike."""
    from matplotlib.ticker import MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(7))
    target.set_major_formatter(_ShortFormatter())
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)


def short_labels(values: Sequence[float]) -> list[str]:
    """Tick labels: whole numbers with separators below a million; from there an SI suffix with the fewest
    digits (3 at least) that tell every tick apart (``3.44T``, ``3.445T``)."""
    from mixture.progress import human

    if all(abs(v) < 1e6 and float(v).is_integer() for v in values):
        return [f"{v:,.0f}" for v in values]
    labels: list[str] = []
    for digits in range(3, 10):
        labels = [human(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def _ShortFormatter() -> Any:  # noqa: ANN401, N802 - a matplotlib Formatter, built lazily
    from matplotlib.ticker import Formatter

    class ShortFormatter(Formatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return short_labels([x])[0]

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            return short_labels(list(values))

    return ShortFormatter()


def small_share_scale(ax: Any, values: Sequence[float]) -> bool:  # noqa: ANN401
    """Log y scale when some non-zero share is under 5% (invisible on a linear 0-1 axis); returns if set."""
    small = [v for v in values if 0 < v < 0.05]
    if not small:
        return False
    ax.set_yscale("log")
    ax.set_ylim(min(small) / 2, 1.3)
    return True


def count_axis(ax: Any, label: str) -> None:  # noqa: ANN401
    """An x axis of counts (batches, tokens): see :func:`si_axis` (never an offset like 1e6)."""
    si_axis(ax, label)


def bar_values(ax: Any, values: Sequence[float]) -> None:  # noqa: ANN401
    """Each bar's value written on it, and a log axis when some bar is under 5% of the tallest (else unseen)."""
    from analysis.html import fmt

    top = max(values, default=0.0)
    if top > 0 and any(0 < v < 0.05 * top for v in values):
        ax.set_yscale("log")
    for i, v in enumerate(values):
        if v > 0:
            ax.text(i, v, fmt(float(v)), ha="center", va="bottom", fontsize=8, color="#3c4550")


def batch_axis(ax: Any, batches: Sequence[float]) -> None:  # noqa: ANN401
    """An x axis of batches with whole-number ticks, widened around a single point (one evaluation)."""
    from matplotlib.ticker import MaxNLocator

    count_axis(ax, "batch")
    ax.xaxis.set_major_locator(MaxNLocator(7, integer=True))
    if batches and min(batches) == max(batches):
        ax.set_xlim(min(batches) - 1, max(batches) + 1)
