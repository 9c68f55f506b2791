"""The CLI and the schedule API: export agrees with take/[i], validate and compile stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl

from mixture.cli import main
from tests.mixture.helpers import compile_text, spec_text

PHASES = [{"name": "text", "duration": "96sp", "mix": {"web": 1}},
          {"name": "cool", "duration": "30k tok", "mix": {"web": 0.9, "img": 0.1}},
          {"name": "ft", "duration": "1 ep", "mix": {"chat": 1}}]


def test_random_access_slices_and_phases_agree(tmp_path):
    schedule = compile_text(spec_text(PHASES), tmp_path)
    src, samples = schedule.take(0, len(schedule))
    assert len(schedule) % schedule.global_batch_size == 0 and len(src) == len(schedule)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(schedule), 200):
        name, sample = schedule[int(i)]
        assert (name, sample) == (schedule.source_names[src[i]], samples[i])
    for a in rng.integers(0, len(schedule) - 50, 30):
        s2, x2 = schedule.take(int(a), int(a) + 50)
        assert np.array_equal(s2, src[a : a + 50]) and np.array_equal(x2, samples[a : a + 50])
    assert schedule.phase_at(0) == "text" and schedule.phase_at(len(schedule) - 1) == "ft"
    assert schedule.phase_at(96) == "cool"


def test_export_writes_what_take_returns(tmp_path, capsys):
    schedule = compile_text(spec_text(PHASES), tmp_path)
    out = tmp_path / "order.parquet"
    assert main(["export", str(schedule.path), "-o", str(out), "--range", "50:300"]) == 0
    table = pl.read_parquet(out)
    src, samples = schedule.take(50, 300)
    assert table["position"].to_list() == list(range(50, 300))
    assert table["source"].cast(pl.Utf8).to_list() == [schedule.source_names[s] for s in src]
    assert table["sample"].to_list() == samples.tolist()
    assert table["phase"].cast(pl.Utf8).to_list() == [schedule.phase_at(i) for i in range(50, 300)]
    assert table["tokens"].to_list() == schedule.tokens(src, samples).tolist()


def test_explain_prints_the_plan_and_fingerprint(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(spec_text(PHASES))
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fingerprint" in out and "cool" in out and "img" in out and "chat" in out


def test_compile_writes_one_directory_per_sweep_variant(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    sweep = {"axes": {"intro": {"field": "phases.text.duration", "values": ["48sp", "96sp"]},
                      "seed": {"field": "seed", "values": [7, 365]}}}
    path.write_text(spec_text(PHASES, sweep=sweep))
    assert main(["compile", str(path), "-o", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["intro=48sp,seed=365", "intro=48sp,seed=7", "intro=96sp,seed=365", "intro=96sp,seed=7"]
    seeds = {json.loads((tmp_path / "out" / n / "manifest.json").read_text())["seed"] for n in names}
    assert seeds == {7, 365}


def test_validate_and_compile_never_import_torch_streaming_or_composer(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(spec_text(PHASES))
    code = (
        "import sys\n"
        "from mixture.cli import main\n"
        f"assert main(['validate', {str(path)!r}]) == 0\n"
        f"assert main(['compile', {str(path)!r}, '-o', {str(tmp_path / 'o')!r}]) == 0\n"
        f"assert main(['explain', {str(tmp_path / 'o')!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'streaming', 'composer',"
        " 'transformers', 'img2dataset'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
