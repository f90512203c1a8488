"""Readable spec errors: each pydantic error becomes `<field>: <problem>. Fix: <what to do>`.

A validator says what is wrong and how to fix it by raising `aerodrome.errors.SpecProblem`; every
other pydantic error (unknown field, wrong type, value out of range) gets its fix from its type, the
allowed values or the field's description.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from aerodrome.errors import SpecProblem


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str
    fix: str

    def line(self, prefix: str = "") -> str:
        return f"{prefix}{self.field or '(top level)'}: {self.problem}. Fix: {self.fix}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin is dict:
        args = args[1:]
    if origin in (typing.Union, types.UnionType, list, dict, tuple, set, frozenset):
        return [m for a in args for m in _models_in(a)]
    return []


def _tag_of(model: type[BaseModel]) -> str | None:
    """The discriminator value (`kind: Literal["file_drop"]`) of a union member, if it has one."""
    kind = model.model_fields.get("kind")
    args = typing.get_args(kind.annotation) if kind else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[str], Any, list[type[BaseModel]]]:
    """The path as a user writes it (discriminator tags dropped), the last part's field, the models it may hold."""
    path: list[str] = []
    candidates: list[type[BaseModel]] = [root]
    field = None
    for part in loc:
        if isinstance(part, int):
            path.append(f"[{part}]")
            continue
        tagged = [m for m in candidates if _tag_of(m) == part]
        if len(candidates) > 1 and tagged:  # a discriminated union's tag: not written by the user
            candidates = tagged
            continue
        path.append(f".{part}" if path else part)
        holder = next((m for m in candidates if part in m.model_fields), None)
        field = holder.model_fields[part] if holder else None
        candidates = _models_in(field.annotation) if field else []
    return path, field, candidates


def _expected(error: ErrorDetails) -> str:
    message = error["msg"]
    return message.removeprefix("Input should be ").split(", unable to")[0]


def _problem_of(root: type[BaseModel], error: ErrorDetails) -> Problem:
    path, field, _ = _walk(root, error["loc"])
    where = "".join(path)
    described = f" ({field.description})" if field is not None and field.description else ""
    cause = (error.get("ctx") or {}).get("error")
    kind = error["type"]
    if isinstance(cause, SpecProblem):
        inner = cause.field
        full = f"{where}.{inner}" if where and inner and not inner.startswith("[") else f"{where}{inner}"
        return Problem(full, cause.problem, cause.fix)
    if kind == "extra_forbidden":
        parent = "".join(path[:-1]) or "the top level"
        known = ", ".join(dict.fromkeys(f for m in _walk(root, error["loc"][:-1])[2] for f in m.model_fields))
        fix = f"remove it or check its spelling (fields of {parent}: {known})" if known else "remove it"
        return Problem(where, "unknown field", fix)
    if kind == "missing":
        return Problem(where, "a required field is missing", f"add '{path[-1].lstrip('.')}'{described}")
    if kind == "value_error":
        return Problem(where, str(cause or error["msg"]).removeprefix("Value error, "), f"correct the value{described}")
    if kind in ("literal_error", "enum") or error["msg"].startswith("Input should be"):
        value = error.get("input")
        got = "" if isinstance(value, dict | list) else f" (got {value!r})"
        return Problem(where, f"{error['msg']}{got}", f"give {_expected(error)}")
    return Problem(where, error["msg"], f"correct the value{described}")


def spec_problems(err: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Every error of `err` (raised validating `root`) with the field as written in the YAML and a fix."""
    return [_problem_of(root, e) for e in err.errors()]
