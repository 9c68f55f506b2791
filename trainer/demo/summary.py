"""What the demo reports: ``summary.json`` for machines, a printed summary and ``figure.png`` for people.

``summary.json`` (means over seeds where there are several)::

    {"answer_prior": f, "answer_prior_se": f, "uniform_text_loss": f, "seeds": [17, ...], "num_questions": n,
     "seconds": {"total": f, "data": f, "compile": f, "train": f, "measure": f, "report": f}, "cpu_seconds": f,
     "variants": [{"intro_percent": n, "vqa_accuracy": {"mean": f, "se": f, "per_seed": [f, ...]},
                   "caption_loss": f, "caption_loss_shuffled_images": f, "text_loss_before_finetune": f,
                   "text_loss": f, "caption_loss_before_finetune": f,
                   "caption_loss_shuffled_images_before_finetune": f, "batches": n}, ...]}

Standard errors are question-level: the VQA score of each question is averaged over seeds first, then
the standard error of the mean over questions is taken (seed spread is in ``per_seed``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.demo import clock
from trainer.demo.measure import mean_se


@dataclass(frozen=True)
class VariantResult:
    """One introduction point's scores, averaged over seeds.

    Attributes:
        intro_percent: Where images enter, in percent of the text plan.
        batches: Global batches its final model was trained for (trunk included).
        vqa: Per-question VQA accuracy, averaged over seeds.
        vqa_per_seed: Mean VQA accuracy of each seed's model.
        before: Caption (right, shuffled images) and text loss at the start of fine-tuning, seed means.
        after: The same for the final model.
    """

    intro_percent: float
    batches: int
    vqa: tuple[float, ...]
    vqa_per_seed: tuple[float, ...]
    before: dict[str, float]
    after: dict[str, float]

    @property
    def grounding(self) -> float:
        """Caption loss with shuffled images minus with the right ones, final model (nats per token)."""
        return self.after["caption_loss_shuffled_images"] - self.after["caption_loss"]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`trainer.demo.study.run_demo` made.

    Attributes:
        out_dir: The demo's directory.
        report: The first seed's comparison report (``report.html``).
        variants: One per introduction point, in order.
        prior: Per-question accuracy of answering each kind's most common training answer.
        uniform_loss: ln(vocabulary size): the loss of a uniform guess over the tokenizer's entries.
        seeds: Model seeds trained.
        num_questions: VQA questions each model answered.
        timings: Wall seconds per step: data, compile, train, measure, report, total.
        cpu_seconds: CPU seconds this process used (all threads).
        scope: What was trained on what, in words.
    """

    out_dir: Path
    report: Path
    variants: list[VariantResult]
    prior: list[float]
    uniform_loss: float
    seeds: list[int]
    num_questions: int
    timings: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    scope: str = ""

    @property
    def figure(self) -> Path:
        """The demo's figure (``figure.png``)."""
        return self.out_dir / "figure.png"


_LOSSES = ("caption_loss", "caption_loss_shuffled_images", "text_loss")


def combine(per_seed: list[list[dict[str, Any]]]) -> list[VariantResult]:
    """Average each variant's measurements (``measure`` records, one list per seed) over seeds."""
    out = []
    for records in zip(*per_seed):
        first = records[0]
        vqa = [r["after"]["vqa"] for r in records]
        mean_vqa = tuple(sum(values) / len(values) for values in zip(*vqa))
        losses = {when: {k: sum(r[when][k] for r in records) / len(records) for k in _LOSSES}
                  for when in ("before", "after")}
        out.append(VariantResult(first["intro_percent"], first["batches"], mean_vqa,
                                 tuple(mean_se(v)[0] for v in vqa), losses["before"], losses["after"]))
    return out


def summary_json(result: DemoResult) -> dict[str, Any]:
    """The ``summary.json`` record (see the module docstring)."""
    prior, prior_se = mean_se(result.prior)
    variants = []
    for v in result.variants:
        mean, se = mean_se(v.vqa)
        variants.append({
            "intro_percent": v.intro_percent, "vqa_accuracy": {"mean": mean, "se": se, "per_seed": list(v.vqa_per_seed)},
            "caption_loss": v.after["caption_loss"],
            "caption_loss_shuffled_images": v.after["caption_loss_shuffled_images"],
            "text_loss_before_finetune": v.before["text_loss"], "text_loss": v.after["text_loss"],
            "caption_loss_before_finetune": v.before["caption_loss"],
            "caption_loss_shuffled_images_before_finetune": v.before["caption_loss_shuffled_images"],
            "batches": v.batches})
    return {"answer_prior": prior, "answer_prior_se": prior_se, "uniform_text_loss": result.uniform_loss,
            "seeds": result.seeds, "num_questions": result.num_questions, "seconds": dict(result.timings),
            "cpu_seconds": result.cpu_seconds, "variants": variants}


