"""Import directions between the packages, and no import cycles between modules (docs/architecture.md).

Every module of the four packages is parsed (never imported) and every ``import`` statement counted, at
module level or inside a function, under ``TYPE_CHECKING`` or not: a lazy import is still a dependency.
The rules:

- ``mixture`` (the compiler) imports none of the other packages, except ``mixture/cli.py``, the one place
  that registers their subcommands;
- ``streaming_data`` (ingest and serving) imports neither ``trainer`` nor ``analysis``;
- ``analysis`` (reports) never imports ``trainer``: it reads run directories through :mod:`mixture.run_dir`;
- ``trainer`` may import ``mixture`` and ``streaming_data``; only its orchestration subpackages,
  ``trainer.sweep`` and ``trainer.demo``, may import ``analysis`` (the demo ends in a report);
- no cycle between modules (an import of a package counts as an import of its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mixture", "streaming_data", "trainer", "analysis")
# (importer prefix, imported package) pairs that are forbidden, and the importer prefixes exempt from each.
FORBIDDEN: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "mixture": ({"streaming_data", "trainer", "analysis"}, ("mixture.cli",)),
    "streaming_data": ({"trainer", "analysis"}, ()),
    "analysis": ({"trainer"}, ()),
    "trainer": ({"analysis"}, ("trainer.sweep", "trainer.demo")),
}


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of the four packages (``pkg.sub`` for ``pkg/sub/__init__.py``)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _target(name: str) -> str | None:
    """The most specific module of ours that importing ``name`` loads (None: not ours)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module of ours, line) for every import statement in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when it is a module, else a name of pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _target(name)
            if target is not None and target != module:
                yield target, node.lineno


GRAPH = {module: sorted(set(_imports(module, path))) for module, path in MODULES.items()}


def test_the_scan_sees_every_package_and_known_edges() -> None:
    """The scanner itself: it finds the modules and edges that are known to exist."""
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES) and len(MODULES) > 60
    edges = {(m, t) for m, targets in GRAPH.items() for t, _ in targets}
    assert ("trainer.run", "trainer.context") in edges  # a lazy import inside a function counts
    assert ("mixture.cli", "mixture.errors") in edges
    assert ("trainer.sweep.cli", "trainer.sweep.status") in edges  # TYPE_CHECKING imports count


@pytest.mark.parametrize("package", PACKAGES)
def test_import_directions(package: str) -> None:
    forbidden, exempt = FORBIDDEN[package]
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: imports {t}" for m, targets in GRAPH.items()
           if _within(m, package) and not any(_within(m, e) for e in exempt)
           for t, line in targets if t.split(".")[0] in forbidden]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles({m: [t for t, _ in targets] for m, targets in GRAPH.items()})
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
