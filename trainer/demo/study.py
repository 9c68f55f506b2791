"""`mixture demo`: the paper's introduction-point study (PAPER.md, Figure 4) in miniature, end to end.

One call does what a user of the toolkit does, with the same commands and files:

1. data: :func:`trainer.demo.data.make_demo_data` draws shape scenes, reads the stdlib's docstrings and
   ingests them with ``mixture ingest`` (OUT/data);
2. compile: :func:`trainer.sweep.prepare_sweep` compiles the four variants of the demo's mixture file
   (images introduced at 0/40/80/100% of the text plan, each with the same image budget) and plans the
   shared trunk (OUT/sweeps/seed-S, one sweep per model seed);
3. train: :func:`trainer.sweep.run_sweep` trains the run tree in this process, parents first, with a
   checkpoint every 40 batches and one where fine-tuning starts; progress is printed every ~15 s;
4. measure: :mod:`trainer.demo.measure` scores every variant's checkpoints before and after fine-tuning
   (VQA per question, caption loss with right and shuffled images, held-out text loss) and the answer prior;
5. report: ``OUT/summary.json``, ``OUT/figure.png`` and :func:`analysis.compare.compare`'s report
   (OUT/report) of the first seed.

Every step reuses what an earlier call finished (data, compiled schedules, trained runs, measurements),
so an interrupted demo continues from its newest checkpoint. The base run config is the packaged
``templates/run.yaml``, written to OUT/run-seed-S.yaml with its paths pointing at OUT/data.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mixture.errors import MixtureError
from mixture.run_dir import checkpoint_batch, checkpoint_file
from trainer.demo import clock, template

if TYPE_CHECKING:
    from trainer.demo.summary import DemoResult, VariantResult
    from trainer.sweep.records import SweepRun

DEFAULT_OUT = Path("out") / "demo"
FIRST_SEED = 17  # the base config's model seed; --seeds N trains seeds 17, 18, ...

Say = Callable[[str], None]


def run_demo(out_dir: str | Path = DEFAULT_OUT, *, scale: float = 1.0, questions: int | None = None,
             seeds: int = 1, say: Say = print, started: float | None = None) -> DemoResult:
    """Make the data, train the introduction-point sweep per seed, measure and report (module docstring).

    Args:
        out_dir: The demo's directory (``data/``, ``run-seed-S.yaml``, ``sweeps/``, ``report/``, ...).
        scale: Multiplier of the data and the text plan, in (0, 1]; CI runs 0.05.
        questions: VQA questions per model (default: the base config's, at most those made).
        seeds: Model seeds (each trains the whole sweep again; the paper used two).
        say: Where progress lines go.
        started: ``time.monotonic()`` when the command started (its imports are then timed as ``startup``).

    Raises:
        MixtureError: Bad settings, a failed ingest or run (naming its log), or an ``out_dir`` holding a
            sweep trained on other data (another ``scale``).
    """
    from trainer.demo.data import make_demo_data

    if seeds < 1:
        raise MixtureError(f"--seeds must be at least 1, got {seeds}")
    out, start = Path(out_dir).resolve(), time.monotonic()
    timings = {"startup": start - started} if started is not None else {}
    start -= timings.get("startup", 0.0)
    cpu_start = _cpu_seconds()

    def step(line: str) -> None:
        say(f"[demo {clock(time.monotonic() - start)}] {line}")

    def lap(name: str) -> None:
        timings[name] = time.monotonic() - start - sum(timings.values())

    step(f"data: embedded scenes and stdlib text at scale {scale:g} -> {out / 'data'}")
    data = make_demo_data(out / "data", scale=scale, progress=lambda line: step(f"  {line}"))
    lap("data")
    sweeps = []
    for seed in range(FIRST_SEED, FIRST_SEED + seeds):
        base = write_base_config(out, data, seed, questions)
        step(f"compile: the introduction points of {data.mixture.name}, one shared trunk (model seed {seed})")
        sweeps.append((seed, _prepare(data, base, out / "sweeps" / f"seed-{seed}", step)))
    lap("compile")
    for seed, sweep_dir in sweeps:
        _train(sweep_dir, seed, step)
        removed, freed = prune_checkpoints(sweep_dir)
        if removed:
            step(f"  seed {seed}: removed {removed} interval checkpoints of finished runs ({freed / 1e6:,.0f} MB); "
                 "kept each run's branch points, fine-tuning start and final one")
    lap("train")
    step("measure: every variant before and after fine-tuning (VQA, captions with right and shuffled images, text)")
    from trainer.demo.measure import vqa_rows

    num_questions = len(vqa_rows(data.vqa, _questions(data, questions)))
    variants = _measure_all(out, data, sweeps, num_questions, step)
    lap("measure")
    step("report: summary.json, figure.png and `mixture compare` of the first seed")
    prior = _prior(data, num_questions)
    report = _report(out, sweeps[0][1], prior)
    lap("report")  # summary.json and the figure (a second) are written after the timings are known
    timings["total"] = time.monotonic() - start
    from trainer.baselines import uniform_loss
    from trainer.demo.summary import DemoResult, write_outputs

    result = DemoResult(out, report, variants, prior, uniform_loss(data.vocab_size),
                        [s for s, _ in sweeps], num_questions, timings, _cpu_seconds() - cpu_start,
                        _scope(out / f"run-seed-{FIRST_SEED}.yaml", data))
    write_outputs(result)
    return result


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _questions(data: Any, questions: int | None) -> int:  # noqa: ANN401 - DemoData
    configured = yaml.safe_load(template("run.yaml"))["eval"]["vqa"]["questions"]
    return min(questions or configured, data.counts["vqa_questions"])


def write_base_config(out: Path, data: Any, seed: int = FIRST_SEED,  # noqa: ANN401 - DemoData
                      questions: int | None = None) -> Path:
    """``out/run-seed-S.yaml``: the packaged run.yaml with its data paths under ``data.out_dir``, the model
    seed ``seed`` and eval sizes capped by what the data holds."""
    config = yaml.safe_load(template("run.yaml"))
    config["seed"] = seed
    config["model"]["tokenizer"] = str(data.tokenizer)
    heldout = config["eval"]["heldout"]
    for name in heldout:
        heldout[name]["location"] = str(data.heldout[name])
        heldout[name]["samples"] = min(heldout[name]["samples"], data.counts[f"samples_{name}_heldout"])
    vqa = config["eval"]["vqa"]
    vqa["file"] = str(data.vqa)
    vqa["questions"] = _questions(data, questions)
    path = out / f"run-seed-{seed}.yaml"
    header = ("# Written by `mixture demo` from the packaged trainer/demo/templates/run.yaml (see its comments): "
              "the base run config of the demo's sweep for one model seed.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def _prepare(data: Any, base: Path, sweep_dir: Path, step: Say) -> Path:  # noqa: ANN401 - DemoData
    """Compile and plan one seed's sweep; every run also saves a checkpoint where fine-tuning starts."""
    from trainer.sweep import prepare_sweep

    sweep_dir, notes = prepare_sweep(data.mixture, base, sweep_dir,
                                     lambda name, reused: step(f"  {'reused' if reused else 'compiled'} {name}"))
    for note in notes:
        step(f"  note: {note}")
    finetune_checkpoints(sweep_dir)
    return sweep_dir


def finetune_start(schedule_dir: Path) -> int:
    """The global batch at which a variant's fine-tuning phase starts (its first whole fine-tuning batch)."""
    from mixture.schedule import Schedule

    return next(s.first_batch for s in Schedule(schedule_dir).segments if s.phase == "finetune")


def finetune_checkpoints(sweep_dir: Path) -> dict[str, tuple[int, Path]]:
    """Add each variant's fine-tuning start to its run's ``checkpoint.save_at``.

    Returns:
        Variant name -> (the batch fine-tuning starts at, the checkpoint file saved there).
    """
    from trainer.sweep.records import read_sweep

    sweep = read_sweep(sweep_dir)
    runs = {run.id: run for run in sweep.runs}
    found = {}
    for name, entry in sweep.variants.items():
        batch = finetune_start(sweep_dir / "schedules" / name)
        owner = _run_training(runs, entry.run, batch)
        config_path = Path(owner.config)
        config = yaml.safe_load(config_path.read_text())
        checkpoint = config.setdefault("checkpoint", {})
        if batch not in checkpoint.get("save_at", []):  # written once: a run being trained reads its config
            checkpoint["save_at"] = sorted(set(checkpoint.get("save_at", [])) | {batch})
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        found[name] = batch, Path(owner.checkpoint_folder(config)) / checkpoint_file(batch)
    return found


def prune_checkpoints(sweep_dir: Path) -> tuple[int, int]:
    """Remove the interval checkpoints of the sweep's finished runs; keep every run's ``save_at`` ones (branch
    points, fine-tuning starts: children and the measurements read them), every checkpoint a run starts from,
    and each run's newest (its final one, which ``latest`` points at). Interval checkpoints only serve to resume an interrupted run: the demo's were 2 GB.

    Returns:
        (files removed, bytes freed).
    """
    from mixture.run_dir import find_info
    from trainer.sweep.records import read_sweep

    runs = read_sweep(sweep_dir).runs
    started_from = {Path(run.checkpoint).resolve() for run in runs if run.checkpoint}  # what children read
    removed, freed = 0, 0
    for run in runs:
        info = find_info(run.run_dir)
        if info is None or info.status != "done":
            continue  # a run that may still resume keeps everything
        config = yaml.safe_load(Path(run.config).read_text()) or {}
        keep = {*(config.get("checkpoint") or {}).get("save_at", []), info.last_batch}
        for path in Path(run.checkpoint_folder(config)).glob(checkpoint_file("*", "*")):
            batch = checkpoint_batch(path.name)
            if batch is not None and batch not in keep and not path.is_symlink() and path.resolve() not in started_from:
                freed += path.stat().st_size
                path.unlink()
                removed += 1
    return removed, freed


def _run_training(runs: dict[str, SweepRun], run_id: str, batch: int) -> SweepRun:
    """The run (the variant's own or an ancestor) that trains through ``batch``."""
    run = runs[run_id]
    while run.start_batch >= batch and run.after:
        run = runs[run.after]
    return run


def _train(sweep_dir: Path, seed: int, step: Say) -> None:
    """Train one seed's sweep; the demo's progress lines (with the sweep's ETA) replace the trainer's own."""
    from mixture.progress import QUIET_ENV
    from trainer.demo.progress import Progress
    from trainer.sweep import run_sweep

    quiet = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"  # the trainer's progress line would repeat the demo's every ~10 s
    try:
        with Progress(sweep_dir, lambda line: step(f"  {line}")):
            run_sweep(sweep_dir, 1, say=lambda line: step(f"  seed {seed}: {line}"))
    finally:
        if quiet is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = quiet


def _measure_all(out: Path, data: Any, sweeps: list[tuple[int, Path]], num_questions: int,  # noqa: ANN401
                 step: Say) -> list[VariantResult]:
    """Every variant's scores, averaged over seeds (cached in ``out/measure``)."""
    from trainer.demo.summary import combine

    per_seed = []
    for seed, sweep_dir in sweeps:
        per_seed.append(_measure_sweep(out / "measure" / f"seed-{seed}", data, sweep_dir, num_questions, step))
    return combine(per_seed)


def _measure_sweep(cache: Path, data: Any, sweep_dir: Path, num_questions: int,  # noqa: ANN401 - DemoData
                   step: Say) -> list[dict[str, Any]]:
    """One seed's measurements, one dict per variant in the sweep's order."""
    from trainer.sweep.records import read_sweep

    sweep = read_sweep(sweep_dir)
    before = finetune_checkpoints(sweep_dir)
    runs = {run.id: run for run in sweep.runs}
    found = []
    for name, entry in sweep.variants.items():
        run = runs[entry.run]
        final = Path(run.checkpoint_folder()) / checkpoint_file(entry.batch)
        start, checkpoint = before[name]
        record = {"name": name, "intro_percent": _percent(entry.values["intro"]), "batches": entry.batch,
                  "finetune_start_batch": start}
        record["before"] = _cached(cache / f"{name}.before.json", run.config, checkpoint, data, 0, step)
        record["after"] = _cached(cache / f"{name}.after.json", run.config, final, data, num_questions, step)
        found.append(record)
    return found


def _percent(intro: str) -> float:
    """``40`` for ``40% of text_plan``."""
    value = float(intro.split("%")[0])
    return int(value) if value.is_integer() else value


def _cached(path: Path, config: str, checkpoint: Path, data: Any, questions: int,  # noqa: ANN401 - DemoData
            step: Say) -> dict[str, Any]:
    """A checkpoint's scores, measured once (the cache names the checkpoint and its size)."""
    from dataclasses import asdict

    from trainer.demo.measure import load_model, score

    if not checkpoint.is_file():
        raise MixtureError(f"{checkpoint} is missing: the demo measures it", hint="delete the demo's sweeps/ "
                           "directory and run the demo again to retrain")
    key = {"checkpoint": str(checkpoint), "bytes": checkpoint.stat().st_size, "questions": questions}
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["scores"]
    step(f"  {checkpoint.parent.parent.name} {checkpoint.stem.split('-')[0]}: measuring")
    model, tokenizer, collator_args = load_model(Path(config), checkpoint, data.seq_len)
    samples = yaml.safe_load(Path(config).read_text())["eval"]["heldout"]["images"]["samples"]
    scores = asdict(score(model, tokenizer, collator_args, data, questions=questions, samples=samples))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "scores": scores}) + "\n")
    return scores


