"""Build the Composer Trainer's arguments for a run: tokenizer, model, data, optimiser, LR, callbacks.

Each builder takes what it needs (the frozen :class:`~trainer.context.RunContext`, or parts of it) and
returns what it builds; :func:`build_pieces` calls them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mixture.errors import MixtureError
from mixture.run_dir import CHECKPOINT_FILE
from mixture.schedule import Schedule
from mixture.sources import SAMPLE_INDEX
from streaming_data.locations import is_remote, local_path
from trainer.batch import Collator, Vocab
from trainer.config import EvalConfig, RunConfig, require, resolve_path
from trainer.context import RunContext
from trainer.evaluate import Evaluation
from trainer.metrics import RunLog
from trainer.model import VLM, build_hf_model, configure_speed, precision_for, visual_tokens


@dataclass(frozen=True)
class Pieces:
    """What :func:`build_pieces` builds.

    Attributes:
        tokenizer_dir: The tokenizer's directory (the export copies it).
        evaluation: The evaluation callback (its ``last`` values are the run's final scores).
        trainer_args: Keyword arguments of :class:`composer.Trainer`.
    """

    tokenizer_dir: str
    evaluation: Evaluation
    trainer_args: dict[str, Any]


def tokenizer_dir(config: RunConfig, base: Path, manifest: dict[str, Any]) -> str:
    """The tokenizer: the configured one, or the one the first ingested source records."""
    if config.model.tokenizer:
        return resolve_path(base, config.model.tokenizer) or ""
    import pyarrow.parquet as pq

    from streaming_data.tokenizer import described_tokenizer

    for source in manifest["sources"]:
        location = source.get("location")
        if not location or is_remote(location):
            continue
        meta = pq.read_schema(Path(local_path(location), SAMPLE_INDEX)).metadata or {}
        found = described_tokenizer(meta.get(b"mixture:tokenizer", b"").decode())
        if found:
            return found
    raise MixtureError("no tokenizer: the schedule's sources do not record one",
                       hint="set model.tokenizer in the run config")


def build_pieces(ctx: RunContext, log: RunLog) -> Pieces:
    """Everything :class:`composer.Trainer` needs, plus the evaluation callback (for its results)."""
    from streaming_data.tokenizer import load_tokenizer

    config, schedule = ctx.config, ctx.schedule
    manifest = schedule.manifest.to_json()
    tokenizer_path = tokenizer_dir(config, ctx.base, manifest)
    tokenizer = load_tokenizer(tokenizer_path)
    vocab = Vocab(tokenizer.vocab_size, tokenizer.eos_id)
    torch.manual_seed(config.seed)
    hf = build_hf_model(config.model, vocab, int(manifest["seq_len"]))
    _check_visual_tokens(manifest, visual_tokens(hf))
    configure_speed(hf, activation_checkpointing=config.activation_checkpointing, compile=config.compile)
    model = VLM(hf, len(schedule.sources), config.model.feature_norm == "channel")
    model.label_logits_only = True  # training and held-out losses need no logits where nothing is predicted
    collator_args = {"seq_len": int(manifest["seq_len"]), "vocab": vocab, "visual_tokens": visual_tokens(hf),
                     "image_size": hf.config.vision_config.image_size}
    if model.core.feature_norm:
        from trainer.features import fit_feature_norm

        fit_feature_norm(model, schedule, Collator([], None, **collator_args).pixels, config.model.feature_norm_images)
    loader = build_loader(ctx, collator_args)
    lr = learning_rates(config, schedule)
    evaluation = build_evaluation(config.eval, ctx.base, collator_args, tokenizer, log)
    return Pieces(tokenizer_path, evaluation, trainer_args(ctx, model, loader, lr, evaluation, log))


def _check_visual_tokens(manifest: dict[str, Any], per_image: int) -> None:
    for name, source in manifest["spec"]["sources"].items():
        if source["kind"] == "text" or name not in {s["name"] for s in manifest["sources"]}:
            continue
        planned = source.get("visual_tokens_per_image")
        require(planned == per_image,
                f"source {name!r} is priced at {planned} visual tokens per image, but the vision encoder makes "
                f"{per_image} ((image_size / patch_size)^2)",
                "make the mixture file's visual_tokens_per_image and the encoder's image and patch size agree")


def build_loader(ctx: RunContext, collator_args: dict[str, Any]) -> Any:  # noqa: ANN401 - a DataLoader
    """The scheduled dataset's DataLoader (checking a branch point first)."""
    from streaming_data.serve import ScheduledDataset, build_dataloader
    from trainer.batch import Collator

    config = ctx.config
    branch = config.branch is not None and not _has_own_checkpoint(ctx)
    if branch:
        from trainer.branch import branch_check

        branch_check(ctx.path(config.branch.schedule) or "", ctx.path(config.branch.checkpoint) or "", ctx.schedule)
    dataset = ScheduledDataset(ctx.schedule_path, cache_dir=ctx.path(config.data.cache_dir),
                               cache_limit=config.data.cache_limit,
                               ignore_schedule_fingerprint=branch or config.checkpoint.ignore_schedule_fingerprint)
    from composer.utils import dist

    from trainer.loader import loader_kwargs, set_cpu_threads

    set_cpu_threads(config.data, dist.get_local_world_size())  # workers next to OpenMP threads: docs/training.md
    kinds = [s.kind for s in ctx.schedule.sources]
    collate = Collator(kinds, ctx.schedule_path, **collator_args, packing=config.data.packing)
    return build_dataloader(dataset, num_workers=config.data.num_workers, collate_fn=collate,
                            **loader_kwargs(config.data))


def _has_own_checkpoint(ctx: RunContext) -> bool:
    folder = ctx.checkpoint_folder
    return (ctx.config.checkpoint.autoresume and not is_remote(folder)
            and Path(local_path(folder), "latest-rank0.pt").exists())


def learning_rates(config: RunConfig, schedule: Schedule) -> list[float]:
    """The learning rate of every global batch: the schedule's plan, else the config's constant."""
    lr = schedule.lr()
    if lr is None:
        require(config.optimizer.lr is not None, "the schedule has no learning-rate plan (run.lr in the mixture "
                "file) and the run config sets no optimizer.lr", "set one of them")
        return [float(config.optimizer.lr)] * schedule.num_batches
    require(config.optimizer.lr is None, "optimizer.lr is set, but the schedule has its own learning-rate plan",
            "remove optimizer.lr: the mixture file's run.lr is the learning rate")
    return [float(x) for x in lr]


def build_evaluation(cfg: EvalConfig, base: Path, collator_args: dict[str, Any], tokenizer: Any,  # noqa: ANN401
                     log: RunLog) -> Evaluation:
    """The evaluation callback: held-out losses and VQA accuracy, every ``eval.interval`` and at the end."""
    from trainer.baselines import run_baselines
    from trainer.batch import Collator
    from trainer.evaluate import HeldOutSet, VQASet

    heldout = [HeldOutSet(name, resolve_path(base, h.location) or "", h.samples, collator_args)
               for name, h in cfg.heldout.items()]
    vqa = None
    if cfg.vqa is not None:
        collator = Collator(["image_caption"], None, **collator_args)
        vqa = VQASet(resolve_path(base, cfg.vqa.file) or "", cfg.vqa.questions, cfg.vqa.max_new_tokens,
                     tokenizer, collator)
    baselines = run_baselines(vqa.rows if vqa else None, [f"eval/loss/{name}" for name in cfg.heldout],
                              collator_args["vocab"].text_vocab_size)
    return Evaluation(heldout, vqa, cfg.batch_size, _batches(cfg.interval), log, baselines)


def _batches(text: str | None) -> int | None:
    """An interval in batches (the config's schema has already checked that it parses)."""
    if text is None:
        return None
    from mixture.units import Unit, parse_duration

    duration = parse_duration(text)
    require(duration.unit is Unit.BATCHES, f"interval {text!r}: write it in batches, e.g. `100ba`")
    return int(duration.value)


def train_device() -> str:
    """Composer's device name for this process: ``gpu`` when CUDA is available, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


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


def trainer_args(ctx: RunContext, model: VLM, loader: Any, lr: list[float], evaluation: Evaluation,  # noqa: ANN401
                 log: RunLog) -> dict[str, Any]:
    """Keyword arguments of :class:`composer.Trainer` for the run."""
    from trainer.loggers import build_loggers
    from trainer.lr import ScheduleLR
    from trainer.metrics import SourceMetrics
    from trainer.progress import TrainProgress

    config = ctx.config
    opt = config.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    # Fused: one kernel per step, on GPU and on CPU (there 1.25 ms instead of 4.3 ms a step for the demo's 1.6M
    # trained parameters: ~5% of a demo step; docs/training.md "Speed").
    optimizer = torch.optim.AdamW(params, lr=max(lr), betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay,
                                  fused=True)
    loggers = build_loggers(config.loggers, ctx.run_dir, ctx.base)
    metrics = SourceMetrics([s.name for s in ctx.schedule.sources], log, lr)
    load = config.branch.checkpoint if config.branch else config.checkpoint.load
    fsdp = config.fsdp.enabled if config.fsdp.enabled is not None else ctx.world_size > 1
    from composer.core import DataSpec

    from trainer.batch import num_samples, split_rows

    args: dict[str, Any] = {
        # Gradient accumulation and rank averaging weighted by label tokens: the step's loss is the mean
        # over every label token of the global batch, whatever the world size and microbatch size.
        "model": model, "train_dataloader": DataSpec(loader, get_num_tokens_in_batch=num_tokens,
                                                    get_num_samples_in_batch=num_samples, split_batch=split_rows),
        "accumulate_train_batch_on_tokens": True, "max_duration": f"{ctx.stop_batch}ba",
        "optimizers": optimizer, "schedulers": [ScheduleLR(torch.tensor(lr).numpy())],
        "step_schedulers_every_batch": True, "device": train_device(),
        "precision": precision_for(model, config.precision), "seed": config.seed, "run_name": ctx.run_dir.name,
        "callbacks": [metrics, evaluation, TrainProgress(metrics, ctx.stop_batch, ctx.run_dir.name)],
        "loggers": loggers, "progress_bar": False, "log_to_console": config.loggers.console,
        "console_log_interval": config.loggers.console_interval,
        "save_folder": ctx.checkpoint_folder, "save_interval": _save_when(config, ctx.stop_batch),
        "save_filename": CHECKPOINT_FILE, "save_num_checkpoints_to_keep": config.checkpoint.keep,
        "save_overwrite": True, "autoresume": config.checkpoint.autoresume,
        "load_path": ctx.path(load), "device_train_microbatch_size": config.microbatch_size or ctx.device_batch_size,
    }
    if opt.grad_clip_norm is not None:
        from composer.algorithms import GradientClipping

        args["algorithms"] = [GradientClipping(clipping_type="norm", clipping_threshold=opt.grad_clip_norm)]
    if fsdp:
        args["parallelism_config"] = {"fsdp": fsdp_config(config)}
    return args


def fsdp_config(config: RunConfig) -> Any:  # noqa: ANN401 - composer's FSDP2Config
    """Composer's FSDP2 configuration for the run: the one place that chooses FSDP2 (not FSDP1, which needs
    CUDA), by type rather than through Composer's ``FSDP_VERSION`` environment variable."""
    from composer.utils import FSDP2Config

    return FSDP2Config(reshard_after_forward=config.fsdp.reshard_after_forward,
                       state_dict_type=config.fsdp.state_dict)
