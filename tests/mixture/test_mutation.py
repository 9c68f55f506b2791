"""Mutated valid files: `mixture validate` says ok or refuses with located lines, never a traceback.

Valid inputs are the example mixture files, a generated one, and a run config. A mutation deletes,
duplicates, retypes or swaps keys and values (huge and non-finite numbers, unicode, nested collections),
or edits the text (YAML syntax, anchors and aliases, tags, merge keys, control characters, truncation).
Each mutated file must give exit 0 with nothing on stderr, or exit 2 with one located line per problem;
the process's peak memory stays within 512 MiB of where it started (alias bombs and deep nesting are
refused structurally, so time is bounded too). The dev profile
runs 2,000 examples, CI's derandomized profile 200.
"""

from __future__ import annotations

import contextlib
import io
import re
import resource
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixture.cli import main

from tests.mixture.helpers import spec_text

ROOT = Path(__file__).resolve().parents[2]
RUN_CONFIG = (ROOT / "tests" / "mixture" / "broken_runs" / "_mixture.yaml").read_text()
SOURCES = {
    **{p.name: p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))},
    "generated.yaml": spec_text([
        {"name": "text", "duration": "40k tok", "mix": {"web": 1}},
        {"name": "mixed", "duration": "20k tok", "mix": {"web": 0.6, "img": 0.3, "chat": 0.1},
         "ramp": {"length": "5k tok"}, "lr": {"cooldown": {"to": 0}}},
    ]),
    "run.yaml": "schedule: _mixture.yaml\nvariant: s=1\nrun_dir: out\nstop_at: 3ba\n"
                "checkpoint: {interval: 2ba}\noptimizer: {lr: 1e-3}\n",
}
LOCATED = re.compile(r"^[^\s:]+(:\d+:\d+)?: .")
EXAMPLES = 200 if settings.default.derandomize else 2_000
MEMORY_GROWTH = 512 * 2**20
# The peak before this test's first example: ru_maxrss only grows, so it is read when the test starts, not at
# collection (other tests run in between may raise the process's peak on their own).
_START: dict[str, int] = {}

SCALARS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["", "80,5k tok", "1e999", "0 tok", "-1", "100%", "50% of x", "2 ep",
                                           "1,000,000 sp", "\u00e9\u4e2d\U0001f600", "5000ba", "null", "~"]),
    st.booleans(), st.none(), st.just("x" * 50_000),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=3),
                      max_leaves=6)
SNIPPETS = ["{", "}", "[", "]", ":", ": ", "- ", "&a ", "*a", "!!python/object:os.system ", "!include ", "<<: ",
            "\t", "\x00", "\x1b", "---\n", "? ", "'", '"', "#", "\ufeff", "\u2028", "%YAML 1.1\n", "|\n", ">\n",
            "&a [*a]", "\n  ", "@", "`"]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys and indexes) into plain data."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _get(node: object, path: tuple) -> object:
    for part in path:
        node = node[part]  # type: ignore[index]
    return node


def _mutate_data(data: dict, draw: st.DrawFn) -> str:
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent, last = _get(data, path[:-1]), path[-1]
    op = draw(st.sampled_from(["delete", "retype", "swap", "rename"]))
    if op == "delete":
        del parent[last]  # type: ignore[union-attr]
    elif op == "retype":
        parent[last] = draw(VALUES)  # type: ignore[index]
    elif op == "swap":
        other = draw(st.sampled_from(paths))
        with contextlib.suppress(KeyError, IndexError, TypeError):
            parent[last], value = _get(data, other), parent[last]  # type: ignore[index]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=12))] = parent.pop(last)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))


def _mutate_text(text: str, draw: st.DrawFn) -> str:
    lines = text.splitlines(keepends=True)
    op = draw(st.sampled_from(["insert", "duplicate_line", "delete_range", "truncate", "indent"]))
    at = draw(st.integers(0, max(len(text) - 1, 0)))
    if op == "insert":
        return text[:at] + draw(st.sampled_from(SNIPPETS) | st.text(max_size=5)) + text[at:]
    if op == "duplicate_line" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[: i + 1] + lines[i:])
    if op == "delete_range":
        return text[:at] + text[at + draw(st.integers(1, 40)):]
    if op == "truncate":
        return text[:at]
    i = draw(st.integers(0, max(len(lines) - 1, 0)))
    return "".join(lines[:i] + [" " * draw(st.integers(1, 3)) + line for line in lines[i:i + 1]] + lines[i + 1:])


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SOURCES)))
    text = SOURCES[name]
    for _ in range(draw(st.integers(1, 3))):
        data = None
        if draw(st.booleans()):
            with contextlib.suppress(yaml.YAMLError, ValueError, RecursionError):
                data = yaml.safe_load(text)
        try:
            text = _mutate_data(data, draw) if isinstance(data, dict) and data else _mutate_text(text, draw)
        except (yaml.YAMLError, ValueError, RecursionError):  # a recursive alias from an earlier round
            text = _mutate_text(text, draw)
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:  # now and then, bytes that are not UTF-8
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + raw[at:]
    return name, raw


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=mutated())
def test_a_mutated_file_is_valid_or_refused_with_located_lines(case: tuple[str, bytes]) -> None:
    name, raw = case
    baseline = _START.setdefault("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "_mixture.yaml").write_text(RUN_CONFIG)  # what the run config names
        (Path(tmp) / "shared").mkdir()  # what the examples include
        for shared in (ROOT / "examples" / "shared").glob("*.yaml"):
            (Path(tmp) / "shared" / shared.name).write_text(shared.read_text())
        path = Path(tmp) / name
        path.write_bytes(raw)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["validate", str(path)])
    text = err.getvalue()
    assert code in (0, 2), text
    assert "Traceback" not in text
    # The process's peak memory (cheap to read, unlike tracing every allocation) never grows by much.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < baseline + MEMORY_GROWTH
    if code == 0:
        assert text == ""
    else:
        lines = text.strip().splitlines()
        assert lines and all(LOCATED.match(line) and len(line) < 2_000 for line in lines), text
