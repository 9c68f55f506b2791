"""What a run consumed against what its schedule says, and its per-source losses (`mixture report --run`).

The trainer logs cumulative samples and budget tokens per source after every batch; a run that consumed
the schedule as compiled matches it exactly at every logged batch. The check uses up to ``max_points``
logged batches (evenly spaced, always the last one), each compared with the schedule's own counts there.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from analysis.compare import baseline_cell, draw_baseline
from analysis.html import Page
from analysis.plan import Analysis
from analysis.plots import batch_axis, colors, grid
from analysis.runs import Run, per_source


def logged_batches(run: Run, max_points: int) -> list[int]:
    """Batches of train lines that log per-source counts, at most ``max_points`` of them (last included)."""
    batches = [line["batch"] for line in run.train if per_source(line, "samples/train")]
    if len(batches) > max_points:
        picks = np.unique(np.round(np.linspace(0, len(batches) - 1, max_points)).astype(int))
        batches = [batches[i] for i in picks]
    return sorted(set(batches))


def run_data(run: Run, an: Analysis, checked: list[int], max_points: int) -> dict[str, Any]:
    """Consumption against the schedule, the agreement check, loss and eval curves, as JSON-able data."""
    m = an.schedule.manifest
    info = run.info
    notes = list(run.notes)
    if info.schedule_fingerprint not in (None, m.fingerprint):
        notes.append(f"{run.name} was trained on schedule {info.schedule_fingerprint}, not on this one "
                     f"({m.fingerprint}): its consumption is compared all the same")
    if info.global_batch_size not in (None, m.global_batch_size):
        notes.append(f"{run.name}: global batch size {info.global_batch_size} differs from the schedule's "
                     f"{m.global_batch_size}")
    data = {"name": run.name, "path": str(run.path), "status": info.status, "last_batch": info.last_batch,
            "world_size": info.world_size,
            "fingerprint_ok": info.schedule_fingerprint == m.fingerprint,
            **_agreement(run, an, [b for b in checked if b <= m.num_batches]),
            "losses": _curves(run.train, "loss/train", max_points), "eval": _curves(run.evals, "eval", max_points),
            "lr": _lr(run, an, max_points), "notes": notes,
            "final_eval": {k: v for k, v in run.final_eval().items() if k != "batch"},
            "baselines": {k: asdict(b) for k, b in (run.results.baselines if run.results else {}).items()}}
    if checked and checked[-1] > m.num_batches:
        data["notes"].append(f"{run.name} logged batch {checked[-1]:,}, beyond the schedule's {m.num_batches:,}")
    return data


def _agreement(run: Run, an: Analysis, checked: list[int]) -> dict[str, Any]:
    names = an.schedule.source_names
    lines = {line["batch"]: line for line in run.train}
    if not checked:
        return {"consumed": [], "checked_batches": 0, "mismatched_batches": 0, "first_mismatch": None}
    samples, tokens = an.cumulative(checked)
    bad = []
    for i, b in enumerate(checked):
        got_s, got_t = per_source(lines[b], "samples/train"), per_source(lines[b], "tokens/train")
        if any(got_s.get(n, 0) != samples[i, j] or got_t.get(n, 0) != tokens[i, j] for j, n in enumerate(names)):
            bad.append(b)
    last = lines[checked[-1]]
    got_s, got_t = per_source(last, "samples/train"), per_source(last, "tokens/train")
    consumed = []
    for j, n in enumerate(names):
        ls, lt = int(got_s.get(n, 0)), int(got_t.get(n, 0))
        ws, wt = int(samples[-1, j]), int(tokens[-1, j])
        agrees = (ls, lt) == (ws, wt)
        consumed.append({"source": n, "batch": checked[-1], "logged samples": ls, "schedule samples": ws,
                         "logged tokens": lt, "schedule tokens": wt,
                         "difference": "" if agrees else f"{ls - ws:+,} samples, {lt - wt:+,} tokens",
                         "agrees": agrees})
    return {"consumed": consumed, "checked_batches": len(checked), "mismatched_batches": len(bad),
            "first_mismatch": bad[0] if bad else None}


def _curves(lines: list[dict[str, Any]], prefix: str, max_points: int) -> dict[str, Any]:
    """Every key under ``prefix`` against batch, averaged over consecutive lines down to ``max_points``."""
    keys = sorted({k for line in lines for k in line if k == prefix or k.startswith(prefix + "/")})
    keys = [k for k in keys if not k.startswith(("eval/vqa/num_questions",))]
    if not lines or not keys:
        return {"batch": [], "series": {}}
    batch = np.array([line["batch"] for line in lines], np.float64)
    values = np.array([[_num(line.get(k)) for k in keys] for line in lines], np.float64)
    if len(lines) > max_points:
        bins = np.arange(len(lines)) * max_points // len(lines)
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        counts = np.diff(np.r_[starts, len(lines)])
        batch = np.add.reduceat(batch, starts) / counts
        present = np.add.reduceat(~np.isnan(values), starts, axis=0)
        values = np.add.reduceat(np.nan_to_num(values), starts, axis=0) / np.maximum(present, 1)
        values[present == 0] = np.nan
    return {"batch": batch.tolist(), "series": {k: values[:, i].tolist() for i, k in enumerate(keys)}}


def _num(value: Any) -> float:  # noqa: ANN401 - a JSON value
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _lr(run: Run, an: Analysis, max_points: int) -> dict[str, Any]:
    logged = [(line["batch"], line["lr"]) for line in run.train if isinstance(line.get("lr"), (int, float))]
    lr = an.schedule.lr()
    step = max(1, len(logged) // max_points)
    out: dict[str, Any] = {"batch": [b for b, _ in logged[::step]], "logged": [v for _, v in logged[::step]]}
    if lr is not None and logged:
        # lr.npy holds the rate of each batch; the line logged after batch N was trained at lr[N - 1].
        out["schedule"] = [float(lr[min(max(b - 1, 0), len(lr) - 1)]) for b in out["batch"]]
    return out


def run_section(page: Page, data: dict[str, Any]) -> None:
    """The run's part of the report page."""
    page.heading(f"Run {data['name']}")
    page.text(f"{data['path']}: status {data['status']}, {data['last_batch'] or 0:,} batches, "
              f"world size {data['world_size']}. What the trainer logged it consumed, per source, against what "
              "the schedule holds at the same batch (they agree exactly when the run read its schedule as compiled).")
    page.notes(data["notes"])
    if data["consumed"]:
        verdict = ("all agree" if not data["mismatched_batches"] else
                   f"{data['mismatched_batches']:,} disagree, first at batch {data['first_mismatch']:,}")
        page.text(f"Checked at {data['checked_batches']:,} logged batches: {verdict}.")
        page.table(data["consumed"], left=("source", "difference"))
    if data.get("final_eval"):
        page.heading("Final evaluation", level=3)
        base = data.get("baselines") or {}
        page.text("The run's last evaluation (results.json): held-out loss per source (eval/loss/SRC), VQA "
                  "accuracy and the number of questions it is measured on"
                  + ("; baseline: what the score is read against (the answer prior: each question kind's most "
                     "common answer; the uniform guess: ln of the tokenizer's size)." if base else "."))
        page.table([{"metric": k, "value": v, **({"baseline": baseline_cell(base.get(k))} if base else {})}
                    for k, v in sorted(data["final_eval"].items())], left=("metric", "baseline"))
    _loss_figure(page, data)


