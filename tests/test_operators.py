"""Operator adapters: which partition a run works on, whatever started it."""

from types import SimpleNamespace

import pytest
from aerodrome.usecase import load_usecase
from aerodrome_airflow.operators import partition_day
from airflow.sdk.exceptions import AirflowFailException
from conftest import USECASES_DIR


@pytest.fixture(scope="module")
def spec():
    return load_usecase(USECASES_DIR / "flight_delay")


def context(key=None, ds=None):
    return {"partition_key": key, "dag_run": SimpleNamespace(partition_key=key), "params": {"ds": ds}}


def test_the_partition_key_names_the_day(spec):
    assert partition_day(context(key="2013-01-05"), spec) == "2013-01-05"


def test_the_forms_day_picker_means_that_day(spec):
    assert partition_day(context(ds="2013-01-01"), spec) == "2013-01-01"
    assert partition_day(context(key="2013-01-01", ds="2013-01-01"), spec) == "2013-01-01"


@pytest.mark.parametrize(
    ("key", "ds", "message"),
    [
        (None, None, "no partition to work on"),
        ("2013-02-30", None, "'2013-02-30' is not a day"),
        ("2013-01-05T00:00:00", None, "use YYYY-MM-DD"),
        ("2014-01-01", None, "outside the schedule of flight_delay"),
        ("2013-01-05", "2013-01-06", "contradicts the run's partition key"),
    ],
)
def test_a_bad_partition_fails_without_retry_naming_key_and_fix(spec, key, ds, message):
    with pytest.raises(AirflowFailException, match=message):
        partition_day(context(key=key, ds=ds), spec)