def write_outputs(result: DemoResult) -> None:
    """``summary.json`` and ``figure.png`` in the demo's directory."""
    (result.out_dir / "summary.json").write_text(json.dumps(summary_json(result), indent=1) + "\n")
    figure(result, result.figure)


def figure(result: DemoResult, path: Path) -> None:
    """VQA accuracy (+-1 SE) with the answer prior; caption loss, right vs shuffled images; text loss before
    and after fine-tuning with a uniform guess; each against the introduction point."""
    from analysis.plots import grid

    x = [v.intro_percent for v in result.variants]
    fig, (vqa, captions, text) = grid(3, ncols=3, width=12.0, row_height=3.4)
    stats = [mean_se(v.vqa) for v in result.variants]
    prior, prior_se = mean_se(result.prior)
    label = "model" if len(result.seeds) == 1 else f"mean of {len(result.seeds)} seeds"
    vqa.errorbar(x, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=4, label=label)
    if len(result.seeds) > 1:  # the seed spread, which the question-level error bars do not hold
        for i, seed in enumerate(result.seeds):
            vqa.scatter(x, [v.vqa_per_seed[i] for v in result.variants], marker="x", s=24, zorder=3,
                        color=f"C{i + 2}", label=f"seed {seed}")
    vqa.axhspan(prior - prior_se, prior + prior_se, color="#bbbbbb", alpha=0.5)
    vqa.axhline(prior, color="#777777", linestyle="--", label="answer prior")
    vqa.set(title=f"VQA accuracy ({result.num_questions} questions, ±1 SE)", ylabel="accuracy")
    captions.plot(x, [v.after["caption_loss"] for v in result.variants], marker="o", label="right images")
    captions.plot(x, [v.after["caption_loss_shuffled_images"] for v in result.variants], marker="s",
                  linestyle="--", label="shuffled images")
    captions.set(title="held-out caption loss (final model)", ylabel="nats / token")
    text.plot(x, [v.before["text_loss"] for v in result.variants], marker="o", label="before fine-tuning")
    text.plot(x, [v.after["text_loss"] for v in result.variants], marker="s", label="after fine-tuning")
    text.axhline(result.uniform_loss, color="#777777", linestyle="--", label="uniform guess")
    text.set(title="held-out text loss", ylabel="nats / token")
    for ax in (vqa, captions, text):
        ax.set_xlabel("images introduced at % of text pre-training")
        ax.set_xticks(x)
        ax.legend(fontsize=8)
    seeds = ", ".join(str(s) for s in result.seeds)
    fig.suptitle(f"mixture demo: {result.scope or 'tiny models'}; model seed(s) {seeds}", fontsize=9)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def summary(result: DemoResult) -> str:
    """The printed summary: where things are, the table, the timing, what it shows and cannot show."""
    prior, prior_se = mean_se(result.prior)
    several = len(result.seeds) > 1
    lines = [f"summary: {result.out_dir / 'summary.json'}", f"figure: {result.figure}", f"report: {result.report}",
             "", "images at  VQA (±SE)        caption loss: right  shuffled  text loss: before FT  after FT"
             + ("  VQA per seed" if several else "")]
    for v in result.variants:
        mean, se = mean_se(v.vqa)
        per_seed = "  " + " ".join(f"{x:.3f}" for x in v.vqa_per_seed) if several else ""
        lines.append(f"{v.intro_percent:>8g}%  {mean:.3f} ± {se:.3f}  {v.after['caption_loss']:19.3f}  "
                     f"{v.after['caption_loss_shuffled_images']:8.3f}  {v.before['text_loss']:20.3f}  "
                     f"{v.after['text_loss']:8.3f}{per_seed}")
    lines += [f"answer prior (each kind's most common training answer): {prior:.3f} ± {prior_se:.3f}; "
              f"uniform text guess: {result.uniform_loss:.2f} nats",
              "time: " + ", ".join(f"{k} {clock(v)}" for k, v in result.timings.items())
              + f" (CPU {clock(result.cpu_seconds)})", ""]
    return "\n".join(lines + findings(result))


