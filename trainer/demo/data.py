"""The demo's embedded data: shape scenes and stdlib text, made on the spot and ingested like a user's.

``make_demo_data(out_dir)`` needs no download and writes, under ``out_dir``::

    raw/scenes/{train,heldout}/NNNNNN.png   shape scenes (demo_scenes), 32 px by default
    raw/captions_{train,heldout}.jsonl      {"image", "caption"} per scene (the ingest's captions table)
    raw/vqa_heldout.jsonl                   {"image", "question", "answers" (10), "kind", "question_id"}
    raw/instruct_train.json                 LLaVA-format conversations about train scenes
    raw/text_{train,heldout}.jsonl          {"text", "key"}: stdlib docstrings (demo_corpus)
    tokenizer/                              byte-level BPE trained on raw/text_train.jsonl
    mds/{text,text_heldout,images,images_heldout,instruct}/   MDS + samples.parquet
    intro_point.yaml                        examples/demo/intro_point.yaml, scaled, locations -> mds/
    demo_data.json                          what was made (DemoData), written last

Everything after the raw files goes through the very ``mixture ingest`` commands a user runs (called
in-process through :func:`mixture.cli.main`; ``DemoData.commands`` lists them, runnable from ``out_dir``).
A second call with the same settings returns the recorded :class:`DemoData` without redoing anything.
At scale 1.0 the data step takes ~22 s on 2 cores (docs/demo.md); the counts scale linearly.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mixture.errors import MixtureError
from trainer.demo import corpus as demo_corpus
from trainer.demo import scenes as demo_scenes

Progress = Callable[[str], None]

TEMPLATE = "intro_point.yaml"  # in the package's templates/ (package data: read with importlib.resources)
DEFAULT_OUT_DIR = Path("examples") / "demo" / "data"  # where examples/demo/intro_point.yaml's locations point
STAMP = "demo_data.json"
MARKER = ".demo_data"  # written first: this directory is the demo's to overwrite

# Counts at scale 1.0 (multiplied by `scale`, at least 1 each). Sized for the template's plan: each
# cooldown reads 1,600 images of the 3,000 and fine-tuning 429 more; fine-tuning is two epochs of 3,000
# conversations (858 batches of 8 with text and captions mixed in), what the text-pre-trained models needed
# to learn the answers from the image (docs/demo.md).
NUM_TRAIN_SCENES = 3000
NUM_HELDOUT_SCENES = 400
NUM_INSTRUCT_RECORDS = 3000
TURNS_PER_RECORD = 4
QUESTIONS_PER_HELDOUT_SCENE = 3
HELDOUT_TEXT_FRACTION = 0.05
VOCAB_SIZE = 4096
SEQ_LEN = 128  # keep in step with run.seq_len of the template


@dataclass(frozen=True)
class DemoData:
    """What :func:`make_demo_data` made; paths are absolute.

    Attributes:
        out_dir: The output directory.
        scale: Multiplier of every count (scenes, conversations, text, the text plan).
        seed: Seed of the scenes, captions and questions (the text split does not depend on it).
        image_size: Side of the square scene images in pixels.
        patch_size: Side of the vision encoder's patches; ``(image_size // patch_size) ** 2`` visual tokens.
        visual_tokens_per_image: Visual tokens per image, as ingested and as the mixture file prices them.
        seq_len: Packed text sequence length (the mixture file's ``run.seq_len``).
        vocab_size: Vocabulary of the trained tokenizer (EOS included).
        python_version: The interpreter whose stdlib the text comes from (the text depends on it).
        tokenizer: Directory with ``tokenizer.json`` (loadable by transformers.AutoTokenizer).
        mixture: The scaled mixture file, its locations pointing at ``sources``.
        sources: Mixture source name (text, images, instruct) -> MDS directory.
        heldout: Source name (text, images) -> MDS directory of its held-out split (held-out loss).
        vqa: Held-out VQA JSONL (image paths relative to its folder).
        raw: The raw files' directory.
        counts: Scenes, questions, conversations, documents and samples per MDS directory.
        commands: The ``mixture ingest`` commands run, with paths relative to ``out_dir``.
    """

    out_dir: Path
    scale: float
    seed: int
    image_size: int
    patch_size: int
    visual_tokens_per_image: int
    seq_len: int
    vocab_size: int
    python_version: str
    tokenizer: Path
    mixture: Path
    sources: dict[str, Path]
    heldout: dict[str, Path]
    vqa: Path
    raw: Path
    counts: dict[str, int] = field(default_factory=dict)
    commands: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The record written to ``demo_data.json`` (paths relative to ``out_dir``)."""
        def rel(path: Path) -> str:
            return path.relative_to(self.out_dir).as_posix()

        record = asdict(self)
        record.pop("out_dir")
        for name in ("tokenizer", "mixture", "vqa", "raw"):
            record[name] = rel(getattr(self, name))
        record["sources"] = {k: rel(v) for k, v in self.sources.items()}
        record["heldout"] = {k: rel(v) for k, v in self.heldout.items()}
        record["commands"] = list(self.commands)
        return record

    @classmethod
    def from_json(cls, out_dir: Path, record: dict) -> DemoData:
        """The inverse of :meth:`to_json` for data under ``out_dir``."""
        out_dir = Path(out_dir).resolve()
        paths = {n: out_dir / record[n] for n in ("tokenizer", "mixture", "vqa", "raw")}
        return cls(**{**record, **paths, "out_dir": out_dir, "commands": tuple(record["commands"]),
                      "sources": {k: out_dir / v for k, v in record["sources"].items()},
                      "heldout": {k: out_dir / v for k, v in record["heldout"].items()}})


def load_demo_data(out_dir: str | Path) -> DemoData:
    """The :class:`DemoData` a finished :func:`make_demo_data` recorded in ``out_dir``.

    Raises:
        MixtureError: ``out_dir`` holds no finished demo data.
    """
    stamp = Path(out_dir) / STAMP
    if not stamp.is_file():
        raise MixtureError(f"{out_dir}: no demo data ({STAMP} missing)", hint="make it with make_demo_data")
    return DemoData.from_json(Path(out_dir), json.loads(stamp.read_text()))


def scaled(count: int, scale: float) -> int:
    """``count`` x ``scale``, rounded, at least 1."""
    return max(1, round(count * scale))


def _check(scale: float, image_size: int, patch_size: int) -> None:
    if not 0 < scale <= 1:
        raise MixtureError(f"scale must be in (0, 1], got {scale}",
                           hint="the stdlib text is ~505k tokens: above 1.0 the text plan would read it >2 times")
    if image_size < demo_scenes.MIN_IMAGE_SIZE:
        raise MixtureError(f"image_size must be at least {demo_scenes.MIN_IMAGE_SIZE} px, got {image_size}")
    if patch_size < 1 or image_size % patch_size:
        raise MixtureError(f"patch_size must divide image_size, got {patch_size} for {image_size} px")


def make_demo_data(out_dir: str | Path, *, scale: float = 1.0, seed: int = 0, progress: Progress | None = None,
                   image_size: int = 32, patch_size: int = 8, force: bool = False) -> DemoData:
    """Make the demo's raw data, ingest it, and write its scaled mixture file (see the module docstring).

    Args:
        out_dir: Directory to write into (created; ``raw/``, ``tokenizer/`` and ``mds/`` are replaced).
        scale: Multiplier of every count, in (0, 1]; CI runs e.g. 0.05.
        seed: Seed of the scenes, captions and questions.
        progress: Called with a line of text as each step starts (e.g. ``print``).
        image_size: Side of the scene images in pixels (at least 24).
        patch_size: Vision encoder patch side; ``(image_size // patch_size) ** 2`` visual tokens per image.
        force: Redo everything even when ``out_dir`` already holds demo data made with these settings.

    Returns:
        What was made, also recorded in ``out_dir/demo_data.json``.

    Raises:
        MixtureError: Bad settings, or an ingest that failed (its message is printed on stderr).
    """
    _check(scale, image_size, patch_size)
    out = Path(out_dir).resolve()
    settings = {"scale": scale, "seed": seed, "image_size": image_size, "patch_size": patch_size,
                "python_version": demo_corpus.python_version()}
    if not force and (out / STAMP).is_file():
        done = load_demo_data(out)
        if {k: getattr(done, k) for k in settings} == settings:
            # The data is done; the mixture file is re-rendered because the template may have changed since.
            render_mixture(out, scale=scale, visual_tokens=done.visual_tokens_per_image)
            return done
    _claim(out)
    say = progress or (lambda _line: None)
    (out / STAMP).unlink(missing_ok=True)  # a half-remade directory must not look finished
    counts = write_raw(out / "raw", scale=scale, seed=seed, image_size=image_size, say=say)
    visual_tokens = (image_size // patch_size) ** 2
    commands, ingested = _ingest(out, visual_tokens, say)
    counts.update(ingested)
    say("mixture file: intro_point.yaml")
    mixture = render_mixture(out, scale=scale, visual_tokens=visual_tokens)
    from streaming_data.tokenizer import load_tokenizer

    data = DemoData(out, scale, seed, image_size, patch_size, visual_tokens, SEQ_LEN,
                    load_tokenizer(str(out / "tokenizer")).vocab_size, settings["python_version"],
                    out / "tokenizer", mixture, {n: out / "mds" / n for n in ("text", "images", "instruct")},
                    {n: out / "mds" / f"{n}_heldout" for n in ("text", "images")},
                    out / "raw" / "vqa_heldout.jsonl", out / "raw", counts, commands)
    (out / STAMP).write_text(json.dumps(data.to_json(), indent=2, sort_keys=True) + "\n")
    return data


def _claim(out: Path) -> None:
    """Mark ``out`` as the demo's (so raw/, tokenizer/ and mds/ may be replaced); refuse someone else's."""
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise MixtureError(f"{out} is not empty and was not made by make_demo_data",
                           hint="pass a new or empty directory (its raw/, tokenizer/ and mds/ get replaced)")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by trainer.demo.data.make_demo_data\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)


def _scene_name(split: str, index: int) -> str:
    """Path of a scene image relative to raw/ (every raw table's paths are relative to raw/)."""
    return f"scenes/{split}/{index:06d}.png"


def _write_scenes(raw: Path, split: str, num_scenes: int, seed: int, image_size: int) -> list[dict]:
    """Draw ``num_scenes`` scenes of ``split`` into raw/scenes/SPLIT/ and return their caption rows."""
    (raw / "scenes" / split).mkdir(parents=True)
    rows = []
    for i in range(num_scenes):
        scene = demo_scenes.make_scene(seed, split, i)
        (raw / _scene_name(split, i)).write_bytes(demo_scenes.draw_scene(scene, image_size))
        rows.append({"image": _scene_name(split, i), "caption": demo_scenes.caption(scene, seed, split, i),
                     "scene": [asdict(shape) for shape in scene]})
    return rows


def _vqa_rows(num_scenes: int, seed: int) -> list[dict]:
    """Held-out VQA: a few questions of different kinds per held-out scene, ten answers each."""
    rows = []
    for i in range(num_scenes):
        scene = demo_scenes.make_scene(seed, "heldout", i)
        for k, q in enumerate(demo_scenes.questions(scene, seed, "heldout", i, QUESTIONS_PER_HELDOUT_SCENE)):
            rows.append({"question_id": f"heldout-{i:06d}-{k}", "image": _scene_name("heldout", i),
                         "question": q.question, "answer": q.answer, "answers": demo_scenes.vqa_answers(q.answer),
                         "kind": q.kind})
    return rows


def _instruction_records(num_records: int, seed: int) -> list[dict]:
    """LLaVA-format conversations about the first train scenes: a few one-word answers each."""
    records = []
    for i in range(num_records):
        scene = demo_scenes.make_scene(seed, "train", i)
        turns = []
        for k, q in enumerate(demo_scenes.questions(scene, seed, "train", i, TURNS_PER_RECORD)):
            turns += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + q.question},
                      {"from": "gpt", "value": q.answer}]
        records.append({"id": f"train-{i:06d}", "image": _scene_name("train", i), "conversations": turns})
    return records


