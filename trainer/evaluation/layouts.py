"""Readers of the benchmarks' official file layouts (docs/evaluation.md gives where to get each).

========  =====================================================  ==========================================
name      files in DIR                                           images
========  =====================================================  ==========================================
vqav2     ``v2_OpenEnded_mscoco_val2014_questions.json``,        ``val2014/COCO_val2014_%012d.jpg``
          ``v2_mscoco_val2014_annotations.json``
textvqa   ``TextVQA_0.5.1_val.json``                             ``train_images/{image_id}.jpg``
gqa       ``testdev_balanced_questions.json``                    ``images/{imageId}.jpg``
pope      ``coco_pope_{random,popular,adversarial}.json``        the records' ``image`` in ``--images`` or
          (JSON lines; at least one of the three)                ``val2014/`` beside them
vizwiz    ``val.json``                                           ``val/{image}`` (question id = image name)
========  =====================================================  ==========================================

Every problem is one :class:`~mixture.errors.MixtureError` line naming the file and the record. Images are
not opened here (scoring predictions made elsewhere needs none); :func:`missing_images` checks them before
generation. POPE's question ids repeat across its three files, so its ids are ``SPLIT/ID``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError

POPE_SPLITS = ("random", "popular", "adversarial")


@dataclass(frozen=True)
class Question:
    """One benchmark question.

    Attributes:
        question_id: The official id as a string (POPE: ``SPLIT/ID``).
        image: The image file.
        question: The question text.
        answers: The human answers (GQA: the one answer; POPE: the label ``yes``/``no``).
        split: POPE's split (``random``, ``popular``, ``adversarial``), else ``""``.
    """

    question_id: str
    image: Path
    question: str
    answers: tuple[str, ...]
    split: str = ""


def _load_json(path: Path, kind: type = dict, what: str = "a JSON object") -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (``what`` names it in the error)."""
    if not path.is_file():
        raise MixtureError(f"{path}: missing", hint=f"the benchmark directory needs {path.name} (docs/evaluation.md)")
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MixtureError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, kind):
        raise MixtureError(f"{path}: expected {what}, got {type(data).__name__}")
    return data