def _loss_figure(page: Page, data: dict[str, Any]) -> None:
    panels = [("losses", "training loss per source", "loss/train"), ("eval", "held-out loss per source", "eval/loss")]
    present = [(key, title, prefix) for key, title, prefix in panels
               if any(k.startswith(prefix) for k in data[key]["series"])]
    with_lr = bool(data["lr"]["batch"])
    if not present and not with_lr:
        return
    fig, axes = grid(len(present) + with_lr, ncols=3, row_height=3.2)
    for ax, (key, title, prefix) in zip(axes, present):
        series = {k[len(prefix) + 1:]: v for k, v in data[key]["series"].items() if k.startswith(prefix + "/")}
        palette = colors(data.get("source_names") or sorted(series))
        sparse = {"marker": "o", "markersize": 4} if len(data[key]["batch"]) <= 20 else {}
        for name in sorted(series):
            ax.plot(data[key]["batch"], series[name], color=palette.get(name, "#5b6470"), label=name,
                    linewidth=1.3, **sparse)
        if prefix in data[key]["series"]:
            ax.plot(data[key]["batch"], data[key]["series"][prefix], color="#1d232b", label="all", linewidth=1.0,
                    alpha=0.6, **sparse)
        if key == "eval":  # the uniform guess (one value for every held-out source of a tokenizer)
            draw_baseline(ax, next((b for k, b in sorted((data.get("baselines") or {}).items())
                                    if k.startswith("eval/loss/")), None))
        ax.set_title(title, fontsize=10)
        batch_axis(ax, data[key]["batch"])
        ax.legend(frameon=False, fontsize=8)
    if with_lr:
        ax = axes[-1]
        ax.plot(data["lr"]["batch"], data["lr"]["logged"], color="#1d232b", label="logged", linewidth=1.4)
        if "schedule" in data["lr"]:
            ax.plot(data["lr"]["batch"], data["lr"]["schedule"], color="#d62728", linestyle="--", label="lr.npy")
        ax.set_title("learning rate", fontsize=10)
        batch_axis(ax, data["lr"]["batch"])
        ax.legend(frameon=False, fontsize=8)
    page.figure(fig, "report_run_losses", "Loss per source and learning rate over training (averaged over "
                "consecutive log lines where there are more than the plot shows).")
