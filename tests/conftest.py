"""Shared fixtures: a temporary Airflow home, data root and use-case folder for the whole session.

The environment is set before anything imports Airflow, so every test (and every task run through
`dag.test()`) sees the same isolated embedded profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(tempfile.mkdtemp(prefix="aerodrome-tests-"))
USECASES_DIR = SESSION_DIR / "usecases"
shutil.copytree(ROOT / "include" / "usecases", USECASES_DIR)
shutil.copytree(ROOT / "tests" / "usecases", USECASES_DIR, dirs_exist_ok=True)  # test-only domains

os.environ["AIRFLOW_HOME"] = str(SESSION_DIR / "airflow")
os.environ["AERODROME_DATA_ROOT"] = str(SESSION_DIR / "data")
os.environ["AERODROME_USECASES_DIR"] = str(USECASES_DIR)
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
os.environ["AIRFLOW_CONN_AERODROME_TEST_DB"] = "postgresql://postgres@127.0.0.1:5432/aerodrome_test"

from aerodrome_airflow.embedded import apply_embedded_environ  # noqa: E402

apply_embedded_environ(SESSION_DIR / "airflow")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def service_missing(what: str, why: Exception) -> None:
    """Fail loudly in CI; on a developer's laptop skip, saying which service is missing."""
    message = f"{what} is not reachable ({why}); `make test` starts it via scripts/ensure-services.sh"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised SQLite metadata DB with airflow_settings.yaml loaded."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from aerodrome_airflow.airflow_settings import load_airflow_settings

    load_airflow_settings(ROOT / "airflow_settings.yaml")
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="session")
def pg_database() -> dict:
    """A fresh PostgreSQL database `aerodrome_test` on the local server (dropped and re-created)."""
    import psycopg2

    try:
        admin = psycopg2.connect(connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        service_missing("PostgreSQL on 127.0.0.1:5432", exc)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS aerodrome_test")
        cur.execute("CREATE DATABASE aerodrome_test")
    admin.close()
    return {**PG, "dbname": "aerodrome_test"}


@pytest.fixture
def storage(tmp_path):
    from aerodrome.storage import LocalStorage

    return LocalStorage(tmp_path / "data")


def publish_flights(storage, spec, first, last) -> None:
    """Validated partitions of the local flight days `first`..`last` (and of their weather, the spec's second
    source), as the validation gate publishes them."""
    import pandas as pd
    from aerodrome.ingest.partition import partition_key, write_partition
    from aerodrome.landing.flights import load_flights
    from aerodrome.schema import conform

    flights = load_flights()
    day = pd.to_datetime(dict(year=flights["year"], month=flights["month"], day=flights["day"])).dt.date
    wanted = (day >= first) & (day <= last)
    for when, frame in flights[wanted].groupby(day[wanted]):
        key = partition_key("validated", spec.name, when.isoformat())
        write_partition(storage, key, conform(frame, spec.columns, key), key)
    if "weather" in spec.sources:  # the second source the features join, published the same way
        from aerodrome.ingest.datasets import source_dataset
        from aerodrome.landing.flights import weather_for

        weather = source_dataset(spec, "weather")
        for when in sorted(set(day[wanted])):
            key = partition_key("validated", weather.name, when.isoformat())
            write_partition(storage, key, conform(weather_for(when), weather.columns, key), key)
