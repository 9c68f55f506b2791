"""`mixture report`: planned against realised for a compiled schedule, and, with a run, what it consumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from analysis.html import Page, fmt, write_report
from analysis.plan import MAX_POINTS, analyse_schedule
from analysis.plots import band, bar_values, colors, count_axis, grid, phase_bands, si_axis, small_share_scale, steps

_ROW_COLUMNS = ["phase", "source", "unit", "target_share", "share", "planned", "realised", "deviation", "max_lag",
                "samples", "tokens", "epochs", "epochs_at_end", "repeated"]


def summary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Planned against realised per phase and source: the terminal summary."""
    return [{"phase": r["phase"], "source": r["source"], "unit": r["unit"], "target share": r["target_share"],
             "share": r["share"], "deviation": r["deviation"], "samples": r["samples"], "tokens": r["tokens"],
             "epochs at end": r["epochs_at_end"]} for r in data["rows"]]


def report(schedule_dir: str | Path, out_dir: str | Path, run_dir: str | Path | None = None,
           figures: bool = False, max_points: int = MAX_POINTS) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write the planned-against-realised report of a compiled schedule (and of a run of it).

    Args:
        schedule_dir: The compiled schedule directory.
        out_dir: Where ``report.html`` and ``report.json`` go.
        run_dir: A training run of this schedule (``run.json``, ``metrics.jsonl``), or None.
        figures: Also write each plot as ``figures/NAME.png``.
        max_points: Most points per curve.

    Returns:
        The report's data (as written to ``report.json``) and the paths written.

    Raises:
        MixtureError: If the schedule or the run directory cannot be read.
    """
    from analysis.run_report import logged_batches, run_data, run_section
    from analysis.runs import load_run
    from mixture.schedule import load_schedule

    schedule = load_schedule(schedule_dir)
    run = load_run(run_dir) if run_dir is not None else None
    checked = logged_batches(run, max_points) if run else []
    an, data = analyse_schedule(schedule, max_points, checked)
    _add_token_axis(schedule, data, max_points)
    data["kind"] = "report"
    data["notes"] = [f"check failed: {c['check']}" for c in data["checks"] if not c["ok"]]
    if run is not None:
        data["run"] = {**run_data(run, an, checked, max_points), "source_names": data["source_names"]}
        data["notes"] += data["run"]["notes"]
    page = _page(data)
    if run is not None:
        run_section(page, data["run"])
    return data, write_report(out_dir, page, data, figures)


def _add_token_axis(schedule: Any, data: dict[str, Any], max_points: int) -> None:  # noqa: ANN401
    """Budget tokens at the curve's bin edges and phase bounds, the planned LR, and the source names (colours)."""
    bt = schedule.batch_tokens().astype(np.float64)
    at = lambda batches: np.interp(np.asarray(batches, np.float64), np.arange(len(bt)), bt)  # noqa: E731
    data["curve"]["tokens"] = at(data["curve"]["batch"]).tolist()
    for p in data["phases"]:
        start, stop = at([p["start_batch"], p["start_batch"] + p["batches"]])
        p["start_tokens"], p["stop_tokens"] = float(start), float(stop)
    data["source_names"] = list(schedule.source_names)
    lr = schedule.lr()
    if lr is not None and len(lr):
        pick = np.unique(np.linspace(0, len(lr) - 1, min(len(lr), 4 * max_points)).astype(np.int64))
        data["planned_lr"] = {"batch": (pick + 1).tolist(), "tokens": bt[pick + 1].tolist(), "lr": lr[pick].tolist()}


def _page(data: dict[str, Any]) -> Page:
    s = data["schedule"]
    variant = s["variant"].get("name")
    page = Page(f"Schedule report: {s['name']}{' / ' + variant if variant else ''}",
                f"{s['path']} - fingerprint {s['fingerprint']} - {fmt(s['num_positions'])} positions in "
                f"{fmt(s['num_batches'])} batches of {' then '.join(map(str, s['batch_sizes']))} - {fmt(s['total_tokens'])} budget tokens")
    page.notes(data["notes"])
    page.heading("Phases")
    page.table([{"phase": p["name"], "unit": p["unit"], "batches": p["batches"],
                 "positions": f"{p['start']:,}-{p['stop']:,}",
                 "mix": ", ".join(f"{n} {w:g}" for n, w in p["weights"].items()),
                 "ramp": f"{p['ramp']['length']:,.0f} {p['unit']} {p['ramp']['shape']}" if p["ramp"] else ""}
                for p in data["phases"]], left=("phase", "unit", "positions", "mix", "ramp"))
    page.heading("Planned against realised, per phase and source")
    page.text("planned: the target integral of the phase's mix (ramps included, plus the rounding carried from "
              "the previous mixed phase) in the phase's unit; realised: what the order holds; max_lag: the largest "
              "|realised - target| at any batch boundary; epochs_at_end: where the source's cursor stands after "
              "the phase; repeated: draws in the phase that re-read a sample.")
    page.table(data["rows"], _ROW_COLUMNS, left=("phase", "source", "unit"))
    _overview_figure(page, data)
    _lr_figure(page, data)
    for zoom in data["zoom"]:
        _zoom_figure(page, zoom)
    page.heading("Sources over the whole schedule")
    page.table(data["sources"], left=("source", "kind"))
    _epochs_figure(page, data)
    page.heading("Consistency checks")
    page.text("The order, counted batch by batch, against the manifest and batch_tokens.npy.")
    page.table(data["checks"], left=("check",))
    return page


