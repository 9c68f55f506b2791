"""`mixture eval` speed: the official VQA scorer on 200k VQAv2 predictions, and greedy generation on CPU.

scorer   200,000 questions in the official VQAv2 layout (10 human answers each, drawn from 3,000 answer
         strings with case, punctuation, article and number-word variants, so the normaliser's memo sees
         realistic repetition; 30% of questions with disagreeing annotators), predictions drawn the same way.
         Timed: ``score_answers`` alone in a fresh process (cold memo), and the whole
         ``mixture eval --predictions`` command (start-up, reading the layout and the predictions,
         scoring, writing results.json and answers.jsonl).
generate questions per second of :class:`trainer.evaluation.generate.Generator` (batched greedy, 8 new tokens)
         on randomly initialised exports of the ``tiny`` and ``79m`` language models with the tiny vision
         tower, at batch sizes 1 and 8.

Usage: .venv/bin/python benchmarks/bench_eval.py [--questions 200000] [--rounds 3] [--dir /tmp/bench-eval]
Results: a table on stdout and benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile_common import MIXTURE, PYTHON, median, run_process, table, write_json  # noqa: E402

_VARIANTS = ("{}", "{}.", "The {}", "{}!", "a {}", "{} ", "{}?")
_NUMBERS = ("zero one two three four five six seven eight nine ten".split())


def _answer(rng: random.Random, vocab: list[str]) -> str:
    base = vocab[min(int(rng.paretovariate(1.2)) - 1, len(vocab) - 1)]
    return rng.choice(_VARIANTS).format(base.upper() if rng.random() < 0.05 else base)


def make_layout(root: Path, questions: int) -> Path:
    """The official VQAv2 files and a predictions JSONL (no images: scoring needs none)."""
    rng = random.Random(0)
    vocab = ["yes", "no", *_NUMBERS, *(f"thing{i}" for i in range(2000)), *(f"red-{i} car" for i in range(500)),
             *(f"{i},{i % 1000:03d}" for i in range(1, 500))]
    qs, anns, preds = [], [], []
    for i in range(questions):
        common = _answer(rng, vocab)
        answers = [common] * 10 if rng.random() < 0.7 else [_answer(rng, vocab) for _ in range(10)]
        qs.append({"image_id": i, "question": "What is it?", "question_id": i})
        anns.append({"question_id": i, "image_id": i, "answers": [{"answer": a, "answer_confidence": "yes",
                                                                   "answer_id": j + 1} for j, a in enumerate(answers)]})
        preds.append({"benchmark": "vqav2", "question_id": i, "answer": _answer(rng, vocab)})
    root.mkdir(parents=True, exist_ok=True)
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": qs}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": anns}))
    (root / "pred.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return root


_SCORER = """
import json, sys, time
from trainer.evaluation.layouts import read_benchmark
from trainer.evaluation.scoring import score_answers
qs = read_benchmark("vqav2", sys.argv[1])
preds = {str(json.loads(l)["question_id"]): json.loads(l)["answer"] for l in open(sys.argv[1] + "/pred.jsonl")}
golds, answers = [q.answers for q in qs], [preds[q.question_id] for q in qs]
start, cpu = time.perf_counter(), time.process_time()
metrics, _ = score_answers("vqav2", golds, answers)
print(json.dumps({"score_s": time.perf_counter() - start, "score_cpu_s": time.process_time() - cpu}))
"""


def bench_scorer(root: Path, rounds: int) -> list[dict[str, object]]:
    rows = []
    for r in range(rounds):
        inner = run_process([PYTHON, "-c", _SCORER, str(root)])
        whole = run_process([MIXTURE, "eval", "--predictions", str(root / "pred.jsonl"), "--bench",
                             f"vqav2={root}", "-o", str(root / f"out{r}")])
        timed = json.loads(inner["stdout"].splitlines()[-1])
        rows.append({"round": r, "score_s": timed["score_s"], "score_cpu_s": timed["score_cpu_s"],
                     "cli_wall_s": whole["wall_s"], "cli_cpu_s": whole["cpu_s"], "cli_rss_mib": whole["max_rss_mib"]})
    return rows


def bench_generate(root: Path) -> list[dict[str, object]]:
    import torch
    from PIL import Image

    from trainer.batch import Vocab
    from trainer.config import ModelConfig
    from trainer.evaluation.generate import Generator
    from trainer.evaluation.layouts import Question
    from trainer.export import save_hf
    from trainer.model import build_hf_model

    torch.manual_seed(0)
    image = root / "img.jpg"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    rows = []
    for preset in ("tiny", "79m"):
        hf = build_hf_model(ModelConfig.model_validate({"lm": {"preset": preset}, "vision": {"preset": "tiny"}}),
                            Vocab(257, 256), 128)
        save_hf(hf.config, hf.state_dict(), root / f"export_{preset}", "bytes")
        gen = Generator(root / f"export_{preset}", device="cpu", max_new_tokens=8)
        for batch in (1, 8):
            qs = [Question(str(i), image, f"What color is square {i}?", ("red",)) for i in range(batch)]
            gen.answer(qs)  # warm-up
            start, cpu, n = time.perf_counter(), time.process_time(), 0
            while time.perf_counter() - start < 5.0:
                gen.answer(qs)
                n += batch
            rows.append({"lm": preset, "batch": batch, "questions_per_s": n / (time.perf_counter() - start),
                         "questions_per_cpu_s": n / (time.process_time() - cpu)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/bench-eval")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    root = Path(args.dir)
    if not (root / "pred.jsonl").is_file() or args.questions != 200_000:
        make_layout(root, args.questions)
    scorer = bench_scorer(root, args.rounds)
    print(table(scorer, ["round", "score_s", "score_cpu_s", "cli_wall_s", "cli_cpu_s", "cli_rss_mib"]))
    summary = {"questions": args.questions, **{f"{k}_median": median([r[k] for r in scorer])
                                               for k in ("score_s", "score_cpu_s", "cli_wall_s", "cli_cpu_s")}}
    generate = [] if args.skip_generate else bench_generate(root)
    if generate:
        print(table(generate, ["lm", "batch", "questions_per_s", "questions_per_cpu_s"]))
    print(write_json("eval", {"scorer": scorer, "summary": summary, "generate_cpu": generate}))


if __name__ == "__main__":
    main()