def findings(result: DemoResult) -> list[str]:
    """What the numbers show and what they cannot, from the numbers themselves."""
    prior, prior_se = mean_se(result.prior)
    stats = {v.intro_percent: mean_se(v.vqa) for v in result.variants}
    best = max(result.variants, key=lambda v: stats[v.intro_percent][0])
    b_mean, b_se = stats[best.intro_percent]
    before = [v.before["caption_loss_shuffled_images"] - v.before["caption_loss"] for v in result.variants]
    after = [v.grounding for v in result.variants]
    last = result.variants[-1]
    shape = _shape(best, last, b_mean - stats[last.intro_percent][0],
                   (b_se ** 2 + stats[last.intro_percent][1] ** 2) ** 0.5)
    others = [f"{v.intro_percent:g}%: {stats[v.intro_percent][0] - stats[last.intro_percent][0]:+.3f} ± "
              f"{(stats[v.intro_percent][1] ** 2 + stats[last.intro_percent][1] ** 2) ** 0.5:.3f}"
              for v in result.variants if v is not best and v is not last]
    if others:  # the best point alone can make the shape; every earlier point against the last one says more
        shape += f"; against {last.intro_percent:g}%, the other points: {', '.join(others)}"
    if b_mean - prior < 2 * (b_se ** 2 + prior_se ** 2) ** 0.5:
        shape = (f"not shown: no variant beats the answer prior by 2 SE, so the ranking compares models that "
                 f"did not learn to read the scenes ({shape})")
    return [
        f"What this shows: the best variant (images at {best.intro_percent:g}%) answers {b_mean:.3f} ± {b_se:.3f}, "
        f"{b_mean - prior:+.3f} over the answer prior {prior:.3f}. Shuffled images cost >= 0.01 nats/token of "
        f"caption loss in {sum(g >= 0.01 for g in before)} of {len(before)} models before fine-tuning (largest "
        f"{max(before):.3f}) and {sum(g >= 0.01 for g in after)} of {len(after)} after (largest {max(after):.3f}). "
        f"{_text_cost(result)} The paper's shape (images before the end of text pre-training beat 100%): {shape}.",
        f"What it cannot show: {result.scope or 'tiny models'}, {len(result.seeds)} model seed(s); with "
        f"{result.num_questions} questions differences under ~2 SE are noise, and seed spread is not in the "
        f"error bars{_seed_spread(result)}. The 0% point has seen only the image phase's text, so its text loss says how much text "
        "pre-training matters here, not how images interact with it at scale.",
    ]


def _seed_spread(result: DemoResult) -> str:
    """How far the seeds' VQA lie apart at the point where they differ most (or how to learn it)."""
    if len(result.seeds) < 2:
        return " (--seeds 2 measures it)"
    widest = max(result.variants, key=lambda v: max(v.vqa_per_seed) - min(v.vqa_per_seed))
    return (f": the seeds' VQA differ by up to {max(widest.vqa_per_seed) - min(widest.vqa_per_seed):.3f} "
            f"(at {widest.intro_percent:g}%)")


def _text_cost(result: DemoResult) -> str:
    """What fine-tuning did to held-out text loss, against a uniform guess."""
    before = [v.before["text_loss"] for v in result.variants]
    after = [v.after["text_loss"] for v in result.variants]
    change = [a - b for a, b in zip(after, before)]
    return (f"Fine-tuning moved held-out text loss by {min(change):+.2f} to {max(change):+.2f} nats/token (before "
            f"{min(before):.2f}-{max(before):.2f}, after {min(after):.2f}-{max(after):.2f}; a uniform guess "
            f"{result.uniform_loss:.2f}).")


def _shape(best: VariantResult, last: VariantResult, diff: float, diff_se: float) -> str:
    """Whether images before 100% beat 100% (the paper's shape), with the difference's standard error."""
    if best is last or diff <= 0:
        return f"no: images at {last.intro_percent:g}% score as well as or better than any earlier point"
    gap = f"images at {best.intro_percent:g}% beat {last.intro_percent:g}% by {diff:.3f} ± {diff_se:.3f}"
    if diff_se > 0 and diff >= 2 * diff_se:
        return f"yes, {gap} ({diff / diff_se:.1f} SE)"
    return f"not resolved: {gap}, under 2 SE"
