"""Custom expectations: a function of the use-case folder (or of an installed package) as a data-quality rule.

    expectations:
      - {type: custom, function: "flight_checks:no_future_departures", column: dep_time, mostly: 0.99,
         params: {slack_hours: 2}}

Signature: `fn(frame: pd.DataFrame, **params) -> pd.Series[bool] | bool`

- `frame` is the partition as ingest wrote it (the declared columns, conformed dtypes, 0-based row positions);
  treat it as read-only.
- `params` are the rule's `params:` mapping, passed by name.
- Return one boolean per row (a Series or array of `len(frame)` values: True = the row passes, False = it
  fails, NA = the rule does not apply to it and it is not counted, as Great Expectations skips nulls), or
  a single bool for a rule about the whole partition. `mostly` is the share of counted rows that must pass.
- `column` (optional) is the column whose values the quarantine reason shows for failing rows (without it:
  the natural key). A function that raises, or returns anything else, fails the rule with the error.

The module is found as a feature view's is (`aerodrome.features.hooks`: the use-case folder first, then the
installed packages) and checked at spec load without importing it: it exists, defines the function, and the
function takes a frame and the rule's params. The validation gate runs the rules beside the GX suite on the
same frame and merges their results into the verdict, the reason and the result document.
No Great Expectations import here: the spec check uses this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aerodrome.features.hooks import SIGNATURES, check_hook, load_hook

if TYPE_CHECKING:
    import pandas as pd

    from aerodrome.usecase import Expectation, UseCase

ROLE = "expectation"
EXPECTATION_TYPE = "custom"
EXAMPLES = 3  # failing rows shown in the reason (aerodrome.validate.report.EXAMPLES)
PARTIAL = 20  # failing rows kept in the result document (as GX's partial_unexpected_count)


def custom_rules(expectations: Sequence[Expectation]) -> Iterator[tuple[int, Expectation]]:
    """(index under `expectations:`, rule) of each custom rule."""
    return ((i, rule) for i, rule in enumerate(expectations) if rule.type == EXPECTATION_TYPE)


def check_custom_expectations(spec: UseCase, folder: str | Path | None) -> list[tuple[str, str, str]]:
    """(field, problem, fix) of every custom rule whose function cannot be called as documented; nothing imported.

    Covers the main source's `expectations` and each second source's (`sources.<name>.expectations`).
    """
    folder = Path(folder) if folder else None
    groups = [("expectations", spec.expectations)]
    groups += [(f"sources.{name}.expectations", s.expectations) for name, s in spec.sources.items()]
    problems = []
    for prefix, rules in groups:
        for i, rule in custom_rules(rules):
            found = check_hook(rule.function or "", ROLE, folder, keywords=list(rule.params))
            if found:
                problems.append((f"{prefix}[{i}].function", *found))
    return problems


@dataclass(frozen=True)
class CustomOutcome:
    """What one custom rule found on a partition. `rows` are 0-based positions of failing rows."""

    rule: str  # expectations[i]
    function: str
    column: str | None
    mostly: float
    params: dict[str, Any]
    success: bool
    element_count: int | None = None  # rows counted (None: a rule about the whole partition)
    unexpected_count: int | None = None
    rows: list[int] = field(default_factory=list)
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    @property
    def expectation(self) -> str:
        """How the reason and the result document name it."""
        return f"{EXPECTATION_TYPE} {self.function}"

    def kwargs(self) -> dict[str, Any]:
        return {"function": self.function, "column": self.column, "mostly": self.mostly, "params": self.params}

    def result(self) -> dict[str, Any]:
        """This outcome as an entry of a GX result document's `results` (same keys, so readers treat it alike)."""
        detail: dict[str, Any] = {}
        if self.unexpected_count is not None:
            detail = {
                "element_count": self.element_count,
                "unexpected_count": self.unexpected_count,
                "unexpected_percent": 100 * self.unexpected_count / self.element_count if self.element_count else 0.0,
                "partial_unexpected_list": self.examples,
                "partial_unexpected_index_list": self.rows,
            }
        elif self.error is None:
            detail = {"observed_value": self.success}
        return {
            "success": self.success,
            "expectation_config": {
                "type": self.expectation,
                "kwargs": self.kwargs(),
                "meta": {"aerodrome_rule": self.rule},
            },
            "result": detail,
            "exception_info": {
                "raised_exception": self.error is not None,
                "exception_message": self.error,
                "exception_traceback": None,
            },
        }


