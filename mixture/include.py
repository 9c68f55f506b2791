"""``include:``: a mixture file may take sections from other files (a study shares one sources block).

``include: shared.yaml`` (or a list of paths) names files relative to the including file. Each included
file is read (its own includes first), then the including file's keys are added. The merge rule is one:
**nothing is overridden**. ``sources`` and ``references`` merge entry by entry; any other top-level key
(``run``, ``phases``, ``seed``, ...) and any source or reference name may be given by one file only; a
second definition is refused, naming both places. Errors in included content point at the included
file's own ``path:line:col``; a file that includes itself (directly or through others) is refused with
the chain. Relative source ``location``s in an included file are relative to that file; they are
rewritten relative to the including file, so the result (and the canonical spec in the manifest, and the
fingerprint) is that of the resolved content: moving sources into an included file changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mixture.errors import MixtureError, brief
from mixture.locations import is_relative
from mixture.yaml_loader import Located

#: Top-level sections whose entries several files may contribute (each name defined once).
MERGED_SECTIONS = ("sources", "references")


def _targets(located: Located) -> list[tuple[str, str]]:
    """(path of the include entry, the file name written) for each entry of ``include:``."""
    value = located.data["include"]  # type: ignore[index]
    items = [("include", value)] if isinstance(value, str) else (
        [(f"include[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [])
    bad = [where for where, v in items if not (isinstance(v, str) and v.strip())] or ([] if items else ["include"])
    if bad:
        raise MixtureError(located.problem(bad[0], "expected a file path (include: takes a path or a list of "
                                           "paths)", "write e.g. include: shared_sources.yaml"))
    return items


def _existing(path: Path) -> Path | None:
    """The absolute path of ``path`` if it is a readable-looking file (a name too long or with NUL is not)."""
    try:
        return path.resolve() if path.is_file() else None
    except (OSError, ValueError):
        return None


def _rebase(source: object, origin: Path, target: Path) -> object:
    """A source whose relative local ``location`` is made relative to ``target`` instead of ``origin``."""
    if origin == target or not isinstance(source, dict):
        return source
    location = source.get("location")
    if not isinstance(location, str) or not is_relative(location):
        return source
    return {**source, "location": os.path.relpath(origin / location, target)}


def _copy_marks(into: Located, other: Located, path: str) -> None:
    for mark, position in other.marks.items():
        if mark == path or mark.startswith((path + ".", path + "[")):
            into.marks[mark] = position
            into.files[mark] = other.file_of(mark)


def _clash(into: Located, other: Located, path: str, what: str) -> MixtureError:
    line, _ = into.where(path)
    return MixtureError(other.problem(path, f"{what} is also defined in {into.file_of(path)}:{line}",
                                      "define it in one file: an included file's keys are never overridden"))


def _merge(into: Located, other: Located, other_dir: Path, top_dir: Path) -> None:
    """Add ``other``'s top-level keys to ``into`` (sources and references entry by entry), refusing clashes."""
    data: dict = into.data  # type: ignore[assignment]
    for key, value in other.data.items():  # type: ignore[union-attr]
        if key in MERGED_SECTIONS and isinstance(value, dict) and isinstance(data.get(key, {}), dict):
            section = data.setdefault(key, {})
            if key not in into.marks:
                into.marks[key], into.files[key] = other.where(key), other.file_of(key)
            for name, entry in value.items():
                if name in section:
                    raise _clash(into, other, f"{key}.{name}", f"{key[:-1]} {name!r}")
                section[name] = _rebase(entry, other_dir, top_dir) if key == "sources" else entry
                _copy_marks(into, other, f"{key}.{name}")
        elif key in data:
            raise _clash(into, other, key, f"{key!r}")
        else:
            data[key] = value
            _copy_marks(into, other, key)


def resolve_includes(located: Located, file: Path, read: Callable[[Path, str, str], Located],
                     chain: tuple[Path, ...] = ()) -> Located:
    """The file's data with every ``include:`` resolved (recursively), marks pointing into each file.

    Args:
        located: The loaded file (a mapping).
        file: Its path (relative includes are relative to its directory).
        read: Reads one YAML file (``mixture.load.read_yaml``: passed in, so the two modules import one way).
        chain: The files including this one, outermost first (to refuse cycles).

    Raises:
        MixtureError: A bad ``include:`` value, a missing file, a cycle, or a key defined twice, located.
    """
    if not isinstance(located.data, dict) or "include" not in located.data:
        return located
    file = file.resolve()
    chain = (*chain, file)
    merged = Located(data={}, file=located.file, marks={"": located.where("")})
    for where, name in _targets(located):
        # `shown` names the file as the including file is named in messages; `target` is for cycles.
        shown = Path(os.path.normpath(os.path.join(os.path.dirname(located.file), name)))
        target = _existing(file.parent / name)
        if target is None:
            raise MixtureError(located.problem(where, f"cannot include {brief(name)}: no such file",
                                               f"paths are relative to the including file: looked for {shown}"))
        if target in chain:
            cycle = " -> ".join(p.name for p in (*chain[chain.index(target):], target))
            raise MixtureError(located.problem(where, f"include cycle: {cycle}", "a file may not include itself"))
        sub = read(shown, "included mixture file",
                        "sources:, references:, run:, ...")
        _merge(merged, resolve_includes(sub, target, read, chain), target.parent, file.parent)
    own = Located({k: v for k, v in located.data.items() if k != "include"}, located.file, located.marks,
                  located.files)
    _merge(merged, own, file.parent, file.parent)
    return merged
