"""What the compiler knows of a source: its size, its key, and what each sample costs in tokens.

A sample's *budget tokens* are what it counts for in token shares and token durations:
text: its tokens; image_caption: ``visual_tokens_per_image * num_images`` plus its caption tokens when
``count_caption_tokens``; instruction: its text tokens plus visual tokens of its images. Sources are
priced either from their sample index (an array) or, when declared by size, by a pure function of the
sample id (a clipped normal drawn from a hash, exact in IEEE arithmetic, so compiles stay bit-identical).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError
from mixture.locations import is_relative
from mixture.permute import derive_key, hash64
from mixture.sources import read_sample_index, source_fingerprint
from mixture.spec import Distribution, Source
from mixture.units import parse_count



@dataclass(frozen=True)
class Pricing:
    """Budget tokens per sample: ``base + clip(normal(mean, std), lo, hi)`` or an array.

    Attributes:
        base: Tokens every sample costs (e.g. visual tokens).
        mean, std, lo, hi: The per-sample part's distribution (std 0: exactly ``mean``).
        array: Per-sample budget tokens, when read from a sample index (then the rest is unused).
        key: Hash key of the per-sample draws.
    """

    base: int = 0
    mean: float = 0.0
    std: float = 0.0
    lo: int = 0
    hi: int | None = None
    array: NDArray[np.int64] | None = field(default=None, compare=False)
    key: int = 0

    @property
    def constant(self) -> int | None:
        """Tokens of every sample when they are all equal, else None."""
        if self.array is not None:
            if self.array.size and self.array.min() == self.array.max():
                return int(self.array[0])
            return None
        if self.std == 0:
            return self.base + min(max(int(round(self.mean)), self.lo), self.hi or 1 << 62)
        return None

    @property
    def mean_tokens(self) -> float:
        """Mean budget tokens per sample (of the array, or of the clipped distribution's centre)."""
        if self.array is not None:
            return float(self.array.mean()) if self.array.size else 0.0
        const = self.constant
        if const is not None:
            return float(const)
        return self.base + min(max(self.mean, self.lo), self.hi if self.hi is not None else math.inf)

    def tokens_of(self, samples: NDArray[np.int64]) -> NDArray[np.int64]:
        """Budget tokens of the given sample ids."""
        if self.array is not None:
            return self.array[samples]
        const = self.constant
        if const is not None:
            return np.full(samples.shape, const, dtype=np.int64)
        # Irwin-Hall sum of four 16-bit uniforms from a 64-bit hash: integer-exact, so identical everywhere.
        z = hash64(samples, self.key)
        parts = sum(((z >> np.uint64(16 * i)) & np.uint64(0xFFFF)).astype(np.int64) for i in range(4))
        normal = (parts / 65536.0 - 2.0) * math.sqrt(3.0)
        values = np.rint(self.mean + self.std * normal).astype(np.int64)
        values = np.clip(values, self.lo, self.hi if self.hi is not None else None)
        return self.base + values

    def describe(self) -> dict[str, object]:
        """JSON description (arrays are stored beside the manifest)."""
        if self.array is not None:
            return {"array": True}
        return {"base": self.base, "mean": self.mean, "std": self.std, "lo": self.lo, "hi": self.hi,
                "key": str(self.key)}


@dataclass(frozen=True)
class SourceData:
    """A source as the compiler sees it."""

    name: str
    kind: str
    num_samples: int
    key: int
    block: int
    fingerprint: str
    location: str | None
    pricing: Pricing
    max_epochs: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)


def _dist(value: int | Distribution) -> tuple[float, float, int, int | None]:
    if isinstance(value, int):
        return float(value), 0.0, 0, None
    return value.mean, value.std, value.min, value.max


def _declared(name: str, src: Source, seed: int) -> SourceData:
    assert src.declared is not None
    d = src.declared
    images = d.images_per_sample
    base = src.visual_tokens_per_image * images if src.kind != "text" else 0
    if src.kind == "image_caption":
        assert d.caption_tokens is not None
        mean, std, lo, hi = _dist(d.caption_tokens) if src.count_caption_tokens else (0.0, 0.0, 0, None)
    else:
        assert d.tokens_per_sample is not None
        mean, std, lo, hi = _dist(d.tokens_per_sample)
    pricing = Pricing(base=base, mean=mean, std=std, lo=lo, hi=hi, key=derive_key(seed, name, "tokens"))
    num = parse_count(d.samples)
    if num <= 0:
        raise MixtureError(f"source {name!r} is declared with 0 samples", path=f"sources.{name}.declared")
    return SourceData(name, src.kind, num, derive_key(seed, name), src.shuffle_block_samples,
                      f"declared:{derive_key(repr(d.model_dump()))}", None, pricing, src.max_epochs)


def _priced_array(name: str, src: Source, columns: dict[str, NDArray[np.int64]]) -> NDArray[np.int64]:
    visual = src.visual_tokens_per_image
    if src.kind == "image_caption" and "caption_tokens" in columns:
        images = columns.get("num_images", np.ones_like(columns["caption_tokens"]))
        caption = columns["caption_tokens"] if src.count_caption_tokens else 0
        return visual * images + caption
    if src.kind == "instruction" and "text_tokens" in columns:
        images = columns.get("num_images", np.zeros_like(columns["text_tokens"]))
        return columns["text_tokens"] + visual * images
    return columns["tokens"]


def load_source(name: str, src: Source, seed: int, base_dir: str = ".") -> SourceData:
    """Read a source's sample index (or take its declared size) and fingerprint.

    Raises:
        MixtureError: If the data is missing, empty or of another kind than declared.
    """
    if src.location is None:
        return _declared(name, src, seed)
    location = src.location
    if is_relative(location):
        location = os.path.normpath(os.path.join(base_dir, location))
    index = read_sample_index(location, src.storage_options)
    if index.kind and index.kind != src.kind:
        raise MixtureError(f"source {name!r} is declared as {src.kind} but {location} holds {index.kind} data",
                           path=f"sources.{name}.kind", hint=f"set kind: {index.kind}")
    if index.num_samples == 0:
        raise MixtureError(f"source {name!r} at {location} has no samples",
                           path=f"sources.{name}", hint="check the ingest's dropped-row counts")
    tokens = _priced_array(name, src, index.columns).astype(np.int64)
    return SourceData(name, src.kind, index.num_samples, derive_key(seed, name), src.shuffle_block_samples,
                      source_fingerprint(location, src.storage_options), location,
                      Pricing(array=tokens), src.max_epochs, index.dropped)
