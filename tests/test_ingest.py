"""Ingestion on real flights data: one raw partition per interval, idempotent, readable errors."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import SchemaError, SourceError
from aerodrome.ingest import ingest_interval, read_partition
from aerodrome.ingest.partition import read_manifest
from aerodrome.ingest.run import landing_storage
from aerodrome.landing import feed_for
from aerodrome.usecase import load_usecase

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")
DEMAND = load_usecase(ROOT / "include/usecases/store_demand")


def interval(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def drop(storage, spec, *days):
    return feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, list(days))


def test_file_drop_ingest_writes_one_typed_partition(storage):
    (landed,) = drop(storage, FLIGHTS, date(2013, 1, 1))
    result = ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 1)))
    assert result.rows == landed.rows == 842
    frame = read_partition(storage, "raw/flight_delay/date=2013-01-01")
    assert len(frame) == 842 and str(frame["time_hour"].dtype) == "datetime64[us, UTC]"
    assert frame["arr_delay"].isna().sum() > 0  # cancelled flights are kept, not dropped
    assert read_manifest(storage, "raw/flight_delay/date=2013-01-01").sha256 == result.sha256


def test_rerun_replaces_partition_without_duplicates(storage):
    drop(storage, FLIGHTS, date(2013, 1, 2))
    first = ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 2)))
    second = ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 2)))
    assert first.sha256 == second.sha256 and first.rows == second.rows
    assert storage.list("raw/flight_delay") == [
        "raw/flight_delay/date=2013-01-02/_manifest.json",
        "raw/flight_delay/date=2013-01-02/part-0.parquet",
    ]


def test_second_domain_runs_through_the_same_code(storage):
    drop(storage, DEMAND, date(2024, 3, 1))
    result = ingest_interval(DEMAND, storage, *interval(date(2024, 3, 1)))
    frame = read_partition(storage, "raw/store_demand/date=2024-03-01")
    assert result.rows == len(frame) == 1400 and frame["units"].dtype == "float64"


def test_missing_drop_names_file_and_keeps_earlier_partitions(storage):
    drop(storage, FLIGHTS, date(2013, 1, 3))
    ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 3)))
    with pytest.raises(SourceError, match=r"flights_2013-01-04.csv: no file dropped for 2013-01-04"):
        ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 4)))
    assert storage.partitions("raw/flight_delay") == ["date=2013-01-03"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"year,month\n2013,1,1,1,1\n\x00\x01garbage", "cannot be read as csv"),
    ],
)
def test_corrupt_or_empty_csv_is_named(storage, content, message):
    storage.write_bytes("landing/flight_delay/flights_2013-01-05.csv", content)
    with pytest.raises(SourceError, match=rf"flights_2013-01-05.csv: {message}"):
        ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 5)))
    assert storage.partitions("raw/flight_delay") == []
    assert storage.exists("landing/flight_delay/flights_2013-01-05.csv")  # nothing lost


def test_truncated_parquet_is_named(storage):
    (landed,) = drop(storage, DEMAND, date(2024, 3, 2))
    key = "landing/store_demand/demand_2024-03-02.parquet"
    storage.write_bytes(key, storage.read_bytes(key)[:500])
    with pytest.raises(SourceError, match="demand_2024-03-02.parquet: cannot be read as parquet.*corrupt or truncated"):
        ingest_interval(DEMAND, storage, *interval(date(2024, 3, 2)))


def test_missing_column_in_drop_is_named(storage):
    (landed,) = drop(storage, FLIGHTS, date(2013, 1, 6))
    key = "landing/flight_delay/flights_2013-01-06.csv"
    frame = pd.read_csv(landed.uri).drop(columns=["tailnum"])
    storage.write_bytes(key, frame.to_csv(index=False).encode())
    with pytest.raises(SchemaError, match=r"flights_2013-01-06.csv: missing column\(s\) tailnum"):
        ingest_interval(FLIGHTS, storage, *interval(date(2013, 1, 6)))
