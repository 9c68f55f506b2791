"""The demo's text corpus: real English that ships with Python, read without importing anything.

Documents are the standard library's docstrings, one document per module (its module, class and function
docstrings in source order, joined by blank lines), plus the language-reference help topics that ``help()``
prints (``pydoc_data/topics.py``, one document per topic). Everything is read with :mod:`ast` from the
``.py`` files of the running interpreter's stdlib: no module is imported, so nothing can open a window,
start a thread or print, and the result depends only on the files (Python 3.11.7: 720 documents, 2.26 MB,
~630k tokens with the demo's 4096-entry BPE). Test packages and site-packages are skipped; a docstring seen before
(in sorted path order) is dropped, so repeated boilerplate ("Return self==value.") appears once.

The split is by module (a hash of its path), so a held-out document never shares a module with training
text; a scaled-down corpus takes documents in the order of a second hash until it has its share of the
characters. Neither depends on the demo's seed: the held-out text is the same for every seed.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
_TOPICS = "pydoc_data/topics.py"
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Document:
    """One document of the corpus: ``key`` names where it came from (a stdlib path, or path:topic)."""

    key: str
    text: str


def stdlib_root() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def python_version() -> str:
    """The interpreter version whose stdlib the corpus is made from, e.g. ``3.11.7``."""
    return ".".join(str(v) for v in sys.version_info[:3])


def _source_files(root: Path) -> list[tuple[str, Path]]:
    """(posix path relative to root, path) of every stdlib .py file outside tests, sorted by path."""
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith("test_") for part in rel.parts):
            continue
        files.append((rel.as_posix(), path))
    return sorted(files)


_Documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _doc_nodes(node: ast.AST) -> list[_Documented]:
    """The module, class and function nodes under ``node``, in source order.

    Walks statement lists only (docstrings live on statements): ast.walk, which visits every expression
    too, takes three times as long as parsing.
    """
    found: list[_Documented] = [node] if isinstance(node, _DOC_NODES) else []
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        children = getattr(node, field, None)
        if isinstance(children, list):
            for child in children:
                found += _doc_nodes(child)
    return found


def _docstrings(tree: ast.Module) -> list[str]:
    """Docstrings of the module and every class and function in it, in source order."""
    texts = (ast.get_docstring(node, clean=True) for node in _doc_nodes(tree))
    return [text for text in texts if text and text.strip()]


def _topics(tree: ast.Module) -> list[tuple[str, str]]:
    """(name, text) of each help topic in pydoc_data/topics.py's ``topics = {...}`` literal."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            pairs = zip(node.value.keys, node.value.values)
            return sorted((k.value, v.value) for k, v in pairs
                          if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and str(v.value).strip())
    return []


def stdlib_documents(root: Path | None = None) -> list[Document]:
    """Every document of the corpus, sorted by key, with repeated docstrings dropped.

    Args:
        root: The stdlib directory (default: the running interpreter's).
    """
    seen: set[str] = set()
    documents = []
    for rel, path in _source_files(root or stdlib_root()):
        try:
            tree = ast.parse(path.read_bytes(), filename=rel)
        except (SyntaxError, ValueError):  # a file for another Python version (lib2to3 fixtures, ...)
            continue
        if rel == _TOPICS:
            parts = [(f"{rel}:{name}", [text.strip()]) for name, text in _topics(tree)]
        else:
            parts = [(rel, _docstrings(tree))]
        for key, texts in parts:
            fresh = [t for t in texts if t not in seen]
            seen.update(fresh)
            if fresh:
                documents.append(Document(key, "\n\n".join(fresh)))
    return documents


def unit_hash(role: str, key: str) -> float:
    """A uniform number in [0, 1) from a role and a key (sha256: stable across runs and platforms)."""
    digest = hashlib.sha256(f"{role}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_documents(documents: list[Document], *, heldout_fraction: float,
                    scale: float) -> tuple[list[Document], list[Document]]:
    """(train, held-out): held-out by a hash of the module; each cut to ``scale`` of its characters.

    Documents of one module (a path, or the topics file's path) land in the same split. With ``scale`` < 1,
    whole documents are taken in the order of a second hash until the split has ``scale`` of its characters;
    the result keeps the sorted order of ``documents``.
    """
    module = {d.key: d.key.split(":", 1)[0] for d in documents}
    train = [d for d in documents if unit_hash("demo-text-split", module[d.key]) >= heldout_fraction]
    heldout = [d for d in documents if unit_hash("demo-text-split", module[d.key]) < heldout_fraction]
    return _scaled(train, scale), _scaled(heldout, scale)


def _scaled(documents: list[Document], scale: float) -> list[Document]:
    if scale >= 1.0 or not documents:
        return documents
    target = scale * sum(len(d.text) for d in documents)
    chosen: set[str] = set()
    total = 0
    for doc in sorted(documents, key=lambda d: unit_hash("demo-text-scale", d.key)):
        if total >= target:
            break
        chosen.add(doc.key)
        total += len(doc.text)
    return [d for d in documents if d.key in chosen]
