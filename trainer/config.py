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

from mixture.errors import MixtureError, Problem
from mixture.load import read_model
from mixture.spec import DurationStr
from mixture.yaml_loader import Located
from streaming_data.locations import is_relative, is_url


_KEYS = "schedule:, run_dir:, model:, ..."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    feature_norm: Literal["none", "channel"] = Field(
        default="none", description="`channel`: standardise the vision features per channel (mean and std "
        "fixed once from the first training images) before the projector. Makes a frozen random encoder's "
        "features informative to a small LM (docs/training.md); folded into the projector on export.")
    feature_norm_images: int = Field(default=512, ge=2, description="Training images `feature_norm` reads.")


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
    """How the schedule is served and laid out into rows."""

    packing: bool = Field(default=True, description="Pack the samples of each global batch, in order, into rows "
                          "of `seq_len` (first fit) with per-document attention and positions: the same "
                          "batches, losses and per-source counts as one padded row per sample, in fewer rows "
                          "(docs/training.md, \"Packing\"). False: one right-padded row per sample.")
    num_workers: int = Field(default=0, ge=0, description="DataLoader workers per rank.")
    pin_memory: bool | None = Field(default=None, description="Page-locked host batches for faster copies to "
                                    "the GPU (default: on when CUDA is available).")
    prefetch_factor: int | None = Field(default=None, gt=0, description="Batches each worker prepares ahead "
                                        "(PyTorch's default, 2, when unset; needs `num_workers` > 0).")
    cpu_threads: int | None = Field(default=None, gt=0, description="PyTorch threads of each training process "
                                    "(default on CPU: the cores per local rank minus `num_workers`, at least 1; "
                                    "workers use 1). On CPU, unset, it yields to OMP_NUM_THREADS.")

    @model_validator(mode="after")
    def _check_prefetch(self) -> DataConfig:
        if self.prefetch_factor is not None and self.num_workers == 0:
            raise ValueError("prefetch_factor needs dataloader workers: set num_workers > 0 or remove it")
        return self
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
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] = Field(default="fp32", description="Composer precision: "
                                                               "`amp_bf16` autocasts to bf16, keeping fp32 weights "
                                                               "and optimiser state.")
    activation_checkpointing: bool = Field(default=False, description="Recompute each decoder layer's activations "
                                           "in backward instead of keeping them (less memory, ~1/3 more compute).")
    compile: bool = Field(default=False, description="`torch.compile` each decoder layer (the first steps are "
                          "slower while it compiles).")
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
    config, _ = read_model(path, RunConfig, "run config", _KEYS)
    return config, Path(path).resolve().parent


def resolve_path(base: Path, value: str | None) -> str | None:
    """A path from the config, relative to the config file unless absolute or a URL."""
    if value is None or not is_relative(value):
        return value
    return str((base / value).resolve())


def require(condition: bool, message: str, hint: str = "") -> None:
    """Raise a user-facing error (not an assert: run configs are user input)."""
    if not condition:
        raise MixtureError(message, hint=hint)


# ---- Checks after the schema: paths, the schedule, the variant, units, command-line overrides ----------------


def check_run_config(path: str | Path, overrides: dict[str, object] | None = None) -> tuple[RunConfig, Path]:
    """Read a run config, apply command-line overrides, and check everything that can be checked without
    training: the schema, then the schedule (a verified compiled directory, or a valid mixture file with the
    named variant), ``stop_at``'s unit, intervals in batches, and that the local paths it names exist.
    Imports neither torch nor composer (``mixture validate RUN.yaml`` runs it in well under a second).

    Args:
        path: The run config file.
        overrides: Top-level fields from the command line (``{"stop_at": "half"}``); their problems are
            reported as ``--stop-at: ...``.

    Returns:
        The config and the directory its relative paths are relative to.

    Raises:
        MixtureError: Every problem, each at ``FILE:LINE:COL`` (or ``--flag:`` for an override).
    """
    from mixture.load import read_yaml

    path = Path(path)
    located = read_yaml(path, "run config", _KEYS)
    config = _with_overrides(located, overrides or {})
    base = path.resolve().parent
    problems = _as_flags(_RunChecks(config, located, base).run(), overrides or {})
    if problems:
        raise MixtureError(sorted(problems, key=lambda p: (p.file != str(path), p.file, p.line, p.col)))
    return config, base


def _with_overrides(located: Located, overrides: dict[str, object]) -> RunConfig:
    """The config with command-line fields replaced; a bad override is reported as ``--flag: ...``."""
    from mixture.load import check_model

    try:
        return check_model(located, RunConfig, {**located.data, **overrides})  # type: ignore[dict-item]
    except MixtureError as exc:
        raise MixtureError(_as_flags(exc.problems, overrides)) from None


def _as_flags(problems: list[Problem], overrides: dict[str, object]) -> list[Problem]:
    """Problems of overridden fields, placed at their command-line flag (``--stop-at: ...``)."""
    out = []
    for p in problems:
        key = p.path.split(".")[0].split("[")[0]
        if key in overrides and p.path:
            p = Problem(p.message, path="--" + key.replace("_", "-") + p.path[len(key):], hint=p.hint)
        out.append(p)
    return out


