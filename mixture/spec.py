"""The mixture file's schema: one typed, frozen pydantic model per section.

Unknown keys are rejected (``extra="forbid"``); every field carries a description, and docs/dsl.md is
generated from these models (``python -m mixture.docsgen``), so the reference cannot drift from the code.
Durations and big counts are strings parsed by :mod:`mixture.units`; their cross-field meaning (what
``80%`` is of, whether a phase overruns the run) is checked in :mod:`mixture.resolve`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from mixture.errors import brief
from mixture.units import UNIT_HELP, parse_count, parse_duration


def _check_duration(value: object) -> str:
    parse_duration(value)  # a bare number or a non-string gets the unit hint, not "a valid string"
    return str(value)


def _check_count(value: object) -> int | str:
    parse_count(value)
    return value  # type: ignore[return-value]


_FLOAT = TypeAdapter(float, config=ConfigDict(allow_inf_nan=False))


def _check_weight(value: object) -> float | str:
    if value == "rest":
        return "rest"  # the share the mix's other weights leave (mixture.resolve computes it exactly)
    try:
        return _FLOAT.validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        if isinstance(value, str) and error["type"] == "float_parsing":
            raise ValueError(f"expected a number or 'rest', got {brief(value)}") from None
        raise PydanticCustomError(error["type"], error["msg"]) from None


DurationStr = Annotated[str, BeforeValidator(_check_duration)]
#: A mix weight: a number, or ``rest``.
Weight = Annotated[float | Literal["rest"], PlainValidator(_check_weight)]
CountStr = Annotated[int | str, BeforeValidator(_check_count)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Distribution(_Model):
    """A per-sample token count drawn deterministically from a clipped normal distribution."""

    mean: float = Field(gt=0, description="Mean tokens per sample.")
    std: float = Field(default=0.0, ge=0, description="Standard deviation (0: every sample has `mean`).")
    min: int = Field(default=1, ge=0, description="Smallest value a sample may have.")
    max: int | None = Field(default=None, ge=1, description="Largest value a sample may have (none: no cap).")

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Declared(_Model):
    """A source declared by size alone, so that a full-scale plan compiles before any data exists."""

    samples: CountStr = Field(description="Number of samples, e.g. `2.1B` or `665000` (at least 1).")
    tokens_per_sample: int | Distribution | None = Field(
        default=None,
        description="Text tokens per sample (text: the packed sequence length; instruction: the "
        "conversation). A number, or a distribution `{mean, std, min, max}`.",
    )
    caption_tokens: int | Distribution | None = Field(
        default=None, description="image_caption only: caption tokens per sample, a number or a distribution."
    )
    images_per_sample: int = Field(
        default=1, ge=0, description="image_caption and instruction: images per sample (instruction: 0 for "
        "text-only conversations)."
    )

    @field_validator("tokens_per_sample", "caption_tokens")
    @classmethod
    def _not_negative(cls, value: int | Distribution | None) -> int | Distribution | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a sample cannot have {value} tokens: give 0 or more")
        return value


class Source(_Model):
    """One data source: an ingested MDS dataset (``location``) or a declared size (``declared``)."""

    kind: Literal["text", "image_caption", "instruction"] = Field(description="What the samples are.")
    location: str | None = Field(
        default=None,
        description="MDS directory holding `index.json` and `samples.parquet`: a local path (relative "
        "paths are relative to the mixture file) or a URL Streaming can read (`s3://...`).",
    )
    declared: Declared | None = Field(
        default=None, description="Size of the source when no data exists yet (plans at full scale)."
    )
    visual_tokens_per_image: int = Field(
        default=729, ge=0, description="Visual tokens the vision encoder makes per image (729 for SigLIP "
        "So400M at 384 px). Counted in the token budget of image_caption and instruction samples."
    )
    count_caption_tokens: bool = Field(
        default=True,
        description="image_caption: whether caption tokens count in this source's token share and in "
        "token durations (false: only visual tokens count in the budget; the caption tokens are still trained "
        "on but not counted).",
    )
    max_epochs: float | None = Field(
        default=None, gt=0, description="Cap on passes over this source; compiling a schedule that needs "
        "more fails with the numbers."
    )
    shuffle_block_samples: int = Field(
        default=65536, ge=1, description="Shard-block shuffle: the source is cut into blocks of this many "
        "consecutive samples; each epoch permutes the blocks and the samples inside each block, so a "
        "window of draws touches few shards (remote streaming stays sequential)."
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="fsspec options for a remote location (e.g. `endpoint_url`)."
    )

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.location is None) == (self.declared is None):
            raise ValueError("give exactly one of 'location' (ingested data) or 'declared' (a size)")
        if self.declared is not None:
            d = self.declared
            if self.kind == "image_caption" and d.caption_tokens is None:
                raise ValueError("a declared image_caption source needs 'caption_tokens'")
            if self.kind != "image_caption" and d.tokens_per_sample is None:
                raise ValueError(f"a declared {self.kind} source needs 'tokens_per_sample'")
        return self

    def declared_cost(self) -> float | None:
        """Mean budget tokens of a declared sample before clipping to its ``max`` (None: not declared)."""
        d = self.declared
        if d is None:
            return None

        def part(value: int | Distribution | None) -> float:
            if isinstance(value, Distribution):
                return float(min(value.mean, value.max)) if value.max is not None else value.mean
            return float(value or 0)

        visual = self.visual_tokens_per_image * d.images_per_sample if self.kind != "text" else 0
        caption = part(d.caption_tokens) if self.kind == "image_caption" and self.count_caption_tokens else 0.0
        return visual + caption + (part(d.tokens_per_sample) if self.kind != "image_caption" else 0.0)


class Ramp(_Model):
    """A smooth change from the previous phase's mix to this phase's mix."""

    length: DurationStr = Field(description=f"How long the ramp lasts ({UNIT_HELP}); in the phase's clock.")
    shape: Literal["linear", "cosine"] = Field(default="linear", description="Interpolation of the weights.")


class Cooldown(_Model):
    """Decay the learning rate over this phase from wherever it stands at the phase start."""

    to: float = Field(default=0.0, ge=0, description="LR at the end of the phase (absolute).")
    shape: Literal["linear", "cosine", "sqrt"] = Field(default="linear", description="Shape of the decay.")


class Rewarm(_Model):
    """Restart the learning rate: warm up to a new peak, then decay to the end of the phase."""

    warmup: DurationStr = Field(description="Length of the warm-up: `100ba`, `50k sp`, `20M tok`, or a "
                                "percentage of this phase (`3%`; no `of NAME`).")
    peak: float = Field(gt=0, description="Peak LR after warm-up.")
    to: float = Field(default=0.0, ge=0, description="LR at the end of the phase.")
    decay: Literal["linear", "cosine", "constant"] = Field(default="cosine", description="Shape after warm-up.")


class LRDirective(_Model):
    """What the learning rate does during a phase. Give at most one of the fields; none means `continue`."""

    continue_: bool = Field(
        default=False, alias="continue", description="Follow the run's planned schedule (`run.lr`)."
    )
    cooldown: Cooldown | None = Field(default=None, description="Decay over this phase.")
    rewarm: Rewarm | None = Field(default=None, description="Warm up again, then decay (fine-tuning).")
    constant: float | None = Field(default=None, ge=0, description="Hold this LR through the phase.")

    @model_validator(mode="after")
    def _one(self) -> LRDirective:
        given = [self.continue_, self.cooldown is not None, self.rewarm is not None, self.constant is not None]
        if sum(given) > 1:
            raise ValueError("give one of continue, cooldown, rewarm, constant")
        return self


class LRPlan(_Model):
    """The run's planned learning-rate schedule, which `continue` phases follow."""

    peak: float = Field(gt=0, description="Peak learning rate.")
    warmup: DurationStr = Field(default="0ba", description="Linear warm-up from 0 to `peak`.")
    schedule: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Decay shape.")
    plan: DurationStr | None = Field(
        default=None, description="Length the schedule is planned for (e.g. `100% of text_plan`); the "
        "default is the whole run. Percentages and phase ends refer to it when a run branches off early."
    )
    final: float = Field(default=0.0, ge=0, description="LR reached at the end of `plan`.")


