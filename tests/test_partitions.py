"""Partition keys, training windows and the zone sweep (plain library, no Airflow)."""

from datetime import date

import pytest
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.partitions import (
    PartitionKeyError,
    mark_featured,
    parse_week,
    sweep,
    training_window,
    week_days,
    week_key,
    zone_backlog,
)
from aerodrome.usecase import load_usecase
from conftest import USECASES_DIR


@pytest.fixture(scope="module")
def spec():
    return load_usecase(USECASES_DIR / "flight_delay")


def test_week_keys_match_airflows_start_of_week_mapper(spec):
    from airflow.partition_mappers.temporal import StartOfWeekMapper  # what the scheduler runs

    mapper = StartOfWeekMapper(input_format="%Y-%m-%d")
    for day in (date(2013, 1, 1), date(2013, 1, 6), date(2013, 1, 7), date(2013, 12, 31)):
        assert week_key(day) == mapper.to_downstream(day.isoformat())
    assert parse_week("2013-01-07 (W02)") == date(2013, 1, 7)
    assert [d.day for d in week_days("2012-12-31 (W01)", spec)] == [1, 2, 3, 4, 5, 6]  # clipped to the schedule


@pytest.mark.parametrize("key", ["2013-01-08 (W02)", "2013-01-07", "W02", ""])
def test_bad_week_keys_are_refused(key):
    with pytest.raises(PartitionKeyError):
        parse_week(key)


def test_training_window_slides_with_the_week_and_is_clipped_to_the_schedule(spec):
    window = training_window(spec, week="2013-03-04 (W10)", window_days=28)
    assert (window.start, window.end) == (date(2013, 2, 11), date(2013, 3, 11))
    assert training_window(spec, week="2013-01-07 (W02)").start == date(2013, 1, 1)  # not before the schedule
    assert training_window(spec, week="2013-12-30 (W01)").end == date(2014, 1, 1)  # not after it
    with pytest.raises(PartitionKeyError, match="is empty"):
        training_window(spec, end=date(2013, 1, 1))


def _settle(storage, spec, featured=(), quarantined=(), raw=(), validated=()):
    import pandas as pd

    frame = pd.DataFrame({"x": [1]})
    for zone, days in (("raw", raw), ("quarantine", quarantined), ("validated", validated)):
        for ds in days:
            write_partition(storage, partition_key(zone, spec.name, ds), frame, "test")
    for ds in featured:
        write_partition(storage, partition_key("validated", spec.name, ds), frame, "test")
        mark_featured(storage, spec, ds)


def test_backlog_finds_days_left_between_zones(storage, spec):
    _settle(storage, spec, raw=["2013-01-02", "2013-01-03"], validated=["2013-01-03"], featured=["2013-01-04"])
    found = zone_backlog(storage, spec)
    assert found.unvalidated == ("2013-01-02",)
    assert found.unfeatured == ("2013-01-03",)


def test_weeks_close_only_when_every_day_is_settled_and_enough_are_featured(storage, spec):
    w02 = [f"2013-01-{d:02d}" for d in range(7, 14)]
    _settle(storage, spec, featured=w02[:5], quarantined=[w02[5]])
    assert zone_backlog(storage, spec).open_weeks == {"2013-01-07 (W02)": [w02[6]]}  # 13th not settled yet
    assert zone_backlog(storage, spec).closable_weeks == ()
    _settle(storage, spec, featured=[w02[6]])
    assert zone_backlog(storage, spec).closable_weeks == ("2013-01-07 (W02)",)  # 6 featured + 1 quarantined
    assert zone_backlog(storage, spec, min_week_days=7).closable_weeks == ()


def test_a_complete_week_is_left_to_the_rollup_and_a_partial_first_week_is_closed(storage, spec):
    _settle(storage, spec, featured=[f"2013-01-{d:02d}" for d in range(1, 14)])
    assert zone_backlog(storage, spec).closable_weeks == ("2012-12-31 (W01)",)  # 2012-12-31 never comes


def test_sweep_waits_one_round_for_work_in_flight_and_closes_each_week_once(storage, spec):
    _settle(storage, spec, raw=["2013-01-08"], featured=[f"2013-01-{d:02d}" for d in range(1, 7)])
    first = sweep(storage, spec)
    assert first.unvalidated == () and first.closable_weeks == ("2012-12-31 (W01)",)
    second = sweep(storage, spec)
    assert second.unvalidated == ("2013-01-08",)  # still behind one sweep later: re-announce it
    assert second.closable_weeks == ()  # the week was asked for once
    assert sweep(storage, spec, immediate=True).unvalidated == ("2013-01-08",)
