"""Load YAML keeping where every value came from, so errors can say ``file:line:col``.

PyYAML's composer gives nodes with start marks; we build plain Python data from them and record the mark
of every dotted path (``phases[1].mix.laion``). Scalars are resolved by PyYAML's safe rules, except that
numbers with exponents stay strings (we parse big numbers ourselves, see :mod:`mixture.units`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from mixture.errors import MixtureError, Problem


@dataclass
class Located:
    """Data loaded from YAML plus the (line, col) of every path in it (1-based)."""

    data: object
    file: str
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: str) -> tuple[int, int]:
        """Line and column of ``path``, falling back to the nearest enclosing path that has one."""
        while path:
            if path in self.marks:
                return self.marks[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.marks.get("", (1, 1))

    def problem(self, path: str, message: str, hint: str = "") -> Problem:
        """A :class:`Problem` located at ``path``."""
        line, col = self.where(path)
        return Problem(message, path=path, file=self.file, line=line, col=col, hint=hint)


def join_path(prefix: str, key: object) -> str:
    """Append a mapping key or list index to a dotted path."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _build(node: yaml.Node, path: str, located: Located) -> object:
    located.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, "__key__", located)
            child = join_path(path, key)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise MixtureError(
                    Problem(f"duplicate key {key!r}", path=child, file=located.file, line=line, col=col)
                )
            out[key] = _build(value_node, child, located)
            # A field's errors point at its key (the value's own mark was recorded while building it).
            located.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, join_path(path, i), located) for i, item in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value
    if isinstance(value, float) and ("e" in node.value.lower()):
        return node.value  # keep 1e9-style numbers as text: units.py parses them exactly
    return value


def load_yaml(text: str, file: str) -> Located:
    """Parse YAML text into :class:`Located` data.

    Raises:
        MixtureError: On a YAML syntax error or duplicate key, located in the file.
    """
    located = Located(data=None, file=file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise MixtureError(
            Problem(f"YAML syntax error: {exc.problem}", file=file, line=line, col=col,
                    hint="check indentation and quoting near this point")
        ) from None
    if node is None:
        raise MixtureError(Problem("the file is empty", file=file, hint="see docs/dsl.md for a minimal file"))
    located.data = _build(node, "", located)
    located.marks.pop("__key__", None)
    return located
