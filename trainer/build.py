"""Build the Composer Trainer's arguments for a run: tokenizer, model, data, optimiser, LR, callbacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mixture.errors import MixtureError
from trainer.config import RunConfig, require, resolve_path
from trainer.batch import Vocab
from trainer.model import VLM, build_hf_model, visual_tokens

if TYPE_CHECKING:
    from trainer.run import _Run


def tokenizer_dir(config: RunConfig, base: Path, manifest: dict[str, Any]) -> str:
    """The tokenizer: the configured one, or the one the first ingested source records."""
    if config.model.tokenizer:
        return resolve_path(base, config.model.tokenizer) or ""
    import pyarrow.parquet as pq

    from streaming_data.tokenizer import described_tokenizer

    for source in manifest["sources"]:
        location = source.get("location")
        if not location or "://" in location:
            continue
        meta = pq.read_schema(Path(location, "samples.parquet")).metadata or {}
        found = described_tokenizer(meta.get(b"mixture:tokenizer", b"").decode())
        if found:
            return found
    raise MixtureError("no tokenizer: the schedule's sources do not record one",
                       hint="set model.tokenizer in the run config")


def build_pieces(run: _Run) -> dict[str, Any]:
    """Everything :class:`composer.Trainer` needs, plus the evaluation callback (for its results)."""
    from streaming_data.tokenizer import load_tokenizer

    config, schedule = run.config, run.schedule
    manifest = schedule.manifest
    run.tokenizer_dir = tokenizer_dir(config, run.base, manifest)
    tokenizer = load_tokenizer(run.tokenizer_dir)
    vocab = Vocab(tokenizer.vocab_size, tokenizer.eos_id)
    torch.manual_seed(config.seed)
    hf = build_hf_model(config.model, vocab, int(manifest["seq_len"]))
    _check_visual_tokens(manifest, visual_tokens(hf))
    model = VLM(hf, len(schedule.sources))
    collator_args = {"seq_len": int(manifest["seq_len"]), "vocab": vocab, "visual_tokens": visual_tokens(hf),
                     "image_size": hf.config.vision_config.image_size}
    loader = _loader(run, collator_args)
    lr = _lr(config, schedule)
    evaluation = _evaluation(run, collator_args, tokenizer)
    return {"evaluation": evaluation, "trainer_args": _trainer_args(run, model, loader, lr, evaluation)}


def _check_visual_tokens(manifest: dict[str, Any], per_image: int) -> None:
    for name, source in manifest["spec"]["sources"].items():
        if source["kind"] == "text" or name not in {s["name"] for s in manifest["sources"]}:
            continue
        planned = source.get("visual_tokens_per_image")
        require(planned == per_image,
                f"source {name!r} is priced at {planned} visual tokens per image, but the vision encoder makes "
                f"{per_image} ((image_size / patch_size)^2)",
                "make the mixture file's visual_tokens_per_image and the encoder's image and patch size agree")


def _loader(run: _Run, collator_args: dict[str, Any]) -> Any:
    from streaming_data.serve import ScheduledDataset, build_dataloader
    from trainer.batch import Collator

    config = run.config
    branch = config.branch is not None and not _has_own_checkpoint(run)
    if branch:
        from trainer.run import branch_check

        branch_check(resolve_path(run.base, config.branch.schedule) or "",
                     resolve_path(run.base, config.branch.checkpoint) or "", run.schedule)
    dataset = ScheduledDataset(run.schedule_path, cache_dir=resolve_path(run.base, config.data.cache_dir),
                               cache_limit=config.data.cache_limit,
                               ignore_schedule_fingerprint=branch or config.checkpoint.ignore_schedule_fingerprint)
    if config.data.num_workers and not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        # Measured on 2 cores: workers next to PyTorch's OpenMP threads made CPU steps ~10x slower.
        print(f"note: {config.data.num_workers} dataloader workers on CPU compete with PyTorch's threads; if steps "
              "are slow, set OMP_NUM_THREADS=1 or data.num_workers: 0", file=sys.stderr)
    kinds = [s.kind for s in run.schedule.sources]
    collate = Collator(kinds, run.schedule_path, **collator_args)
    return build_dataloader(dataset, num_workers=config.data.num_workers, collate_fn=collate,
                            persistent_workers=config.data.num_workers > 0)


def _checkpoint_folder(run: _Run) -> str:
    return resolve_path(run.base, run.config.checkpoint.folder) or str(run.run_dir / "checkpoints")


def _has_own_checkpoint(run: _Run) -> bool:
    folder = _checkpoint_folder(run)
    return run.config.checkpoint.autoresume and "://" not in folder and Path(folder, "latest-rank0.pt").exists()


def _lr(config: RunConfig, schedule: Any) -> list[float]:
    lr = schedule.lr()
    if lr is None:
        require(config.optimizer.lr is not None, "the schedule has no learning-rate plan (run.lr in the mixture "
                "file) and the run config sets no optimizer.lr", "set one of them")
        return [float(config.optimizer.lr)] * (len(schedule) // schedule.global_batch_size)
    require(config.optimizer.lr is None, "optimizer.lr is set, but the schedule has its own learning-rate plan",
            "remove optimizer.lr: the mixture file's run.lr is the learning rate")
    return [float(x) for x in lr]


def _evaluation(run: _Run, collator_args: dict[str, Any], tokenizer: Any) -> Any:
    from trainer.batch import Collator
    from trainer.evaluate import Evaluation, HeldOutSet, VQASet

    cfg = run.config.eval
    heldout = [HeldOutSet(name, resolve_path(run.base, h.location) or "", h.samples, collator_args)
               for name, h in cfg.heldout.items()]
    vqa = None
    if cfg.vqa is not None:
        collator = Collator(["image_caption"], None, **collator_args)
        vqa = VQASet(resolve_path(run.base, cfg.vqa.file) or "", cfg.vqa.questions, cfg.vqa.max_new_tokens,
                     tokenizer, collator)
    interval = _batches(cfg.interval)
    return Evaluation(heldout, vqa, cfg.batch_size, interval, run.log)


def _batches(text: str | None) -> int | None:
    """An interval in batches (the config's schema has already checked that it parses)."""
    if text is None:
        return None
    from mixture.units import Unit, parse_duration

    duration = parse_duration(text)
    require(duration.unit is Unit.BATCHES, f"interval {text!r}: write it in batches, e.g. `100ba`")
    return int(duration.value)


def num_tokens(batch: dict[str, torch.Tensor]) -> dict[str, int]:
    """Tokens of a batch for Composer: attended (``total``) and with a loss (``loss_generating``)."""
    from trainer.batch import IGNORE

    return {"total": int(batch["attention_mask"].sum()),
            "loss_generating": int((batch["labels"][:, 1:] != IGNORE).sum())}


def _save_when(config: RunConfig, stop: int) -> Any:
    """Composer's save_interval: every ``checkpoint.interval`` batches, at ``checkpoint.save_at``, at the end."""
    from composer.core import Event

    every = _batches(config.checkpoint.interval)
    at = set(config.checkpoint.save_at) | {stop}

    def save(state: Any, event: Event) -> bool:
        if event != Event.BATCH_CHECKPOINT:
            return False
        batch = int(state.timestamp.batch)
        return batch in at or bool(every and batch % every == 0)

    return save


def _trainer_args(run: _Run, model: VLM, loader: Any, lr: list[float], evaluation: Any) -> dict[str, Any]:
    from trainer.loggers import build_loggers
    from trainer.lr import ScheduleLR
    from trainer.metrics import SourceMetrics
    from trainer.progress import TrainProgress

    config = run.config
    opt = config.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=max(lr), betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
    loggers = build_loggers(config.loggers, run.run_dir, run.base)
    metrics = SourceMetrics([s.name for s in run.schedule.sources], run.log, lr)
    load = config.branch.checkpoint if config.branch else config.checkpoint.load
    fsdp = config.fsdp.enabled if config.fsdp.enabled is not None else run.world > 1
    from composer.core import DataSpec

    args: dict[str, Any] = {
        # Gradient accumulation and rank averaging weighted by label tokens: the step's loss is the mean
        # over every label token of the global batch, whatever the world size and microbatch size.
        "model": model, "train_dataloader": DataSpec(loader, get_num_tokens_in_batch=num_tokens),
        "accumulate_train_batch_on_tokens": True, "max_duration": f"{run.stop_batch}ba",
        "optimizers": optimizer, "schedulers": [ScheduleLR(torch.tensor(lr).numpy())],
        "step_schedulers_every_batch": True, "device": "gpu" if torch.cuda.is_available() else "cpu",
        "precision": config.precision, "seed": config.seed, "run_name": run.run_dir.name,
        "callbacks": [metrics, evaluation, TrainProgress(metrics, run.stop_batch, run.run_dir.name)],
        "loggers": loggers, "progress_bar": False, "log_to_console": config.loggers.console,
        "console_log_interval": config.loggers.console_interval,
        "save_folder": _checkpoint_folder(run), "save_interval": _save_when(config, run.stop_batch),
        "save_filename": "ba{batch}-rank{rank}.pt", "save_num_checkpoints_to_keep": config.checkpoint.keep,
        "save_overwrite": True, "autoresume": config.checkpoint.autoresume,
        "load_path": resolve_path(run.base, load), "device_train_microbatch_size": config.microbatch_size or loader.batch_size,
    }
    if opt.grad_clip_norm is not None:
        from composer.algorithms import GradientClipping

        args["algorithms"] = [GradientClipping(clipping_type="norm", clipping_threshold=opt.grad_clip_norm)]
    if fsdp:
        args["parallelism_config"] = {"fsdp": {"reshard_after_forward": config.fsdp.reshard_after_forward,
                                               "state_dict_type": config.fsdp.state_dict}}
    return args
