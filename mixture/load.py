"""Load and validate a mixture file: YAML -> :class:`MixtureSpec`, every problem located in the file."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mixture.errors import MixtureError, Problem
from mixture.spec import MixtureSpec
from mixture.yaml_loader import Located, join_path, load_yaml


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function-after")):
            continue  # pydantic's union/validator branch labels are not part of the user's path
        path = join_path(path, part)
    return path


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    if origin in (list, dict):
        return _models_in(typing.get_args(annotation)[-1])
    return []


def _known_keys(loc: tuple[int | str, ...], root: type[BaseModel]) -> list[str]:
    """Field names (and aliases) valid at the mapping that holds ``loc[-1]``."""
    models: list[type[BaseModel]] = [root]
    for part in loc[:-1]:
        if isinstance(part, int) or (isinstance(part, str) and "[" in part):
            continue
        nxt: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                nxt += _models_in(field.annotation)
            elif any(typing.get_origin(f.annotation) is dict for f in model.model_fields.values()):
                nxt.append(model)  # a user-named key of a dict field: stay on the value model
        models = nxt or models
    keys: list[str] = []
    for model in models:
        for name, field in model.model_fields.items():
            keys.append(field.alias or name)
    return keys


def _problems(exc: ValidationError, located: Located, root: type[BaseModel] = MixtureSpec) -> list[Problem]:
    problems = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        path = _path(loc)
        hint = ""
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            close = difflib.get_close_matches(key, _known_keys(loc, root), n=1)
            message = f"unknown key {key!r}"
            hint = f"did you mean {close[0]!r}?" if close else "see docs/dsl.md for the allowed keys"
        elif err["type"] == "missing":
            message = "required field is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], dict):
                message += f", got {err['input']!r}"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(located.problem(path, message, hint))
    return problems


M = typing.TypeVar("M", bound=BaseModel)


def parse_model(text: str, file: str, model: type[M], keys: str) -> tuple[M, Located]:
    """Parse YAML text and check it against the frozen schema ``model``.

    Args:
        keys: The top-level keys, for the message when the file is not a mapping.

    Raises:
        MixtureError: Listing every schema problem with ``file:line:col``.
    """
    located = load_yaml(text, file)
    if not isinstance(located.data, dict):
        raise MixtureError(located.problem("", f"the file must be a mapping ({keys})"))
    try:
        return model.model_validate(located.data), located
    except ValidationError as exc:
        raise MixtureError(_problems(exc, located, model)) from None


def read_model(path: str | Path, model: type[M], what: str, keys: str) -> tuple[M, Located]:
    """Read a YAML file from disk and check it against ``model`` (``what`` names the file in errors).

    Raises:
        MixtureError: If the file cannot be read or has problems.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise MixtureError(f"cannot read {what} {str(path)!r}: {exc.__class__.__name__}",
                           hint=f"pass the path of a .yaml {what}") from None
    return parse_model(text, str(path), model, keys)


def parse_spec(text: str, file: str = "<string>") -> tuple[MixtureSpec, Located]:
    """Parse and schema-check mixture-file text.

    Raises:
        MixtureError: Listing every schema problem with ``file:line:col``.
    """
    return parse_model(text, file, MixtureSpec, "sources:, phases:, ...")


def read_spec(path: str | Path) -> tuple[MixtureSpec, Located]:
    """Read and schema-check a mixture file from disk.

    Raises:
        MixtureError: If the file cannot be read or has problems.
    """
    return read_model(path, MixtureSpec, "mixture file", "sources:, phases:, ...")
