"""`mixture demo`: the paper's introduction-point study (PAPER.md, Figure 4) in miniature, end to end.

One call does what a user of the toolkit does, with the same commands and files:

1. data: :func:`streaming_data.demo_data.make_demo_data` draws shape scenes, reads the stdlib's docstrings
   and ingests them with ``mixture ingest`` (OUT/data);
2. compile: :func:`trainer.sweep.prepare_sweep` compiles the six variants of the demo's mixture file
   (images introduced at 0/20/40/60/80/100% of the text plan) and plans the shared trunk (OUT/sweep);
3. train: :func:`trainer.sweep.run_sweep` trains the run tree in this process, parents first, each run
   evaluated at its end (held-out text and caption loss, VQA accuracy on held-out scenes);
4. report: :func:`analysis.compare.compare` writes the comparison report (OUT/report: HTML, JSON, PNGs).

Every step reuses what an earlier call finished (data, compiled schedules, trained runs), so an interrupted
demo continues where it stopped. The base run config is ``examples/demo/run.yaml``, copied to OUT/run.yaml
with its paths pointing at OUT/data. At scale 1.0 it takes about 5 minutes on 2 CPU cores (docs/demo.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixture.errors import MixtureError

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO_ROOT / "examples" / "demo" / "run.yaml"
DEFAULT_OUT = Path("out") / "demo"
PRIOR_ACCURACY = 0.33  # answering each question kind's most common answer (docs/demo.md, "The scenes")
SCORES = {"text": "eval/loss/text", "captions": "eval/loss/images", "vqa": "eval/vqa/accuracy"}

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoRow:
    """One introduction point's final scores.

    Attributes:
        intro: The introduction point as written in the mixture file (``"20% of text_plan"``).
        batches: Global batches its final model was trained for (trunk included).
        text_loss: Held-out text loss (mean nats per token) of the final, fine-tuned model.
        caption_loss: Held-out caption loss of the final model.
        vqa_accuracy: VQAv2-style accuracy on held-out scenes.
    """

    intro: str
    batches: int
    text_loss: float
    caption_loss: float
    vqa_accuracy: float

    @property
    def label(self) -> str:
        """``20%`` for ``20% of text_plan``."""
        return self.intro.split(" of ")[0]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` made.

    Attributes:
        out_dir: The demo's directory.
        report: The comparison report (``report.html``; ``report.json`` and ``figures/`` beside it).
        rows: One row per introduction point, in order.
        totals: The sweep plan's totals (``scratch_batches``, ``plan_batches``, ``saved_batches``, ...).
        num_questions: VQA questions each model answered.
        trained: Runs trained by this call (the others were finished before).
        timings: Seconds per step: ``data``, ``compile``, ``train``, ``report``, ``total``.
        scope: What was trained on what, in words (for the caveats).
        uniform_loss: ln(vocabulary size): the loss of a uniform guess over the tokenizer's entries.
    """

    out_dir: Path
    report: Path
    rows: list[DemoRow]
    totals: dict[str, float]
    num_questions: int
    trained: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    scope: str = ""
    uniform_loss: float = 0.0

    @property
    def figure(self) -> Path:
        """The report's picture of every score against the introduction point."""
        return self.report.parent / "figures" / "compare_intro.png"


def run_demo(out_dir: str | Path = DEFAULT_OUT, *, scale: float = 1.0, questions: int | None = None,
             say: Say = print) -> DemoResult:
    """Make the data, train the introduction-point sweep and write its report (see the module docstring).

    Args:
        out_dir: The demo's directory (``data/``, ``run.yaml``, ``sweep/``, ``report/``).
        scale: Multiplier of the data and the text plan, in (0, 1]; CI runs 0.05.
        questions: VQA questions per evaluation (default: the base config's, at most those made).
        say: Where progress lines go.

    Raises:
        MixtureError: Bad settings, a failed ingest or run (naming its log), or an ``out_dir`` holding a
            sweep trained on other data (another ``scale``).
    """
    from streaming_data.demo_data import make_demo_data
    from trainer.sweep import prepare_sweep, run_sweep

    out, start, timings = Path(out_dir).resolve(), time.monotonic(), {}

    def step(line: str) -> None:
        elapsed = int(time.monotonic() - start)
        say(f"[demo {elapsed // 60}:{elapsed % 60:02d}] {line}")

    step(f"data: embedded scenes and stdlib text at scale {scale:g} -> {out / 'data'}")
    data = make_demo_data(out / "data", scale=scale, progress=lambda line: step(f"  {line}"))
    timings["data"] = time.monotonic() - start
    base = write_base_config(out, data, questions)
    step(f"compile: the six introduction points of {data.mixture.name}, planned with one shared trunk")
    sweep_dir, notes = prepare_sweep(data.mixture, base, out / "sweep",
                                     lambda name, reused: step(f"  {'reused' if reused else 'compiled'} {name}"))
    for note in notes:
        step(f"  note: {note}")
    timings["compile"] = time.monotonic() - start - sum(timings.values())
    trained = run_sweep(sweep_dir, 1, say=lambda line: step(f"  {line}"))
    timings["train"] = time.monotonic() - start - sum(timings.values())
    step("report: mixture compare over the finished variants")
    result = _report(out, sweep_dir, trained)
    timings["report"] = time.monotonic() - start - sum(timings.values())
    timings["total"] = time.monotonic() - start
    return DemoResult(**{**result.__dict__, "timings": timings, "scope": _scope(base, data),
                          "uniform_loss": math.log(data.vocab_size)})


