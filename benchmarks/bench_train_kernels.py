"""Two training-step choices of the trainer, each against the way it replaced, side by side in one process.

- **Logits only where a label is predicted** (``VLM.label_logits_only``, which the trainer sets) against
  every position's logits: one forward + backward of the demo's model on three batches shaped like the
  demo's phases (built with the trainer's own Collator from synthetic samples of the demo's sizes):
  ``finetune`` (8 conversations: 16 visual tokens, ~85 prompt and answer tokens, 4 one-word answers),
  ``image phase`` (16 samples: 2/3 captions with their image, 1/3 text sequences of 128) and ``text``
  (16 text sequences of 128: every position holds a label, the case with the least to gain).
- **Fused AdamW** (what the trainer builds, on CPU too) against torch's default on CPU (a loop over the
  parameters): one optimizer step over the demo model's trained parameters.

Arms alternate A B A B within each round; medians over rounds; the ratio is old / new (above 1: the new way is
faster). The model is the demo's (Llama-shaped, 2 layers, hidden 128, intermediate 512, vocabulary 4,097,
tiny SigLIP-shaped encoder: 32 px, 16 visual tokens), fp32, one torch thread unless ``--threads``.

Usage: ``python benchmarks/bench_train_kernels.py [--rounds 5] [--steps 10] [--out DIR]``; prints a Markdown
table and writes ``train_kernels.json`` in ``--out`` (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
RESULTS = Path(__file__).resolve().parent / "results"
SEQ, VOCAB_SIZE = 128, 4096


def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _conversation(rng: np.random.Generator) -> dict:
    """A demo-sized instruction sample: ~85 tokens, four one-word answers (+ EOS) carry the loss."""
    ids, mask = [], []
    for _ in range(4):
        question = rng.integers(0, VOCAB_SIZE, int(rng.integers(14, 20)))
        ids += [*question, *rng.integers(0, VOCAB_SIZE, 2)]
        mask += [0] * len(question) + [1, 1]
    return {"input_ids": np.array(ids, np.int32), "loss_mask": np.array(mask, np.uint8), "image": _png(rng),
            "source_id": 2}


def batches() -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    text = [{"input_ids": rng.integers(0, VOCAB_SIZE, SEQ).astype(np.int32), "source_id": 0} for _ in range(16)]
    captions = [{"caption_ids": rng.integers(0, VOCAB_SIZE, 20).astype(np.int32), "image": _png(rng), "source_id": 1}
                for _ in range(11)]
    return {"finetune": [_conversation(rng) for _ in range(8)], "image phase": captions + text[:5], "text": text}


def build_model():  # noqa: ANN201 - a VLM
    import torch

    from trainer.batch import Vocab
    from trainer.config import ModelConfig
    from trainer.model import VLM, build_hf_model

    torch.manual_seed(0)
    config = ModelConfig(lm={"preset": "tiny", "config": {"hidden_size": 128, "intermediate_size": 512}},
                         vision={"preset": "tiny"}, feature_norm="channel")
    return VLM(build_hf_model(config, Vocab(VOCAB_SIZE + 1, VOCAB_SIZE), SEQ), 3, feature_norm=True)


def time_steps(fn, steps: int) -> float:  # noqa: ANN001 - a callable
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    from trainer.batch import Collator, Vocab

    torch.set_num_threads(args.threads)
    model = build_model().train()
    collator = Collator(["text", "image_caption", "instruction"], None, seq_len=SEQ,
                        vocab=Vocab(VOCAB_SIZE + 1, VOCAB_SIZE), visual_tokens=16, image_size=32, packing=True)
    collated = {name: collator(samples) for name, samples in batches().items()}
    rows = []
    for name, batch in collated.items():
        def step(batch: dict = batch) -> None:
            model.zero_grad()
            model.reset_source_stats()
            model.loss(model(batch), batch).backward()

        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for flag in (False, True):
                model.label_logits_only = flag
                times[flag].append(time_steps(step, args.steps))
        labels = int((batch["labels"][:, 1:] != -100).sum())
        rows.append({"case": f"forward + backward, {name}", "detail": f"{len(batch['labels'])} rows, {labels} labels",
                     "old_ms": 1e3 * statistics.median(times[False]), "new_ms": 1e3 * statistics.median(times[True])})
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizers = {fused: torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), fused=fused or None)
                  for fused in (False, True)}
    times = {False: [], True: []}
    for _ in range(args.rounds):
        for fused, optimizer in optimizers.items():
            times[fused].append(time_steps(optimizer.step, args.steps * 10))
    rows.append({"case": "AdamW step", "detail": f"{sum(p.numel() for p in params):,} parameters",
                 "old_ms": 1e3 * statistics.median(times[False]), "new_ms": 1e3 * statistics.median(times[True])})
    for row in rows:
        row["ratio"] = row["old_ms"] / row["new_ms"]
    print("| case | batch | before (ms) | now (ms) | before / now |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['detail']} | {row['old_ms']:.1f} | {row['new_ms']:.1f} | {row['ratio']:.2f}x |")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "load_average_1min": os.getloadavg()[0], "torch": torch.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_kernels.json").write_text(json.dumps({"machine": machine, "rounds": args.rounds,
                                                              "steps": args.steps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
