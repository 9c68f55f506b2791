"""Procedural shape scenes for the demo: images, captions, VQA questions and instruction conversations.

A scene is 1-3 shapes, each with a shape, a colour, a size and a position, drawn without anti-aliasing on a
black square (32 px by default, so a tiny vision encoder with 8-px patches sees 16 visual tokens). Within a
scene the shapes, colours and positions are all different, so every question about a scene has exactly one
answer ("What color is the circle?" names one circle). Positions are five fixed anchors (left, right, top,
bottom, center) and sizes two half-extents (7% and 14% of the side: 5 and 9 px across at 32 px); anchors are
a large shape's width + 2 px apart, so no two shapes overlap at any image size from MIN_IMAGE_SIZE up and
the pixel at each shape's anchor has that shape's colour, which the tests check.

Everything is a pure function of (seed, split, index): each scene, its wording and its questions come from
random streams named by their role (``demo-scene:...``, ``demo-caption:...``), so a scaled-down demo's
scenes are the first scenes of the full one, and rerunning gives the same bytes.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25), "green": (30, 180, 40), "blue": (40, 70, 235),
    "yellow": (240, 220, 30), "purple": (150, 40, 200), "orange": (245, 130, 20),
}
POSITIONS: dict[str, tuple[int, int]] = {  # anchor direction (x, y) from the image's centre
    "left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0),
}
SIZES: dict[str, float] = {"small": 0.07, "large": 0.14}  # half-extent as a fraction of the side (rounded down)
BACKGROUND = (0, 0, 0)
MIN_IMAGE_SIZE = 24  # below it the five anchors no longer fit apart
MAX_SHAPES = 3

_POSITION_PHRASES = {
    "left": ("on the left", "on the left side"), "right": ("on the right", "on the right side"),
    "top": ("at the top", "near the top"), "bottom": ("at the bottom", "near the bottom"),
    "center": ("in the center", "in the middle"),
}
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_CAPTION_TEMPLATES = ("{objects}.", "A picture of {objects}.", "An image showing {objects}.",
                      "There is {objects}.", "{count} on a black background: {objects}.")
# Synonyms an answer may also be given as (VQAv2 style: each gets 3 of the 10 human answers, full credit).
ANSWER_SYNONYMS: dict[str, tuple[str, ...]] = {
    "1": ("one",), "2": ("two",), "3": ("three",), "center": ("middle",), "large": ("big",),
    "small": ("little",),
}
QUESTION_KINDS: tuple[str, ...] = ("color", "shape", "count", "position", "size", "yes_no")
NUM_VQA_ANSWERS = 10


@dataclass(frozen=True)
class Shape:
    """One shape of a scene (each field names a key of SHAPES, COLORS, SIZES, POSITIONS)."""

    shape: str
    color: str
    size: str
    position: str


@dataclass(frozen=True)
class Question:
    """A question about a scene with its one-word canonical answer and its kind (QUESTION_KINDS)."""

    kind: str
    question: str
    answer: str


def make_scene(seed: int, split: str, index: int) -> tuple[Shape, ...]:
    """The scene number ``index`` of ``split`` for ``seed``: 1-3 shapes, all attributes distinct but size."""
    rng = random.Random(f"demo-scene:{seed}:{split}:{index}")
    num_shapes = rng.randint(1, MAX_SHAPES)
    shapes = rng.sample(SHAPES, num_shapes)
    colors = rng.sample(sorted(COLORS), num_shapes)
    positions = rng.sample(sorted(POSITIONS), num_shapes)
    return tuple(Shape(s, c, rng.choice(sorted(SIZES)), p) for s, c, p in zip(shapes, colors, positions))


def anchor_pixel(shape: Shape, image_size: int) -> tuple[int, int]:
    """The (x, y) pixel at the shape's anchor, which always has the shape's colour."""
    dx, dy = POSITIONS[shape.position]
    # Anchors one large shape's width + 2 px apart: neighbours never touch, and they stay in the image.
    step = 2 * half_extent("large", image_size) + 2
    return image_size // 2 + dx * step, image_size // 2 + dy * step


def half_extent(size: str, image_size: int) -> int:
    """Half the width of a shape of ``size`` in pixels (at least 1)."""
    return max(1, int(SIZES[size] * image_size))


def draw_scene(scene: tuple[Shape, ...], image_size: int) -> bytes:
    """The scene as PNG bytes (RGB, ``image_size`` square, aliased edges: exact colours, stable bytes)."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene:
        x, y = anchor_pixel(shape, image_size)
        r = half_extent(shape.size, image_size)
        fill = COLORS[shape.color]
        if shape.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif shape.shape == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
        elif shape.shape == "triangle":
            draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
        else:  # diamond
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(scene: tuple[Shape, ...], seed: int, split: str, index: int) -> str:
    """A grammatical English description of every shape (size, colour, shape, position), wording varied.

    Example: "A picture of a large red circle on the left and a small blue square at the top."
    """
    rng = random.Random(f"demo-caption:{seed}:{split}:{index}")
    order = rng.sample(scene, len(scene))
    phrases = [f"a {rng.choice(_SIZE_WORDS[s.size])} {s.color} {s.shape} {rng.choice(_POSITION_PHRASES[s.position])}"
               for s in order]
    count = f"{_NUMBER_WORDS[len(scene)]} shape{'s' if len(scene) > 1 else ''}"
    text = rng.choice(_CAPTION_TEMPLATES).format(objects=_join(phrases), count=count)
    return text[0].upper() + text[1:]


def _ask(kind: str, scene: tuple[Shape, ...], rng: random.Random) -> Question:
    """One question of ``kind`` about ``scene`` (the target shape drawn from ``rng``)."""
    target = rng.choice(scene)
    if kind == "color":
        return Question(kind, f"What color is the {target.shape}?", target.color)
    if kind == "shape":
        form = rng.choice(("What shape is {c}?", "What is the shape of the {c} object?"))
        return Question(kind, form.format(c=target.color), target.shape)
    if kind == "count":
        return Question(kind, "How many shapes are there?", str(len(scene)))
    if kind == "position":
        return Question(kind, f"Where is the {target.shape}?", target.position)
    if kind == "size":
        return Question(kind, f"Is the {target.shape} small or large?", target.size)
    present = {(s.color, s.shape) for s in scene}
    if rng.random() < 0.5:  # yes/no, balanced: half about a shape that is there, half about one that is not
        return Question(kind, f"Is there a {target.color} {target.shape}?", "yes")
    absent = [(c, s) for c in sorted(COLORS) for s in SHAPES if (c, s) not in present]
    color, shape = rng.choice(absent)
    return Question(kind, f"Is there a {color} {shape}?", "no")


def questions(scene: tuple[Shape, ...], seed: int, split: str, index: int, num_questions: int) -> list[Question]:
    """``num_questions`` questions of different kinds about the scene (at most len(QUESTION_KINDS))."""
    rng = random.Random(f"demo-questions:{seed}:{split}:{index}")
    kinds = rng.sample(QUESTION_KINDS, min(num_questions, len(QUESTION_KINDS)))
    return [_ask(kind, scene, rng) for kind in kinds]


def vqa_answers(answer: str) -> list[str]:
    """Ten VQAv2-style human answers: the canonical answer, and each synonym three times (full credit)."""
    synonyms = ANSWER_SYNONYMS.get(answer, ())
    answers = [answer] * (NUM_VQA_ANSWERS - 3 * len(synonyms))
    for synonym in synonyms:
        answers += [synonym] * 3
    return answers
