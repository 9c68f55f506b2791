"""Training throughput at GPU scale: tokens/s, real (non-padding) tokens/s, MFU and memory, for the study's
model presets, packed against one padded row per sample, the scheduled loader against the same batches
from memory. The ``tiny`` preset runs on CPU (it is what CI-sized machines can measure).

Data: generated here and ingested with the real `mixture ingest` commands (byte tokenizer): English-like
text, JPEG images with captions of about 30 tokens, LLaVA-style conversations with an image. The mixture is
the paper's two costly shapes, by tokens: an image cooldown (half text, half image-caption tokens) and
fine-tuning (conversations with an image, ~500-1,500 of 2,048 slots at the paper's shapes).

Arms, per phase: ``packing`` off/on x loader ``scheduled`` (ScheduledDataset + Collator with ``--workers``
workers, as `mixture train` runs it) / ``memory`` (the very same collated batches, prepared beforehand).
A step's time is the wall time between consecutive BATCH_END events (waiting for data included); the first
``--warmup`` steps of each fit are dropped; arms alternate within a round, medians over rounds. On a shared
CPU machine wall time swings with the other jobs, so the process's CPU time per step is reported beside it
(run with ``OMP_NUM_THREADS=1`` so that it counts work, not threads spinning; with 0 workers it includes the
loader's decoding and collating).

FLOPs (counted for the real tokens only: padding is not useful work), per training step:

    6 * N_lm * T_real  +  12 * L * d * S * T_real        decoder + LM head (fwd + bwd), attention
  + images * (2 * N_vision + 6 * N_projector) * P       frozen tower (forward only), trainable projector

N_lm = decoder and LM-head parameters (embeddings excluded: a lookup), L layers, d hidden size, S = seq_len
(PaLM's attention term, not halved for causality; SDPA computes the full row either way), P patches per
image. MFU = FLOPs / step time / (GPUs x peak dense bf16 FLOP/s of the GPU, table ``PEAK_TFLOPS``).

Usage: ``python benchmarks/bench_train_gpu.py --preset tiny`` (CPU) or ``--preset 1b`` (GPU, bf16);
prints a Markdown table and writes ``benchmarks/results/train_gpu_PRESET.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PEAK_TFLOPS = {  # dense bf16 tensor-core peak per GPU (vendor data sheets, without sparsity)
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "B200": 2250.0,
}
PRESETS: dict[str, dict[str, Any]] = {
    # seq_len, vision preset, visual tokens, global batch, microbatch, vocabulary (a Llama-2-sized one on GPU)
    "tiny": {"seq_len": 128, "vision": "tiny", "visual_tokens": 16, "batch": 16, "microbatch": None,
             "vocab": None, "image_px": 48},
    "79m": {"seq_len": 2048, "vision": "siglip-so400m-384", "visual_tokens": 729, "batch": 32, "microbatch": 8,
            "vocab": 32000, "image_px": 384},
    "1b": {"seq_len": 2048, "vision": "siglip-so400m-384", "visual_tokens": 729, "batch": 32, "microbatch": 4,
           "vocab": 32000, "image_px": 384},
}
WORDS = ("the a model of images and text learns to see colour shape mixture schedule token order light over "
         "under river city small large red green blue animal person street table window").split()


def make_raw(root: Path, image_px: int, text_chars: int, seed: int = 0) -> dict[str, Path]:
    """Text JSONL, JPEG images with ~30-token captions, conversations about those images whose text takes
    10-90% of ``text_chars`` (the byte tokenizer: one token per character)."""
    from PIL import Image

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(50, 600))) for _ in range(400)]
    (root / "text.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    images = root / "images"
    images.mkdir(exist_ok=True)
    chats = []
    for i in range(96):
        img = Image.effect_noise((image_px, image_px), 40 + i).convert("RGB")
        img.save(images / f"{i:04d}.jpg", quality=90)
        (images / f"{i:04d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 9))))
        words = " ".join(rng.choice(WORDS) for _ in range(text_chars)).split()
        said = " ".join(words)[: int(rng.uniform(0.1, 0.9) * text_chars)].split()
        turns = [{"from": "gpt" if t % 2 else "human", "value": ("" if t else "<image>\n") + " ".join(said[a::4])}
                 for t, a in enumerate(range(4))]
        chats.append({"id": str(i), "image": f"{i:04d}.jpg", "conversations": turns})
    (root / "chat.json").write_text(json.dumps(chats))
    return {"text": root / "text.jsonl", "images": images, "chat": root / "chat.json"}


def prepare(root: Path, preset: str) -> Path:
    """Ingested sources and the compiled schedule for ``preset``; returns the schedule directory."""
    import yaml

    from mixture.api import compile_variant, variants
    from mixture.cli import main as cli

    p = PRESETS[preset]
    schedule = root / "schedule"
    if (schedule / "manifest.json").exists():
        return schedule
    raw, data = make_raw(root / "raw", p["image_px"], p["seq_len"] - p["visual_tokens"] - 40), root / "data"
    common, vt = ["--tokenizer", "bytes"], str(p["visual_tokens"])
    for args in (["text", str(raw["text"]), "-o", str(data / "text"), "--seq-len", str(p["seq_len"])],
                 ["image-caption", "--images", str(raw["images"]), "-o", str(data / "images"), "--visual-tokens", vt],
                 ["instruction", str(raw["chat"]), "--image-root", str(raw["images"]), "-o", str(data / "chat"),
                  "--visual-tokens", vt]):
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli(["ingest", *args, *common])
        if code != 0:
            raise SystemExit(f"ingest {args[0]} failed")
    spec = {"name": f"bench-{preset}", "seed": 1,
            "run": {"seq_len": p["seq_len"], "global_batch_size": p["batch"], "lr": {"peak": 1e-4, "warmup": "2ba",
                                                                                     "schedule": "constant"}},
            "sources": {"text": {"kind": "text", "location": str(data / "text")},
                        "images": {"kind": "image_caption", "location": str(data / "images"),
                                   "visual_tokens_per_image": p["visual_tokens"]},
                        "chat": {"kind": "instruction", "location": str(data / "chat"),
                                 "visual_tokens_per_image": p["visual_tokens"]}},
            "phases": [{"name": "cooldown", "duration": "400ba", "mix": {"text": 0.5, "images": 0.5}},
                       {"name": "finetune", "duration": "400ba", "mix": {"chat": 1}}]}
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    (variant,) = variants(path)
    compile_variant(variant, schedule)
    return schedule


def run_config(root: Path, schedule: Path, preset: str, args: argparse.Namespace, packing: bool) -> Any:
    """The run context of the benchmark's run config (no checkpoints, no export, no evaluation)."""
    from trainer.config import RunConfig
    from trainer.context import open_run

    p = PRESETS[preset]
    lm: dict[str, Any] = {"preset": preset}
    if p["vocab"]:
        lm["config"] = {"vocab_size": p["vocab"]}
    config = RunConfig.model_validate({
        "schedule": str(schedule), "run_dir": str(root / "run"), "export": False,
        "model": {"lm": lm, "vision": {"preset": p["vision"]}}, "precision": args.precision,
        "microbatch_size": args.microbatch or p["microbatch"], "compile": args.compile,
        "activation_checkpointing": args.activation_checkpointing, "checkpoint": {"autoresume": False},
        "loggers": {"console": False}, "data": {"packing": packing, "num_workers": args.workers,
                                                "cpu_threads": args.cpu_threads}})
    return open_run(config, root)


