"""`module:function` where YAML ends: a function of the use-case folder or of any installed package.

Signatures (positional parameters; the names are free):

- a view's `compute: module:function`:
  `fn(frame: pd.DataFrame, view: FeatureView, context: FeatureContext) -> pd.DataFrame`.
  `frame` holds the validated rows of the days needed (raw columns, `_day` = the partition, `_event_time`
  = the prediction moment in UTC, the calendar and derived columns). Return one row per feature row:
  `event_timestamp` (UTC, the moment the values became known; never earlier), the view's entities and
  features, and optionally `_day` (the partition the row belongs to; default: the local day of its
  stamp). Rows of days other than `context.days` are dropped.
- a `derive: [{function: module:function, columns: {...}}]` step:
  `fn(frame: pd.DataFrame, context: FeatureContext) -> pd.DataFrame`, the frame with `columns` added.

A function may set `fn.lookback_days = N` when its rows of day D read partitions up to N days before D.
The use-case folder is put on `sys.path` and searched first, so the trainer image and the local backend
find the module the same way (the folder ships with the specs). Give modules a name unique across use
cases (e.g. `<usecase>_features`): two folders with the same module name are refused.

At spec load the function is checked without importing anything (its source is parsed): the module
exists, defines the function, and the function takes that many positional arguments.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from aerodrome.errors import SpecError

HOOK = re.compile(r"^(?P<module>[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")
ARITY = {"compute": 3, "derive": 2, "expectation": 1}
SIGNATURES = {
    "compute": "fn(frame, view, context) -> DataFrame",
    "derive": "fn(frame, context) -> DataFrame",
    "expectation": "fn(frame, **params) -> Series[bool] | bool",  # aerodrome.validate.custom
}


def _module_file(module: str, usecase_dir: Path | None) -> Path | None:
    """The source file of `module`: in the use-case folder first, else where Python would find it, but never
    in another use case's folder (put on sys.path when its own functions were loaded in this process)."""
    if usecase_dir is not None:
        base = usecase_dir.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    origin = found.origin or ""
    if not origin.endswith(".py"):
        return Path("<compiled>")
    owner = _owner_folder(origin)
    if usecase_dir is not None and owner is not None and owner != usecase_dir.resolve():
        return None
    return Path(origin)


def check_hook(
    target: str, role: str, usecase_dir: Path | None, keywords: Collection[str] = ()
) -> tuple[str, str] | None:
    """(problem, fix) when `target` cannot serve as a `role` function ('compute', 'derive', 'expectation'), else
    None; `keywords`: arguments it will also be called with by name.

    Nothing is imported: the module's source is parsed.
    """
    arity, signature = ARITY[role], SIGNATURES[role]
    match = HOOK.match(target)
    if not match:
        return f"{target!r} is not 'module:function'", "write e.g. 'my_features:weather' (a .py in the use-case folder)"
    module, function = match["module"], match["function"]
    where = f"the use-case folder {usecase_dir}" if usecase_dir else "the use-case folder"
    path = _module_file(module, usecase_dir)
    if path is None:
        return (
            f"module {module!r} is neither in {where} nor installed",
            f"add {module.replace('.', '/')}.py to the use-case folder or install the package that provides it",
        )
    if path.name == "<compiled>":
        return None  # a compiled module: checked when it is imported
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        return f"{path} does not parse (line {exc.lineno}: {exc.msg})", "fix the syntax error"
    defined = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    other = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    other |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom | ast.Import) for a in n.names}
    node = defined.get(function)
    if node is None:
        if function in other:
            return None  # bound another way (an import, an assignment): checked when it is imported
        return f"{path} defines no function {function!r}", f"define {function}: {signature}"
    args = node.args
    positional = len(args.posonlyargs) + len(args.args)
    by_name = args.args[max(arity - len(args.posonlyargs), 0) :]  # after the positional ones: may come by name
    required = positional - len(args.defaults)
    required -= sum(1 for a in by_name[: max(required - arity, 0)] if a.arg in keywords)  # given by name
    if not (required <= arity <= positional or (args.vararg and required <= arity)):
        return (
            f"{module}:{function} takes {required} positional argument(s), not {arity}",
            f"give it the signature {signature}",
        )
    named = {a.arg for a in [*by_name, *args.kwonlyargs]}
    if unknown := [k for k in keywords if k not in named] if args.kwarg is None else []:
        return (
            f"{module}:{function} takes no argument {unknown[0]!r}",
            f"add '{unknown[0]}' (or '**params') to its parameters, or remove it from the spec's params",
        )
    kw_only = zip(args.kwonlyargs, args.kw_defaults, strict=True)
    if missing := [a.arg for a, default in kw_only if default is None and a.arg not in keywords]:
        return f"{module}:{function} requires the argument {missing[0]!r}", f"give it under params: {missing[0]}: ..."
    return None


def load_hook(target: str, role: str, usecase_dir: Path | None, where: str) -> Callable[..., Any]:
    """Import the function `target` names (the use-case folder on sys.path first); `where` prefixes errors."""
    problem = check_hook(target, role, usecase_dir)
    if problem:
        raise SpecError(f"{where}: {problem[0]}. Fix: {problem[1]}")
    module, _, function = target.partition(":")
    if usecase_dir is not None:
        folder = str(usecase_dir.resolve())
        local = _module_file(module, usecase_dir)
        loaded = sys.modules.get(module.split(".")[0])
        loaded_file = getattr(loaded, "__file__", None)
        other = _owner(loaded_file) if loaded_file else None
        if local is not None and other and other != usecase_dir.resolve().name:
            raise SpecError(
                f"{where}: module {module!r} is already imported from {loaded_file} (use case {other!r}). "
                f"Fix: give the module a name unique across use cases (e.g. prefix it with the use-case name)"
            )
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        fn = getattr(importlib.import_module(module), function)
    except Exception as exc:  # a user module can fail in any way while importing
        raise SpecError(f"{where}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
    try:
        inspect.signature(fn).bind(*([None] * ARITY[role]))
    except TypeError:
        raise SpecError(f"{where}: {target} does not take {ARITY[role]} arguments. Fix: {SIGNATURES[role]}") from None
    except ValueError:
        pass  # no signature to read (a builtin): called as documented
    return fn


def _owner(module_file: str) -> str | None:
    """The use case whose folder holds `module_file` (the nearest folder with a usecase.yaml), if any."""
    folder = _owner_folder(module_file)
    return folder.name if folder else None


def _owner_folder(module_file: str) -> Path | None:
    """The nearest folder above `module_file` with a usecase.yaml (resolved), if any."""
    for folder in Path(module_file).resolve().parents:
        if (folder / "usecase.yaml").is_file():
            return folder
    return None