def _overview_figure(page: Page, data: dict[str, Any]) -> None:
    curve = data["curve"]
    if not curve["unit"]:
        return
    page.heading("Share of each source across training")
    x = np.asarray(curve["tokens"], np.float64)
    spans = [(p["start_tokens"], p["stop_tokens"], p["name"]) for p in data["phases"] if p["batches"]]
    later = spans[1:]
    zoom = bool(later) and (spans[0][1] - spans[0][0]) > 0.75 * (spans[-1][1] - spans[0][0])
    page.text("Realised share (solid) against the target (dashed) in each bin of global batches, in the unit of "
              "the bin's phase (tokens or samples), against budget tokens trained; shaded bands are phases."
              + (" The right panel widens the phases after the first, which are a sliver of the whole." if zoom
                 else "") + (" Shares are on a log scale: some are under 5%." if _small(curve) else ""))
    fig, axes = grid(2 if zoom else 1, ncols=2 if zoom else 1, width=11, row_height=3.8)
    palette = colors(data["source_names"])
    for ax, (lo, hi) in zip(axes, [(spans[0][0], spans[-1][1]), (later[0][0] if later else 0, spans[-1][1])]):
        ax.set_xlim(lo, hi)
        for name in curve["realised"]:
            if not any(curve["realised"][name]) and not any(curve["target"][name]):
                continue
            steps(ax, x, curve["realised"][name], color=palette[name], label=name, linewidth=1.6)
            steps(ax, x, curve["target"][name], color=palette[name], linestyle="--", linewidth=1.2, zorder=3)
        phase_bands(ax, [s for s in spans if s[1] > lo and s[0] < hi])
        si_axis(ax, "budget tokens trained")
        ax.set_ylabel("share")
        if not small_share_scale(ax, [v for t in curve["target"].values() for v in t]):
            ax.set_ylim(-0.02, 1.05)
    axes[-1].legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    page.figure(fig, "report_share_overview", "Share per source across the whole schedule: realised (solid), "
                "target (dashed)" + ("; right: the phases after the first, widened." if zoom else "."))


def _small(curve: dict[str, Any]) -> bool:
    return any(0 < v < 0.05 for t in curve["target"].values() for v in t)


def _lr_figure(page: Page, data: dict[str, Any]) -> None:
    lr = data.get("planned_lr")
    if not lr:
        return
    page.heading("Planned learning rate")
    page.text("The schedule's learning rate per global batch (lr.npy), against budget tokens trained; the "
              "trainer uses exactly this curve.")
    fig, (ax,) = grid(1, width=11, row_height=2.6)
    ax.plot(lr["tokens"], lr["lr"], color="#1d232b", linewidth=1.4)
    spans = [(p["start_tokens"], p["stop_tokens"], p["name"]) for p in data["phases"] if p["batches"]]
    ax.set_xlim(spans[0][0], spans[-1][1])
    phase_bands(ax, spans)
    si_axis(ax, "budget tokens trained")
    ax.set_ylabel("learning rate")
    page.figure(fig, "report_lr", "Planned learning rate per batch.")


def _zoom_figure(page: Page, zoom: dict[str, Any]) -> None:
    page.heading(f"Mixed phase {zoom['phase']}, batch by batch", level=3)
    per_bin = len(zoom["batch"]) - 1
    page.text(f"Left: realised share per bin (solid), target (dashed), and the range of single global batches' "
              f"shares (band), over {per_bin:,} bins. Right: the largest |realised - target| at any batch boundary, "
              f"in {zoom['unit']}, against one sample (the guarantee).")
    fig, (ax, lag_ax) = grid(2, ncols=2, row_height=3.3)
    x = zoom["start_batch"] + np.asarray(zoom["batch"], np.float64)
    palette = colors(list(zoom["realised"]))
    for name in zoom["realised"]:
        c = palette[name]
        band(ax, x, zoom["min_share"][name], zoom["max_share"][name], color=c, alpha=0.18)
        steps(ax, x, zoom["realised"][name], color=c, label=name, linewidth=1.4)
        steps(ax, x, zoom["target"][name], color=c, linestyle="--", linewidth=1.2, zorder=3)
        steps(lag_ax, x, zoom["max_lag"][name], color=c, label=name, linewidth=1.2)
        lag_ax.axhline(zoom["bound"][name], color=c, linestyle=":", linewidth=1.0)
    ax.set_title(f"share of {zoom['unit']}", fontsize=10)
    lag_ax.set_title(f"max |realised - target| ({zoom['unit']}); dotted: one sample", fontsize=10)
    for a in (ax, lag_ax):
        count_axis(a, "global batch")
    ax.legend(frameon=False, fontsize=8)
    verdict = "within one sample everywhere" if zoom["within_bound"] else "NOT within one sample"
    page.figure(fig, f"report_phase_{zoom['phase']}", f"Phase {zoom['phase']}: {verdict}.")


def _epochs_figure(page: Page, data: dict[str, Any]) -> None:
    rows = [r for r in data["sources"] if r["samples"]]
    if not rows:
        return
    fig, axes = grid(2, ncols=2, row_height=2.8)
    names = [r["source"] for r in rows]
    palette = colors(data.get("source_names") or [r["source"] for r in data["sources"]])
    axes[0].bar(names, [r["token_share"] for r in rows], color=[palette[n] for n in names])
    bar_values(axes[0], [r["token_share"] for r in rows])
    axes[0].set_title("share of all budget tokens", fontsize=10)
    axes[1].bar(names, [r["epochs"] for r in rows], color=[palette[n] for n in names])
    bar_values(axes[1], [r["epochs"] for r in rows])
    for i, r in enumerate(rows):
        if r["max_epochs"] is not None:
            axes[1].plot([i - 0.4, i + 0.4], [r["max_epochs"]] * 2, color="#c62828", linewidth=1.5)
    axes[1].set_title("epochs read (red: max_epochs cap)", fontsize=10)
    page.figure(fig, "report_sources", "Token share and epochs per source over the whole schedule.")
