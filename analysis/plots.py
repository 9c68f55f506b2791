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
    if step:
        ax.stairs(counts, edges, color=color, label=label, linewidth=1.6)
    else:
        ax.stairs(counts, edges, color=color, fill=True, alpha=0.75, label=label)


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
    """An axis of amounts written short (``1.5T``, ``28B``), at most seven ticks."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from mixture.progress import human

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(7))
    target.set_major_formatter(FuncFormatter(lambda v, _: human(v)))
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)


def small_share_scale(ax: Any, values: Sequence[float]) -> bool:  # noqa: ANN401
    """Log y scale when some non-zero share is under 5% (invisible on a linear 0-1 axis); returns if set."""
    small = [v for v in values if 0 < v < 0.05]
    if not small:
        return False
    ax.set_yscale("log")
    ax.set_ylim(min(small) / 2, 1.3)
    return True


def count_axis(ax: Any, label: str) -> None:  # noqa: ANN401
    """An x axis of counts (batches, tokens) written out with separators instead of an offset like 1e6."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(label)


def batch_axis(ax: Any, batches: Sequence[float]) -> None:  # noqa: ANN401
    """An x axis of batches with whole-number ticks, widened around a single point (one evaluation)."""
    from matplotlib.ticker import MaxNLocator

    count_axis(ax, "batch")
    ax.xaxis.set_major_locator(MaxNLocator(7, integer=True))
    if batches and min(batches) == max(batches):
        ax.set_xlim(min(batches) - 1, max(batches) + 1)
