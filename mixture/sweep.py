"""Sweeps: expand a mixture file's ``sweep:`` into variant files with stable names.

A variant is the file's data with each axis's field replaced by one value; ``phases.NAME.field`` selects
a phase by name, so variant paths do not depend on list positions. Names are ``axis=value`` joined with
``,`` (sanitised for directories), in the order the axes are written: stable across runs and machines.
"""

from __future__ import annotations

import copy
import itertools
import re

from mixture.errors import MixtureError, brief
from mixture.yaml_loader import Located


_MAX_SLUG = 80  # variant names become directory names


def _slug(value: object) -> str:
    text = str(value).replace("%", "pct").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._\-]", "_", text)


def _set(data: dict, dotted: str, value: object, axis: str, located: Located) -> str:
    """Set ``dotted`` (phases addressed by name) to ``value``; returns the field's indexed path."""
    parts = dotted.split(".")
    node: object = data
    path = f"sweep.axes.{axis}.field"
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


def _check_distinct(names: list[str], values: list[list[object]], located: Located, rows: bool) -> None:
    """Two variants with one name would overwrite each other: refuse a repeated value (grid) or row (zip)."""
    for axis, axis_values in zip(names, values):
        for j, value in enumerate(axis_values):
            if len(_slug(value)) > _MAX_SLUG:
                raise MixtureError(located.problem(f"sweep.axes.{axis}.values[{j}]", f"{brief(value)} is too long "
                                                   f"to name a variant ({len(_slug(value)):,} characters, at most "
                                                   f"{_MAX_SLUG})", "sweep over shorter values"))
    keys = [",".join(_slug(v) for v in row) for row in zip(*values)] if rows else None
    for axis, axis_values in zip(names, values):
        seen: dict[str, int] = {}
        for j, value in enumerate(axis_values):
            slug = keys[j] if keys is not None else _slug(value)
            if slug in seen:
                what = f"row {j + 1} repeats row {seen[slug] + 1}" if rows else (
                    f"{brief(value)} names the same variant as value {seen[slug] + 1} "
                    f"({brief(axis_values[seen[slug]])}): {axis}={slug}")
                raise MixtureError(located.problem(f"sweep.axes.{axis}.values[{j}]", what,
                                                   "give each variant once"))
            seen[slug] = j
        if rows:
            return  # one pass over the rows is enough


def expand(located: Located) -> list[tuple[str, dict, dict[str, str], dict[str, object]]]:
    """(name, data, {indexed field path: path of its sweep value}, {axis: value}) for every variant.

    Without a sweep: ``[("", data, {}, {})]``. The third item lets errors in a variant point at the sweep
    value that caused them; the fourth is what `mixture compare` plots results against.
    """
    data = located.data
    assert isinstance(data, dict)
    sweep = data.get("sweep")
    base = {k: v for k, v in data.items() if k != "sweep"}
    if not sweep:
        return [("", base, {}, {})]
    axes: dict = sweep["axes"]
    names = list(axes)
    values = [axes[n]["values"] for n in names]
    if sweep.get("mode", "grid") == "zip":
        if len({len(v) for v in values}) != 1:
            counts = ", ".join(f"{n} has {len(v)}" for n, v in zip(names, values))
            raise MixtureError(located.problem("sweep.axes", f"a zip sweep needs axes of equal length: {counts}",
                                               "give every axis the same number of values, or use mode: grid"))
        combos = list(zip(*values))
    else:
        combos = list(itertools.product(*values))
    zip_mode = sweep.get("mode", "grid") == "zip"
    _check_distinct(names, [list(row) for row in zip(*combos)] if zip_mode and combos else values, located, zip_mode)
    out = []
    for row, combo in enumerate(combos):
        variant = copy.deepcopy(base)
        origins = {}
        for axis, value in zip(names, combo):
            column = row if sweep.get("mode", "grid") == "zip" else axes[axis]["values"].index(value)
            field = _set(variant, axes[axis]["field"], value, axis, located)
            origins[field] = f"sweep.axes.{axis}.values[{column}]"
        name = ",".join(f"{axis}={_slug(v)}" for axis, v in zip(names, combo))
        out.append((name, variant, origins, dict(zip(names, combo))))
    return out
