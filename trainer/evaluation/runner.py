"""``mixture eval``: benchmarks in their official layouts -> answers (a model's, or a predictions file's)
-> official scores -> ``OUT/results.json`` and ``OUT/answers.jsonl``.

Torch is imported only when a model generates. Answers are journaled in ``OUT/answers.jsonl`` as they are
made (:mod:`.store`), so a re-run skips every question already answered; ``results.json`` is written
atomically at the end. ``--limit N`` evaluates the first N questions of each benchmark (file order).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError
from trainer.evaluation.layouts import Question, json_lines, missing_images, read_benchmark
from trainer.evaluation.scoring import KINDS, average, score_answers, score_pope
from trainer.evaluation.store import AnswerStore, write_atomic


def parse_bench(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` -> (name, directory)."""
    name, sep, root = spec.partition("=")
    if not sep or not name or not root:
        raise MixtureError(f"--bench {spec!r}: expected NAME=DIR", hint=f"NAME is one of {', '.join(KINDS)}")
    if name not in KINDS:
        raise MixtureError(f"--bench {spec!r}: unknown benchmark {name!r}", hint=f"known: {', '.join(KINDS)}")
    return name, Path(root)


def load_benchmarks(specs: Sequence[str], *, images: str | None = None,
                    limit: int | None = None) -> dict[str, list[Question]]:
    """The questions of each ``NAME=DIR`` (the first ``limit`` of each when given)."""
    if limit is not None and limit < 1:
        raise MixtureError(f"--limit {limit}: expected a positive number of questions")
    out: dict[str, list[Question]] = {}
    for spec in specs:
        name, root = parse_bench(spec)
        if name in out:
            raise MixtureError(f"--bench {name} is given twice")
        questions = read_benchmark(name, root, images=images)
        out[name] = questions[:limit] if limit else questions
    if not out:
        raise MixtureError("no benchmark to evaluate", hint="pass --bench NAME=DIR (docs/evaluation.md)")
    return out


def read_predictions(path: Path, benchmarks: dict[str, list[Question]], limited: bool = False) -> dict[str, dict[str,
                                                                                                           str]]:
    """Answers made elsewhere: ``{"benchmark", "question_id", "answer"}`` a line (POPE: ``"split"`` too, or
    an id ``SPLIT/ID``). A question id the benchmark does not have is an error, unless ``limited`` (then
    predictions for questions outside ``--limit`` are ignored)."""
    if not path.is_file():
        raise MixtureError(f"--predictions {path}: no such file")
    ids = {name: {q.question_id for q in qs} for name, qs in benchmarks.items()}
    out: dict[str, dict[str, str]] = {name: {} for name in benchmarks}
    for where, record in json_lines(path):
        if not isinstance(record, dict) or not {"benchmark", "question_id", "answer"} <= set(record):
            raise MixtureError(f"{where}: expected {{\"benchmark\", \"question_id\", \"answer\"}}")
        name, answer = record["benchmark"], record["answer"]
        if name not in out:
            raise MixtureError(f"{where}: benchmark {name!r} is not being evaluated",
                               hint=f"add --bench {name}=DIR" if name in KINDS else f"known: {', '.join(KINDS)}")
        if not isinstance(answer, str):
            raise MixtureError(f"{where}: answer is {answer!r}, expected a string")
        qid = str(record["question_id"])
        qid = f"{record['split']}/{qid}" if "split" in record else qid
        if qid in ids[name]:
            out[name][qid] = answer
        elif not limited:
            raise MixtureError(f"{where}: {name} has no question {qid!r}",
                               hint="question ids are the official ones (POPE: SPLIT/ID or a \"split\" field)")
    return out


def score(benchmarks: dict[str, list[Question]], answers: dict[str, dict[str, str]]) -> tuple[dict[str, Any],
                                                                                             list[dict[str, Any]]]:
    """``results.json``'s content and the per-question rows of ``answers.jsonl``."""
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name, questions in benchmarks.items():
        done = [q for q in questions if q.question_id in answers[name]]
        preds = [answers[name][q.question_id] for q in done]
        if name == "pope":
            metrics, scores = score_pope([q.answers[0] for q in done], preds)
            metrics["splits"] = {s: score_pope([q.answers[0] for q in done if q.split == s],
                                               [p for q, p in zip(done, preds) if q.split == s])[0]
                                 for s in sorted({q.split for q in done})}
        else:
            metrics, scores = score_answers(name, [q.answers for q in done], preds)
        metrics["missing"] = len(questions) - len(done)
        results[name] = metrics
        rows += [{"benchmark": name, "question_id": q.question_id, "answer": p, "score": s}
                 for q, p, s in zip(done, preds, scores)]
    return {"benchmarks": results, "average": average(results)}, rows


class Progress:
    """One stderr line per batch: answered / total, rate, ETA."""

    def __init__(self, name: str, total: int, write: Callable[[str], None]) -> None:
        self.name, self.total, self.write = name, total, write
        self.done, self.start = 0, time.monotonic()

    def step(self, count: int) -> None:
        """Count ``count`` more answers and report."""
        self.done += count
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0.0
        self.write(f"{self.name}: {self.done}/{self.total} answered, {rate:.1f} q/s, ETA {eta:.0f} s")


