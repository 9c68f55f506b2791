"""The demo's embedded data (trainer.demo.data): deterministic, consistent with its scenes, ingested
with the expected counts, and a demo mixture file that compiles with prefix-stable variants.

One small demo (scale 0.05: 150 train scenes, 30 stdlib modules) is made once for the module; ingest imports
streaming, which alone costs ~10 s per process.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mixture.api import compile_variant, variants
from mixture.errors import MixtureError
from mixture.schedule import Schedule
from mixture.sources import source_fingerprint
from trainer.demo import scenes as demo_scenes
from trainer.demo import template
from trainer.demo.corpus import python_version
from trainer.demo.data import NUM_INSTRUCT_RECORDS, DemoData, load_demo_data, make_demo_data, render_mixture, scaled
from trainer.demo.scenes import COLORS, MIN_IMAGE_SIZE, POSITIONS, SIZES, anchor_pixel, make_scene

SCALE = 0.05
SEED = 3
INTRO_POINTS = (0, 40, 80, 100)
TEMPLATE = template("intro_point.yaml")
REPO = Path(__file__).resolve().parents[2]


def _point(variant_name: str) -> int:
    """The introduction point (percent) in a variant name like ``intro=20pctoftext_plan,warmup=0pct,...``."""
    return int(variant_name.split(",")[0].removeprefix("intro=").split("pct")[0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    return make_demo_data(tmp_path_factory.mktemp("demo") / "out", scale=SCALE, seed=SEED)


@pytest.fixture(scope="module")
def schedules(demo: DemoData, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Schedule]:
    """The demo mixture's six variants compiled, keyed by introduction point (percent)."""
    out = tmp_path_factory.mktemp("schedules")
    found = {}
    for variant in variants(demo.mixture):
        found[_point(variant.name)] = compile_variant(variant, out / variant.name)
    return found


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _raw_digests(raw: Path) -> dict[str, str]:
    return {p.relative_to(raw).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(raw.rglob("*")) if p.is_file()}


def test_counts_and_record(demo: DemoData) -> None:
    assert demo.visual_tokens_per_image == 16 and demo.python_version == python_version()
    assert demo.counts["scenes_train"] == scaled(3000, SCALE) == 150
    assert demo.counts["vqa_questions"] == 3 * demo.counts["scenes_heldout"]
    assert load_demo_data(demo.out_dir) == demo
    assert make_demo_data(demo.out_dir, scale=SCALE, seed=SEED) == demo  # done: returned, not redone
    assert all("mixture ingest" in c for c in demo.commands)


def test_captions_describe_the_drawn_scene(demo: DemoData) -> None:
    rows = _read_jsonl(demo.raw / "captions_train.jsonl")
    for index, row in enumerate(rows):
        scene = make_scene(SEED, "train", index)
        assert row["scene"] == [vars(s) for s in scene] and row["caption"].endswith(".")
        words = row["caption"].lower()
        for shape in scene:  # each shape named with its colour and a size word, each position phrase present
            size_words = ("small", "little") if shape.size == "small" else ("large", "big")
            assert any(f"{w} {shape.color} {shape.shape}" in words for w in size_words), row
        assert len(re.findall(r"\b(circle|square|triangle|diamond)\b", words)) == len(scene)
        image = Image.open(demo.raw / row["image"])
        assert image.size == (demo.image_size, demo.image_size) and image.mode == "RGB"
        for shape in scene:
            assert image.getpixel(anchor_pixel(shape, demo.image_size)) == COLORS[shape.color]
        assert image.getpixel((0, 0)) == demo_scenes.BACKGROUND


@pytest.mark.parametrize("image_size", [MIN_IMAGE_SIZE, 32, 36, 48, 64, 100])
def test_shapes_never_overlap(image_size: int) -> None:
    """Every position with a large shape of every kind: the other anchors keep the background colour."""
    for position in POSITIONS:
        for kind in demo_scenes.SHAPES:
            shape = demo_scenes.Shape(kind, "red", "large", position)
            image = Image.open(io.BytesIO(demo_scenes.draw_scene((shape,), image_size)))
            for other in POSITIONS:
                pixel = image.getpixel(anchor_pixel(demo_scenes.Shape(kind, "red", "small", other), image_size))
                assert (pixel == COLORS["red"]) == (other == position), (image_size, position, kind, other)


def _answer(question: str, scene: tuple[demo_scenes.Shape, ...]) -> str:
    """The answer to a demo question, worked out from the scene independently of demo_scenes."""
    by_shape = {s.shape: s for s in scene}
    by_color = {s.color: s for s in scene}
    if m := re.fullmatch(r"What color is the (\w+)\?", question):
        return by_shape[m.group(1)].color
    if m := re.fullmatch(r"What (?:shape is (\w+)|is the shape of the (\w+) object)\?", question):
        return by_color[m.group(1) or m.group(2)].shape
    if question == "How many shapes are there?":
        return str(len(scene))
    if m := re.fullmatch(r"Where is the (\w+)\?", question):
        return by_shape[m.group(1)].position
    if m := re.fullmatch(r"Is the (\w+) small or large\?", question):
        return by_shape[m.group(1)].size
    m = re.fullmatch(r"Is there a (\w+) (\w+)\?", question)
    assert m, question
    return "yes" if any((s.color, s.shape) == m.groups() for s in scene) else "no"


