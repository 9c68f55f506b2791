"""A tiny study on real ingested data: text, image-caption and instruction sources made with the ingest
commands, a mixture in the paper's shape (text, then an image cooldown, then fine-tuning), and run configs."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from mixture.cli import main as cli

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
WORDS = "the a model of images and text learns to see colour shape mixture schedule token order".split()


def _png(colour: str, seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (32, 32), (255, 255, 255))
    x, y = rng.randrange(0, 16), rng.randrange(0, 16)
    img.paste(COLOURS[colour], (x, y, x + 16, y + 16))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def make_raw(root: Path, num_docs: int = 120, num_images: int = 48, num_chats: int = 24) -> dict[str, Path]:
    """Raw text JSONL, an image folder with .txt captions, a LLaVA JSON, a VQA JSONL (held out)."""
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(20, 80))) for _ in range(num_docs)]
    (root / "text.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    images = root / "images"
    images.mkdir(exist_ok=True)
    colours = sorted(COLOURS)
    for i in range(num_images):
        colour = colours[i % len(colours)]
        (images / f"{i:04d}.png").write_bytes(_png(colour, i))
        (images / f"{i:04d}.txt").write_text(f"a {colour} square")
    chats = [{"id": str(i), "image": f"{i:04d}.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat color is the square?"},
        {"from": "gpt", "value": colours[i % len(colours)]}]} for i in range(num_chats)]
    (root / "chat.json").write_text(json.dumps(chats))
    vqa = [{"image": f"images/{i:04d}.png", "question": "What color is the square?",
            "answers": [colours[i % len(colours)]]} for i in range(8)]
    (root / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vqa))
    return {"text": root / "text.jsonl", "images": images, "chat": root / "chat.json", "vqa": root / "vqa.jsonl"}


def ingest(raw: dict[str, Path], data: Path, seq_len: int = 64, visual_tokens: int = 16) -> None:
    """The three sources, through the same commands a user runs."""
    common = ["--tokenizer", "bytes"]
    assert cli(["ingest", "text", str(raw["text"]), "-o", str(data / "text"), "--seq-len", str(seq_len),
                *common]) == 0
    assert cli(["ingest", "image-caption", "--images", str(raw["images"]), "-o", str(data / "images"),
                "--visual-tokens", str(visual_tokens), *common]) == 0
    assert cli(["ingest", "instruction", str(raw["chat"]), "--image-root", str(raw["images"]), "-o",
                str(data / "instruct"), "--visual-tokens", str(visual_tokens), *common]) == 0


def mixture(data: Path, *, seed: int = 7, cooldown_images: float = 0.3, text_batches: int = 6,
            batch: int = 8) -> dict[str, Any]:
    """The paper's shape in miniature: text, then text + images (token share), then fine-tuning."""
    return {
        "name": "tiny-study", "seed": seed,
        "run": {"seq_len": 64, "global_batch_size": batch,
                "lr": {"peak": 3e-3, "warmup": "2ba", "schedule": "cosine", "plan": f"{text_batches + 4}ba"}},
        "sources": {
            "text": {"kind": "text", "location": str(data / "text")},
            "images": {"kind": "image_caption", "location": str(data / "images"), "visual_tokens_per_image": 16},
            "instruct": {"kind": "instruction", "location": str(data / "instruct"), "visual_tokens_per_image": 16},
        },
        "phases": [
            {"name": "text", "duration": f"{text_batches}ba", "mix": {"text": 1}},
            {"name": "cooldown", "duration": "4ba", "mix": {"text": 1 - cooldown_images, "images": cooldown_images},
             "lr": {"cooldown": {"to": 0}}},
            {"name": "finetune", "duration": "2ba", "mix": {"instruct": 1},
             "lr": {"rewarm": {"warmup": "1ba", "peak": 1e-3}}},
        ],
    }


def compile_to(spec: dict[str, Any], path: Path, out: Path) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert cli(["compile", str(path), "-o", str(out)]) == 0
    return out


def run_config(path: Path, schedule: Path, run_dir: Path, **extra: Any) -> Path:
    """A run config for the tiny model (fp32, CPU), evaluating held-out text and VQA at the end."""
    config = {"schedule": str(schedule), "run_dir": str(run_dir), "seed": 3,
              "model": {"lm": {"preset": "tiny"}, "vision": {"preset": "tiny"}},
              "loggers": {"console": False}, **extra}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Train lines of a run's metrics.jsonl."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [x for x in lines if "loss/train" in x]
