"""The run config: one typed, frozen schema for everything a training run needs beyond the schedule.

A run config names a compiled schedule (or a mixture file, compiled on the fly) and says how to train on
it: model, optimiser, precision, FSDP, checkpoints, evaluation, loggers. Unknown keys are rejected and
every error points at ``FILE:LINE:COL`` like the mixture file's (the same loader, :mod:`mixture.load`).
The data order, the number of steps and the learning-rate shape are NOT here: they are the schedule's.
docs/run_config.md is generated from these models (``python -m trainer.docsgen``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixture.errors import MixtureError
from mixture.load import read_model
from mixture.spec import DurationStr
from streaming_data.locations import is_url


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LMConfig(_Model):
    """The decoder-only language model (a Llama-architecture model from transformers)."""

    preset: Literal["tiny", "79m", "1b"] | None = Field(
        default="tiny", description="A shape from the study: `tiny` (tests, the demo), `79m` and `1b` (the "
        "paper's appendix table). Ignored when `pretrained` is set.")
    config: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="transformers `LlamaConfig` fields that override the preset "
        "(`hidden_size`, `num_hidden_layers`, `num_attention_heads`, `intermediate_size`, ...).")
    pretrained: str | None = Field(
        default=None, description="A local directory saved by `save_pretrained` of a causal LM: load it "
        "instead of initialising from scratch (its vocabulary must cover the tokenizer).")


class VisionConfig(_Model):
    """The vision encoder (SigLIP's vision tower from transformers)."""

    preset: Literal["tiny", "siglip-so400m-384"] | None = Field(
        default="tiny", description="`tiny` (32 px, patch 8: 16 visual tokens) or the paper's encoder shape "
        "`siglip-so400m-384` (384 px, patch 14: 729 visual tokens), randomly initialised.")
    config: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="transformers `SiglipVisionConfig` fields that override the preset "
        "(`image_size`, `patch_size`, `hidden_size`, ...).")
    pretrained: str | None = Field(
        default=None, description="A local directory holding a SigLIP (vision or full) model saved by "
        "`save_pretrained`: its vision tower is loaded.")
    frozen: bool = Field(default=True, description="Keep the encoder's weights fixed (the study does).")


class ModelConfig(_Model):
    """The VLM: LM + vision encoder + 2-layer MLP projector; visual tokens go before the text."""

    tokenizer: str | None = Field(
        default=None, description="Local tokenizer directory (vocabulary size, EOS, VQA prompts). Default: "
        "the tokenizer recorded in the first source's `samples.parquet`.")
    lm: LMConfig = Field(default_factory=LMConfig, description="The language model.")
    vision: VisionConfig = Field(default_factory=VisionConfig, description="The vision encoder.")
    projector_act: str = Field(default="gelu", description="Activation between the projector's two layers.")


class OptimizerConfig(_Model):
    """AdamW (decoupled weight decay); the learning rate comes from the schedule's LR plan."""

    lr: float | None = Field(
        default=None, gt=0, description="Constant learning rate, only for schedules without `run.lr` (the "
        "mixture file's LR plan is the learning rate otherwise).")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="Adam betas.")
    eps: float = Field(default=1e-8, gt=0, description="Adam epsilon.")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay.")
    grad_clip_norm: float | None = Field(default=1.0, gt=0, description="Clip gradients to this norm "
                                         "(none: no clipping).")


class FSDPConfig(_Model):
    """Composer's FSDP2 path (`fully_shard`), used when the run has more than one rank."""

    enabled: bool | None = Field(default=None, description="Shard with FSDP2 (default: when world size > 1).")
    reshard_after_forward: bool = Field(default=True, description="Free gathered parameters after forward "
                                        "(ZeRO-3 style); false keeps them until backward (ZeRO-2 style).")
    state_dict: Literal["full", "sharded"] = Field(default="full", description="Checkpoint layout.")


class CheckpointConfig(_Model):
    """Where and when checkpoints are saved, and what a run starts from."""

    folder: str | None = Field(default=None, description="Save folder, local or remote (`s3://...`; Composer's "
                               "object stores). Default: `RUN_DIR/checkpoints`.")
    interval: DurationStr | None = Field(default=None, description="Save every so many batches (`100ba`); the end of "
                                 "training is always saved.")
    save_at: list[int] = Field(default_factory=list, description="Also save at these batch counts (a sweep's "
                               "branch points).")
    keep: int = Field(default=-1, description="Checkpoints to keep (-1: all).")
    autoresume: bool = Field(default=True, description="Resume from the newest checkpoint in `folder` when "
                             "there is one (a re-run continues a broken run).")
    load: str | None = Field(default=None, description="Start from this checkpoint (same schedule: a resume).")
    ignore_schedule_fingerprint: bool = Field(
        default=False, description="Resume `load` even though it was made with another schedule, serving this "
        "schedule from the checkpoint's position unchecked. Prefer `branch`, which checks the prefix.")


