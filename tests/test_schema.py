import pandas as pd
import pytest
from aerodrome.errors import SchemaError
from aerodrome.schema import conform
from aerodrome.usecase import ColumnType as T

COLUMNS = {"id": T.int, "name": T.string, "ts": T.timestamp, "x": T.float, "flag": T.bool}


def frame(**over):
    base = {
        "id": ["1", "2", None],
        "name": ["a", "b", "c"],
        "ts": ["2013-01-01T10:00:00Z", "2013-01-01T11:00:00Z", None],
        "x": ["1.5", "", "3"],
        "flag": ["true", "0", None],
        "extra": [1, 2, 3],
    }
    base.update(over)
    return pd.DataFrame(base)


def test_conform_casts_declared_types_and_keeps_extras():
    out = conform(frame(), COLUMNS, "drop.csv")
    assert list(out.columns) == ["id", "name", "ts", "x", "flag", "extra"]
    assert str(out["id"].dtype) == "Int64" and out["id"].isna().sum() == 1
    assert str(out["ts"].dtype) == "datetime64[us, UTC]"
    assert out["x"].tolist()[0] == 1.5 and pd.isna(out["x"][1])
    assert out["flag"].tolist()[:2] == [True, False]


def test_missing_column_names_file_and_column():
    with pytest.raises(SchemaError, match=r"drop.csv: missing column\(s\) flag .*Fix the source"):
        conform(frame().drop(columns=["flag"]), COLUMNS, "drop.csv")


def test_bad_value_names_column_row_and_value():
    with pytest.raises(SchemaError, match=r"drop.csv: column 'x' should be numeric .*row 2: 'abc'"):
        conform(frame(x=["1", "abc", "2"]), COLUMNS, "drop.csv")


def test_fractional_int_rejected():
    with pytest.raises(SchemaError, match=r"column 'id' should be an integer .*row 1: 1.5"):
        conform(frame(id=[1.5, 2.0, 3.0]), COLUMNS, "drop.csv")


def test_bad_timestamp_rejected():
    with pytest.raises(SchemaError, match=r"column 'ts' should be a timestamp"):
        conform(frame(ts=["2013-01-01", "not a time", None]), COLUMNS, "drop.csv")
