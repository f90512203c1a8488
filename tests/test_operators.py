"""Operator adapters: which partitions a run works on, and what they report."""

from types import SimpleNamespace

import pytest
from aerodrome_airflow.operators import interval_days


def events(*days):
    return {"raw/flight_delay": [SimpleNamespace(extra={"ds": d, "rows": 1}) for d in days]}


def test_param_wins_over_asset_events():
    assert interval_days({"triggering_asset_events": events("2013-01-02")}, "2013-01-05") == ["2013-01-05"]


def test_asset_events_name_the_days_sorted_and_unique():
    context = {"triggering_asset_events": events("2013-01-03", "2013-01-02", "2013-01-03")}
    assert interval_days(context, None) == ["2013-01-02", "2013-01-03"]
    assert interval_days(context, "None") == ["2013-01-02", "2013-01-03"]  # an empty templated param


def test_nothing_to_work_on_is_explained():
    with pytest.raises(ValueError, match="trigger with the 'ds' param"):
        interval_days({"triggering_asset_events": {}}, "")