def _scope(base: Path, data: Any) -> str:  # noqa: ANN401 - DemoData
    """``tiny models (2 layers, hidden 128) trained on 0.6M tokens of docstrings and 3,000 synthetic scenes``."""
    lm = yaml.safe_load(base.read_text())["model"]["lm"]
    from trainer.model import LM_PRESETS

    shape = {**LM_PRESETS[lm.get("preset") or "tiny"], **lm.get("config", {})}
    tokens = data.counts["samples_text"] * data.seq_len
    amount = f"{tokens / 1e6:.1f}M" if tokens >= 1e6 else f"{tokens / 1e3:.0f}k"
    return (f"tiny models ({shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}) trained on "
            f"{amount} tokens of docstrings and {data.counts['scenes_train']:,} synthetic scenes")


def write_base_config(out: Path, data: Any, questions: int | None = None) -> Path:  # noqa: ANN401 - DemoData
    """``out/run.yaml``: examples/demo/run.yaml with its data paths under ``data.out_dir`` and eval sizes capped."""
    config = yaml.safe_load(BASE_CONFIG.read_text())
    config["model"]["tokenizer"] = str(data.tokenizer)
    heldout = config["eval"]["heldout"]
    for name in heldout:
        heldout[name]["location"] = str(data.heldout[name])
        heldout[name]["samples"] = min(heldout[name]["samples"], data.counts[f"samples_{name}_heldout"])
    vqa = config["eval"]["vqa"]
    vqa["file"] = str(data.vqa)
    vqa["questions"] = min(questions or vqa["questions"], data.counts["vqa_questions"])
    path = out / "run.yaml"
    header = (f"# Written by `mixture demo` from {BASE_CONFIG.relative_to(REPO_ROOT)} (see its comments): the base "
              "run config of the demo's sweep.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def _report(out: Path, sweep_dir: Path, trained: list[str]) -> DemoResult:
    """Compare the finished variants into ``out/report`` and collect the rows of the summary."""
    from analysis.compare import compare
    from trainer.sweep import result_dirs, sweep_status

    status = sweep_status(sweep_dir)
    dirs = result_dirs(status)
    if len(dirs) != len(status.variants):
        raise MixtureError(f"{sweep_dir}: {len(dirs)} of {len(status.variants)} variants have results",
                           hint=f"see `mixture sweep status {sweep_dir}`")
    data, paths = compare(dirs, out / "report", figures=True)
    rows = []
    for run, row in zip(data["runs"], data["table"]):
        scores = run["scores"]
        rows.append(DemoRow(str(run["values"]["intro"]), int(row["batches"]), scores[SCORES["text"]],
                            scores[SCORES["captions"]], scores[SCORES["vqa"]]))
    num_questions = int(_results(dirs[0]).get("eval/vqa/num_questions", 0))
    return DemoResult(out, paths["html"], rows, dict(status.totals), num_questions, trained)


def _results(run_dir: str) -> dict[str, float]:
    from mixture.run_dir import read_results

    results = read_results(run_dir)
    return results.eval if results else {}


def summary(result: DemoResult) -> str:
    """What the demo shows, in a few lines: where the report is, the table, the saving, the timing, the caveats."""
    t = result.totals
    lines = [f"report: {result.report}", f"figure: {result.figure}", "",
             "images introduced at  batches  held-out text loss  held-out caption loss  VQA accuracy"]
    for row in result.rows:
        lines.append(f"{row.label:>20}  {row.batches:7,}  {row.text_loss:18.3f}  {row.caption_loss:21.3f}  "
                     f"{row.vqa_accuracy:12.3f}")
    lines += ["", f"shared trunk: {t['plan_batches']:,.0f} batches trained instead of {t['scratch_batches']:,.0f} "
              f"(each variant from scratch): {t['saved_batches']:,.0f} saved ({100 * t['saved_batch_fraction']:.0f}%)",
              "time: " + ", ".join(f"{k} {_clock(v)}" for k, v in result.timings.items()), ""]
    return "\n".join(lines + _caveats(result))


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _caveats(result: DemoResult) -> list[str]:
    """What the numbers can and cannot show, from the numbers themselves."""
    rows = result.rows
    vqa = sorted(rows, key=lambda r: r.vqa_accuracy)
    text = sorted(rows, key=lambda r: r.text_loss)
    error = 0.5 / math.sqrt(max(result.num_questions, 1))  # a binomial proportion's standard error, at most
    noise = " (within noise)" if vqa[-1].vqa_accuracy - vqa[0].vqa_accuracy < 2 * error else ""
    below = "below" if vqa[-1].vqa_accuracy < PRIOR_ACCURACY else "above"
    return [
        f"What this shows: VQA accuracy goes from {vqa[0].vqa_accuracy:.3f} (images at {vqa[0].label}) to "
        f"{vqa[-1].vqa_accuracy:.3f} (at {vqa[-1].label}){noise}; held-out text loss, measured after fine-tuning "
        f"on one-word answers, from {text[0].text_loss:.3f} (at {text[0].label}) to {text[-1].text_loss:.3f} "
        f"(at {text[-1].label})" + (f", above the {result.uniform_loss:.2f} of a uniform guess: fine-tuning on "
                                     "short answers overwrote what the text phase taught"
                                     if result.uniform_loss and text[0].text_loss > result.uniform_loss else "") + ".",
        f"What it cannot show: with {result.num_questions} questions one standard error is up to {error:.3f}, "
        f"so differences under ~{2 * error:.2f} are noise; the best score is {below} the ~{PRIOR_ACCURACY:.2f} "
        f"of always giving each question kind's most common answer. These are {result.scope or 'tiny models'}, "
        "for minutes, and a later introduction point also trains longer (the trunk grows, cooldown and "
        "fine-tuning stay), as in the paper. The demo runs the study's procedure, not its result: the paper's "
        "ranking needs the paper's scale.",
    ]