def _field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, dict):
        raise MixtureError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise MixtureError(f"{where}: missing {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MixtureError(f"{where}: {key!r} is {value!r}, expected {getattr(kind, '__name__', 'a string or number')}")
    return value


def _answer_list(record: Any, where: str) -> tuple[str, ...]:
    answers = _field(record, "answers", list, where)
    out = []
    for j, item in enumerate(answers):
        text = item.get("answer") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise MixtureError(f"{where}: answers[{j}] has no answer text")
        out.append(text)
    if not out:
        raise MixtureError(f"{where}: no human answers")
    return tuple(out)


def read_vqav2(root: Path) -> list[Question]:
    """VQAv2 val: questions joined with their annotations by question id."""
    qfile, afile = root / "v2_OpenEnded_mscoco_val2014_questions.json", root / "v2_mscoco_val2014_annotations.json"
    questions = _field(_load_json(qfile), "questions", list, str(qfile))
    annotations = _field(_load_json(afile), "annotations", list, str(afile))
    answers = {}
    for i, record in enumerate(annotations):
        where = f"{afile}: annotations[{i}]"
        answers[_field(record, "question_id", int, where)] = _answer_list(record, where)
    out = []
    for i, record in enumerate(questions):
        where = f"{qfile}: questions[{i}]"
        qid = _field(record, "question_id", int, where)
        if qid not in answers:
            raise MixtureError(f"{where}: question_id {qid} has no annotation in {afile.name}")
        image = root / "val2014" / f"COCO_val2014_{_field(record, 'image_id', int, where):012d}.jpg"
        out.append(Question(str(qid), image, _field(record, "question", str, where), answers[qid]))
    return out


def read_textvqa(root: Path) -> list[Question]:
    """TextVQA 0.5.1 val."""
    path = root / "TextVQA_0.5.1_val.json"
    out = []
    for i, record in enumerate(_field(_load_json(path), "data", list, str(path))):
        where = f"{path}: data[{i}]"
        qid = _field(record, "question_id", (int, str), where)
        image = root / "train_images" / f"{_field(record, 'image_id', str, where)}.jpg"
        out.append(Question(str(qid), image, _field(record, "question", str, where), _answer_list(record, where)))
    return out


def read_gqa(root: Path) -> list[Question]:
    """GQA test-dev balanced (a JSON object keyed by question id)."""
    path = root / "testdev_balanced_questions.json"
    data = _load_json(path, dict, "an object keyed by question id")
    out = []
    for qid, record in data.items():
        where = f"{path}: question {qid}"
        image = root / "images" / f"{_field(record, 'imageId', str, where)}.jpg"
        out.append(Question(str(qid), image, _field(record, "question", str, where),
                            (_field(record, "answer", str, where),)))
    return out


def read_pope(root: Path, images: Path | None = None) -> list[Question]:
    """POPE (COCO): the splits present, each a JSON-lines file."""
    files = [(s, root / f"coco_pope_{s}.json") for s in POPE_SPLITS]
    present = [(s, f) for s, f in files if f.is_file()]
    if not present:
        raise MixtureError(f"{root}: none of {', '.join(f.name for _, f in files)}",
                           hint="POPE's COCO files are JSON lines (docs/evaluation.md)")
    image_dir = images or root / "val2014"
    out = []
    for split, path in present:
        for where, record in json_lines(path):
            qid = _field(record, "question_id", (int, str), where)
            label = _field(record, "label", str, where).strip().lower()
            if label not in ("yes", "no"):
                raise MixtureError(f"{where}: label is {label!r}, expected yes or no")
            out.append(Question(f"{split}/{qid}", image_dir / _field(record, "image", str, where),
                                _field(record, "text", str, where), (label,), split))
    return out


def read_vizwiz(root: Path) -> list[Question]:
    """VizWiz-VQA val (question id = the image file name)."""
    path = root / "val.json"
    data = _load_json(path, list, "a JSON list")
    out = []
    for i, record in enumerate(data):
        where = f"{path}: [{i}]"
        name = _field(record, "image", str, where)
        out.append(Question(name, root / "val" / name, _field(record, "question", str, where),
                            _answer_list(record, where)))
    return out


READERS: dict[str, Callable[[Path], list[Question]]] = {
    "vqav2": read_vqav2, "textvqa": read_textvqa, "gqa": read_gqa, "pope": read_pope, "vizwiz": read_vizwiz,
}


def read_benchmark(name: str, root: str | Path, *, images: str | Path | None = None) -> list[Question]:
    """The questions of benchmark ``name`` from its official layout in ``root``.

    Raises:
        MixtureError: For an unknown name, a missing directory or file, or a malformed record.
    """
    if name not in READERS:
        raise MixtureError(f"unknown benchmark {name!r}", hint=f"known benchmarks: {', '.join(READERS)}")
    path = Path(root)
    if not path.is_dir():
        raise MixtureError(f"benchmark {name}: {root} is not a directory")
    questions = read_pope(path, Path(images) if images else None) if name == "pope" else READERS[name](path)
    seen: set[str] = set()
    for q in questions:
        if q.question_id in seen:
            raise MixtureError(f"benchmark {name} in {root}: question id {q.question_id} appears twice")
        seen.add(q.question_id)
    return questions


def missing_images(questions: list[Question]) -> list[Question]:
    """The questions whose image file does not exist."""
    return [q for q in questions if not q.image.is_file()]

def json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """Each non-blank line of a JSON-lines file with its ``FILE:LINE`` (for errors).

    Raises:
        MixtureError: A line that is not JSON, located.
    """
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise MixtureError(f"{where}: not a JSON object ({exc.msg})") from None
