"""Tiny benchmarks in the official layouts: coloured squares on white, questions about the colour."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
NAMES = sorted(COLOURS)
QUESTION = "What color is the square?"


def _jpg(path: Path, colour: str, offset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (32, 32), (255, 255, 255))
    img.paste(COLOURS[colour], (offset, offset, offset + 16, offset + 16))
    img.save(path, format="JPEG", quality=95)


def _ten(colour: str, i: int) -> list[str]:
    """Ten human answers: mostly the colour, some disagreement."""
    return [colour] * (7 + i % 3) + ["white"] * (3 - i % 3)


def write_vqav2(root: Path, n: int = 4) -> Path:
    questions, annotations = [], []
    for i in range(n):
        colour, image_id = NAMES[i % 4], 1000 + i
        _jpg(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", colour, i)
        questions.append({"image_id": image_id, "question": QUESTION, "question_id": image_id * 10})
        annotations.append({"question_id": image_id * 10, "image_id": image_id, "answer_type": "other",
                            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                        for j, a in enumerate(_ten(colour, i))]})
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": questions}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root


def write_textvqa(root: Path, n: int = 4) -> Path:
    data = []
    for i in range(n):
        colour = NAMES[i % 4]
        _jpg(root / "train_images" / f"img{i:03d}.jpg", colour, i)
        data.append({"question_id": 500 + i, "image_id": f"img{i:03d}", "question": QUESTION,
                     "answers": _ten(colour, i)})
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_type": "val", "data": data}))
    return root


def write_gqa(root: Path, n: int = 4) -> Path:
    data = {}
    for i in range(n):
        colour = NAMES[i % 4]
        _jpg(root / "images" / f"n{i}.jpg", colour, i)
        data[f"20{i:05d}"] = {"imageId": f"n{i}", "question": QUESTION, "answer": colour}
    (root / "testdev_balanced_questions.json").write_text(json.dumps(data))
    return root


def write_pope(root: Path, n: int = 4) -> Path:
    for split in ("random", "adversarial"):
        lines = []
        for i in range(n):
            colour, asked = NAMES[i % 4], NAMES[(i + (i % 2)) % 4]
            name = f"COCO_val2014_{2000 + i:012d}.jpg"
            _jpg(root / "val2014" / name, colour, i)
            lines.append(json.dumps({"question_id": i + 1, "image": name, "label": "yes" if asked == colour else "no",
                                     "text": f"Is there a {asked} square in the image?"}))
        (root / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    return root


def write_vizwiz(root: Path, n: int = 4) -> Path:
    data = []
    for i in range(n):
        colour = NAMES[i % 4]
        name = f"VizWiz_val_{i:08d}.jpg"
        _jpg(root / "val" / name, colour, i)
        answers = _ten(colour, i) if i else ["unanswerable"] * 10
        data.append({"image": name, "question": QUESTION, "answerable": int(bool(i)),
                     "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers]})
    (root / "val.json").write_text(json.dumps(data))
    return root


WRITERS = {"vqav2": write_vqav2, "textvqa": write_textvqa, "gqa": write_gqa, "pope": write_pope,
           "vizwiz": write_vizwiz}


def write_all(root: Path, n: int = 4) -> dict[str, Path]:
    """Every benchmark under ``root/NAME``; returns name -> directory."""
    return {name: write(root / name, n) for name, write in WRITERS.items()}
