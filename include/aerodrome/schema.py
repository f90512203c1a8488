"""Conform source frames to the column types a use-case spec declares, naming the bad cell on failure."""

from __future__ import annotations

import pandas as pd

from aerodrome.errors import SchemaError
from aerodrome.usecase import ColumnType

_EXAMPLES = 3


def _bad_rows(original: pd.Series, converted: pd.Series) -> pd.Series:
    lost = original.notna() & converted.isna()
    if not lost.any():  # the common case: skip the costly text comparison
        return lost
    return lost & (original.astype("string").str.strip() != "")


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _raise_bad(where: str, column: str, kind: str, original: pd.Series, bad: pd.Series) -> None:
    rows = original.index[bad][:_EXAMPLES]
    examples = ", ".join(f"row {int(r) + 1}: {_plain(original[r])!r}" for r in rows)
    raise SchemaError(
        f"{where}: column {column!r} should be {kind} but {int(bad.sum())} value(s) are not ({examples}). "
        f"Fix the source data or the column type in the use-case spec."
    )


def _convert(where: str, column: str, kind: ColumnType, values: pd.Series) -> pd.Series:
    if kind is ColumnType.string:
        return values.astype("string")
    if kind is ColumnType.timestamp:
        if isinstance(values.dtype, pd.DatetimeTZDtype):  # already typed by the reader: no parsing
            return values.dt.tz_convert("UTC").dt.as_unit("us")
        converted = pd.to_datetime(values, utc=True, errors="coerce")
        if (bad := _bad_rows(values, converted)).any():
            _raise_bad(where, column, "a timestamp", values, bad)
        return converted.dt.as_unit("us")  # one resolution whatever the source (CSV, Parquet, SQL)
    if kind is ColumnType.bool:
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean")
        mapped = (
            values.astype("string")
            .str.strip()
            .str.lower()
            .map({"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False})
        )
        if (bad := _bad_rows(values, mapped)).any():
            _raise_bad(where, column, "a boolean", values, bad)
        return mapped.astype("boolean")
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        numeric = pd.to_numeric(values, errors="coerce")
        if (bad := _bad_rows(values, numeric)).any():
            _raise_bad(where, column, "numeric", values, bad)
    else:
        numeric = values  # typed by the reader: nothing can be lost
    if kind is ColumnType.int:
        if pd.api.types.is_integer_dtype(numeric):
            return numeric.astype("Int64")
        fractional = numeric.notna() & (numeric % 1 != 0)
        if fractional.any():
            _raise_bad(where, column, "an integer", values, fractional)
        return numeric.astype("Int64")
    return numeric.astype("float64")


def conform(frame: pd.DataFrame, columns: dict[str, ColumnType], where: str) -> pd.DataFrame:
    """Return `frame` with declared columns first, cast to their declared types; extra columns kept.

    `where` names the source (file, table) in error messages.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns))}). "
            f"Fix the source, or the 'columns' section of the use-case spec."
        )
    frame = frame.reset_index(drop=True)
    out = {name: _convert(where, name, kind, frame[name]) for name, kind in columns.items()}
    extras = {c: frame[c] for c in frame.columns if c not in columns}
    return pd.DataFrame({**out, **extras})