def write_raw(raw: Path, *, scale: float, seed: int, image_size: int, say: Progress) -> dict[str, int]:
    """Write every raw file under ``raw`` (replacing it) and return their counts."""
    if raw.exists():
        shutil.rmtree(raw)
    num_train, num_heldout = scaled(NUM_TRAIN_SCENES, scale), scaled(NUM_HELDOUT_SCENES, scale)
    say(f"scenes: {num_train} train + {num_heldout} held-out images of {image_size} px")
    for split, num in (("train", num_train), ("heldout", num_heldout)):
        _write_jsonl(raw / f"captions_{split}.jsonl", _write_scenes(raw, split, num, seed, image_size))
    vqa = _vqa_rows(num_heldout, seed)
    _write_jsonl(raw / "vqa_heldout.jsonl", vqa)
    records = _instruction_records(min(scaled(NUM_INSTRUCT_RECORDS, scale), num_train), seed)
    (raw / "instruct_train.json").write_text(json.dumps(records, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    say(f"text: docstrings of the Python {demo_corpus.python_version()} standard library")
    train, heldout = demo_corpus.split_documents(demo_corpus.stdlib_documents(),
                                                 heldout_fraction=HELDOUT_TEXT_FRACTION, scale=scale)
    for split, docs in (("train", train), ("heldout", heldout)):
        _write_jsonl(raw / f"text_{split}.jsonl", [{"key": d.key, "text": d.text} for d in docs])
    return {"scenes_train": num_train, "scenes_heldout": num_heldout, "vqa_questions": len(vqa),
            "instruct_records": len(records), "text_documents_train": len(train),
            "text_documents_heldout": len(heldout),
            "text_characters_train": sum(len(d.text) for d in train),
            "text_characters_heldout": sum(len(d.text) for d in heldout)}


def ingest_commands(root: str, visual_tokens: int) -> list[list[str]]:
    """The ``mixture`` command lines of the data step, paths under ``root`` (the output directory)."""
    def at(rel: str) -> str:
        return rel if root == "." else f"{root}/{rel}"

    common = ["--tokenizer", at("tokenizer"), "--no-progress", "--overwrite"]
    images = ["--visual-tokens", str(visual_tokens)]
    commands = [["ingest", "train-tokenizer", at("raw/text_train.jsonl"), "-o", at("tokenizer"),
                 "--vocab-size", str(VOCAB_SIZE)]]
    for split, suffix in (("train", ""), ("heldout", "_heldout")):
        commands.append(["ingest", "text", at(f"raw/text_{split}.jsonl"), "-o", at(f"mds/text{suffix}"),
                         "--seq-len", str(SEQ_LEN), *common])
    for split, suffix in (("train", ""), ("heldout", "_heldout")):
        commands.append(["ingest", "image-caption", "--images", at("raw"), "--captions",
                         at(f"raw/captions_{split}.jsonl"), "-o", at(f"mds/images{suffix}"), *images, *common])
    commands.append(["ingest", "instruction", at("raw/instruct_train.json"), "--image-root", at("raw"),
                     "-o", at("mds/instruct"), *images, *common])
    return commands


def _run_mixture(argv: list[str]) -> dict:
    """Run one ``mixture`` command in this process and return the JSON summary it prints."""
    from mixture.cli import main

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = main(argv)
    if code != 0:
        raise MixtureError(f"demo data: `mixture {shlex.join(argv)}` failed with exit code {code}",
                           hint="its error is printed above")
    text = captured.getvalue()
    return json.loads(text[text.index("{"):])


def _ingest(out: Path, visual_tokens: int, say: Progress) -> tuple[tuple[str, ...], dict[str, int]]:
    """Run the ingest commands; returns them (relative to ``out``) and the samples of each MDS directory."""
    samples: dict[str, int] = {}
    shown = ingest_commands(".", visual_tokens)
    for argv, line in zip(ingest_commands(str(out), visual_tokens), shown):
        say("mixture " + shlex.join(line))
        summary = _run_mixture(argv)
        if argv[1] != "train-tokenizer":
            samples[f"samples_{Path(argv[argv.index('-o') + 1]).name}"] = int(summary["samples"])
    return tuple("mixture " + shlex.join(line) for line in shown), samples


# Lines of the template that make_demo_data rewrites, each of which must occur exactly this many times.
_TEXT_PLAN = re.compile(r"^(  text_plan: )(\d+) tok$", re.M)
_LOCATION = re.compile(r"^(    location: )data/", re.M)
_VISUAL_TOKENS = re.compile(r"^(    visual_tokens_per_image: )\d+$", re.M)


def render_mixture(out: Path, *, scale: float, visual_tokens: int, template: Path | None = None) -> Path:
    """Write ``out/intro_point.yaml``: the template (default: the packaged one) with its text plan scaled and
    locations under ``out``."""
    from trainer.demo import template as packaged

    text = template.read_text() if template else packaged(TEMPLATE)
    template = template or Path(TEMPLATE)
    expected = ((_TEXT_PLAN, 1), (_LOCATION, 3), (_VISUAL_TOKENS, 2))
    for pattern, count in expected:
        if len(pattern.findall(text)) != count:
            raise MixtureError(f"{template}: expected {count} line(s) matching {pattern.pattern!r}",
                               hint="the demo rewrites these lines; keep their form")
    plan = _TEXT_PLAN.search(text)
    assert plan is not None  # checked above
    tokens = max(1, math.floor(int(plan.group(2)) * scale))
    text = _TEXT_PLAN.sub(rf"\g<1>{tokens} tok", text)
    text = _LOCATION.sub(r"\1", text)  # data/mds/NAME -> mds/NAME, relative to out
    text = _VISUAL_TOKENS.sub(rf"\g<1>{visual_tokens}", text)
    target = out / "intro_point.yaml"
    target.write_text(text)
    from mixture.api import variants

    variants(target)  # validates every variant: a bad rendering fails here, not in the trainer
    return target
