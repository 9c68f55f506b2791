"""Evaluation during training: held-out loss per source, and VQA-style accuracy by generation.

Both run on every rank in lockstep: each rank takes every W-th item and pads its share to the same
length (padding is evaluated and weighted 0), so that FSDP's collectives line up; sums are all-reduced.
Generation is greedy for a fixed number of steps on every rank (tokens after EOS are ignored), for the
same reason. VQA answers are scored with the official VQA normalisation (:mod:`trainer.vqa_score`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from mixture.errors import MixtureError
from mixture.faults import kill_point
from mixture.run_dir import Baseline, Results
from trainer.batch import Collator
from trainer.metrics import RunLog, all_reduce_sum
from trainer.vqa_score import vqa_accuracy

def _rank_share(num_items: int) -> tuple[list[int], list[float]]:
    """This rank's item indexes, padded to the common length, and their weights (0 for padding)."""
    rank, world = dist.get_global_rank(), dist.get_world_size()
    per_rank = math.ceil(num_items / world)
    mine = list(range(rank, num_items, world))
    weights = [1.0] * len(mine) + [0.0] * (per_rank - len(mine))
    return mine + [0] * (per_rank - len(mine)), weights


class HeldOutSet:
    """The first ``samples`` rows of a held-out MDS dataset, read with Streaming's ``LocalDataset``."""

    def __init__(self, name: str, location: str, samples: int, collator_args: dict[str, Any]) -> None:
        from streaming import LocalDataset

        from mixture.sources import read_sample_index

        if not Path(location, "index.json").exists():
            raise MixtureError(f"held-out set {name!r}: no MDS dataset at {location}",
                               hint="ingest it with `mixture ingest` (the same command as the training data)")
        self.name = name
        self.dataset = LocalDataset(local=location)
        kind = read_sample_index(location).kind
        self.collator = Collator([kind], None, **collator_args)
        self.num_items = min(samples, len(self.dataset))

    def loss(self, model: Any, batch_size: int) -> float:
        """Mean token loss over the set (all ranks together)."""
        items, weights = _rank_share(self.num_items)
        total, count = 0.0, 0.0
        for start in range(0, len(items), batch_size):
            batch = self.collator([{**self.dataset[i], "source_id": 0} for i in items[start:start + batch_size]])
            weight = torch.tensor(weights[start:start + batch_size], dtype=torch.float64)
            batch = {k: v.to(_device(model)) for k, v in batch.items()}
            losses, mask = model.token_losses(model(batch), batch["labels"])
            total += float((losses.sum(1).double().cpu() * weight).sum())
            count += float((mask.sum(1).double().cpu() * weight).sum())
        total, count = all_reduce_sum([total, count])
        return total / max(count, 1.0)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


