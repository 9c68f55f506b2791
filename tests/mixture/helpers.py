"""Small mixture files and compiled schedules for the compiler's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from mixture.api import compile_variant, variants
from mixture.schedule import Schedule


def spec_text(phases: list[dict], sources: dict | None = None, seed: int = 7, batch: int = 8,
              **extra: object) -> str:
    """YAML of a mixture file with declared sources (defaults: text, images, instructions)."""
    sources = sources or {
        "web": {"kind": "text", "declared": {"samples": 5000, "tokens_per_sample": 256}},
        "img": {"kind": "image_caption", "visual_tokens_per_image": 64,
                "declared": {"samples": 3000, "caption_tokens": {"mean": 20, "std": 8, "min": 2, "max": 60}}},
        "chat": {"kind": "instruction", "declared": {"samples": 700, "images_per_sample": 0,
                                                      "tokens_per_sample": {"mean": 150, "std": 60, "min": 10}}},
    }
    doc = {"name": "t", "seed": seed, "run": {"seq_len": 256, "global_batch_size": batch},
           "sources": sources, "phases": phases, **extra}
    return yaml.safe_dump(doc, sort_keys=False)


def compile_text(text: str, tmp_path: Path, name: str = "spec") -> Schedule:
    """Write ``text`` to a file, compile it, return the schedule."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    (variant,) = variants(path)
    return compile_variant(variant, tmp_path / f"{name}.out")


def full_order(schedule: Schedule) -> tuple[np.ndarray, np.ndarray]:
    """(source ids, sample ids) of every position."""
    return schedule.take(0, len(schedule))