class Probe:
    """Composer callback: each batch's rows, token slots and real tokens, and every BATCH_END time."""

    def __init__(self) -> None:
        from composer.core import Callback

        probe = self

        class _Probe(Callback):
            def after_dataloader(self, state, logger) -> None:  # noqa: ANN001
                batch = state.batch
                probe.shapes.append((int(batch["input_ids"].numel()), int(batch["attention_mask"].sum()),
                                     int(batch["has_image"].sum())))

            def batch_end(self, state, logger) -> None:  # noqa: ANN001
                probe.times.append(time.perf_counter())
                probe.cpu_times.append(time.process_time())

        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.shapes: list[tuple[int, int, int]] = []
        self.callback = _Probe()


def fit(run: Any, first: int, steps: int, batches: list | None) -> tuple[Probe, Any]:
    """``steps`` training steps from global batch ``first``: from the scheduled loader, or ``batches``.
    Returns the probe and the trained LLaVA model."""
    from composer import Trainer
    from composer.core import DataSpec

    from trainer.batch import num_samples, split_rows
    from trainer.build import build_pieces, num_tokens
    from trainer.metrics import RunLog

    args = build_pieces(run, RunLog(run.run_dir)).trainer_args
    probe = Probe()
    args.update(callbacks=[probe.callback], save_folder=None, autoresume=False, load_path=None,
                max_duration=f"{steps}ba")
    if batches is not None:
        args["train_dataloader"] = DataSpec(batches, get_num_tokens_in_batch=num_tokens,
                                            get_num_samples_in_batch=num_samples, split_batch=split_rows)
    else:
        args["train_dataloader"].dataloader.dataset.load_state_dict(
            {"samples_consumed": first * run.global_batch_size, "schedule_fingerprint": run.schedule.fingerprint,
             "global_batch_size": run.global_batch_size})
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(**args)
    trainer.fit()
    trainer.close()
    return probe, args["model"].hf


