"""Matplotlib helpers shared by the reports: one look (Agg backend, light grid), one colour per source."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (in the order given)."""
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


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


def phase_lines(ax: Any, bounds: Sequence[tuple[float, str]]) -> None:  # noqa: ANN401
    """Vertical lines at phase starts, labelled with the phase name."""
    for x, name in bounds:
        ax.axvline(x, color="#8a939e", linewidth=0.8, linestyle="--")
        ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8, color="#5b6470",
                va="top", ha="left")


def count_axis(ax: Any, label: str) -> None:  # noqa: ANN401
    """An x axis of counts (batches, tokens) written out with separators instead of an offset like 1e6."""
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(label)
