"""`mixture compare`: the results of a sweep side by side, as the paper's figures show them.

Runs are placed by their schedule variant's axis values (``run.json``'s ``variant``, else the compiled
schedule's manifest): for every axis with more than one value, each score is plotted against that axis
(introduction point, image share, fine-tuning epochs, ...), one line per combination of the other axes.
Axis values sort numerically where they hold a number (``"20% of text_plan"`` is 20, ``"2 ep"`` is 2);
a mix (a mapping) is labelled compactly (``dclm 0.9, img 0.1``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis.html import Page, write_report
from analysis.plots import colors, count_axis, grid
from analysis.runs import Run, load_run
from mixture.errors import MixtureError
from mixture.run_dir import Baseline

VISION, TEXT_MEAN = "eval/vqa/accuracy", "eval/text/mean"
BENCHMARKS = "benchmarks.json"  # written into each run directory by `mixture eval SWEEP_DIR`
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def axis_label(value: Any) -> str:  # noqa: ANN401 - any axis value
    """A short label for an axis value (a mapping such as a mix as ``key value, ...``)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {axis_label(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "/".join(axis_label(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def axis_key(value: Any) -> tuple[int, float, str]:  # noqa: ANN401 - any axis value
    """Sort key: values holding a number first, by that number; then the rest by label."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    match = _NUMBER.search(value) if isinstance(value, str) else None
    if match:
        return (0, float(match.group()), str(value))
    return (1, 0.0, axis_label(value))


def _variant_values(run: Run) -> dict[str, Any]:
    if run.info.variant:
        return run.variant_values
    manifest = Path(run.info.schedule or "") / "manifest.json"
    if manifest.is_file():
        return dict((json.loads(manifest.read_text()).get("variant") or {}).get("values") or {})
    return {}


def _bench_scores(run: Run) -> dict[str, float]:
    """``mixture eval``'s scores (``RUN_DIR/benchmarks.json``): ``bench/NAME`` and its ``bench/NAME/se``."""
    path = Path(run.path) / BENCHMARKS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    entries = {**data.get("benchmarks", {}), **({"average": data["average"]} if "average" in data else {})}
    out: dict[str, float] = {}
    for name, metrics in entries.items():
        out[f"bench/{name}"] = float(metrics["accuracy"])
        out[f"bench/{name}/se"] = float(metrics.get("accuracy_se", 0.0))
    return out


def _scores(run: Run) -> dict[str, float]:
    scores = {k: float(v) for k, v in run.final_eval().items() if not k.endswith("/num_questions")}
    scores.update(_bench_scores(run))
    text = [v for k, v in scores.items() if k.startswith("eval/text/")]
    if len(text) > 1:
        scores[TEXT_MEAN] = sum(text) / len(text)
    return scores


def compare(run_dirs: list[str], out_dir: str | Path, figures: bool = False,
            baselines: dict[str, Baseline] | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write the comparison report of several runs (a sweep) into ``out_dir``.

    ``baselines`` (by score name) replace those the runs recorded in ``results.json`` (the demo gives the
    answer prior of its fine-tuning conversations).

    Returns:
        The report's data (``runs``, ``axes``, ``scores``, ``table``, ``notes``) and the paths written.

    Raises:
        MixtureError: If a run directory cannot be read, or no run has any evaluation result.
    """
    runs = [load_run(d) for d in run_dirs]
    values = [_variant_values(r) for r in runs]
    axes = list(dict.fromkeys(a for v in values for a in v))
    scores = [_scores(r) for r in runs]
    counts = [{**s, **{k: float(v) for k, v in r.final_eval().items() if k.endswith("/num_questions")}}
              for s, r in zip(scores, runs)]
    keys = _score_keys(scores)
    if not keys:
        raise MixtureError("none of the runs has evaluation results (results.json or eval/ lines in metrics.jsonl)",
                           hint="compare runs once they have been evaluated")
    notes = [n for r in runs for n in r.notes]
    notes += [f"{r.name}: status {r.info.status!r}" for r in runs if r.info.status != "done"]
    order = sorted(range(len(runs)), key=lambda i: ([axis_key(values[i].get(a)) for a in axes], runs[i].name))
    table = [{"run": runs[i].name, **{a: axis_label(values[i].get(a, "")) for a in axes},
              "status": runs[i].info.status, "batches": runs[i].info.last_batch,
              **{k: _cell(scores[i], k, standard_error(counts[i], k)) for k in keys if not k.endswith("/se")}}
             for i in order]
    found, baseline_notes = recorded_baselines(runs)
    found.update({k: asdict(b) for k, b in (baselines or {}).items()})
    data = {"kind": "compare", "axes": axes, "scores": keys, "table": table, "notes": notes + baseline_notes,
            "baselines": found,
            "runs": [{"name": runs[i].name, "path": str(runs[i].path), "values": values[i], "scores": scores[i],
                      "se": {k: se for k in keys if (se := standard_error(counts[i], k)) is not None},
                      "eval_curve": _eval_curve(runs[i])} for i in order]}
    return data, write_report(out_dir, _page(data), data, figures)


def recorded_baselines(runs: list[Run]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The baseline of each score (``results.json``'s ``baselines``: the answer prior, the uniform guess) and
    notes: a score whose runs recorded different baselines (other evaluation files) keeps the first run's."""
    found: dict[str, dict[str, Any]] = {}
    notes, warned = [], set()
    for run in runs:
        for key, base in (run.results.baselines if run.results else {}).items():
            record = asdict(base)
            first = found.setdefault(key, record)
            if abs(first["value"] - base.value) > 1e-9 and key not in warned:
                warned.add(key)
                notes.append(f"{key}: the runs recorded different baselines ({first['value']:.4g} and "
                             f"{base.value:.4g}); the figures show the first")
    return found, notes


def baseline_cell(base: dict[str, Any] | None) -> str:
    """``0.312 ± 0.013 (answer prior)`` or ``8.318 (uniform guess)``; empty without a baseline."""
    if base is None:
        return ""
    se = f" ± {base['se']:.3f}" if base["se"] else ""
    return f"{base['value']:.3f}{se} ({base['name']})"


def _band(base: dict[str, Any] | None) -> list[float]:
    """The top of a baseline's band (value + SE), for the axis scale to hold it; nothing without one."""
    return [base["value"] + base["se"]] if base else []


def draw_baseline(ax: Any, base: dict[str, Any] | None) -> None:  # noqa: ANN401 - a matplotlib axis
    """A score's baseline as a grey dashed line (± its standard error as a band), labelled in the legend."""
    if base is None:
        return
    ax.axhline(base["value"], color="0.35", linestyle="--", linewidth=1.1, label=base["name"] or "baseline",
               zorder=1)
    if base["se"]:
        ax.axhspan(base["value"] - base["se"], base["value"] + base["se"], color="0.6", alpha=0.25, linewidth=0,
                   zorder=0)


def _cell(scores: dict[str, float], key: str, se: float | None = None) -> float | str | None:
    """A table cell: the score, with its standard error where there is one (``0.512 ± 0.010``): a
    benchmark's own (``KEY/se``), else ``se`` (an accuracy's over its questions)."""
    value = scores.get(key)
    se = scores.get(f"{key}/se", se)
    return value if value is None or se is None else f"{value:.3f} ± {se:.3f}"


def _score_keys(scores: list[dict[str, float]]) -> list[str]:
    keys = sorted({k for s in scores for k in s})
    bench = [k for k in keys if k.startswith("bench/")]
    first = bench + [k for k in (VISION, TEXT_MEAN) if k in keys]
    return first + [k for k in keys if k.startswith("eval/") and k not in first and not k.startswith("eval/loss/")] \
        + [k for k in keys if k.startswith("eval/loss/")]


def _eval_curve(run: Run) -> dict[str, list[float]]:
    lines = [line for line in run.evals if VISION in line]
    return {"batch": [line["batch"] for line in lines], VISION: [float(line[VISION]) for line in lines]}


def _baseline_text(data: dict[str, Any]) -> str:
    """What the dashed lines are (from the runs' ``results.json``)."""
    kinds = _baseline_kinds(data)
    if not kinds:
        return ""
    return " Dashed grey lines: " + "; ".join(f"the {n} ({w})" for n, w in kinds.items()) + "."


def _baseline_kinds(data: dict[str, Any]) -> dict[str, str]:
    """Each kind of baseline the scores are read against: name -> how it was computed."""
    return {b["name"]: b["what"] for b in (data.get("baselines") or {}).values()}


def _page(data: dict[str, Any]) -> Page:
    names = [r["name"] for r in data["runs"]]
    page = Page("Sweep comparison", f"{len(names)} runs: {', '.join(names)}")
    page.notes(data["notes"])
    page.heading("Results")
    page.text("Final evaluation scores per run (results.json), runs ordered by their sweep axis values. "
              f"{VISION}: the vision score; {TEXT_MEAN}: the mean of the text scores where there are several; "
              "bench/NAME: the accuracy `mixture eval` measured (benchmarks.json) ± its question-level standard "
              "error." + (" The last row, baseline, is what each score is read against: "
              + "; ".join(f"{n}: {w}" for n, w in _baseline_kinds(data).items()) + "."
              if data.get("baselines") else ""))
    found = data.get("baselines") or {}
    row = {"run": "baseline", **{a: "" for a in data["axes"]}, "status": "", "batches": "",
           **{k: baseline_cell(found.get(k)) for k in data["scores"] if not k.endswith("/se")}}
    page.table(data["table"] + ([row] if found else []), left=("run", "status", *data["axes"]))
    varied = [a for a in data["axes"] if len({axis_label(r["values"].get(a)) for r in data["runs"]}) > 1]
    for axis in varied:
        if not companion_of(data["runs"], axis, varied) and not is_seed_axis(axis):
            _axis_figure(page, data, axis)
    if not varied or all(is_seed_axis(a) for a in varied):
        _bar_figure(page, data)
    _curve_figure(page, data)
    return page


def _main_scores(data: dict[str, Any]) -> list[str]:
    """Up to six scores to plot: the benchmark scores first, then the held-out losses."""
    main = [k for k in data["scores"] if not k.startswith("eval/loss/") and not k.endswith("/se")]
    return (main + [k for k in data["scores"] if k.startswith("eval/loss/")])[:6]


def _determines(runs: list[dict[str, Any]], axis: str, other: str) -> bool:
    """Whether every run's value of ``axis`` fixes its value of ``other`` (as in a zip sweep)."""
    seen: dict[str, str] = {}
    for r in runs:
        value = axis_label(r["values"].get(other))
        if seen.setdefault(axis_label(r["values"].get(axis)), value) != value:
            return False
    return True


def companion_of(runs: list[dict[str, Any]], axis: str, axes: list[str]) -> str | None:
    """The axis that ``axis`` merely follows, if any: one with more values (or as many, listed earlier) that
    fixes it. A zip sweep's companions (a re-warm's peak that goes with the introduction point) get no figure
    of their own, and do not split the lines of the axis they follow into one point each."""
    def distinct(name: str) -> int:
        return len({axis_label(r["values"].get(name)) for r in runs})

    for other in axes:
        if other == axis or not _determines(runs, other, axis):
            continue
        more = distinct(other) > distinct(axis)
        if more or (distinct(other) == distinct(axis) and axes.index(other) < axes.index(axis)):
            return other
    return None


def _axis_figure(page: Page, data: dict[str, Any], axis: str) -> None:
    others = [a for a in data["axes"] if a != axis and not _determines(data["runs"], axis, a)]
    follow = [a for a in data["axes"] if a != axis and a not in others]
    ticks = sorted({axis_label(r["values"].get(axis)): r["values"].get(axis) for r in data["runs"]}.items(),
                   key=lambda kv: axis_key(kv[1]))
    numeric = all(axis_key(v)[0] == 0 for _, v in ticks)
    position = {label: (axis_key(v)[1] if numeric else i) for i, (label, v) in enumerate(ticks)}
    seeds = [a for a in others if is_seed_axis(a)]
    others = [a for a in others if a not in seeds]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in data["runs"]:
        groups.setdefault(", ".join(f"{a}={axis_label(r['values'].get(a))}" for a in others) or "all", []).append(r)
    keys = _main_scores(data)
    fig, axs = grid(len(keys), ncols=min(3, len(keys)), row_height=3.1)
    palette = colors(list(groups))
    for ax, key in zip(axs, keys):
        for group, runs in groups.items():
            points = seed_points(runs, key, lambda r: position[axis_label(r["values"].get(axis))])
            if points:
                plot_points(ax, points, palette[group], group)
        base = data.get("baselines", {}).get(key)
        draw_baseline(ax, base)
        if key.endswith("/accuracy"):
            accuracy_scale(ax, [r["scores"].get(key, 0.0) for r in data["runs"]] + _band(base))
        ax.set_xticks(list(position.values()), [label.split(" of ")[0] for label in position], fontsize=8,
                      rotation=30 if len(position) > 6 else 0)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(axis + _reference(list(position)))
    for i, ax in enumerate(axs[:len(keys)]):  # the groups once (first panel), each panel's baseline
        shown = [(h, label) for h, label in zip(*ax.get_legend_handles_labels())
                 if label not in groups or (i == 0 and len(groups) > 1)]
        if shown:
            ax.legend([h for h, _ in shown], [label for _, label in shown], frameon=False, fontsize=8)
    page.heading(f"Scores against {axis}")
    page.text(f"Each final score against the sweep axis {axis!r}"
              + (f", one line per value of {', '.join(others)}." if others else ".")
              + (f" Over the {', '.join(seeds)} axis: the mean (line), each run (small dots) and the standard "
                 "error of the mean over runs (bars)." if seeds else " Bars: the standard error of an accuracy "
                 "(sqrt(p(1-p)/n) over its n questions).")
              + (f" {', '.join(follow)} change{'s' if len(follow) == 1 else ''} with it (each {axis} value has one)."
                 if follow else "") + _baseline_text(data))
    page.figure(fig, f"compare_{re.sub(r'[^A-Za-z0-9_]+', '_', axis)}", f"Scores against {axis}.")


def accuracy_scale(ax: Any, values: list[float]) -> None:  # noqa: ANN401
    """An accuracy (a share of questions) on a scale from 0: 0-1 once any value is large."""
    top = max(values, default=0.0)
    upper = 1.02 if top > 0.4 else max(0.1, 1.3 * top)
    ax.set_ylim(-0.03 * upper, upper)  # a little below 0, so that points at 0 stay visible


def is_seed_axis(axis: str) -> bool:
    """Whether a sweep axis varies the seed (its runs are repeats: plotted as a spread, not as a line)."""
    return "seed" in axis.lower()


def standard_error(scores: dict[str, float], key: str) -> float | None:
    """The standard error of an accuracy over its questions (``KEY`` with ``.../num_questions``), else None."""
    n = scores.get(key.rsplit("/", 1)[0] + "/num_questions") if key.endswith("/accuracy") else None
    if not n or key not in scores:
        return None
    p = min(max(scores[key], 0.0), 1.0)
    return (p * (1 - p) / n) ** 0.5


Point = tuple[float, float, "float | None", list[float]]  # x, mean score, its standard error, every run's score


def seed_points(runs: list[dict[str, Any]], key: str, x_of: Any) -> list[Point]:  # noqa: ANN401
    """Per x position: (x, mean score, its standard error, every run's score), sorted by x.

    The error is the standard error of the mean over the runs at that x (repeats over seeds) when there are
    several, else the score's own standard error (an accuracy over n questions), else None.
    """
    at: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        if key in r["scores"]:
            at.setdefault(float(x_of(r)), []).append(r)
    out = []
    for x in sorted(at):
        values = [r["scores"][key] for r in at[x]]
        mean = sum(values) / len(values)
        if len(values) > 1:
            se: float | None = (sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) ** 0.5
        else:
            se = at[x][0].get("se", {}).get(key)
        out.append((x, mean, se, values))
    return out


def plot_points(ax: Any, points: list[Point], color: str, label: str) -> None:  # noqa: ANN401
    """A line through the means with standard-error bars, and each run as a small dot."""
    xs = [p[0] for p in points]
    ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] or 0.0 for p in points], marker="o", color=color,
                label=label, linewidth=1.4, capsize=3, markersize=5)
    for x, _, _, values in points:
        if len(values) > 1:
            ax.scatter([x] * len(values), values, s=9, color=color, alpha=0.45, zorder=3, linewidths=0)


def _reference(labels: list[str]) -> str:
    """`` (% of NAME)`` when every tick is a percentage of the same reference (ticks then show "20%")."""
    refs = {label.split(" of ", 1)[1] for label in labels if " of " in label}
    return f" (% of {refs.pop()})" if len(refs) == 1 and all(" of " in label for label in labels) else ""


def _bar_figure(page: Page, data: dict[str, Any]) -> None:
    keys = _main_scores(data)
    fig, axs = grid(len(keys), ncols=min(3, len(keys)), row_height=3.1)
    names = [r["name"] for r in data["runs"]]
    palette = colors(names)
    for ax, key in zip(axs, keys):
        ax.bar(names, [r["scores"].get(key, 0.0) for r in data["runs"]], color=[palette[n] for n in names],
               yerr=[r["se"].get(key, 0.0) for r in data["runs"]], capsize=3)
        draw_baseline(ax, data.get("baselines", {}).get(key))
        if ax.get_legend_handles_labels()[1]:
            ax.legend(frameon=False, fontsize=8)
        ax.set_title(key, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    page.heading("Scores per run")
    page.text("The runs have no sweep axis that varies, so each score is shown per run (bars: the standard error "
              "of an accuracy over its questions)." + _baseline_text(data))
    page.figure(fig, "compare_runs", "Final scores per run.")


def _curve_figure(page: Page, data: dict[str, Any]) -> None:
    runs = [r for r in data["runs"] if r["eval_curve"]["batch"]]
    if not runs:
        return
    fig, (ax,) = grid(1, width=10, row_height=3.3)
    palette = colors([r["name"] for r in runs])
    for r in runs:
        ax.plot(r["eval_curve"]["batch"], r["eval_curve"][VISION], marker=".", color=palette[r["name"]],
                label=r["name"], linewidth=1.2)
    base = data.get("baselines", {}).get(VISION)
    draw_baseline(ax, base)
    count_axis(ax, "batch")
    ax.set_ylabel(VISION)
    accuracy_scale(ax, [v for r in runs for v in r["eval_curve"][VISION]] + _band(base))
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    page.heading("Vision score during training")
    page.text(f"{VISION} at every evaluation the runs logged.")
    page.figure(fig, "compare_eval_curves", f"{VISION} over training, one line per run.")
