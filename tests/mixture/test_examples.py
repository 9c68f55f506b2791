"""The examples/ folder: every experiment of docs/study.md as a mixture file that validates, and says what the
paper says when compiled at full scale.

Full-scale compiles are few (the 1B recipe once per session, plus two sweep variants): each writes a
~120 MB schedule and takes several seconds. The from-scratch file (2.0B mixed positions) is only validated.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixture.api import Variant, compile_variant, explain_rows, variants
from mixture.schedule import Schedule

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEXT_PLAN_TOKENS = 4_300_000_000_000
BATCH_TOKENS = 256 * 2048  # one global batch of the 1B recipe's packed text

# Golden variant names: directories, reports and trunk sharing key on them, so they must not drift.
SWEEP_NAMES: dict[str, list[str]] = {
    "intro_point.yaml": [f"intro={p}pctoftext_plan" for p in (20, 40, 60, 80)],
    "intro_point_edges.yaml": ["intro=0pctoftext_plan,warmup=5000ba,peak=1e-2",
                               "intro=100pctoftext_plan,warmup=1000ba,peak=9.8e-4"],
    "image_share.yaml": [f"intro={p}pctoftext_plan,text={t},images={i}" for p in (20, 80)
                         for t, i in (("0.99", "0.01"), ("0.95", "0.05"), ("0.9", "0.1"), ("0.7", "0.3"),
                                      ("0.5", "0.5"))],
    "instruction_in_pretraining.yaml": ["captions=0.1,instruct=0", "captions=0.075,instruct=0.025",
                                        "captions=0.05,instruct=0.05"],
    "finetune_epochs.yaml": [f"epochs={n}ep" for n in (1, 2, 3, 4)],
    "seeds.yaml": ["seed=7,epochs=1ep", "seed=7,epochs=2ep", "seed=365,epochs=1ep", "seed=365,epochs=2ep"],
    "caption_sources.yaml": [
        ",".join(f"{s}={'0.1' if s == on else '0'}" for s in ("datacomp", "datacomp_dr", "cc12m", "shutterstock"))
        for on in ("datacomp", "datacomp_dr", "cc12m", "shutterstock")],
}
SWEEP_NAMES["study_grid.yaml"] = [f"intro=p{p},share={s},seed={x}" for p in (0, 20, 40, 60, 80, 100)
                                  for s in ("0.01", "0.05", "0.1", "0.3", "0.5") for x in (7, 365)]
PLAIN = ["paper_1b.yaml", "from_scratch.yaml", "scale_79m.yaml", "own_data.yaml"]


def _variant(file: str, name: str = "") -> Variant:
    (found,) = [v for v in variants(EXAMPLES / file) if v.name == name]
    return found


def _rows(schedule: Schedule, phases: set[str]) -> dict[tuple[str, str], dict[str, object]]:
    """explain_rows of the given phases, keyed by (phase, source)."""
    return {(r["phase"], r["source"]): r for r in explain_rows(schedule) if r["phase"] in phases}  # type: ignore[misc]


def _phase(schedule: Schedule, name: str) -> dict:
    (phase,) = [p for p in schedule.phases if p.name == name]
    return phase.to_json()


@pytest.fixture(scope="session")
def paper_1b(tmp_path_factory: pytest.TempPathFactory) -> Schedule:
    out = tmp_path_factory.mktemp("paper_1b") / "schedule"
    return compile_variant(_variant("paper_1b.yaml"), out)


@pytest.fixture(scope="session")
def intro_20(tmp_path_factory: pytest.TempPathFactory) -> Schedule:
    out = tmp_path_factory.mktemp("intro_20") / "schedule"
    return compile_variant(_variant("intro_point.yaml", "intro=20pctoftext_plan"), out)


def test_the_folder_holds_exactly_the_listed_files() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted([*SWEEP_NAMES, *PLAIN])
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in [*SWEEP_NAMES, *PLAIN])


@pytest.mark.parametrize("file", sorted([*SWEEP_NAMES, *PLAIN]))
def test_example_validates_and_says_what_it_reproduces(file: str) -> None:
    text = (EXAMPLES / file).read_text()
    assert text.startswith("# ") and "docs/study.md" in text.split("\nname:")[0]
    found = variants(EXAMPLES / file)
    assert [v.name for v in found] == SWEEP_NAMES.get(file, [""])


@pytest.mark.parametrize("file", sorted(SWEEP_NAMES))
def test_sweep_variant_names_are_distinct_and_directory_safe(file: str) -> None:
    names = [v.name for v in variants(EXAMPLES / file)]
    assert len(set(names)) == len(names) > 1
    assert all(re.fullmatch(r"[A-Za-z0-9_.=,\-]+", name) for name in names)


def test_paper_1b_text_phase_is_80_percent_of_the_plan(paper_1b: Schedule) -> None:
    text = _phase(paper_1b, "text")
    assert text["mixed"] is False and text["source"] == "dclm"
    assert 0 <= text["tokens"] - 3_440_000_000_000 < BATCH_TOKENS  # 3.44T = 80% of 4.3T, whole batches
    assert text["start"] == 0 and text["stop"] % 256 == 0


def test_paper_1b_cooldown_is_28b_tokens_at_10_percent_visual(paper_1b: Schedule) -> None:
    cooldown = _phase(paper_1b, "cooldown")
    assert 0 <= cooldown["tokens"] - 28_000_000_000 < 256 * 2048
    rows = _rows(paper_1b, {"cooldown"})
    images, text = rows["cooldown", "datacomp_dr"], rows["cooldown", "dclm"]
    assert images["share"] == pytest.approx(0.10, abs=1e-4)
    assert images["tokens"] == images["samples"] * 729  # visual tokens only: captions are not counted
    assert text["share"] == pytest.approx(0.90, abs=1e-4)


def test_paper_1b_finetunes_one_epoch_of_llava_about_1b_tokens(paper_1b: Schedule) -> None:
    assert [p.name for p in paper_1b.phases] == ["text", "cooldown", "finetune"]
    finetune = _phase(paper_1b, "finetune")
    assert finetune["source"] == "llava" and finetune["stop"] == len(paper_1b)
    assert finetune["tokens"] == pytest.approx(1e9, rel=0.05)
    row = _rows(paper_1b, {"finetune"})["finetune", "llava"]
    assert row["epochs"] == pytest.approx(1.0, abs=1e-3)


def test_paper_1b_finetunes_at_its_own_global_batch_of_128(paper_1b: Schedule) -> None:
    """Pre-training at 256 sequences per step, fine-tuning at 128 (issue 18's example): the batch-start
    table holds both, the re-warm spans 3% of the fine-tuning steps, and one LR per step."""
    text, cooldown, finetune = paper_1b.segments
    assert (text.batch_size, cooldown.batch_size, finetune.batch_size) == (256, 256, 128)
    assert finetune.first_batch == cooldown.stop_batch and finetune.start == cooldown.stop
    assert finetune.num_batches == -(-665_000 // 128) and finetune.stop == len(paper_1b)  # one epoch, rounded up
    lr = paper_1b.lr()
    assert lr is not None and len(lr) == paper_1b.num_batches == finetune.stop_batch
    assert int(np.argmax(lr[finetune.first_batch:])) == round(0.03 * finetune.num_batches) - 1
    assert paper_1b.manifest.batch_sizes == (256, 128)


def test_paper_1b_lr_plan_continues_into_the_cooldown_then_rewarms(paper_1b: Schedule) -> None:
    lr = paper_1b.lr()
    assert lr is not None
    cool_a, cool_b = (_phase(paper_1b, "cooldown")[k] // 256 for k in ("start", "stop"))
    assert lr.max() == pytest.approx(1e-2) and int(np.argmax(lr)) == 4999  # 5000 warm-up steps
    assert lr[cool_a] == pytest.approx(lr[cool_a - 1], rel=1e-3) and 9e-4 < lr[cool_a] < 1.1e-3  # continuous
    assert lr[cool_b - 1] == 0.0
    assert lr[cool_b:].max() == pytest.approx(2e-5) and lr[-1] < 1e-9


def test_intro_20_shares_the_text_trunk_of_the_1b_recipe(paper_1b: Schedule, intro_20: Schedule) -> None:
    stop = _phase(intro_20, "text")["stop"]
    assert 0 <= _phase(intro_20, "text")["tokens"] - TEXT_PLAN_TOKENS // 5 < BATCH_TOKENS
    for a, b in ((0, 4096), (stop - 4096, stop)):
        assert all(np.array_equal(x, y) for x, y in zip(intro_20.take(a, b), paper_1b.take(a, b)))
    lr_20, lr_1b = intro_20.lr(), paper_1b.lr()
    assert lr_20 is not None and lr_1b is not None
    assert np.array_equal(lr_20[: stop // 256], lr_1b[: stop // 256])  # one LR plan for every trunk
    assert _rows(intro_20, {"cooldown"})["cooldown", "datacomp_dr"]["share"] == pytest.approx(0.10, abs=1e-4)


def test_intro_100_rewarms_after_the_plan_has_ended(tmp_path: Path) -> None:
    variant = _variant("intro_point_edges.yaml", "intro=100pctoftext_plan,warmup=1000ba,peak=9.8e-4")
    schedule = compile_variant(variant, tmp_path / "schedule")
    text, cooldown = _phase(schedule, "text"), _phase(schedule, "cooldown")
    assert 0 <= text["tokens"] - TEXT_PLAN_TOKENS < BATCH_TOKENS
    lr = schedule.lr()
    assert lr is not None
    a, b = cooldown["start"] // 256, cooldown["stop"] // 256
    assert lr[a - 1] == pytest.approx(3e-5)  # the plan's floor
    assert lr[a + 999] == pytest.approx(9.8e-4) and lr[a:b].max() == pytest.approx(9.8e-4) and lr[b - 1] == 0.0
    shutil.rmtree(tmp_path / "schedule")


def test_from_scratch_mixes_images_from_the_first_step() -> None:
    (variant,) = variants(EXAMPLES / "from_scratch.yaml")
    first = variant.resolved.phases[0]
    assert first.index == 0 and first.weights == {"datacomp_dr": 0.1, "dclm": 0.9}


def test_scale_79m_follows_the_scale_table() -> None:
    spec = _variant("scale_79m.yaml").resolved.spec
    assert spec.run.global_batch_size == 512 and spec.references["text_plan"] == "237B tok"
    assert spec.run.lr is not None and (spec.run.lr.peak, spec.run.lr.warmup) == (3e-3, "400ba")


def _write_source(directory: Path, kind: str, columns: dict[str, np.ndarray]) -> None:
    """A sample index as `mixture ingest` writes it (index.json is only fingerprinted by the compiler)."""
    directory.mkdir(parents=True)
    (directory / "index.json").write_text(json.dumps({"version": 2, "shards": []}))
    table = pa.table({k: pa.array(v, pa.int64()) for k, v in columns.items()})
    pq.write_table(table.replace_schema_metadata({"mixture:kind": kind, "mixture:dropped": "{}"}),
                   directory / "samples.parquet")


def test_own_data_compiles_on_data_of_the_size_it_asks_for(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shutil.copy(EXAMPLES / "own_data.yaml", tmp_path / "own_data.yaml")
    _write_source(tmp_path / "data" / "text", "text", {"tokens": np.full(5000, 512)})
    captions = rng.integers(5, 40, 2000)
    _write_source(tmp_path / "data" / "images", "image_caption",
                  {"tokens": captions + 729, "caption_tokens": captions, "num_images": np.ones(2000, int)})
    chat = rng.integers(50, 400, 500)
    _write_source(tmp_path / "data" / "instruct", "instruction",
                  {"tokens": chat + 729, "text_tokens": chat, "num_images": np.ones(500, int)})
    (variant,) = variants(tmp_path / "own_data.yaml")
    schedule = compile_variant(variant, tmp_path / "out")
    assert [p.name for p in schedule.phases] == ["text", "cooldown", "finetune"]
    row = _rows(schedule, {"cooldown"})["cooldown", "images"]
    assert row["share"] == pytest.approx(0.09, abs=0.005)  # ramped in from 0 over the first 100k of 500k


def _same_training(a: Variant, b: Variant) -> None:
    """Two variants that compile to the same order and LR: equal resolved phases, seed, run and LR directives."""
    sa, sb = a.resolved.spec, b.resolved.spec
    assert a.resolved.phases == b.resolved.phases and a.resolved.used_sources == b.resolved.used_sources
    assert (sa.seed, sa.run, sa.references) == (sb.seed, sb.run, sb.references)
    assert [p.lr for p in sa.phases] == [p.lr for p in sb.phases]
    assert {n: sa.sources[n] for n in a.resolved.used_sources} == {n: sb.sources[n] for n in b.resolved.used_sources}


@pytest.mark.parametrize("grid, file, name", [
    ("intro=p0,share=0.1,seed=7", "intro_point_edges.yaml", "intro=0pctoftext_plan,warmup=5000ba,peak=1e-2"),
    ("intro=p100,share=0.1,seed=7", "intro_point_edges.yaml", "intro=100pctoftext_plan,warmup=1000ba,peak=9.8e-4"),
    ("intro=p40,share=0.1,seed=7", "intro_point.yaml", "intro=40pctoftext_plan"),
    ("intro=p20,share=0.01,seed=7", "image_share.yaml", "intro=20pctoftext_plan,text=0.99,images=0.01"),
    ("intro=p80,share=0.3,seed=7", "image_share.yaml", "intro=80pctoftext_plan,text=0.7,images=0.3"),
])
def test_study_grid_variants_are_the_single_study_files_variants(grid: str, file: str, name: str) -> None:
    """The one-file grid (labels, a `fields` zip group, `rest`) trains exactly what the separate files do."""
    _same_training(_variant("study_grid.yaml", grid), _variant(file, name))


def test_study_grid_compiles_at_full_scale_to_the_1b_recipe(paper_1b: Schedule, tmp_path: Path) -> None:
    schedule = compile_variant(_variant("study_grid.yaml", "intro=p80,share=0.1,seed=7"), tmp_path / "s")
    assert schedule.fingerprint == paper_1b.fingerprint
    assert np.array_equal(schedule.lr(), paper_1b.lr())
    shutil.rmtree(tmp_path / "s")


def test_full_scale_files_share_one_sources_file() -> None:
    shared = (EXAMPLES / "shared" / "paper_sources.yaml").read_text()
    for file in sorted([*SWEEP_NAMES, *PLAIN]):
        text = (EXAMPLES / file).read_text()
        if file != "own_data.yaml":
            assert "include: shared/paper_sources.yaml" in text and "\n  dclm:" not in text, file
    assert "dclm:" in shared and "datacomp_dr:" in shared and "llava:" in shared


def test_the_readme_tour_snippet_runs_on_the_compiled_recipe(paper_1b: Schedule, tmp_path: Path) -> None:
    """The README's step 2 (a Python block reading out/paper_1b), run as written against the compiled recipe."""
    import subprocess
    import sys

    readme = (EXAMPLES.parent / "README.md").read_text()
    snippet = re.search(r"python - <<'PY'\n(.*?)\nPY\n", readme, re.S)
    assert snippet, "the README's tour has no python block"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "paper_1b").symlink_to(paper_1b.path)
    run = subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("cooldown ('dclm', ") and "datacomp_dr" in run.stdout
