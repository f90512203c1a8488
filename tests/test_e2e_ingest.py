"""End to end through Airflow: the generated ingest DAGs run with `dag.test()` for several intervals."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg2
import pytest
from aerodrome.ingest.partition import read_manifest, read_partition, write_partition
from aerodrome.landing.flights import load_flights
from aerodrome.settings import Settings
from aerodrome.storage import open_storage

pytestmark = pytest.mark.slow


def run_day(dag, day: datetime, **conf):
    """A manual run for the day `day` (the form's `ds`: that day, not the one before)."""
    # explicit defaults: dag.test() keeps the params of an earlier run of the same DAG object
    defaults = {"replay_drop": False} if dag.dag_id.startswith("ingest_") else {}
    # any logical date after the DAG's start works (the day comes from ds); the ingest DAG starts a day late
    run = dag.test(logical_date=day + timedelta(days=1), run_conf={"ds": day.date().isoformat(), **defaults, **conf})
    return run.state, {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture(scope="module")
def data():
    settings = Settings.from_env()
    return open_storage(settings.data_root, settings)


def test_flights_ingested_partition_by_partition_and_rerun_is_idempotent(dagbag, data):
    dag = dagbag.get_dag("ingest_flight_delay")
    days = [datetime(2013, 2, d, tzinfo=UTC) for d in (1, 2, 3)]
    for day in days:
        state, tasks = run_day(dag, day, replay_drop=True)
        assert state == "success", tasks
    assert [p for p in data.partitions("raw/flight_delay") if p.startswith("date=2013-02-0")] == [
        "date=2013-02-01",
        "date=2013-02-02",
        "date=2013-02-03",
    ]
    key = "raw/flight_delay/date=2013-02-02"
    before = read_manifest(data, key)
    rows = read_partition(data, key)
    flights = load_flights()
    expected = int(((flights["month"] == 2) & (flights["day"] == 2)).sum())
    assert before.rows == len(rows) == expected == 682
    assert set(rows["day"]) == {2} and set(rows["month"]) == {2}

    state, _ = run_day(dag, days[1])  # re-run the same interval, the drop is already there
    assert state == "success"
    after = read_manifest(data, key)
    assert after.sha256 == before.sha256 and after.rows == before.rows
    assert len(data.list(key)) == 2  # data file + manifest, no duplicates


def test_missing_drop_fails_the_task_and_keeps_other_partitions(dagbag, data):
    dag = dagbag.get_dag("ingest_flight_delay")
    dag.get_task("ingest_partition").retries = 0  # a retry would wait retry_delay in dag.test()
    before = data.partitions("raw/flight_delay")
    state, tasks = run_day(dag, datetime(2013, 6, 1, tzinfo=UTC))  # nothing dropped for June
    assert state == "failed" and str(tasks["ingest_partition"]) == "failed", tasks
    assert data.partitions("raw/flight_delay") == before


def test_second_domain_through_the_same_dag_code(dagbag, data):
    state, tasks = run_day(dagbag.get_dag("ingest_store_demand"), datetime(2024, 5, 1, tzinfo=UTC), replay_drop=True)
    assert state == "success", tasks
    assert read_manifest(data, "raw/store_demand/date=2024-05-01").rows == 1400


@pytest.mark.postgres
def test_postgres_source_dag(dagbag, data, pg_database):
    day = datetime(2024, 1, 2, tzinfo=UTC)
    conn = psycopg2.connect(**pg_database)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS orders")
        cur.execute("CREATE TABLE orders (order_id int, ordered_at timestamptz, amount float8, late bool)")
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s)",
            [(i, day + timedelta(hours=i - 10), float(i), i % 2 == 0) for i in range(40)],
        )
    conn.close()
    state, tasks = run_day(dagbag.get_dag("ingest_pg_orders"), day)
    assert state == "success", tasks
    frame = read_partition(data, "raw/pg_orders/date=2024-01-02")
    assert sorted(frame["order_id"].tolist()) == list(range(10, 34))


def test_quality_gate_and_features_dags_after_ingest(dagbag, data):
    """raw -> validate (pass and quarantine) -> features (offline, online, freshness) through Airflow."""
    from aerodrome.features import online_features
    from aerodrome.usecase import load_usecase

    ingest, validate = dagbag.get_dag("ingest_flight_delay"), dagbag.get_dag("validate_flight_delay")
    features = dagbag.get_dag("features_flight_delay")
    days = [datetime(2013, 3, d, tzinfo=UTC) for d in (1, 2, 3)]
    for day in days:
        assert run_day(ingest, day, replay_drop=True)[0] == "success"
    # spoil day 2 after ingestion: duplicate its first 20 rows (breaks natural-key uniqueness)
    raw = read_partition(data, "raw/flight_delay/date=2013-03-02")
    write_partition(data, "raw/flight_delay/date=2013-03-02", pd.concat([raw, raw.head(20)]), "test")

    for day in days:
        ds = day.date().isoformat()
        state, tasks = run_day(validate, day, release=False)
        assert state == ("failed" if ds == "2013-03-02" else "success"), (ds, tasks)
    assert data.exists("validated/flight_delay/date=2013-03-01/part-0.parquet")
    assert not data.exists("validated/flight_delay/date=2013-03-02")
    reason = data.read_bytes("quarantine/flight_delay/date=2013-03-02/reason.txt").decode()
    assert "compound_columns_to_be_unique" in reason and "2013-03-02" in reason

    # the weather (a second source, dropped beside the flights) goes through its own ingest and gate first
    for stage in ("ingest", "validate"):
        dag = dagbag.get_dag(f"{stage}_flight_delay__weather")
        for day in (days[0], days[2]):
            assert run_day(dag, day)[0] == "success", (stage, day)
    for day in (days[0], days[2]):
        state, tasks = run_day(features, day, strict_freshness=False)
        assert state == "success", tasks
    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / "flight_delay")
    row = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N12221", "dep_hour": 8, "weekday": 0}
    values = online_features(spec, settings, [row])
    assert values["carrier_delay_rate_7d"][0] is not None and 0 <= values["carrier_delay_rate_7d"][0] <= 1