class Phase(_Model):
    """One stretch of training with one mix (possibly ramped in from the previous one)."""

    name: Name = Field(description="Unique name; shown in reports and used by sweeps (`phases.NAME.field`).")
    duration: DurationStr | None = Field(default=None, description=f"Length of the phase ({UNIT_HELP}). In "
                                         "epochs: `N ep` of a phase with one source, or `N ep of NAME` of one "
                                         "source of a mixed phase with `unit: samples` and no `ramp`: "
                                         "`ceil(N * samples of NAME / its share)` positions, rounded up to whole "
                                         "batches (`1 ep of instruct` in a mix `{instruct: 0.875, text: "
                                         "0.125}` is one pass over `instruct` with text mixed in).")
    end: DurationStr | None = Field(
        default=None, description="Where the phase ends, measured from the start of the run (instead of "
        "`duration`), e.g. `80% of text_plan`."
    )
    mix: dict[Name, Weight] = Field(
        description="Source name -> weight. Weights must sum to 1 unless `normalize: true`. One source may "
        "have the weight `rest`: the share the others leave (1 minus their sum, computed exactly)."
    )
    unit: Literal["tokens", "samples"] = Field(
        default="tokens", description="Whether weights are shares of tokens or of samples."
    )
    normalize: bool = Field(default=False, description="Divide the weights by their sum.")
    ramp: Ramp | None = Field(default=None, description="Ramp in from the previous phase's mix.")
    lr: LRDirective = Field(default_factory=LRDirective, description="Learning-rate directive.")
    global_batch_size: int | None = Field(
        default=None, ge=1, description="Samples per optimizer step in this phase (default: "
        "`run.global_batch_size`), e.g. 128 for fine-tuning after pre-training at 256. The phase's length "
        "rounds up to a whole number of its batches, and `ba` in its `duration`, `ramp` and `rewarm` counts "
        "its batches. Every phase's batch must be divisible by the world size."
    )

    @model_validator(mode="after")
    def _one_length(self) -> Phase:
        if (self.duration is None) == (self.end is None):
            raise ValueError("give exactly one of 'duration' or 'end'")
        return self


