"""docs/dsl.md is generated from the schema (mixture/docsgen.py) and must be up to date with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from mixture import docsgen, spec


def _spec_models() -> list[type[BaseModel]]:
    return [v for v in vars(spec).values() if isinstance(v, type) and issubclass(v, BaseModel)
            and v.__module__ == spec.__name__ and not v.__name__.startswith("_")]


def test_dsl_md_is_up_to_date() -> None:
    assert docsgen.DOC_PATH.read_text(encoding="utf-8") == docsgen.render(), (
        "docs/dsl.md is stale: run `.venv/bin/python -m mixture.docsgen > docs/dsl.md`")


def test_check_exits_non_zero_when_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "dsl.md"
    stale.write_text(docsgen.render().replace("Peak learning rate.", "Peak LR."))
    monkeypatch.setattr(docsgen, "DOC_PATH", stale)
    assert docsgen.main(["--check"]) == 1
    stale.write_text(docsgen.render())
    assert docsgen.main(["--check"]) == 0


def test_module_runs_with_check() -> None:
    done = subprocess.run([sys.executable, "-m", "mixture.docsgen", "--check"], capture_output=True, text=True,
                          cwd=docsgen.REPO, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_model_and_field_of_the_schema_is_documented() -> None:
    text = docsgen.render()
    models = _spec_models()
    assert {m for m in docsgen.models_in_order()} == set(models)
    for model in models:
        section = text.split(f"\n### {model.__name__}\n", 1)[1].split("\n### ", 1)[0]
        for name, info in model.model_fields.items():
            assert re.search(rf"^\| `{info.alias or name}` \| .+ \| .+ \| {re.escape(info.description or '')}",
                             section, re.M), (model.__name__, name)


def test_types_and_defaults_read_as_yaml() -> None:
    assert docsgen.type_text(spec.Phase.model_fields["duration"].annotation) == "duration or null"
    sources = spec.MixtureSpec.model_fields["sources"].annotation
    assert docsgen.type_text(sources) == "mapping of name to [Source](#source)"
    assert docsgen.default_text(spec.Phase.model_fields["lr"]) == "`{}`"
    assert docsgen.default_text(spec.Source.model_fields["count_caption_tokens"]) == "`true`"
    assert docsgen.default_text(spec.LRPlan.model_fields["warmup"]) == "`0ba`"


def test_intro_covers_units_example_and_error_format() -> None:
    text = docsgen.render()
    for unit in ("`tok`", "`sp`", "`ba`", "`ep`", "`%`", "% of NAME"):
        assert unit in text
    assert docsgen.EXAMPLE_PATH.read_text(encoding="utf-8") in text
    lines = docsgen.error_lines().splitlines()
    assert len(lines) == 4
    assert all(re.fullmatch(r"mix\.yaml:\d+:\d+: [\w.\[\]]+: .+ \(.+\)", line) for line in lines), lines
