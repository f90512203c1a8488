"""One Airflow run registers at most one model version, however many tries its training task takes.

A try can be killed after it registered its version (a new scheduler resets the tasks of a dead
LocalExecutor scheduler, see tests/test_services.py); the next try finds that version by its lineage
tags and returns it instead of training and registering a second one.
"""

from __future__ import annotations

import pytest
from aerodrome.train.entrypoint import version_of_this_run
from aerodrome.train.lineage import AIRFLOW_ORIGIN_ENV


@pytest.fixture
def registry(tmp_path):
    from aerodrome.registry.aliases import registry_client

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = registry_client(uri)
    client.create_registered_model("flight_delay")
    source = tmp_path / "model"
    source.mkdir()
    tags = {"airflow_dag_id": "train_flight_delay", "airflow_run_id": "manual__1", "window": "2013-01-01/2013-01-08"}
    client.create_model_version("flight_delay", str(source), tags=tags)
    return uri


def test_a_later_try_of_the_same_run_gets_the_version_it_registered(registry, monkeypatch):
    monkeypatch.setenv(AIRFLOW_ORIGIN_ENV["dag_id"], "train_flight_delay")
    monkeypatch.setenv(AIRFLOW_ORIGIN_ENV["run_id"], "manual__1")
    found = version_of_this_run("flight_delay", registry)
    assert found is not None
    assert (found["version"], found["model_uri"], found["reused"]) == ("1", "models:/flight_delay/1", True)
    assert found["window"] == "2013-01-01/2013-01-08"


def test_another_run_or_a_run_by_hand_trains(registry, monkeypatch):
    monkeypatch.setenv(AIRFLOW_ORIGIN_ENV["dag_id"], "train_flight_delay")
    monkeypatch.setenv(AIRFLOW_ORIGIN_ENV["run_id"], "manual__2")
    assert version_of_this_run("flight_delay", registry) is None
    monkeypatch.delenv(AIRFLOW_ORIGIN_ENV["dag_id"])
    monkeypatch.delenv(AIRFLOW_ORIGIN_ENV["run_id"])
    assert version_of_this_run("flight_delay", registry) is None