class Run(_Model):
    """The training run the schedule is for."""

    seq_len: int = Field(ge=1, description="Tokens per packed text sequence (the model's context).")
    global_batch_size: int = Field(ge=1, description="Samples per optimizer step across all ranks (a phase "
                                   "may set its own `global_batch_size`).")
    duration: DurationStr | None = Field(
        default=None, description="Total length; default: the sum of the phases. Bare percentages refer to it."
    )
    lr: LRPlan | None = Field(default=None, description="Planned learning-rate schedule.")


class SweepAxis(_Model):
    """One axis of a sweep: a field (or several set together) and the values it takes."""

    field: str | None = Field(default=None, description="Dotted path of the field, e.g. "
                              "`phases.cooldown.mix.datacomp`, `phases.text.end`, `seed`.")
    fields: list[str] | None = Field(
        default=None, min_length=1, description="Several fields set together (a zip group inside a grid): "
        "each value is then a list with one entry per field, e.g. an introduction point with its LR fields."
    )
    values: list[object] | dict[Name, object] = Field(
        description="Values, each replacing the field(s) in one variant; or a mapping label -> "
        "value, and the label (a name) names the variant (`intro=early`) instead of the value."
    )

    @field_validator("values")
    @classmethod
    def _some(cls, values: list[object] | dict[str, object]) -> list[object] | dict[str, object]:
        if not values:
            raise ValueError("a sweep axis needs at least one value")
        return values

    @model_validator(mode="after")
    def _one_target(self) -> SweepAxis:
        if (self.field is None) == (self.fields is None):
            raise ValueError("give exactly one of 'field' or 'fields'")
        return self


class Sweep(_Model):
    """Named axes of values: every combination (grid) or every row (zip) is one variant with a stable name."""

    axes: dict[Name, SweepAxis] = Field(description="Axis name -> axis. Variant names are `axis=value` (or "
                                        "`axis=label`) joined by `,`, in the order the axes are written.")
    mode: Literal["grid", "zip"] = Field(default="grid", description="Cartesian product of the axes, or the "
                                         "axes' values in lockstep. For a grid over some axes zipped together, "
                                         "give the zipped fields as one axis with `fields`.")


class MixtureSpec(_Model):
    """A mixture file: sources, a run, phases, a seed, and optionally a sweep."""

    name: Name = Field(description="Name of the experiment.")
    seed: int = Field(ge=0, description="Seed of every random stream (each derived from it and a name).")
    run: Run = Field(description="The training run.")
    references: dict[Name, DurationStr] = Field(
        default_factory=dict, description="Named durations that percentages may refer to (`80% of NAME`)."
    )
    sources: dict[Name, Source] = Field(description="Source name -> source.")
    phases: list[Phase] = Field(min_length=1, description="Phases in training order.")
    sweep: Sweep | None = Field(default=None, description="Variants of this file.")
