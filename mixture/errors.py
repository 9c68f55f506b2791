"""The one error type users see.

Every problem a user can cause (a bad mixture file, a missing source, an infeasible schedule, bad CLI
input) is raised as :class:`MixtureError`. The CLI prints it as one line per problem and exits non-zero;
a traceback shown to a user for bad input is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Longest message text shown for one problem; a value pasted by mistake (300 KB) is never echoed whole.
MAX_MESSAGE_CHARS = 400


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (with the full length), for echoing user input.

    Args:
        value: What the user wrote (any type).
        limit: Most characters of the repr to show.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as written"
    return f"{text[:limit]}... ({size})"


# Every character str.splitlines() breaks at: a problem is printed as exactly one line.
_ONE_LINE = {ord(c): " " for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def _cap(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}... (message cut at {MAX_MESSAGE_CHARS} of {len(text):,} characters)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input.

    Attributes:
        message: What is wrong, in plain words.
        path: Dotted path of the offending field (``phases[1].mix.laion``), or ``""``.
        file: File the problem is in, or ``""``.
        line: 1-based line in ``file`` (0 when unknown).
        col: 1-based column in ``file`` (0 when unknown).
        hint: What to do about it, or ``""``.
    """

    message: str
    path: str = ""
    file: str = ""
    line: int = 0
    col: int = 0
    hint: str = ""

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}:{self.col}: " if self.line else f"{self.file}: "
        path = f"{self.path}: " if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{_cap(path)}{_cap(self.message)}{_cap(hint)}".translate(_ONE_LINE)


@dataclass
class MixtureError(ValueError):
    """One or more user-facing problems, reported together."""

    problems: list[Problem] = field(default_factory=list)

    def __init__(self, problems: Problem | str | list[Problem], *, hint: str = "", path: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, path=path, hint=hint)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