def _prior(data: Any, num_questions: int) -> list[float]:  # noqa: ANN401 - DemoData
    from trainer.demo.measure import answer_prior, vqa_rows

    return answer_prior(data.raw / "instruct_train.json", vqa_rows(data.vqa, num_questions))


def _report(out: Path, sweep_dir: Path, prior: list[float]) -> Path:
    """`mixture compare` over the first seed's finished variants (out/report), read against the answer
    prior of the fine-tuning conversations (``prior``: per question), as summary.json is."""
    from analysis.compare import compare
    from trainer.baselines import prior_baseline
    from trainer.sweep import result_dirs, sweep_status

    status = sweep_status(sweep_dir)
    dirs = result_dirs(status)
    if len(dirs) != len(status.variants):
        raise MixtureError(f"{sweep_dir}: {len(dirs)} of {len(status.variants)} variants have results",
                           hint=f"see `mixture sweep status {sweep_dir}`")
    baselines = {"eval/vqa/accuracy": prior_baseline(prior, "the fine-tuning conversations")}
    _, paths = compare(dirs, out / "report", figures=True, baselines=baselines)
    return Path(paths["html"])


def _scope(base: Path, data: Any) -> str:  # noqa: ANN401 - DemoData
    """``tiny models (2 layers, hidden 128) trained on 0.5M tokens of docstrings and 3,000 synthetic scenes``."""
    lm = yaml.safe_load(base.read_text())["model"]["lm"]
    from trainer.model import LM_PRESETS

    shape = {**LM_PRESETS[lm.get("preset") or "tiny"], **lm.get("config", {})}
    tokens = data.counts["samples_text"] * data.seq_len
    amount = f"{tokens / 1e6:.1f}M" if tokens >= 1e6 else f"{tokens / 1e3:.0f}k"
    return (f"tiny models ({shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}) trained on "
            f"{amount} tokens of docstrings and {data.counts['scenes_train']:,} synthetic scenes")


def cpu_threads(requested: int | None = None) -> int:
    """Torch threads for the demo: ``requested``, else 1.

    The demo's matrices are tiny (hidden 128, batches of 8-16 short sequences), so a second OpenMP thread
    only adds synchronisation. Measured on the 2-core machine, fine-tuning steps of the demo's model: 1 thread
    15 s; 2 threads 16 s with ``OMP_WAIT_POLICY=PASSIVE`` (the demo's setting) and 42-58 s with spinning
    threads (OpenMP's default), at a load average of 1-2; with 8-10 other runnable processes 2 threads took
    7.5 s a batch and 1 thread 1.25 s.
    """
    return requested or 1