def _generate(model_dir: Path, benchmarks: dict[str, list[Question]], store: AnswerStore, options: dict[str, Any],
              write: Callable[[str], None]) -> None:
    todo = {name: [q for q in qs if q.question_id not in store.answers[name]] for name, qs in benchmarks.items()}
    for name, questions in todo.items():
        lost = missing_images(questions)
        if lost:
            raise MixtureError(f"benchmark {name}: {len(lost)} image(s) missing, e.g. {lost[0].image} "
                               f"(question {lost[0].question_id})", hint="see docs/evaluation.md for the layout")
    if not any(todo.values()):
        return
    from trainer.evaluation.generate import Generator

    generator = Generator(model_dir, device=options["device"], max_new_tokens=options["max_new_tokens"],
                          suffix=options["suffix"])
    size = options["batch_size"]
    for name, questions in todo.items():
        progress = Progress(name, len(questions), write)
        for start in range(0, len(questions), size):
            batch = questions[start:start + size]
            store.append(name, {q.question_id: a for q, a in zip(batch, generator.answer(batch))})
            progress.step(len(batch))


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """``OUT/settings.json`` names the model and prompt the journaled answers came from; a resume with
    others would mix answers of two models, so it is refused."""
    path = out_dir / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            changed = ", ".join(f"{k} {before.get(k)!r} -> {v!r}" for k, v in settings.items() if before.get(k) != v)
            raise MixtureError(f"{out_dir} holds answers of another evaluation ({changed})",
                               hint="use another -o, or delete that directory to start over")
    write_atomic(path, json.dumps(settings, indent=1) + "\n")


def evaluate(model: str | None, specs: Sequence[str], out: str | Path, *, predictions: str | None = None,
             images: str | None = None, limit: int | None = None, batch_size: int = 8, max_new_tokens: int = 16,
             device: str | None = None, suffix: str = "", config: str | None = None,
             write: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, Any]:
    """Evaluate a model (or score a predictions file) on the given benchmarks; returns ``results.json``.

    Args:
        model: An export directory or a run directory (``None`` with ``predictions``).
        specs: ``NAME=DIR`` per benchmark.
        out: Output directory (``results.json``, ``answers.jsonl``).
        predictions: A JSONL of answers made elsewhere (no model is run).
        images: POPE's image folder, if not ``DIR/val2014``.
        limit: Questions per benchmark.
        batch_size, max_new_tokens, device, suffix: Generation settings (:class:`.generate.Generator`).
        config: The run config, to evaluate a run directory that has a checkpoint but no export.
        write: Where progress lines go.
    """
    from trainer.evaluation.models import resolve_model

    if (model is None) == (predictions is None):
        raise MixtureError("give a MODEL or --predictions PRED.jsonl (one of the two)")
    benchmarks = load_benchmarks(specs, images=images, limit=limit)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = AnswerStore(out_dir / "answers.jsonl", benchmarks)
    if store.dropped:
        write(f"{store.path}: dropped {store.dropped} unreadable line(s); those questions are answered again")
    if predictions is not None:
        for name, answers in read_predictions(Path(predictions), benchmarks, limit is not None).items():
            store.answers[name] = answers
        source: dict[str, Any] = {"predictions": str(Path(predictions).resolve())}
    else:
        model_dir = resolve_model(Path(model or ""), out_dir, config)
        source = {"model": str(model_dir.resolve()), "max_new_tokens": max_new_tokens, "suffix": suffix}
        _check_settings(out_dir, source)
        options = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "device": device, "suffix": suffix}
        _generate(model_dir, benchmarks, store, options, write)
    results, rows = score(benchmarks, store.answers)
    results.update(source, limit=limit)
    write_atomic(out_dir / "answers.jsonl", "".join([*(json.dumps(r) + "\n" for r in rows),
                                                     *(line + "\n" for line in store.other_lines)]))
    write_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return results


def evaluate_sweep(sweep_dir: str | Path, specs: Sequence[str], out: str | Path, **options: Any) -> dict[str, Any]:
    """Evaluate every finished variant of a sweep: ``OUT/<run>/`` per run, and a copy of its
    ``results.json`` as ``RUN_DIR/benchmarks.json`` for ``mixture compare``. Returns run -> results."""
    from mixture.run_dir import read_info
    from trainer.sweep.status import result_dirs, sweep_status

    runs = result_dirs(sweep_status(sweep_dir))
    if not runs:
        raise MixtureError(f"{sweep_dir}: no finished variant to evaluate", hint="see `mixture sweep status`")
    out_dir, done = Path(out), {}
    for run in map(Path, runs):
        model = Path(read_info(run).trained_in or run)  # a variant served by another variant's run
        results = evaluate(str(model), specs, out_dir / run.name, **options)
        write_atomic(run / "benchmarks.json", json.dumps(results, indent=1) + "\n")
        done[run.name] = results
    return done