class VQASet:
    """A JSONL of ``{image, question, answers}``; answers are generated greedily after the chat template."""

    def __init__(self, file: str, questions: int | None, max_new_tokens: int, tokenizer: Any,
                 collator: Collator) -> None:
        path = Path(file)
        if not path.exists():
            raise MixtureError(f"VQA file {file} does not exist", hint="point eval.vqa.file at a JSONL file")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        bad = [i + 1 for i, r in enumerate(rows) if not {"image", "question", "answers"} <= set(r)]
        if bad:
            raise MixtureError(f"{file}: lines {bad[:5]} lack image, question or answers")
        self.rows = rows[:questions] if questions else rows
        self.root = path.parent
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.collator = collator

    def prompt(self, question: str) -> np.ndarray:
        """Visual tokens + the ingest's chat template up to the answer (pieces tokenised separately, as
        the instruction ingest does)."""
        pieces = self.tokenizer.encode_batch([f"User: {question}\n", "Assistant: "])
        prefix = np.full(self.collator.visual_tokens, self.collator.vocab.image_token_id, np.int64)
        return np.concatenate([prefix, *[p.astype(np.int64) for p in pieces]])

    def accuracy(self, model: Any, batch_size: int) -> tuple[float, int]:
        """Mean VQA accuracy over the questions (all ranks together) and the number of questions."""
        items, weights = _rank_share(len(self.rows))
        total = 0.0
        for start in range(0, len(items), batch_size):
            rows = [self.rows[i] for i in items[start:start + batch_size]]
            answers = self.generate(model, rows)
            total += sum(w * vqa_accuracy(a, r["answers"])
                         for a, r, w in zip(answers, rows, weights[start:start + batch_size]))
        (total,) = all_reduce_sum([total])
        return total / max(len(self.rows), 1), len(self.rows)

    def generate(self, model: Any, rows: list[dict[str, Any]]) -> list[str]:
        """Greedy answers for a batch of questions (fixed step count on every rank)."""
        prompts = [self.prompt(r["question"]) for r in rows]
        lengths = torch.tensor([len(p) for p in prompts])
        width = int(lengths.max()) + self.max_new_tokens
        ids = torch.full((len(rows), width), self.collator.vocab.eos_id, dtype=torch.int64)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.from_numpy(p)
        pixels = torch.from_numpy(np.stack([self.collator.pixels((self.root / r["image"]).read_bytes())
                                            for r in rows]))
        device = _device(model)
        ids, pixels, has_image = ids.to(device), pixels.to(device), torch.ones(len(rows), dtype=torch.bool).to(device)
        out: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        for _ in range(self.max_new_tokens):
            mask = (torch.arange(width)[None, :] < lengths[:, None]).long().to(device)
            logits = model.logits(ids, mask, pixels, has_image)
            nxt = logits[torch.arange(len(rows)), (lengths - 1).to(device)].argmax(-1).cpu()
            for i, token in enumerate(nxt.tolist()):
                done[i] = done[i] or token == self.collator.vocab.eos_id
                if not done[i]:
                    out[i].append(token)
            ids[torch.arange(len(rows)), lengths.to(device)] = nxt.to(device)
            lengths = lengths + 1
        return [self.tokenizer.decode(o).strip() for o in out]


class Evaluation(Callback):
    """Evaluates every ``interval`` batches and at the end of training; logs ``eval/...`` metrics.

    Args:
        heldout: Held-out sets.
        vqa: The VQA set, if any.
        batch_size: Per-rank evaluation batch size.
        interval: Batches between evaluations (``None``: only at the end).
        run_log: Writes the metrics to ``metrics.jsonl`` and the final ones to ``results.json``.
        baselines: What the final scores are read against (:mod:`trainer.baselines`), by score name;
            written to ``results.json`` beside the scores.
    """

    def __init__(self, heldout: list[HeldOutSet], vqa: VQASet | None, batch_size: int, interval: int | None,
                 run_log: RunLog, baselines: dict[str, Baseline] | None = None) -> None:
        self.heldout, self.vqa, self.batch_size = heldout, vqa, batch_size
        self.interval, self.run_log = interval, run_log
        self.baselines = baselines or {}
        self.last: dict[str, float] = {}

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval and int(state.timestamp.batch) % self.interval == 0:
            self.evaluate(state, logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        kill_point("before_final_eval")  # test-only (mixture.faults): a crash after the final checkpoint
        batch = int(state.timestamp.batch)
        if not self.last or self.last.get("batch") != batch:
            self.evaluate(state, logger)
        scores = {k: v for k, v in self.last.items() if k != "batch"}
        self.run_log.results(Results(batch, scores, {k: b for k, b in self.baselines.items() if k in scores}))

    def evaluate(self, state: State, logger: Logger) -> dict[str, float]:
        """Run every evaluation now; returns and logs the metrics."""
        if not self.heldout and self.vqa is None:
            return {}
        model = state.model
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        with torch.no_grad():
            for item in self.heldout:
                metrics[f"eval/loss/{item.name}"] = item.loss(model, self.batch_size)
            if self.vqa is not None:
                accuracy, count = self.vqa.accuracy(model, self.batch_size)
                metrics["eval/vqa/accuracy"], metrics["eval/vqa/num_questions"] = accuracy, count
        model.train(was_training)
        logger.log_metrics(metrics)
        self.last = {"batch": int(state.timestamp.batch), **metrics}
        self.run_log.append(dict(self.last))
        return metrics
