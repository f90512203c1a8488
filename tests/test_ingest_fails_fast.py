"""A deterministic ingest error (a missing column, a non-numeric value) fails the task at once, without retries."""

from datetime import UTC, date, datetime, timedelta

import pytest
from aerodrome.errors import SchemaError
from aerodrome.ingest import ingest_interval
from aerodrome.landing.flights import load_flights
from aerodrome.settings import Settings
from aerodrome.storage import open_storage
from aerodrome.usecase import load_usecase

pytestmark = pytest.mark.slow


def drop_bad_csv(day: date, spoil) -> str:
    """Write the flight_delay drop of `day` into the session's landing zone after `spoil(frame)`; its URI."""
    settings = Settings.from_env()
    flights = load_flights()
    frame = flights[(flights["month"] == day.month) & (flights["day"] == day.day)].reset_index(drop=True).copy()
    spoil(frame)
    landing = open_storage(settings.data_root, settings).sub("landing/flight_delay")
    key = f"flights_{day.isoformat()}.csv"
    landing.write_bytes(key, frame.to_csv(index=False).encode())
    return landing.uri(key)


def non_numeric_delay(frame) -> None:
    frame["dep_delay"] = frame["dep_delay"].astype("object")
    frame.loc[2, "dep_delay"] = "late"  # the third data row


def test_a_non_numeric_value_names_file_column_and_row():
    day = date(2013, 3, 5)
    uri = drop_bad_csv(day, non_numeric_delay)
    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / "flight_delay")
    start = datetime(2013, 3, 5, tzinfo=UTC)
    with pytest.raises(SchemaError) as caught:
        ingest_interval(spec, open_storage(settings.data_root, settings), start, start + timedelta(days=1))
    assert f"{uri}: column 'dep_delay' should be numeric" in str(caught.value)
    assert "row 3: 'late'" in str(caught.value) and "Fix the source data" in str(caught.value)


@pytest.mark.parametrize(
    ("day", "spoil"),
    [(date(2013, 3, 6), non_numeric_delay), (date(2013, 3, 7), lambda f: f.drop(columns=["carrier"], inplace=True))],
    ids=["non-numeric value", "missing column"],
)
def test_the_ingest_task_fails_on_its_first_try(dagbag, day, spoil):
    drop_bad_csv(day, spoil)
    dag = dagbag.get_dag("ingest_flight_delay")
    task = dag.get_task("ingest_partition")
    task.retries = 2  # as the generated DAGs' default (another test of the shared dagbag may have set 0)
    task.retry_delay = timedelta(seconds=1)  # so a regression shows as 3 tries, not a 5-minute wait
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    run = dag.test(logical_date=start + timedelta(days=1), run_conf={"ds": day.isoformat(), "replay_drop": False})
    (ti,) = run.get_task_instances()
    assert (run.state, str(ti.state), ti.try_number) == ("failed", "failed", 1)
