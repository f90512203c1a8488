"""Extension points: a use case's own code as a task of its generated pipeline, named in the spec.

    extensions:
      - {after: features, task: "checks:features_not_empty"}    # checks.py in the use-case folder
      - {before: train, task: "my_team.audit:log_window", name: audit_window}   # an installed package

`task` is `module:function`. The module is looked up first in the use-case folder (`<folder>/checks.py`,
loaded under a name of its own, so two use cases may both have a `checks.py`; the folder is put on
`sys.path` for its own imports), then among installed packages. The function takes one argument, a
`StepContext`, and returns nothing; raising fails the task: an `AerodromeError` (e.g. `SchemaError`) at
once, any other exception after the DAG's retries. `before: <stage>` runs before the stage's work (for
`train`: once the window is planned); `after: <stage>` runs after it and before the stage announces its
partition, so a failing check stops the pipeline there. Stages: ingest, validate, features, train.

The spec check imports each module and checks the signature: keep heavy imports (pandas, ...) inside
the function, since the DAG file imports the module at every parse.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aerodrome.settings import Settings
    from aerodrome.storage import Storage
    from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class StepContext:
    """What an extension function gets: the use case, the run's partition and where its data lives."""

    spec: UseCase
    stage: str  # ingest | validate | features | train
    when: str  # before | after
    partition: str | None  # the day (YYYY-MM-DD); for train the week key, or None for a manual run
    storage: Storage  # the data root (raw/, validated/, features/ ... of every use case)
    settings: Settings
    run_id: str = ""
    window: dict[str, Any] | None = None  # train only: the planned start, end, holdout_start
    params: dict[str, Any] = field(default_factory=dict)  # the run's trigger-form values
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("aerodrome.extensions"))


class ExtensionImportError(Exception):
    """`module:function` does not import, is not a function, or has the wrong signature."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}. Fix: {fix}")
        self.problem, self.fix = problem, fix


def _local_module(module: str, folder: Path):
    """`module` from the use-case folder, under a name of its own; None when the folder has no such file."""
    parts = module.split(".")
    candidates = [folder.joinpath(*parts).with_suffix(".py"), folder.joinpath(*parts, "__init__.py")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    place = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]  # one name per folder, not per use case
    unique = f"_aerodrome_usecase_{folder.name}_{place}__{'__'.join(parts)}"
    if unique in sys.modules:
        return sys.modules[unique]
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # the module's own imports of its siblings
    spec = importlib.util.spec_from_file_location(unique, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[unique] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[unique]
        raise
    return loaded


def resolve_extension(target: str, folder: Path) -> Callable[[StepContext], None]:
    """The function `module:function` names, from the use-case `folder` or an installed package, checked."""
    module_name, _, attr = target.partition(":")
    try:
        module = _local_module(module_name, folder) or importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ExtensionImportError(
            f"module {module_name!r} is neither in {folder} nor installed ({exc})",
            f"add {module_name.replace('.', '/')}.py to the use-case folder, or install the package",
        ) from None
    except Exception as exc:
        raise ExtensionImportError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}", "fix the module's code"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        found = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        raise ExtensionImportError(
            f"module {module_name!r} has no function {attr!r}",
            f"name one of its functions ({', '.join(found) or 'none'}) or define {attr}(step)",
        )
    try:
        inspect.signature(function).bind(None)
    except (TypeError, ValueError):
        raise ExtensionImportError(
            f"{target} takes {inspect.signature(function)}, not one argument",
            f"define it as `def {attr}(step: aerodrome.extensions.StepContext) -> None`",
        ) from None
    return function
