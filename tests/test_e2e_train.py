"""Training through Airflow: the same DAG and trainer entrypoint, local subprocess or a real Kubernetes pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aerodrome.features import compute_features_range
from aerodrome.settings import Settings
from aerodrome.storage import open_storage
from aerodrome.usecase import load_usecase
from conftest import IN_CI, SESSION_DIR, publish_flights

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = date(2013, 4, 1), date(2013, 4, 30)
SMALL = {"n_estimators": 60, "max_depth": 4}
KUBECONFIG = Path("/var/lib/aerodrome-k8s/kubeconfig")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def april():
    """Validated flight partitions and features for April 2013 in the session data root."""
    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / "flight_delay")
    storage = open_storage(settings.data_root, settings)
    publish_flights(storage, spec, FIRST, LAST)
    compute_features_range(spec, storage, FIRST, LAST)
    return settings


TRAIN_CONF = {
    "start": str(FIRST),
    "end": str(LAST + timedelta(days=1)),
    "holdout_start": "2013-04-24",
    "flavor": "xgboost",
    "params": SMALL,
    "seed": 7,
}


def train(dag, **params):
    run = dag.test(logical_date=datetime(2013, 5, 1, tzinfo=UTC), run_conf={**TRAIN_CONF, **params})
    return run.state, {ti.task_id: ti for ti in run.get_task_instances()}


def candidate_version(settings: Settings):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    return client, client.get_model_version_by_alias("flight_delay", "candidate")


def test_local_backend_registers_a_candidate(dagbag, april):
    dag = dagbag.get_dag("train_flight_delay")
    assert type(dag.get_task("train_model")).__name__ == "LocalTrainingOperator"
    state, tasks = train(dag, holdout_start=None)  # the trigger form's default: the last 25 % of the window
    assert state == "success", tasks
    client, version = candidate_version(april)
    run = client.get_run(version.run_id)
    assert run.data.metrics["roc_auc"] > 0.55
    assert any(k.startswith("slice.origin.") and k.endswith(".roc_auc") for k in run.data.metrics)
    assert run.data.tags["aerodrome.airflow.dag_id"] == "train_flight_delay"  # lineage: the DAG run behind it
    assert run.data.tags["aerodrome.airflow.run_id"].startswith("manual__") and version.tags["airflow_run_id"]


def test_local_backend_fails_at_once_when_the_window_cannot_be_trained(dagbag, april):
    dag = dagbag.get_dag("train_flight_delay")
    assert dag.get_task("train_model").retries > 0  # retries are for crashes, not for a bad window
    state, tasks = train(dag, start="2013-04-20", end="2013-04-10")
    assert state == "failed"
    assert tasks["train_model"].try_number == 1 and tasks["train_model"].state == "failed"


@pytest.fixture
def cluster_env(airflow_db) -> dict[str, str]:
    """Settings for the training DAG on the local Kubernetes started by `make test-k8s` (absent: fail in CI)."""
    if not KUBECONFIG.exists():
        message = f"{KUBECONFIG} not found: run `make test-k8s` (it builds and starts the local cluster)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    sys.path.insert(0, str(ROOT / "scripts" / "k8s"))
    from kpo_local import connection_env, host_mounts

    mounts = host_mounts(ROOT, sys.executable, extra_rw=(str(SESSION_DIR),))
    return {
        "AERODROME_TRAIN_BACKEND": "kubernetes",
        "AERODROME_TRAINER_IMAGE": "docker.io/aerodrome/host-runtime:local",
        "AERODROME_TRAINER_PULL_POLICY": "Never",
        "AERODROME_TRAINER_PYTHON": sys.executable,
        "AERODROME_K8S_HOST_NETWORK": "true",
        "AERODROME_K8S_HOST_PATHS": ",".join(f"{p}:ro" if ro else p for p, ro in mounts),
        # the spec asks for a GPU node; the local cluster is one CPU node
        "AERODROME_K8S_RESOURCES": json.dumps({"gpu": 0, "cpu": "1", "memory": "4Gi", "node_selector": {}}),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the task log as an operator reads it
        **connection_env(),  # kubernetes_default -> the cluster's kubeconfig
    }


def train_in_cluster(env: dict[str, str], **params) -> tuple[int, str]:
    """`airflow dags test train_flight_delay` as a user runs it: exit status and the whole task log."""
    conf = {**TRAIN_CONF, **params}
    airflow = Path(sys.executable).with_name("airflow")
    command = [str(airflow), "dags", "test", "train_flight_delay", "2013-05-01", "-c", json.dumps(conf)]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr


def pods_left() -> list[str]:
    from kubernetes import client, config

    config.load_kube_config(str(KUBECONFIG))
    pods = client.CoreV1Api().list_namespaced_pod("aerodrome", label_selector="aerodrome.io/stage=train")
    return [p.metadata.name for p in pods.items]


@pytest.mark.k8s
def test_training_in_a_real_pod(cluster_env, april):
    status, log = train_in_cluster(cluster_env, seed=11)
    assert status == 0, log[-4000:]
    assert "TrainingPodOperator" in log and "train-model-" in log  # the task ran a pod ...
    assert "[train " in log and "registered" in log, log[-4000:]  # ... and the trainer's own lines are in its log
    client, version = candidate_version(april)
    run = client.get_run(version.run_id)
    assert run.data.params["seed"] == "11"  # this pod's run, not the local one
    assert run.data.params["data_fingerprint"] and run.data.tags["aerodrome.airflow.dag_id"] == "train_flight_delay"
    assert pods_left() == []


@pytest.mark.k8s
def test_failing_trainer_fails_the_task_with_its_exit_code(cluster_env, april):
    status, log = train_in_cluster(cluster_env, start="2013-04-20", end="2013-04-10")  # an empty window
    assert status != 0 and "DagRun failed" in log
    assert "ended with exit code 3" in log, log[-4000:]
    assert "error: " in log and "not retried" in log  # the trainer's own error line reached the task's error
    assert pods_left() == []
