"""Load and validate a mixture file: YAML -> :class:`MixtureSpec`, every problem located in the file."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mixture.errors import MixtureError, Problem, brief
from mixture.spec import MixtureSpec
from mixture.yaml_loader import Located, decode, join_path, load_yaml


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


_KINDS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false",
          "none": "nothing", "list": "a list", "dict": "a mapping", "tuple": "a list"}


def _kind(label: str) -> str:
    """Plain words for a pydantic union branch label (``int``, ``Distribution``, ``list[str]``)."""
    if label.startswith("function-"):  # a validated branch: 'function-after[_ordered(), Distribution]'
        label = label.rsplit(", ", 1)[-1].rstrip("]")
    base = label.split("[", 1)[0]
    if base in _KINDS:
        return _KINDS[base]
    return f"a mapping ({label})" if label[:1].isupper() else label


def _walk(loc: tuple[int | str, ...], data: object, missing: bool) -> tuple[str, str, list[str]]:
    """(user path, path of the union it went through or "", skipped union labels) of a pydantic ``loc``.

    A part of ``loc`` is the user's when the data has it (a missing field is the last part); anything else
    is pydantic's union branch or validator label and is left out of the path.
    """
    path, union, labels = "", "", []
    node = data
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node or (isinstance(node, list) and isinstance(part, int)
                                                       and 0 <= part < len(node)):
            path, node = join_path(path, part), node[part]  # type: ignore[index]
        elif missing and i == len(loc) - 1:
            path = join_path(path, part)
        elif isinstance(part, str):
            union = union or path
            labels.append(part)
    return path, union, labels


def _message(err: dict, loc: tuple[int | str, ...], root: type[BaseModel]) -> tuple[str, str]:
    """Message and hint of one pydantic error."""
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _known_keys(loc, root), n=1)
        return f"unknown key {brief(key)}", f"did you mean {close[0]!r}?" if close else "see the docs for the keys"
    if kind == "missing":
        return "required field is missing", ""
    if value is None and kind.endswith("_type"):
        return "no value given", "write a value after the ':' or remove the key"
    if kind == "string_pattern_mismatch":
        return (f"{brief(value)} is not a valid name",
                "start with a letter or '_', then letters, digits, '_' or '-'")
    message = err["msg"].removeprefix("Value error, ")
    if "input" in err and kind != "value_error" and not isinstance(value, dict):
        message += f", got {brief(value)}"
    return message, ""


def _problems(exc: ValidationError, located: Located, root: type[BaseModel] = MixtureSpec,
              data: object = None) -> list[Problem]:
    """One located problem per field from a pydantic error (union branches merged into one message).

    Args:
        data: The data that was validated (default: ``located.data``; a sweep variant passes its own).
    """
    data = located.data if data is None else data
    walked = []
    for err in exc.errors():
        path, union, labels = _walk(err["loc"], data, err["type"] == "missing")
        walked.append((err, path, union, labels))
    # Another branch got further (deeper errors), or a branch's own validator said what is wrong: say that.
    deeper = {union for err, path, union, _ in walked
              if union and (path != union or err["type"] == "value_error")}
    unions: dict[str, list[str]] = {}
    for err, path, union, labels in walked:
        if union and path == union:
            unions.setdefault(path, []).extend(labels[:1])
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err, path, union, _ in walked:
        if union and path == union and err["type"] != "value_error":
            if path in deeper or (path, "") in seen:
                continue  # another branch of the union got further: its errors say more
            kinds = list(dict.fromkeys(_kind(label) for label in unions[path]))
            message, hint = f"expected {' or '.join(kinds)}, got {brief(err.get('input'))}", ""
            seen.add((path, ""))
        else:
            message, hint = _message(err, err["loc"], root)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        problems.append(located.problem(path, message, hint))
    return problems


M = typing.TypeVar("M", bound=BaseModel)


def parse_yaml(text: str, file: str, keys: str) -> Located:
    """Parse YAML text that must be a mapping (``keys`` names its top-level keys for the message).

    Raises:
        MixtureError: On a YAML problem, or when the file is not a mapping, located.
    """
    located = load_yaml(text, file)
    if not isinstance(located.data, dict):
        raise MixtureError(located.problem("", f"the file must be a mapping ({keys})"))
    return located


def read_yaml(path: str | Path, what: str, keys: str) -> Located:
    """Read a YAML mapping from disk (``what`` names the file in errors).

    Raises:
        MixtureError: If the file cannot be read, is not UTF-8, or is not a YAML mapping.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = {FileNotFoundError: "no such file", IsADirectoryError: "it is a directory",
                  PermissionError: "permission denied"}.get(type(exc), exc.__class__.__name__)
        raise MixtureError(Problem(f"cannot read this {what}: {reason}", file=str(path),
                                   hint=f"pass the path of a .yaml {what}")) from None
    return parse_yaml(decode(raw, str(path)), str(path), keys)


def check_model(located: Located, model: type[M], data: object = None) -> M:
    """Check loaded data (default: ``located.data``) against the frozen schema ``model``.

    Raises:
        MixtureError: Listing every schema problem with ``file:line:col``.
    """
    try:
        return model.model_validate(located.data if data is None else data)
    except ValidationError as exc:
        raise MixtureError(_problems(exc, located, model, data)) from None


def parse_model(text: str, file: str, model: type[M], keys: str) -> tuple[M, Located]:
    """Parse YAML text and check it against the frozen schema ``model``.

    Raises:
        MixtureError: Listing every schema problem with ``file:line:col``.
    """
    located = parse_yaml(text, file, keys)
    return check_model(located, model), located


def read_model(path: str | Path, model: type[M], what: str, keys: str) -> tuple[M, Located]:
    """Read a YAML file from disk and check it against ``model`` (``what`` names the file in errors).

    Raises:
        MixtureError: If the file cannot be read or has problems.
    """
    located = read_yaml(path, what, keys)
    return check_model(located, model), located


def parse_spec(text: str, file: str = "<string>") -> tuple[MixtureSpec, Located]:
    """Parse and schema-check mixture-file text (``include:`` paths relative to ``file``'s directory).

    Raises:
        MixtureError: Listing every schema problem with ``file:line:col``.
    """
    from mixture.include import resolve_includes

    located = resolve_includes(parse_yaml(text, file, "sources:, phases:, ..."), Path(file), read_yaml)
    return check_model(located, MixtureSpec), located


def read_spec(path: str | Path) -> tuple[MixtureSpec, Located]:
    """Read and schema-check a mixture file from disk, its ``include:``s resolved (:mod:`mixture.include`).

    Raises:
        MixtureError: If the file cannot be read or has problems.
    """
    from mixture.include import resolve_includes

    located = resolve_includes(read_yaml(path, "mixture file", "sources:, phases:, ..."), Path(path), read_yaml)
    return check_model(located, MixtureSpec), located
