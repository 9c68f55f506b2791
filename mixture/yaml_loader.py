"""Load YAML keeping where every value came from, so errors can say ``file:line:col``.

PyYAML's composer gives nodes with start marks; we build plain Python data from them and record the mark
of every dotted path (``phases[1].mix.laion``). Scalars are resolved by PyYAML's safe rules, except that
numbers with exponents stay strings (we parse big numbers ourselves, see :mod:`mixture.units`).

Only plain data is accepted: mappings with text keys, lists and scalars of YAML's core types. Tags
(``!include``, ``!!python/...``), merge keys (``<<``), keys that are lists or mappings, recursive aliases,
nesting deeper than :data:`MAX_DEPTH` and alias expansions beyond :data:`MAX_NODES` values ("billion
laughs") are refused with a located message: an alias bomb is refused after building at most
:data:`MAX_NODES` values, so time and memory stay bounded (the composer itself shares aliased nodes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from mixture.errors import MixtureError, Problem, brief

#: Deepest nesting of mappings and lists accepted (a mixture file needs 6).
MAX_DEPTH = 64
#: Most values built from one file, counting each expansion of an alias (a mixture file has hundreds).
MAX_NODES = 100_000
_TAG = "tag:yaml.org,2002:"
#: A run of more openers than MAX_DEPTH: refused before scanning (PyYAML scans deep flow nesting slowly).
_OPENERS = re.compile(r"[\[{](?:\s*[\[{]){%d}" % MAX_DEPTH)
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


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
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _shown(tag: str) -> str:
    """A tag as it is written in YAML (``!!python/name:os.system``, ``!include``)."""
    return brief(tag.replace(_TAG, "!!", 1) if tag.startswith(_TAG) else tag)


class _Builder:
    """Builds plain data from a composed node tree, counting values and refusing what is not plain data."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.active: set[int] = set()  # ids of the collections being built (a revisit is a recursive alias)
        self.constructor = SafeConstructor()

    def fail(self, node: yaml.Node, message: str, hint: str = "", path: str = "") -> MixtureError:
        mark = node.start_mark
        return MixtureError(Problem(message, path=path, file=self.located.file, line=mark.line + 1,
                                    col=mark.column + 1, hint=hint))

    def build(self, node: yaml.Node, path: str, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep", "a mixture file needs few levels",
                            path)
        self.located.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            raise self.fail(node, "this alias refers to a value that contains it (a recursive alias)",
                            "write the value out instead of the alias", path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode) and node.tag == f"{_TAG}map":
                return self.mapping(node, path, depth)
            if isinstance(node, yaml.SequenceNode) and node.tag == f"{_TAG}seq":
                return [self.build(item, join_path(path, i), depth + 1) for i, item in enumerate(node.value)]
            raise self.fail(node, f"unsupported tag {_shown(node.tag)}", "only plain YAML data is read: remove "
                            "the tag", path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            child = join_path(path, key)
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in out:
                raise MixtureError(Problem(f"duplicate key {brief(key)}", path=child, file=self.located.file,
                                           line=line, col=col, hint="each key may appear once in a mapping"))
            out[key] = self.build(value_node, child, depth + 1)
            # A field's errors point at its key (the value's own mark was recorded while building it).
            self.located.marks[child] = (line, col)
        return out

    def key(self, node: yaml.Node, path: str) -> str:
        """A mapping key: the text as written (``1``, ``yes`` and ``null`` stay text), never a collection."""
        if node.tag == f"{_TAG}merge":
            raise self.fail(node, "merge keys ('<<') are not supported", "write the keys out", path)
        if not isinstance(node, yaml.ScalarNode):
            kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
            raise self.fail(node, f"a key must be a plain name, not a {kind}", "write the key as text", path)
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"unsupported tag {_shown(node.tag)} on a key", "remove the tag", path)
        if node.value.strip() in ("", "~"):
            raise self.fail(node, "a key is empty", "write a name before the ':'", path)
        return node.value

    def scalar(self, node: yaml.ScalarNode, path: str) -> object:
        if node.tag == f"{_TAG}str":
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"unsupported tag {_shown(node.tag)}", "only plain YAML data is read: remove "
                            "the tag", path)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, OverflowError):
            raise self.fail(node, f"cannot read {brief(node.value)} as {node.tag.removeprefix(_TAG)}",
                            "quote it to keep it as text", path) from None
        if isinstance(value, float) and "e" in node.value.lower() and "inf" not in node.value.lower():
            return node.value  # keep 1e9-style numbers as text: units.py parses them exactly
        return value


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, col) of character ``index`` of ``text``."""
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """The safe loader's composer with a depth limit (it recurses, and deep flow nesting scans slowly)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _sizes(root: yaml.Node) -> dict[int, int]:
    """Values each node expands to, aliases counted at every use (memoised: linear in distinct nodes)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a recursive alias counts 0 here; building it is refused with its place
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    size(root)
    return sizes


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse an alias bomb before building it, at the innermost value that expands past the limit."""
    sizes = _sizes(root)
    if sizes[id(root)] <= MAX_NODES:
        return
    node = root
    while True:
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        big = [c for c in children if not isinstance(c, yaml.ScalarNode) and sizes[id(c)] > MAX_NODES]
        if not big:
            break
        node = big[0]
    mark = node.start_mark
    raise MixtureError(Problem(f"this value expands to {sizes[id(node)]:,} values through aliases, more than "
                               f"{MAX_NODES:,}", file=file, line=mark.line + 1, col=mark.column + 1,
                               hint="an alias bomb? write the values out, or use fewer aliases"))


def _syntax_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _position(text, exc.position)
        return Problem(f"character {exc.character!r} is not allowed in YAML", file=file, line=line, col=col,
                       hint="remove control characters (NUL, escape codes) from the file")
    mark = getattr(exc, "problem_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    what = getattr(exc, "problem", None) or str(exc)
    return Problem(f"YAML syntax error: {what}", file=file, line=line, col=col,
                   hint="check indentation and quoting near this point")


def load_yaml(text: str, file: str) -> Located:
    """Parse YAML text into :class:`Located` data.

    Raises:
        MixtureError: On a YAML syntax error, a duplicate key, or anything that is not plain data, located.
    """
    located = Located(data=None, file=file)
    if deep := _OPENERS.search(text):
        line, col = _position(text, deep.end() - 1)
        raise MixtureError(Problem(f"nested more than {MAX_DEPTH} levels deep", file=file, line=line, col=col,
                                   hint="a mixture file needs few levels"))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise MixtureError(_syntax_problem(exc, text, file)) from None
    except _TooDeep as exc:
        raise MixtureError(Problem(f"nested more than {MAX_DEPTH} levels deep", file=file, line=exc.mark.line + 1,
                                   col=exc.mark.column + 1, hint="a mixture file needs few levels")) from None
    if node is None:
        raise MixtureError(Problem("the file is empty", file=file, hint="see docs/dsl.md for a minimal file"))
    _check_expansion(node, file)
    located.data = _Builder(located).build(node, "", 0)
    return located


def decode(raw: bytes, file: str) -> str:
    """Text of a YAML file's bytes (UTF-8, an optional BOM removed).

    Raises:
        MixtureError: Naming the line and column of the first byte that is not UTF-8.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8-sig")
        line, col = _position(good, len(good))
        raise MixtureError(Problem(f"byte 0x{raw[exc.start]:02x} is not UTF-8 text", file=file, line=line,
                                   col=col, hint="save the file as UTF-8")) from None
