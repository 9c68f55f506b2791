"""Sweeps: expand a mixture file's ``sweep:`` into variant files with stable, readable names.

A variant is the file's data with each axis's field replaced by one value; ``phases.NAME.field`` selects
a phase by name, so variant paths do not depend on list positions. An axis's ``values`` is a list (the
variant name says the value, sanitised for directories: ``intro=20pctoftext_plan``) or a mapping label ->
value (the name says the label: ``intro=early``). An axis with ``fields`` sets several fields together,
each value a list with one entry per field: a zip group that is one axis of the grid. Names are
``axis=value`` joined with ``,`` in the order the axes are written: stable across runs and machines (a
list axis is named exactly as before labels existed).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass

from mixture.errors import MixtureError, brief
from mixture.yaml_loader import Located

_MAX_SLUG = 80  # variant names become directory names


def _slug(value: object) -> str:
    text = str(value).replace("%", "pct").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._\-]", "_", text)


@dataclass(frozen=True)
class _Value:
    """One value of one axis.

    Attributes:
        slug: What the variant name says for it: the label, or the value(s) sanitised.
        settings: (dotted field, value) pairs it sets.
        origin: Path of the value in the file (errors of the variant point there).
        shown: What the variant records as the axis's value (the label, or the value; a row for ``fields``).
    """

    slug: str
    settings: tuple[tuple[str, object], ...]
    origin: str
    shown: object


def _set(data: dict, dotted: str, value: object, axis: str, located: Located) -> str:
    """Set ``dotted`` (phases addressed by name) to ``value``; returns the field's indexed path."""
    parts = dotted.split(".")
    node: object = data
    given = located.data["sweep"]["axes"][axis]  # type: ignore[index]
    path = f"sweep.axes.{axis}.{'field' if given.get('field') is not None else 'fields'}"
    indexed = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and node and all(isinstance(p, dict) and "name" in p for p in node):
            match = [j for j, p in enumerate(node) if p.get("name") == part]
            if not match:
                raise MixtureError(located.problem(path, f"no phase named {part!r} in {dotted!r}",
                                                   f"phases are: {', '.join(p['name'] for p in node)}"))
            node = node[match[0]]
            indexed += f"[{match[0]}]"
            continue
        indexed = f"{indexed}.{part}" if indexed else part
        if not isinstance(node, dict) or (part not in node and not last):
            raise MixtureError(located.problem(path, f"{dotted!r} does not name a field of this file",
                                               "write e.g. phases.cooldown.mix.images"))
        if last:
            node[part] = value
        else:
            node = node[part]
    return indexed


def _axis(name: str, axis: dict, located: Located) -> list[_Value]:
    """The values of one axis (schema-valid), each with its name, settings and origin."""
    fields = [axis["field"]] if axis.get("field") is not None else list(axis["fields"])
    raw = axis["values"]
    items = list(raw.items()) if isinstance(raw, dict) else [(None, v) for v in raw]
    out = []
    for j, (label, value) in enumerate(items):
        origin = f"sweep.axes.{name}.values" + (f".{label}" if label is not None else f"[{j}]")
        if axis.get("fields") is not None and (not isinstance(value, list) or len(value) != len(fields)):
            raise MixtureError(located.problem(origin, f"expected a list of {len(fields)} values, one per field "
                                               f"({', '.join(fields)}), got {brief(value)}",
                                               "write e.g. [value1, value2]"))
        row = value if axis.get("fields") is not None else [value]
        slug = label if label is not None else "_".join(_slug(v) for v in row)
        if len(slug) > _MAX_SLUG:
            raise MixtureError(located.problem(origin, f"{brief(value)} is too long to name a variant "
                                               f"({len(slug):,} characters, at most {_MAX_SLUG})",
                                               "sweep over shorter values, or label them: values: {label: value}"))
        shown = label if label is not None else value
        out.append(_Value(slug, tuple(zip(fields, row)), origin, shown))
    return out


def _check_distinct(axes: dict[str, list[_Value]], located: Located, rows: bool) -> None:
    """Two variants with one name would overwrite each other: refuse a repeated value (grid) or row (zip)."""
    if rows:
        seen: dict[str, int] = {}
        first = next(iter(axes))
        for j, row in enumerate(zip(*axes.values())):
            key = ",".join(v.slug for v in row)
            if key in seen:
                raise MixtureError(located.problem(axes[first][j].origin, f"row {j + 1} repeats row {seen[key] + 1}",
                                                   "give each variant once"))
            seen[key] = j
        return
    for axis, values in axes.items():
        by_slug: dict[str, int] = {}
        for j, value in enumerate(values):
            if value.slug in by_slug:
                k = by_slug[value.slug]
                raise MixtureError(located.problem(value.origin, f"{brief(value.shown)} names the same variant as "
                                                   f"value {k + 1} ({brief(values[k].shown)}): {axis}={value.slug}",
                                                   "give each variant once"))
            by_slug[value.slug] = j


def expand(located: Located) -> list[tuple[str, dict, dict[str, str], dict[str, object]]]:
    """(name, data, {indexed field path: path of its sweep value}, {axis: value}) for every variant.

    Without a sweep: ``[("", data, {}, {})]``. The third item lets errors in a variant point at the sweep
    value that caused them; the fourth is what `mixture compare` plots results against (a labelled value
    is recorded by its label).
    """
    data = located.data
    assert isinstance(data, dict)
    sweep = data.get("sweep")
    base = {k: v for k, v in data.items() if k != "sweep"}
    if not sweep:
        return [("", base, {}, {})]
    axes = {name: _axis(name, axis, located) for name, axis in sweep["axes"].items()}
    zip_mode = sweep.get("mode", "grid") == "zip"
    if zip_mode:
        if len({len(v) for v in axes.values()}) != 1:
            counts = ", ".join(f"{n} has {len(v)}" for n, v in axes.items())
            raise MixtureError(located.problem("sweep.axes", f"a zip sweep needs axes of equal length: {counts}",
                                               "give every axis the same number of values, or use mode: grid"))
        combos = list(zip(*axes.values()))
    else:
        combos = list(itertools.product(*axes.values()))
    _check_distinct(axes, located, zip_mode)
    out = []
    for combo in combos:
        variant = copy.deepcopy(base)
        origins = {}
        for axis, value in zip(axes, combo):
            for field, setting in value.settings:
                origins[_set(variant, field, copy.deepcopy(setting), axis, located)] = value.origin
        name = ",".join(f"{axis}={value.slug}" for axis, value in zip(axes, combo))
        out.append((name, variant, origins, {axis: value.shown for axis, value in zip(axes, combo)}))
    return out