class _RunChecks:
    """Post-schema checks, each problem located at the field it is about."""

    def __init__(self, config: RunConfig, located: Located, base: Path) -> None:
        self.config, self.located, self.base = config, located, base
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(self.located.problem(path, message, hint))

    def run(self) -> list[Problem]:
        c = self.config
        self.schedule()
        self.units()
        for field, value, kind in (("model.tokenizer", c.model.tokenizer, "dir"),
                                   ("model.lm.pretrained", c.model.lm.pretrained, "dir"),
                                   ("model.vision.pretrained", c.model.vision.pretrained, "dir"),
                                   ("checkpoint.load", c.checkpoint.load, "file"),
                                   ("eval.vqa.file", c.eval.vqa.file if c.eval.vqa else None, "file")):
            self.exists(field, value, kind)
        if c.branch is not None:
            self.exists("branch.checkpoint", c.branch.checkpoint, "file")
            self.compiled("branch.schedule", c.branch.schedule)
        for name, held in c.eval.heldout.items():
            self.exists(f"eval.heldout.{name}.location", held.location, "dir", "index.json")
        return self.problems

    def exists(self, field: str, value: str | None, kind: str, inside: str = "") -> bool:
        """A local path the config names exists (URLs are not checked here)."""
        found = resolve_path(self.base, value)
        if found is None or is_url(found):
            return True
        ok = Path(found, inside).is_file() if inside else (Path(found).is_dir() if kind == "dir"
                                                         else Path(found).is_file())
        if not ok:
            what = f"no {inside} in {value!r}" if inside and Path(found).is_dir() else f"no such {'directory' if kind == 'dir' else kind} {value!r}"
            self.add(field, what, "paths are relative to this file")
        return ok

    def compiled(self, field: str, value: str) -> dict | None:
        """Verify a compiled schedule directory; returns its manifest."""
        import json

        from mixture.schedule_check import verify_schedule

        found = resolve_path(self.base, value) or ""
        try:
            verify_schedule(found)
        except MixtureError as exc:
            # The directory as the config names it (the resolved path is in the message's place).
            self.add(field, "; ".join(p.message.replace(found, repr(value)) for p in exc.problems),
                     exc.problems[0].hint)
            return None
        return json.loads(Path(found, "manifest.json").read_text())

    def schedule(self) -> None:
        c = self.config
        found = Path(resolve_path(self.base, c.schedule) or "")
        if found.is_dir():
            manifest = self.compiled("schedule", c.schedule)
            name = (manifest or {}).get("variant", {}).get("name", "")
            if manifest is not None and c.variant is not None and c.variant != name:
                self.add("variant", f"the compiled schedule is variant {name!r}, not {c.variant!r}",
                         "variant: is for a mixture file; remove it or point schedule: at that variant")
            if manifest is not None and c.stop_at is not None:
                self.stop_at(manifest["num_batches"])
            return
        if not found.is_file():
            self.add("schedule", f"no such directory or mixture file {c.schedule!r}",
                     "point schedule: at a compiled schedule directory or a mixture file (relative to this file)")
            return
        self.mixture(found)

    def mixture(self, found: Path) -> None:
        from mixture.api import variants

        try:
            names = [v.name for v in variants(found)]
        except MixtureError as exc:
            self.problems += exc.problems  # located in the mixture file itself
            return
        wanted = self.config.variant or ""
        if wanted not in names:
            listed = ", ".join(n for n in names if n) or "(none: the file has no sweep)"
            field = "variant" if self.config.variant is not None else "schedule"
            message = (f"no variant {wanted!r} in {found.name}" if wanted
                       else f"{found.name} has {len(names)} sweep variants: choose one")
            self.add(field, message, f"variants are: {listed}"[:300])

    def stop_at(self, num_batches: int) -> None:
        """``stop_at`` in batches must fall inside the schedule."""
        from mixture.units import Unit, parse_duration

        d = parse_duration(self.config.stop_at)
        if d.unit is Unit.BATCHES and not 0 < d.value <= num_batches:
            self.add("stop_at", f"{self.config.stop_at!r} is outside the schedule's batches 1..{num_batches}")

    def units(self) -> None:
        from mixture.units import Unit, parse_duration

        c = self.config
        if c.stop_at is not None:
            d = parse_duration(c.stop_at)
            if d.unit is Unit.EPOCHS or d.ref is not None or d.value <= 0:
                self.add("stop_at", f"{c.stop_at!r}: stop at a positive number of batches (`40ba`), a "
                         "percentage of the schedule (`50%`), tokens (`2M tok`) or samples")
        for field, text in (("checkpoint.interval", c.checkpoint.interval), ("eval.interval", c.eval.interval)):
            if text is not None and (parse_duration(text).unit is not Unit.BATCHES or parse_duration(text).value <= 0):
                self.add(field, f"{text!r}: write a positive number of batches, e.g. `100ba`")
        for i, at in enumerate(c.checkpoint.save_at):
            if at < 1:
                self.add(f"checkpoint.save_at[{i}]", f"batch {at}: save points are batch counts from 1")