def model_flops(hf: Any, real_tokens: int, images: int, seq_len: int) -> float:
    """Training FLOPs of one step (see the module docstring)."""
    text = hf.config.text_config
    lm = hf.model.language_model
    n_lm = sum(p.numel() for p in lm.layers.parameters()) + sum(p.numel() for p in hf.lm_head.parameters())
    n_vision = sum(p.numel() for p in hf.model.vision_tower.parameters())
    n_proj = sum(p.numel() for p in hf.model.multi_modal_projector.parameters())
    vision = hf.config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    attention = 12 * text.num_hidden_layers * text.hidden_size * seq_len
    return (6 * n_lm + attention) * real_tokens + images * (2 * n_vision + 6 * n_proj) * patches


def peak_flops(override: float | None) -> tuple[float | None, str]:
    """(peak dense bf16 FLOP/s of all GPUs, device name); ``None`` on CPU unless ``--peak-tflops``."""
    import torch

    if not torch.cuda.is_available():
        return (override * 1e12 if override else None), f"CPU: {platform.processor() or platform.machine()}, " \
                                                         f"{len(os.sched_getaffinity(0))} cores"
    name = torch.cuda.get_device_name()
    peak = override or next((v for k, v in PEAK_TFLOPS.items() if k.lower() in name.lower()), None)
    return (peak * 1e12 * torch.cuda.device_count() if peak else None), name


