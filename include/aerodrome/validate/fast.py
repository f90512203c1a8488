"""A vectorised pandas evaluator of a GX suite: decides pass/fail without running GX.

It reads the suite's own expectation configurations (nothing is duplicated from the spec) and
reproduces GX's pandas semantics for the types the spec generates: nulls are skipped by value
checks, `mostly` is measured against the non-null rows, uniqueness counts every copy of a
duplicate. Anything it cannot evaluate (an unknown type, a missing column, a comparison that
raises) counts as "not proven to pass", so the caller runs GX, which stays the authority.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import great_expectations as gx
import numpy as np
import pandas as pd
from pandas.api.types import pandas_dtype

from aerodrome.validate.suite import expectation_key

# success, observed value (an unexpected count, a row count, a dtype, a max)
CheckResult = tuple[bool, Any]
_Check = Callable[[pd.DataFrame, dict[str, Any]], CheckResult]


def _mostly_ok(considered: int, unexpected: int, mostly: float) -> bool:
    return considered == 0 or (considered - unexpected) / considered >= mostly


def _not_null(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    column = frame[kw["column"]]
    bad = int(column.isna().sum())
    return _mostly_ok(len(column), bad, kw.get("mostly", 1.0)), bad


def _between(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    column = frame[kw["column"]]
    lo, hi = kw.get("min_value"), kw.get("max_value")
    masks = []
    if lo is not None:
        masks.append((column <= lo) if kw.get("strict_min") else (column < lo))
    if hi is not None:
        masks.append((column >= hi) if kw.get("strict_max") else (column > hi))
    outside = masks[0] | masks[1] if len(masks) == 2 else masks[0]
    bad = int(outside.sum())  # comparisons with null are null/False, so nulls never count
    if bad == 0:
        return True, 0
    return _mostly_ok(int(column.notna().sum()), bad, kw.get("mostly", 1.0)), bad


def _in_set(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    column = frame[kw["column"]]
    present = column.notna()
    bad = int((present & ~column.isin(kw["value_set"])).sum())
    return _mostly_ok(int(present.sum()), bad, kw.get("mostly", 1.0)), bad


def _unique(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    column = frame[kw["column"]].dropna()
    bad = int(column.duplicated(keep=False).sum())
    return _mostly_ok(len(column), bad, kw.get("mostly", 1.0)), bad


def _compound_unique(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    keys = frame[list(kw["column_list"])]
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore != "never" and any(keys[c].hasnans for c in keys.columns):
        missing = keys.isna()
        drop = missing.all(axis=1) if ignore == "all_values_are_missing" else missing.any(axis=1)
        if drop.any():
            keys = keys[~drop]
    bad = int(keys.duplicated(keep=False).sum())
    return _mostly_ok(len(keys), bad, kw.get("mostly", 1.0)), bad


def _row_count(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    rows = len(frame)
    lo, hi = kw.get("min_value"), kw.get("max_value")
    return (lo is None or rows >= lo) and (hi is None or rows <= hi), rows


def _column_exists(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    return kw["column"] in frame.columns, None


def _column_type(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    """GX's pandas rule: the exact dtype, except a unit-less datetime64/timedelta64 names the kind."""
    actual, wanted = frame[kw["column"]].dtype, kw["type_"]
    parsed = pandas_dtype(wanted)
    if isinstance(parsed, np.dtype) and parsed.kind in "mM" and np.datetime_data(parsed)[0] == "generic":
        ok = isinstance(actual, np.dtype) and actual.kind == parsed.kind
    elif isinstance(actual, pd.StringDtype) and isinstance(parsed, pd.StringDtype):
        ok = str(actual) == str(parsed)  # "str" and "string" differ; the storage does not matter
    else:
        ok = actual in (parsed, wanted)
    return bool(ok), str(actual)


def _max_between(frame: pd.DataFrame, kw: dict[str, Any]) -> CheckResult:
    newest = frame[kw["column"]].max()
    if pd.isna(newest):
        return False, None
    lo, hi = kw.get("min_value"), kw.get("max_value")
    ok = (lo is None or newest >= lo) and (hi is None or newest <= hi)
    return bool(ok), newest


CHECKS: dict[str, _Check] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_table_row_count_to_be_between": _row_count,
    "expect_column_to_exist": _column_exists,
    "expect_column_type_to_be": _column_type,
    "expect_column_max_to_be_between": _max_between,
}
# Keyword arguments the checks above understand; any other one (row_condition, ...) defers to GX.
_UNDERSTOOD = {
    "column", "column_list", "min_value", "max_value", "strict_min", "strict_max", "mostly",
    "value_set", "type_", "ignore_row_if",
}  # fmt: skip


def _resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        return parameters[value["$PARAMETER"]]
    return value


class CheckOutcome(NamedTuple):
    key: str
    type: str
    kwargs: dict[str, Any]
    success: bool | None  # None: not evaluated here (GX decides)
    observed: Any = None

    def resolved_key(self, parameters: Mapping[str, Any]) -> str:
        """The key GX gives this expectation's result (its `$PARAMETER`s substituted)."""
        return expectation_key(self.type, {k: _resolve(v, parameters) for k, v in self.kwargs.items()})


@dataclass(frozen=True)
class FastVerdict:
    checks: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        """True only when every expectation was evaluated and held."""
        return all(c.success for c in self.checks)


class FastSuite:
    """A suite compiled once into vectorised checks."""

    def __init__(self, suite: gx.ExpectationSuite) -> None:
        self.suite_name = suite.name
        self._plan: list[tuple[str, str, dict[str, Any], _Check | None, bool]] = []
        for expectation in suite.expectations:
            config = expectation.configuration
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            check = CHECKS.get(config.type)
            if check is not None and not set(kwargs) <= _UNDERSTOOD:
                check = None
            parameterised = any(isinstance(v, dict) and "$PARAMETER" in v for v in kwargs.values())
            self._plan.append((expectation_key(config.type, kwargs), config.type, kwargs, check, parameterised))

    def __len__(self) -> int:
        return len(self._plan)

    def evaluate(self, frame: pd.DataFrame, parameters: Mapping[str, Any] | None = None) -> FastVerdict:
        parameters = parameters or {}
        outcomes = []
        for key, kind, kwargs, check, parameterised in self._plan:
            success, observed = None, None
            if check is not None:
                try:
                    resolved = {k: _resolve(v, parameters) for k, v in kwargs.items()} if parameterised else kwargs
                    success, observed = check(frame, resolved)
                except Exception:  # noqa: BLE001 - a check that cannot run is not a pass; GX reports why
                    success = False
            outcomes.append(CheckOutcome(key, kind, kwargs, success, observed))
        return FastVerdict(outcomes)
