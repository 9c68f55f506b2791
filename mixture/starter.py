"""``mixture init [DIR]``: a commented starter mixture file and run config that validate and compile as written.

The mixture file declares its sources by size (``declared:``), so ``mixture validate`` and
``mixture compile`` work before any data exists; its comments say how to ingest real data and point the
sources at it. The run config trains the tiny model on the compiled schedule once the sources have data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mixture.errors import MixtureError

MIXTURE_FILE = """\
# A starter mixture in the shape of the paper's recipe (docs/study.md): text pre-training, an image-text
# cooldown, instruction fine-tuning. Written by `mixture init`; every number is a placeholder to change.
#   mixture validate mixture.yaml          # schema, units, references, mixes (all problems at once)
#   mixture compile mixture.yaml -o schedule && mixture explain schedule
# The DSL: docs/dsl.md. Units: `2M tok`, `80%` of a reference, `500ba` (batches), `1 ep` (epochs).
name: starter
seed: 7                                   # the order is a pure function of this seed and the file
references:
  text_plan: 4M tok                       # the text pre-training the LR plan is laid out over
run:
  seq_len: 512                            # tokens per packed sequence
  global_batch_size: 16                   # sequences per optimizer step, summed over ranks
  lr: {peak: 3e-3, warmup: 20ba, schedule: cosine, plan: 100% of text_plan}
sources:
  # Declared by size so this file compiles before data exists. With real data, ingest it and replace
  # `declared:` by `location:` (relative to this file), e.g.
  #   mixture ingest text 'corpus/*.jsonl' -o data/text --tokenizer bytes --seq-len 512
  #   -> text: {kind: text, location: data/text}
  text:
    kind: text
    declared: {samples: 20k, tokens_per_sample: 512}
  images:
    kind: image_caption                   # mixture ingest image-caption --images photos/ -o data/images ...
    visual_tokens_per_image: 16           # what the vision encoder makes per image (tiny preset: 16)
    declared: {samples: 5k, caption_tokens: {mean: 12, std: 4, min: 3, max: 40}}
  instruct:
    kind: instruction                     # mixture ingest instruction chat.json --image-root photos/ ...
    visual_tokens_per_image: 16
    declared: {samples: 1k, tokens_per_sample: {mean: 120, std: 40, min: 16, max: 496}}
phases:
  - name: text                            # text only, up to 80% of the plan
    end: 80% of text_plan
    mix: {text: 1}
  - name: cooldown                        # images enter: 10% of the tokens, the LR decays to 0
    duration: 400k tok
    mix: {text: 0.9, images: 0.1}
    lr: {cooldown: {to: 0}}
  - name: finetune                        # one pass over the conversations, re-warmed LR
    duration: 1 ep
    mix: {instruct: 1}
    lr: {rewarm: {warmup: 10%, peak: 1e-4}}
"""

RUN_FILE = """\
# How to train on the schedule (docs/training.md, docs/run_config.md). Written by `mixture init`.
# Needs sources with data (`location:` in mixture.yaml), then:
#   mixture train run.yaml                       # one process
#   composer -n 2 -m mixture train run.yaml      # two ranks, FSDP2
schedule: mixture.yaml                    # a mixture file (compiled into run_dir/schedule) or a schedule dir
run_dir: runs/starter                     # run.json, metrics.jsonl, results.json, checkpoints/, export/
seed: 3
model:
  lm: {preset: tiny}                      # Llama-shaped decoder: tiny, 79m or 1b
  vision: {preset: tiny}                  # 32 px / patch 8 = 16 visual tokens per image (as priced above)
precision: fp32                           # amp_bf16 on GPUs
checkpoint:
  interval: 100ba
loggers:
  console: false                          # the progress line shows batches, tokens/s, ETA and the loss
  # tensorboard: {}                       # RUN_DIR/tensorboard
  # wandb: {project: starter, mode: offline}
  # mlflow: {tracking_uri: mlruns, experiment_name: starter}
"""


def write_starter(out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write ``mixture.yaml`` and ``run.yaml`` into ``out_dir``; returns their paths.

    Raises:
        MixtureError: If either file exists and ``force`` is false.
    """
    out = Path(out_dir)
    files = {out / "mixture.yaml": MIXTURE_FILE, out / "run.yaml": RUN_FILE}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise MixtureError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}",
                           hint="choose another directory, or pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def _init(args: argparse.Namespace) -> int:
    written = write_starter(args.dir, force=args.force)
    for path in written:
        print(f"wrote {path}")
    mix = written[0]
    print(f"next: mixture validate {mix} && mixture compile {mix} -o {mix.parent / 'schedule'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``init``."""
    p = subparsers.add_parser("init", help="write a commented starter mixture file and run config",
                              description="Write DIR/mixture.yaml (sources declared by size, so it validates "
                              "and compiles before data exists) and DIR/run.yaml (the tiny model), with "
                              "comments on what to change.")
    p.add_argument("dir", nargs="?", default=".", help="directory to write into (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=_init)
