"""Unit strings for durations and big counts: ``28B tok``, ``5000ba``, ``2.1M sp``, ``2 ep``, ``80%``.

Epochs may name the source they count: ``1 ep of instruct`` (passes over one source of a mixed phase);
percentages may name the reference they are of: ``80% of text_plan``.

Big numbers are always strings parsed here with exact decimal arithmetic, never YAML floats (PyYAML reads
``1e9`` as a string and ``4.3e12`` loses nothing only by luck). Suffixes K, M, B (or G), T multiply by
1e3, 1e6, 1e9, 1e12. Units follow Composer's time units where they exist (``tok``, ``sp``, ``ba``, ``ep``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from enum import Enum

from mixture.errors import brief


class Unit(str, Enum):
    """What a duration counts."""

    TOKENS = "tok"
    SAMPLES = "sp"
    BATCHES = "ba"
    EPOCHS = "ep"
    PERCENT = "%"


_UNIT_WORDS: dict[str, Unit] = {
    "tok": Unit.TOKENS, "toks": Unit.TOKENS, "token": Unit.TOKENS, "tokens": Unit.TOKENS,
    "sp": Unit.SAMPLES, "sample": Unit.SAMPLES, "samples": Unit.SAMPLES, "seq": Unit.SAMPLES,
    "ba": Unit.BATCHES, "batch": Unit.BATCHES, "batches": Unit.BATCHES, "step": Unit.BATCHES,
    "steps": Unit.BATCHES,
    "ep": Unit.EPOCHS, "epoch": Unit.EPOCHS, "epochs": Unit.EPOCHS,
}
_SCALE: dict[str, int] = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_NUMBER = r"(?P<num>[0-9][0-9_,]*(?:\.[0-9]+)?|\.[0-9]+)\s*(?P<scale>[kKmMbBgGtT]?)"
_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[a-zA-Z]+)(?:\s+of\b(?P<of>.*))?\s*$")
_PERCENT_RE = re.compile(
    rf"^\s*(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*%\s*(?:of\s+(?P<ref>{_NAME}))?\s*$"
)
_COUNT_RE = re.compile(rf"^\s*{_NUMBER}\s*$")

UNIT_HELP = "write e.g. '28B tok', '2.1M sp', '5000ba', '2 ep', '80%' or '80% of text_plan'"


@dataclass(frozen=True)
class Duration:
    """A parsed duration: ``value`` in ``unit``; percentages carry the reference they are of.

    Attributes:
        value: Exact amount (a Decimal; tokens, samples, batches, epochs or percent).
        unit: What the amount counts.
        ref: For percentages, the named reference duration (``None``: the run's total duration).
        text: The string as written, for messages.
        source: For epochs, the source they are passes over (``1 ep of NAME``; ``None``: the phase's one
            source).
    """

    value: Decimal
    unit: Unit
    ref: str | None = None
    text: str = ""
    source: str | None = None

    def __str__(self) -> str:
        return self.text or f"{self.value} {self.unit.value}"


_THOUSANDS_RE = re.compile(r"^[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$")


def _decimal(num: str, scale: str, text: str) -> Decimal:
    """Exact value of a matched number; a comma is accepted only as a thousands separator (``1,000,000``)."""
    if "," in num and not _THOUSANDS_RE.match(num.replace("_", "")):
        if num.count(",") > 1:
            raise ValueError(f"{brief(text)}: commas may only separate groups of three digits ('1,234,567')")
        raise ValueError(f"{brief(text)}: a comma here could be a decimal comma ('{num.replace(',', '.')}{scale}') "
                         f"or a thousands separator ('{num.replace(',', '')}{scale}'); write a point for a "
                         "decimal, and commas only between groups of three digits")
    return Decimal(num.replace("_", "").replace(",", "")) * _SCALE[scale.lower()]


def parse_duration(text: object) -> Duration:
    """Parse a duration string.

    Raises:
        ValueError: With a message that says what was wrong and how to write it.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"expected a duration string, got {brief(text)} ({UNIT_HELP})")
    if isinstance(text, int):
        raise ValueError(f"a bare number {brief(text)} has no unit ({UNIT_HELP})")
    if match := _PERCENT_RE.match(text):
        value = Decimal(match["num"])
        if value > 100 and match["ref"] is None:
            raise ValueError(f"{brief(text)} is more than 100% of the run ({UNIT_HELP})")
        return Duration(value, Unit.PERCENT, match["ref"], text.strip())
    match = _DURATION_RE.match(text)
    if match is None and _COUNT_RE.match(text):
        raise ValueError(f"a bare number {brief(text)} has no unit ({UNIT_HELP})")
    if match is None:
        raise ValueError(f"cannot read {brief(text)} as a duration ({UNIT_HELP})")
    scale, word = match["scale"], match["unit"]
    if (scale + word).lower() in _UNIT_WORDS:  # '5000ba': the 'b' belongs to the unit, not a scale
        scale, word = "", scale + word
    unit = _UNIT_WORDS.get(word.lower())
    if unit is None:
        shown = scale + word if scale and (scale + word).isalpha() else word  # '3.4 trillion', not 'rillion'
        raise ValueError(f"unknown unit {brief(shown)} in {brief(text)} ({UNIT_HELP})")
    source = match["of"].strip() if match["of"] is not None else None
    if source is not None and unit is not Unit.EPOCHS:
        raise ValueError(f"{brief(text)}: only epochs name a source ('1 ep of NAME') and only percentages a "
                         f"reference ('80% of NAME'); write e.g. '{match['num']}{scale} {word}'")
    if source is not None and not re.fullmatch(_NAME, source):
        raise ValueError(f"{brief(text)}: 'of' must be followed by one source name, e.g. '1 ep of instruct'")
    try:
        value = _decimal(match["num"], scale, text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"cannot read the number in {brief(text)}") from None
    if unit in (Unit.SAMPLES, Unit.BATCHES) and value != value.to_integral_value():
        value = value.to_integral_value(rounding=ROUND_CEILING)
    return Duration(value, unit, None, text.strip(), source)


def parse_count(text: object) -> int:
    """Parse a big count: an int, or a string like ``2.1B`` or ``3_700_000``.

    Raises:
        ValueError: If it is not a non-negative whole number.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a count, got {brief(text)}")
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, str) and (match := _COUNT_RE.match(text)):
        value = _decimal(match["num"], match["scale"], text)
    else:
        raise ValueError(f"expected a count like 3700000 or '2.1B', got {brief(text)}")
    if value < 0 or value != value.to_integral_value():
        raise ValueError(f"expected a whole, non-negative count, got {brief(text)}")
    return int(value)