class CustomCheck:
    """One custom rule, its function imported (the use-case folder first) and its call checked."""

    def __init__(self, spec: UseCase, index: int, rule: Expectation) -> None:
        self.rule, self.function, self.column = f"expectations[{index}]", rule.function or "", rule.column
        self.mostly, self.params = rule.mostly, dict(rule.params)
        self.key_columns = [c for c in spec.natural_key if c in spec.columns]
        where = f"{spec.name}: {self.rule}.function"
        self.fn: Callable[..., Any] = load_hook(self.function, ROLE, spec.folder, where)

    def evaluate(self, frame: pd.DataFrame) -> CustomOutcome:
        import numpy as np
        import pandas as pd

        base = {"rule": self.rule, "function": self.function, "column": self.column}
        base |= {"mostly": self.mostly, "params": self.params}
        try:
            returned = self.fn(frame.copy(deep=False), **self.params)
        except Exception as exc:  # noqa: BLE001 - a rule that cannot run is not a pass; the reason says why
            return CustomOutcome(**base, success=False, error=f"{type(exc).__name__}: {exc}"[:200])
        if isinstance(returned, bool | np.bool_):
            return CustomOutcome(**base, success=bool(returned))
        try:
            passes = pd.array(np.asarray(returned, dtype=object), dtype="boolean")
        except (TypeError, ValueError):
            passes = None
        if passes is None or passes.ndim != 1 or len(passes) != len(frame):
            shape = f"{type(returned).__name__} of {len(returned) if hasattr(returned, '__len__') else '?'} values"
            problem = f"returned {shape}; {SIGNATURES[ROLE]} returns one bool per row ({len(frame)}) or one bool"
            return CustomOutcome(**base, success=False, error=problem)
        counted = ~np.asarray(passes.isna())
        failing = np.flatnonzero(counted & ~passes.fillna(True).to_numpy(dtype=bool))
        considered, unexpected = int(counted.sum()), len(failing)
        success = considered == 0 or (considered - unexpected) / considered >= self.mostly
        shown = failing[:PARTIAL]
        return CustomOutcome(
            **base,
            success=bool(success),
            element_count=considered,
            unexpected_count=unexpected,
            rows=[int(r) for r in shown],
            examples=self._examples(frame, shown),
        )

    def _examples(self, frame: pd.DataFrame, rows: Sequence[int]) -> list[Any]:
        """The failing rows' value of `column`, else their natural key (JSON-friendly)."""
        columns = [self.column] if self.column in frame.columns else [c for c in self.key_columns if c in frame]
        if not columns or not len(rows):
            return []
        picked = frame.iloc[list(rows)][columns].astype(object).where(frame.iloc[list(rows)][columns].notna(), None)
        values = picked.to_dict("records")
        return [v[columns[0]] for v in values] if len(columns) == 1 else values


def custom_checks(spec: UseCase) -> list[CustomCheck]:
    """The spec's custom rules, ready to run (their functions imported)."""
    return [CustomCheck(spec, i, rule) for i, rule in custom_rules(spec.expectations)]


def merge_results(document: dict[str, Any], outcomes: Sequence[CustomOutcome]) -> dict[str, Any]:
    """A GX result document (`to_json_dict()`) with the custom rules' results added to `results`, its
    `success` and its `statistics`."""
    if not outcomes:
        return document
    failed = sum(not o.success for o in outcomes)
    merged = {**document, "results": [*document.get("results", []), *(o.result() for o in outcomes)]}
    merged["success"] = bool(document.get("success")) and not failed
    stats = dict(document.get("statistics") or {})
    evaluated = int(stats.get("evaluated_expectations", 0)) + len(outcomes)
    passed = int(stats.get("successful_expectations", 0)) + len(outcomes) - failed
    stats |= {
        "evaluated_expectations": evaluated,
        "successful_expectations": passed,
        "unsuccessful_expectations": evaluated - passed,
        "success_percent": 100 * passed / evaluated if evaluated else None,
    }
    merged["statistics"] = stats
    return merged
