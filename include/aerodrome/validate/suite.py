"""The Great Expectations suite of a use case, generated from its spec ("suite as code").

Schema checks (every declared column exists with its conformed dtype) come from `columns`;
value checks come from the `expectations:` section (`custom` rules run beside the suite: `custom.py`).
Freshness depends on the interval being validated, so its window is a suite parameter resolved per
partition by `suite_parameters`.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.expectations.expectation import Expectation as GxExpectation

from aerodrome.errors import SpecError
from aerodrome.usecase import ColumnType, Expectation, UseCase

# The dtype `aerodrome.schema.conform` produces for each declared type, as read back from Parquet.
CONFORMED_DTYPES: dict[ColumnType, str] = {
    ColumnType.string: "string",
    ColumnType.int: "Int64",
    ColumnType.float: "float64",
    ColumnType.bool: "boolean",
    ColumnType.timestamp: "datetime64[us, UTC]",
}

_SUITES: dict[str, gx.ExpectationSuite] = {}


def freshness_parameter_names(column: str) -> tuple[str, str]:
    return f"freshness_{column}_from", f"freshness_{column}_to"


def _freshness_window(rule: Expectation) -> tuple[float, float]:
    """Hours after the start of the interval between which the newest event must lie."""
    return (0.0 if rule.min is None else rule.min, 24.0 if rule.max is None else rule.max)


def _rule(rule: Expectation, index: int, spec: UseCase) -> GxExpectation:
    where = f"{spec.name}: expectations[{index}] ({rule.type})"
    meta = {"aerodrome_rule": f"expectations[{index}]"}
    mostly = {"mostly": rule.mostly} if rule.mostly < 1.0 else {}
    if rule.type in ("not_null", "between", "in_set", "freshness") and not rule.column:
        raise SpecError(f"{where}: needs 'column'")
    if rule.type == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column, meta=meta, **mostly)
    if rule.type == "between":
        if rule.min is None and rule.max is None:
            raise SpecError(f"{where}: needs 'min' and/or 'max'")
        return gxe.ExpectColumnValuesToBeBetween(
            column=rule.column, min_value=rule.min, max_value=rule.max, meta=meta, **mostly
        )
    if rule.type == "in_set":
        if not rule.values:
            raise SpecError(f"{where}: needs a non-empty 'values' list")
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=rule.values, meta=meta, **mostly)
    if rule.type == "unique":
        if rule.columns and len(rule.columns) > 1:
            return gxe.ExpectCompoundColumnsToBeUnique(column_list=rule.columns, meta=meta, **mostly)
        column = rule.column or (rule.columns or [None])[0]
        if not column:
            raise SpecError(f"{where}: needs 'column' or 'columns'")
        return gxe.ExpectColumnValuesToBeUnique(column=column, meta=meta, **mostly)
    if rule.type == "row_count":
        lo, hi = (None if v is None else int(v) for v in (rule.min, rule.max))
        return gxe.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi, meta=meta)
    if rule.type == "type":
        if not rule.column or not rule.values or len(rule.values) != 1:
            raise SpecError(f"{where}: needs 'column' and exactly one dtype name in 'values'")
        return gxe.ExpectColumnTypeToBe(column=rule.column, type_=str(rule.values[0]), meta=meta)
    if rule.type == "freshness":
        if spec.columns[rule.column] is not ColumnType.timestamp:
            raise SpecError(f"{where}: column {rule.column!r} must be a timestamp column")
        lo_name, hi_name = freshness_parameter_names(rule.column)
        lo, hi = _freshness_window(rule)
        return gxe.ExpectColumnMaxToBeBetween(
            column=rule.column,
            min_value={"$PARAMETER": lo_name},
            max_value={"$PARAMETER": hi_name},
            meta=meta,
            notes=f"Freshness: the newest {rule.column} lies {lo:g}h to {hi:g}h after the interval starts.",
        )
    raise SpecError(f"{where}: unsupported expectation type")  # pragma: no cover - Literal guards it


def _schema(spec: UseCase) -> list[GxExpectation]:
    """Every declared column exists and has its conformed dtype (unless a `type` rule overrides it)."""
    overridden = {r.column for r in spec.expectations if r.type == "type"}
    checks: list[GxExpectation] = []
    for column, kind in spec.columns.items():
        checks.append(gxe.ExpectColumnToExist(column=column, meta={"aerodrome_rule": "columns"}))
        if column not in overridden:
            checks.append(
                gxe.ExpectColumnTypeToBe(
                    column=column, type_=CONFORMED_DTYPES[kind], meta={"aerodrome_rule": "columns"}
                )
            )
    return checks


def build_suite(spec: UseCase) -> gx.ExpectationSuite:
    """The use case's suite: schema checks from `columns`, then the rules under `expectations` but `custom`.

    Built once per spec content and cached; callers must not mutate it.
    """
    cache_key = spec.model_dump_json()
    if (suite := _SUITES.get(cache_key)) is None:
        rules = [_rule(rule, i, spec) for i, rule in enumerate(spec.expectations) if rule.type != "custom"]
        suite = gx.ExpectationSuite(
            name=spec.name,
            expectations=_schema(spec) + rules,
            meta={"aerodrome_usecase": spec.name, "generated_from": "usecase.yaml"},
        )
        _SUITES[cache_key] = suite
    return suite


def suite_parameters(spec: UseCase, ds: str) -> dict[str, Any]:
    """Values of the suite's `$PARAMETER`s for interval `ds` (freshness windows, UTC)."""
    start = datetime.combine(date.fromisoformat(ds), datetime.min.time(), tzinfo=UTC)
    params: dict[str, Any] = {}
    for rule in spec.expectations:
        if rule.type == "freshness" and rule.column:
            lo, hi = _freshness_window(rule)
            lo_name, hi_name = freshness_parameter_names(rule.column)
            params[lo_name] = pd.Timestamp(start + timedelta(hours=lo))
            params[hi_name] = pd.Timestamp(start + timedelta(hours=hi))
    return params


def expectation_key(kind: str, kwargs: dict[str, Any]) -> str:
    """Identity of an expectation across suite and results (GX returns results in arbitrary order)."""
    clean = {k: v for k, v in kwargs.items() if k != "batch_id"}
    return kind + json.dumps(clean, sort_keys=True, default=str)