def test_vqa_answers_match_the_scene(demo: DemoData) -> None:
    rows = _read_jsonl(demo.vqa)
    assert {r["kind"] for r in rows} <= set(demo_scenes.QUESTION_KINDS)
    for row in rows:
        index = int(row["image"].split("/")[-1].split(".")[0])
        assert (demo.vqa.parent / row["image"]).is_file() and row["image"].startswith("scenes/heldout/")
        expected = _answer(row["question"], make_scene(SEED, "heldout", index))
        assert row["answer"] == expected and len(row["answers"]) == 10
        assert row["answers"].count(expected) >= 3 and all(" " not in a for a in row["answers"])
    assert {"2", "two"} <= {a for r in rows for a in r["answers"]}


def test_instructions_are_llava_conversations_about_train_scenes(demo: DemoData) -> None:
    records = json.loads((demo.raw / "instruct_train.json").read_text())
    assert len(records) == demo.counts["instruct_records"] == scaled(NUM_INSTRUCT_RECORDS, SCALE)
    for index, record in enumerate(records):
        turns = record["conversations"]
        assert record["image"] == f"scenes/train/{index:06d}.png" and len(turns) == 8
        assert turns[0]["value"].startswith("<image>\n") and not any("<image>" in t["value"] for t in turns[1:])
        scene = make_scene(SEED, "train", index)
        for ask, reply in zip(turns[::2], turns[1::2]):
            assert (ask["from"], reply["from"]) == ("human", "gpt")
            assert reply["value"] == _answer(ask["value"].removeprefix("<image>\n"), scene)


def test_text_corpus_is_stdlib_docstrings_split_by_module(demo: DemoData) -> None:
    train = _read_jsonl(demo.raw / "text_train.jsonl")
    heldout = _read_jsonl(demo.raw / "text_heldout.jsonl")
    assert train and heldout and len(train) == demo.counts["text_documents_train"]
    for docs in (train, heldout):
        assert [d["key"] for d in docs] == sorted(d["key"] for d in docs)
    modules = [{d["key"].split(":")[0] for d in docs} for docs in (train, heldout)]
    assert not modules[0] & modules[1]
    texts = [d["text"] for d in train + heldout]
    assert all(t.strip() for t in texts) and len(set(texts)) == len(texts)


def test_ingested_sample_counts(demo: DemoData) -> None:
    from streaming_data.tokenizer import load_tokenizer

    def index(path: Path) -> pq.ParquetFile:
        return pq.ParquetFile(path / "samples.parquet")

    tokenizer = load_tokenizer(str(demo.tokenizer))
    for source, raw in ((demo.sources["text"], "text_train"), (demo.heldout["text"], "text_heldout")):
        docs = [d["text"] for d in _read_jsonl(demo.raw / f"{raw}.jsonl")]
        total = sum(len(ids) + 1 for ids in tokenizer.encode_batch(docs))  # + EOS per document
        assert index(source).metadata.num_rows == math.ceil(total / demo.seq_len)
    expected = {"images": demo.counts["scenes_train"], "instruct": demo.counts["instruct_records"]}
    for name, count in expected.items():
        meta = index(demo.sources[name]).schema_arrow.metadata
        assert index(demo.sources[name]).metadata.num_rows == count
        assert json.loads(meta[b"mixture:visual_tokens_per_image"]) == 16
    assert index(demo.heldout["images"]).metadata.num_rows == demo.counts["scenes_heldout"]
    assert demo.counts["samples_images"] == demo.counts["scenes_train"]


def test_template_is_the_scale_one_rendering(demo: DemoData, tmp_path: Path) -> None:
    rendered = render_mixture(tmp_path, scale=1.0, visual_tokens=16)
    assert rendered.read_text() == TEMPLATE.replace("location: data/mds/", "location: mds/")
    assert len(variants(rendered)) == len(INTRO_POINTS)
    small = demo.mixture.read_text()
    assert f"text_plan: {math.floor(512_000 * SCALE)} tok" in small and "location: mds/text\n" in small


