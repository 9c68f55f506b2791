"""`mixture sweep status` prints run and variant names whole, however long (issue 18: readable sweeps)."""

from __future__ import annotations

from trainer.sweep.cli import print_status
from trainer.sweep.records import SweepRun, VariantEntry
from trainer.sweep.status import RunRow, RunState, SweepStatus, VariantRow

LONG = "intro=early,share=0.9_0.1,seed=a,warmup=5000ba,peak=1e-2,images=datacomp_dr_at_a_long_label_x"


def test_status_shows_full_variant_and_run_names(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal: names wider than it are still printed whole
    run = SweepRun(LONG, "runs/x/run.yaml", f"runs/{LONG}", 0, 100, None, None, (LONG,), "f" * 32)
    entry = VariantEntry({"intro": "early"}, LONG, f"runs/{LONG}", 100, True, None)
    status = SweepStatus("study", [RunRow(run, RunState("done", 100), {})],
                         {LONG: VariantRow(entry, True, f"/sweeps/study/runs/{LONG}")},
                         {"plan_batches": 100, "plan_tokens": 1e6, "scratch_batches": 100, "saved_batches": 0,
                          "saved_batch_fraction": 0.0, "saved_tokens": 0, "saved_token_fraction": 0.0})
    print_status(status)
    out = capsys.readouterr().out
    assert out.count(LONG) == 4  # run id; variant, trained by, results in: each whole on one line
    assert "…" not in out