def summarise(probe: Probe, warmup: int, flops_of: Any, peak: float | None) -> dict[str, float]:
    """Median step time and the throughput numbers of one fit."""
    steps = [b - a for a, b in zip(probe.times[warmup:], probe.times[warmup + 1:])]
    cpu = [b - a for a, b in zip(probe.cpu_times[warmup:], probe.cpu_times[warmup + 1:])]
    kept = probe.shapes[warmup + 1:len(probe.times)]
    step = statistics.median(steps)
    slots = statistics.mean(s[0] for s in kept)
    real = statistics.mean(s[1] for s in kept)
    flops = statistics.mean(flops_of(s[1], s[2]) for s in kept)
    return {"step_s": step, "cpu_step_s": statistics.median(cpu), "rows_tokens_per_s": slots / step,
            "real_tokens_per_s": real / step, "real_tokens_per_cpu_s": real / statistics.median(cpu),
            "padding": 1 - real / slots, "model_tflops": flops / step / 1e12,
            "mfu": flops / step / peak if peak else float("nan"),
            "peak_memory_gib": memory_gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cpu-threads", type=int, default=None, help="data.cpu_threads (default: the trainer's)")
    parser.add_argument("--precision", default=None, help="default: amp_bf16 on GPU, fp32 on CPU")
    parser.add_argument("--microbatch", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--phases", default="cooldown,finetune")
    parser.add_argument("--packing", default="off,on", help="arms: off, on or both (off,on)")
    parser.add_argument("--loaders", default="scheduled,memory", help="arms: scheduled, memory or both")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s per device, in TFLOP/s")
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench_train_gpu"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    import torch

    args.precision = args.precision or ("amp_bf16" if torch.cuda.is_available() else "fp32")
    root = args.root / args.preset
    schedule = prepare(root, args.preset)
    peak, device = peak_flops(args.peak_tflops)
    rows = []
    for phase in args.phases.split(","):
        rows += measure_phase(root, schedule, phase, args, peak)
    result = {"device": device, "torch": torch.__version__, "preset": args.preset, "precision": args.precision,
              "workers": args.workers, "cpu_threads": torch.get_num_threads(), "steps": args.steps,
              "warmup": args.warmup, "rounds": args.rounds,
              "compile": args.compile, "activation_checkpointing": args.activation_checkpointing,
              "peak_flops": peak, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_gpu_{args.preset}{'_' + args.tag if args.tag else ''}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{device}, {args.preset}, {args.precision}, {args.workers} workers, {torch.get_num_threads()} threads")
    print("| phase | packing | loader | step ms | CPU ms/step | token slots/s | real tokens/s | real tokens/CPU s | "
          "padding | model TFLOP/s | MFU | loader overhead (wall, CPU) | peak memory GiB |\n" + "|---" * 13 + "|")
    for r in rows:
        overhead = f"{r['overhead']:+.1%}, {r['cpu_overhead']:+.1%}" if "overhead" in r else ""
        print(f"| {r['phase']} | {r['packing']} | {r['loader']} | {r['step_s'] * 1e3:.1f} | "
              f"{r['cpu_step_s'] * 1e3:.1f} | {r['rows_tokens_per_s']:,.0f} | {r['real_tokens_per_s']:,.0f} | "
              f"{r['real_tokens_per_cpu_s']:,.0f} | {r['padding']:.1%} | {r['model_tflops']:.4g} | {r['mfu']:.1%} | "
              f"{overhead} | {r['peak_memory_gib']:.2f} |")


def measure_phase(root: Path, schedule: Path, phase: str, args: argparse.Namespace,
                  peak: float | None) -> list[dict[str, Any]]:
    """All four arms on the first batches of ``phase``, ``--rounds`` times; medians per arm."""
    from bench_train_step import batches_of
    from mixture.schedule import load_schedule

    sched = load_schedule(schedule)
    first = next(p["start"] for p in sched.phases if p["name"] == phase) // sched.global_batch_size
    seq_len = int(sched.manifest["seq_len"])
    out = []
    loaders = args.loaders.split(",")
    for packing in [arm == "on" for arm in args.packing.split(",")]:
        memory = batches_of(run_config(root, schedule, args.preset, args, packing), first, args.steps) \
            if "memory" in loaders else None
        runs: dict[str, list[dict[str, float]]] = {loader: [] for loader in loaders}
        for _ in range(args.rounds):
            for loader in loaders:
                run = run_config(root, schedule, args.preset, args, packing)
                probe, hf = fit(run, first, args.steps, memory if loader == "memory" else None)
                runs[loader].append(summarise(probe, args.warmup,
                                              lambda real, images: model_flops(hf, real, images, seq_len), peak))
                print(f"{phase} packing={packing} {loader}: {runs[loader][-1]['step_s'] * 1e3:.1f} ms/step",
                      flush=True)
        for loader, results in runs.items():
            row = {k: statistics.median(r[k] for r in results) for k in results[0]}
            out.append({"phase": phase, "packing": packing, "loader": loader, **row})
        if loaders == ["scheduled", "memory"]:
            out[-2]["overhead"] = out[-2]["step_s"] / out[-1]["step_s"] - 1
            out[-2]["cpu_overhead"] = out[-2]["cpu_step_s"] / out[-1]["cpu_step_s"] - 1
    return out


def memory_gib() -> float:
    """Peak GPU memory allocated, or on CPU this process's peak resident set, in GiB."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