class BranchConfig(_Model):
    """Start from a trunk run's checkpoint at position p with this run's (different) schedule."""

    checkpoint: str = Field(description="The trunk's checkpoint file (saved at a global-batch boundary).")
    schedule: str = Field(description="The trunk's compiled schedule directory: both schedules must agree on "
                          "every position and learning rate before the checkpoint's position.")


class HeldOut(_Model):
    """A held-out MDS dataset (same columns as ingest writes) whose loss is reported per source."""

    location: str = Field(description="Local MDS directory (relative to this file).")
    samples: int = Field(default=256, gt=0, description="Samples evaluated (the first ones).")


class VQAConfig(_Model):
    """VQA-style evaluation: generate an answer, score it like VQAv2."""

    file: str = Field(description="JSONL of {image (path relative to the file), question, answers}.")
    questions: int | None = Field(default=None, gt=0, description="Questions evaluated (default: all).")
    max_new_tokens: int = Field(default=8, gt=0, description="Greedy decoding steps per answer.")


class EvalConfig(_Model):
    """Evaluation during and at the end of training."""

    interval: DurationStr | None = Field(default=None, description="Evaluate every so many batches (`100ba`); "
                                 "always at the end.")
    heldout: dict[str, HeldOut] = Field(default_factory=dict, description="Held-out sets by source name.")
    vqa: VQAConfig | None = Field(default=None, description="VQA-style accuracy.")
    batch_size: int = Field(default=16, gt=0, description="Per-rank batch size for held-out loss.")


class LoggersConfig(_Model):
    """Where metrics go. `RUN_DIR/metrics.jsonl` is always written (reports read it)."""

    console: bool = Field(default=True, description="Print metrics to the terminal.")
    console_interval: str = Field(default="10ba", description="How often the console prints.")
    wandb: dict[str, str | int | bool] | None = Field(default=None, description="Composer's WandBLogger "
                                                     "arguments (`project`, `entity`, ...).")
    mlflow: dict[str, str | int | bool] | None = Field(default=None, description="Composer's MLFlowLogger "
                                                      "arguments.")
    tensorboard: dict[str, str | int | bool] | None = Field(default=None, description="Composer's "
                                                           "TensorboardLogger arguments (`log_dir`).")


class DataConfig(_Model):
    """How the schedule is served."""

    num_workers: int = Field(default=0, ge=0, description="DataLoader workers per rank.")
    cache_dir: str | None = Field(default=None, description="Local cache for remote sources.")
    cache_limit: str | None = Field(default=None, description="Streaming's cache limit (`10gb`).")


class RunConfig(_Model):
    """A training run over a compiled schedule."""

    schedule: str = Field(description="A compiled schedule directory, or a mixture file (compiled on the fly "
                          "into `RUN_DIR/schedule`). Relative paths are relative to this file.")
    variant: str | None = Field(default=None, description="The sweep variant, when `schedule` is a mixture "
                                "file with a sweep.")
    run_dir: str = Field(description="Where run.json, metrics.jsonl, results.json, checkpoints and the export go.")
    seed: int = Field(default=17, description="Seeds model initialisation (the data order is the schedule's).")
    stop_at: DurationStr | None = Field(default=None, description="Stop early: `40ba`, `50%` of the schedule's "
                                "batches, or tokens (`2M tok`); rounded up to a whole batch.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The VLM.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="The optimiser.")
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] = Field(default="fp32", description="Composer precision.")
    microbatch_size: int | None = Field(default=None, gt=0, description="Per-rank microbatch (gradient "
                                        "accumulation); default: the whole per-rank batch.")
    fsdp: FSDPConfig = Field(default_factory=FSDPConfig, description="Sharding for multi-rank runs.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="Checkpoints.")
    branch: BranchConfig | None = Field(default=None, description="Start from a trunk checkpoint.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    loggers: LoggersConfig = Field(default_factory=LoggersConfig, description="Metric destinations.")
    data: DataConfig = Field(default_factory=DataConfig, description="Serving.")
    export: bool = Field(default=True, description="Save `RUN_DIR/export` (Hugging Face format) at the end.")

    @model_validator(mode="after")
    def _check_start(self) -> RunConfig:
        if self.branch is not None and self.checkpoint.load is not None:
            raise ValueError("set either branch or checkpoint.load, not both")
        return self


def load_run_config(path: str | Path) -> tuple[RunConfig, Path]:
    """Read and check a run config; returns it with the directory its relative paths are relative to.

    Raises:
        MixtureError: Every schema problem at ``FILE:LINE:COL``.
    """
    config, _ = read_model(path, RunConfig, "run config", "schedule:, run_dir:, model:, ...")
    return config, Path(path).resolve().parent


def resolve_path(base: Path, value: str | None) -> str | None:
    """A path from the config, relative to the config file unless absolute or a URL."""
    if value is None or is_url(value) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def require(condition: bool, message: str, hint: str = "") -> None:
    """Raise a user-facing error (not an assert: run configs are user input)."""
    if not condition:
        raise MixtureError(message, hint=hint)