def test_variants_share_the_trunk_up_to_their_introduction_point(schedules: dict[int, Schedule]) -> None:
    trunk = schedules[100]
    for point, schedule in schedules.items():
        text = next(p for p in schedule.phases if p.name == "text")
        stop = text.stop
        assert stop == next(p for p in trunk.phases if p.name == "text").stop or point < 100
        src, sample = schedule.take(0, stop)
        trunk_src, trunk_sample = trunk.take(0, stop)
        assert np.array_equal(sample, trunk_sample) and np.array_equal(src, trunk_src)
        assert set(schedule.source_names[i] for i in np.unique(src)) <= {"text"}
        after = schedule.take(stop, stop + schedule.global_batch_size)[0]
        assert "images" in {schedule.source_names[i] for i in after}  # the cooldown starts right there
    stops = [next(p for p in schedules[x].phases if p.name == "text").stop for x in INTRO_POINTS]
    assert stops == sorted(stops) and stops[0] == 0


def test_image_phase_is_twenty_percent_visual_tokens(schedules: dict[int, Schedule]) -> None:
    for schedule in schedules.values():
        phases = {p.name: p for p in schedule.phases}
        tokens = phases["cooldown"].source_tokens
        assert tokens["images"] / (tokens["images"] + tokens["text"]) == pytest.approx(0.2, abs=0.03)
        lr = schedule.lr()
        assert lr is not None
        cooldown = lr[schedule.batches_before(phases["cooldown"].start):schedule.batches_before(phases["cooldown"].stop)]
        finetune = lr[schedule.batches_before(phases["finetune"].start):]
        assert cooldown[-1] == 0 and np.all(np.diff(cooldown[cooldown.argmax():]) <= 0)
        assert 0 < finetune.max() <= 1e-3 and finetune[-1] == 0  # a third of the text peak at most


def test_every_introduction_point_gets_the_same_image_phase(tmp_path: Path) -> None:
    """The paper's cooldown is a fixed budget: at full scale (sources declared by their sizes) every variant's
    image phase has the same batches, images and summed learning rate, and the same fine-tuning."""
    text = TEMPLATE
    declared = {"text": "declared: {samples: 3760, tokens_per_sample: 128}",
                "images": "declared: {samples: 3000, caption_tokens: 15}",
                "instruct": "declared: {samples: 3000, images_per_sample: 1, tokens_per_sample: 86}"}
    for name, line in declared.items():
        text = text.replace(f"location: data/mds/{name}", line)
    (tmp_path / "declared.yaml").write_text(text)
    seen = {}
    for variant in variants(tmp_path / "declared.yaml"):
        schedule = compile_variant(variant, tmp_path / variant.name)
        phases, lr = {p.name: p for p in schedule.phases}, schedule.lr()
        assert lr is not None
        per_phase = []
        for name in ("cooldown", "finetune"):
            first, stop = schedule.batches_before(phases[name].start), schedule.batches_before(phases[name].stop)
            per_phase.append((stop - first, phases[name].draws, round(float(lr[first:stop].sum()), 4)))
        seen[_point(variant.name)] = per_phase
    assert sorted(seen) == list(INTRO_POINTS)
    assert all(value == seen[0] for value in seen.values()), seen


def test_examples_hold_the_packaged_templates() -> None:
    """examples/demo/ (the README's tour) keeps byte-identical copies of the package data."""
    for name in ("intro_point.yaml", "run.yaml"):
        assert (REPO / "examples" / "demo" / name).read_text() == template(name), name


def test_rerun_is_byte_identical(demo: DemoData) -> None:
    """Same settings, same directory, made again from nothing: same raw bytes, same source fingerprints."""
    before = _raw_digests(demo.raw)
    fingerprints = {n: source_fingerprint(str(p)) for n, p in {**demo.sources, **{
        f"{k}_heldout": v for k, v in demo.heldout.items()}}.items()}
    again = make_demo_data(demo.out_dir, scale=SCALE, seed=SEED, force=True)
    assert again == demo
    assert _raw_digests(demo.raw) == before
    assert {n: source_fingerprint(str(p)) for n, p in {**again.sources, **{
        f"{k}_heldout": v for k, v in again.heldout.items()}}.items()} == fingerprints


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(MixtureError, match="scale"):
        make_demo_data(tmp_path / "a", scale=1.5)
    with pytest.raises(MixtureError, match="patch_size"):
        make_demo_data(tmp_path / "b", image_size=32, patch_size=5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(MixtureError, match="not made by make_demo_data"):
        make_demo_data(tmp_path / "mine", scale=SCALE)
    assert SIZES["small"] < SIZES["large"]


@pytest.mark.slow
def test_wheel_ships_the_templates(tmp_path: Path) -> None:
    """`mixture demo` from an installed wheel reads its templates as package data (no repo-root path):
    the wheel holds them, byte-identical. The full check (fresh venv, `mixture demo --help` and a
    CI-scale demo from the installed wheel) is in docs/demo.md, "From a wheel"."""
    import shutil
    import subprocess
    import zipfile

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (`make test` installs it)")
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(tmp_path), str(REPO)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("intro_point.yaml", "run.yaml"):
            assert archive.read(f"trainer/demo/templates/{name}").decode() == template(name)
        assert "trainer/demo/cli.py" in archive.namelist()
