"""`mixture train` end to end on CPU: one process and 2-rank FSDP2, exact resume, branches, refusal, export.

One module fixture ingests three tiny sources with the real ingest commands and trains the reference run
(12 batches: text, an image cooldown, fine-tuning) with a checkpoint every 2 batches; the other tests
compare against it. Losses are compared with ``==`` where the claim is bit-identity (same process layout),
and to 1e-6 relative across world sizes (float reductions differ in order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

import torch  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402
from trainer.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("study")
    raw = h.make_raw(root / "raw")
    h.ingest(raw, root / "data")
    trunk = h.compile_to(h.mixture(root / "data"), root / "a.yaml", root / "sched_a")
    other = h.compile_to(h.mixture(root / "data", cooldown_images=0.5), root / "b.yaml", root / "sched_b")
    evaluation = {"heldout": {"text": {"location": str(root / "data" / "text"), "samples": 16}},
                  "vqa": {"file": str(raw["vqa"])}}
    config = h.run_config(root / "a_run.yaml", trunk, root / "run_a", eval=evaluation,
                          checkpoint={"interval": "2ba"})
    result = train(config)
    return {"root": root, "raw": raw, "trunk": trunk, "other": other, "config": config, "result": result,
            "eval": evaluation}


def losses(run_dir: Path) -> list[float]:
    return [m["loss/train"] for m in h.metrics(run_dir)]


def test_run_logs_what_the_schedule_serves(study: dict) -> None:
    run_dir, schedule = study["root"] / "run_a", load_schedule(study["trunk"])
    lines, batch = h.metrics(run_dir), schedule.global_batch_size
    assert [m["batch"] for m in lines] == list(range(1, 13))
    src, samples = schedule.take(0, len(schedule))
    tokens = schedule.tokens(src, samples)
    for m in lines:
        upto = m["batch"] * batch
        for sid, name in enumerate(schedule.source_names):
            assert m[f"samples/train/{name}"] == int((src[:upto] == sid).sum())
            assert m[f"tokens/train/{name}"] == int(tokens[:upto][src[:upto] == sid].sum())
            in_batch = (src[upto - batch:upto] == sid).any()
            assert (f"loss/train/{name}" in m) == bool(in_batch)
    assert [m["lr"] for m in lines] == pytest.approx(schedule.lr().tolist(), rel=1e-12)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "done" and run["last_batch"] == 12
    assert run["schedule_fingerprint"] == schedule.fingerprint and run["global_batch_size"] == batch
    assert run["variant"] == {"name": "", "values": {}} and run["world_size"] == 1
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["eval"]) == {"eval/loss/text", "eval/vqa/accuracy", "eval/vqa/num_questions"}
    assert results["eval"]["eval/vqa/num_questions"] == 8
    rows = [json.loads(line) for line in study["raw"]["vqa"].read_text().splitlines()]
    first = rows[0]["answers"][0]  # no kinds: one kind, whose most common answer (ties: first seen) is first's
    prior = results["baselines"]["eval/vqa/accuracy"]
    assert prior["value"] == pytest.approx(sum(r["answers"] == [first] for r in rows) / len(rows))
    assert prior["name"] == "answer prior" and prior["se"] > 0
    assert results["baselines"]["eval/loss/text"]["value"] == pytest.approx(np.log(257))  # byte tokenizer
    assert losses(run_dir)[5] < losses(run_dir)[0]  # text loss falls over the text phase


def test_stop_and_resume_is_bit_identical(study: dict) -> None:
    root = study["root"]
    config = h.run_config(root / "r_run.yaml", study["trunk"], root / "run_r", eval=study["eval"])
    first = train(config, stop_at="5ba")
    assert first.batches == 5 and json.loads((root / "run_r" / "run.json").read_text())["status"] == "stopped"
    second = train(config)  # autoresume from run_r/checkpoints
    assert second.batches == 12
    assert losses(root / "run_r") == losses(root / "run_a")
    assert second.final_eval == study["result"].final_eval


def test_resume_refuses_another_schedule(study: dict) -> None:
    root = study["root"]
    checkpoint = root / "run_a" / "checkpoints" / "ba8-rank0.pt"
    config = h.run_config(root / "x_run.yaml", study["other"], root / "run_x",
                          checkpoint={"load": str(checkpoint), "autoresume": False})
    with pytest.raises(MixtureError, match="ignore_schedule_fingerprint"):
        train(config)


def test_branch_equals_training_the_branch_schedule_from_scratch(study: dict) -> None:
    root = study["root"]
    scratch = train(h.run_config(root / "s_run.yaml", study["other"], root / "run_s", eval=study["eval"]))
    branch_cfg = h.run_config(root / "b_run.yaml", study["other"], root / "run_b", eval=study["eval"],
                              branch={"checkpoint": str(root / "run_a" / "checkpoints" / "ba6-rank0.pt"),
                                      "schedule": str(study["trunk"])})
    branched = train(branch_cfg)
    assert losses(root / "run_b") == losses(root / "run_s")[6:]
    assert losses(root / "run_a")[:6] == losses(root / "run_s")[:6]
    assert branched.final_eval == scratch.final_eval
    cumulative = h.metrics(root / "run_b")[-1]
    assert {k: v for k, v in cumulative.items() if k.startswith(("samples/", "tokens/"))} == \
        {k: v for k, v in h.metrics(root / "run_s")[-1].items() if k.startswith(("samples/", "tokens/"))}


def test_branch_past_the_divergence_is_refused(study: dict) -> None:
    root = study["root"]
    config = h.run_config(root / "bad_run.yaml", study["other"], root / "run_bad",
                          branch={"checkpoint": str(root / "run_a" / "checkpoints" / "ba8-rank0.pt"),
                                  "schedule": str(study["trunk"])})
    with pytest.raises(MixtureError, match=r"cannot branch at position 64: .* agree only on the first 48"):
        train(config)
    config = h.run_config(root / "bad2_run.yaml", study["other"], root / "run_bad2",
                          branch={"checkpoint": str(root / "run_a" / "checkpoints" / "ba6-rank0.pt"),
                                  "schedule": str(study["other"])})
    with pytest.raises(MixtureError, match="not the trunk schedule"):
        train(config)


def test_packing_changes_rows_not_losses_or_counts(study: dict) -> None:
    """run_a packs (the default); the same run with one padded row per sample trains the same batches."""
    root = study["root"]
    config = h.run_config(root / "u_run.yaml", study["trunk"], root / "run_u", data={"packing": False},
                          export=False)
    train(config)
    packed, plain = h.metrics(root / "run_a"), h.metrics(root / "run_u")
    assert len(packed) == len(plain) == 12
    for p, u in zip(packed, plain):
        assert {k: v for k, v in p.items() if k.startswith(("samples", "tokens", "batch"))} == \
            {k: v for k, v in u.items() if k.startswith(("samples", "tokens", "batch"))}
        assert {k: v for k, v in p.items() if k.startswith("loss/")} == pytest.approx(
            {k: v for k, v in u.items() if k.startswith("loss/")}, rel=1e-4)


class _RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it creates ``path`` (any callable could run instead of ``open``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_branch_checkpoint_is_unpickled_weights_only(study: dict, tmp_path: Path) -> None:
    """A real trunk checkpoint loads with weights_only=True and the allow-list; a checkpoint whose pickle
    would run code is refused in one line, before that code runs."""
    from trainer.branch import _dataset_state

    root = study["root"]
    assert _dataset_state(str(root / "run_a" / "checkpoints" / "ba6-rank0.pt"))["samples_consumed"] == 48
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"state": {"dataset_state": {"train": _RunsCodeWhenUnpickled(str(marker))}}}, evil)
    config = h.run_config(root / "evil_run.yaml", study["other"], root / "run_evil",
                          branch={"checkpoint": str(evil), "schedule": str(study["trunk"])})
    with pytest.raises(MixtureError, match=f"refused to load branch checkpoint {evil}: .*GLOBAL io.open was not"):
        train(config)
    assert not marker.exists()


# The module's reference run is set up inside this test's time when it runs alone; two suites at once on
# a 2-core machine took 646 s for it (measured), over the suite's default 600 s.
@pytest.mark.timeout(1500)
def test_two_rank_fsdp_matches_one_process(study: dict, free_port: Callable[[], int]) -> None:
    """Both runs pack (the default): each rank packs its own half of every global batch."""
    root = study["root"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # FSDP2 is the trainer's choice, not the environment's
    cmd = [sys.executable, "-m", "composer.cli.launcher", "-n", "2", "--master_port", str(free_port()),
           "-m", "mixture", "train", str(study["config"]), "--run-dir", str(root / "run_fsdp")]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = h.metrics(root / "run_a"), h.metrics(root / "run_fsdp")
    assert [m["loss/train"] for m in two] == pytest.approx([m["loss/train"] for m in one], rel=1e-6)
    strip = [{k: v for k, v in m.items() if k.startswith(("samples", "tokens", "batch"))} for m in one]
    assert [{k: v for k, v in m.items() if k.startswith(("samples", "tokens", "batch"))} for m in two] == strip
    assert json.loads((root / "run_fsdp" / "run.json").read_text())["world_size"] == 2
    assert (root / "run_fsdp" / "export" / "config.json").exists()


def test_export_loads_in_transformers_with_equal_logits(study: dict) -> None:
    from transformers import LlamaForCausalLM, LlavaForConditionalGeneration

    from trainer.model import PIXEL_MEAN, PIXEL_STD, VLM

    export = study["result"].export_dir
    hf = LlavaForConditionalGeneration.from_pretrained(export).eval()
    trained = torch.load(study["root"] / "run_a" / "checkpoints" / "ba12-rank0.pt", weights_only=False)
    weights = {k.removeprefix("core.hf."): v for k, v in trained["state"]["model"].items()}
    assert all(torch.equal(hf.state_dict()[k], v) for k, v in weights.items())
    vt = 16
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(np.concatenate([np.full(vt, hf.config.image_token_id), rng.integers(0, 256, 20)]))[None]
    pixels = torch.from_numpy(rng.integers(0, 256, (1, 3, 32, 32), dtype=np.uint8))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask,
                    pixel_values=(pixels.float() / 255 - PIXEL_MEAN) / PIXEL_STD).logits
        ours = VLM(hf, 3).eval().logits(ids, mask, pixels, torch.tensor([True]))
        text = LlamaForCausalLM.from_pretrained(export / "language_model").eval()
        text_ids = ids[:, vt:]
        text_only = VLM(hf, 3).logits(text_ids, torch.ones_like(text_ids), pixels, torch.tensor([False]))
        assert torch.allclose(text(input_ids=text_ids).logits, text_only, atol=1e-5)
    assert torch.allclose(theirs, ours, atol=1e-5)
