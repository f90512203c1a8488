"""The flights lifecycle on the production services, on loopback, driven as an external system would.

`make test-services` (`pytest -m services`). `ServicesProfile` gives this module fresh PostgreSQL
databases (Airflow metadata, MLflow backend store, Feast SQL registry), an S3-compatible endpoint
(moto in server mode: the one piece that is a stand-in, for AWS S3, which cannot run here) and an
MLflow tracking server process whose artifacts go to that endpoint; Redis is the Feast online store.
The embedded Airflow runs on that PostgreSQL database with its real scheduler and LocalExecutor, and
is driven only through REST API v2 with `apache-airflow-client`. The flight days arrive as CSV drops in
an S3 bucket, and the data root is that bucket too (`s3://<bucket>/data`): raw, validated, features (the
offline store Feast's training sets read), reports; no zone is on local disk. The tests run in order on
one stack: a week of days ingested (one REST-triggered run per day) with the scheduler killed midway -> a
training run with the scheduler killed while it trains -> promotion -> the gateway under load from a
second process during a canary step and a model reload.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.ingest.partition import partition_key, read_manifest
from aerodrome.landing.flights import load_flights
from aerodrome.settings import Settings
from aerodrome.storage import S3Storage
from aerodrome.usecase import load_usecase
from aerodrome_airflow.services import ServiceError, ServicesProfile
from aerodrome_airflow.stack import EmbeddedStack, free_port
from conftest import ROOT, service_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]

FIRST, LAST = date(2013, 1, 1), date(2013, 1, 7)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range((LAST - FIRST).days + 1)]
UC = "flight_delay"
PIPELINE = [f"ingest_{UC}", f"validate_{UC}", f"features_{UC}", f"train_{UC}", f"promote_{UC}"]


class Env:
    """One run's services, use-case folder, data root and Airflow stack."""

    def __init__(self, root: Path, services: ServicesProfile) -> None:
        self.root, self.services = root, services
        self.usecases = root / "usecases"
        self.landing = f"s3://{services.bucket}/landing/{UC}"
        text = (ROOT / "include" / "usecases" / UC / "usecase.yaml").read_text()
        for old, new in [
            ("catchup: true", "catchup: false"),  # the days are asked for over REST, one run each
            (f"path: landing/{UC}", f"path: {self.landing}"),  # the drops arrive in the S3 bucket
        ]:
            assert old in text, old
            text = text.replace(old, new)
        # the gates are unit-tested (tests/test_promotion.py); here every candidate passes them
        lenient = "promotion: {min_improvement: -1, max_slice_regression: 1, min_baseline_margin: -1, "
        text = re.sub(r"(?m)^promotion: .*$", lenient + "latency_budget_ms: 500}", text)
        shutil.copytree(ROOT / "include" / "usecases", self.usecases)  # every use case's DAG file imports
        (self.usecases / UC / "usecase.yaml").write_text(text)
        self.spec = load_usecase(self.usecases / UC)
        self.settings = Settings(
            data_root=services.data_root, usecases_dir=self.usecases, s3_endpoint_url=services.s3_url
        )
        self.storage = S3Storage(services.data_root, self.settings, services.s3_client())
        # second sources (e.g. the hourly weather) are ingested and validated by DAGs of their own
        self.second_sources = dict(getattr(self.spec, "sources", None) or {})
        self.source_dags = [f"{kind}_{UC}__{name}" for name in self.second_sources for kind in ("ingest", "validate")]
        self.per_day_dags = [*PIPELINE[:3], *self.source_dags]
        self.env = {
            **services.environ(),
            "AERODROME_USECASES_DIR": str(self.usecases),
            "XDG_CACHE_HOME": str(root / "cache"),  # checked specs of a remote data root: per host, kept here
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        self.stack = EmbeddedStack(root / "airflow", self.env, gateway_port=free_port())

    def drop_landing_files(self) -> None:
        from aerodrome.landing import feed_for

        days = [date.fromisoformat(d) for d in DAYS]
        for source in [self.spec.source, *(s.source for s in self.second_sources.values())]:
            assert source.path == self.landing, source.path  # every drop goes to the S3 bucket
            feed_for(source.replay)(S3Storage(source.path, self.settings, self.services.s3_client()), source, days)

    def data_objects(self) -> dict[str, list[str]]:
        """The data root's objects by zone (`raw`, `validated`, ...), each checked to be encrypted with SSE-KMS."""
        client, zones = self.services.s3_client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.services.bucket, Prefix="data/"):
            for o in page.get("Contents", []):
                head = client.head_object(Bucket=self.services.bucket, Key=o["Key"])
                assert head.get("ServerSideEncryption") == "aws:kms", (o["Key"], head.get("ServerSideEncryption"))
                key = o["Key"].removeprefix("data/")
                zones.setdefault(key.split("/", 1)[0], []).append(key)
        return zones

    def mlflow(self):
        from aerodrome.registry.aliases import registry_client

        return registry_client(self.services.mlflow_url)

    def finished(self, dag_id: str) -> list:
        return [r for r in self.stack.runs(dag_id) if r.state.value in ("success", "failed")]

    def keys(self, dag_id: str, state: str | None = None) -> Counter:
        return Counter(r.partition_key for r in self.stack.runs(dag_id) if state is None or r.state.value == state)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("services")
    services = ServicesProfile(root / "services")
    try:
        services.start()
    except (ServiceError, OSError) as exc:
        services.stop()
        service_missing("the services profile (PostgreSQL, Redis, moto, MLflow server)", exc)
    try:
        env = Env(root, services)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in services.environ().items():  # this process is a client of the same services
                if key.startswith(("AWS_", "AERODROME_S3_", "MLFLOW_ENABLE_")):
                    mp.setenv(key, value)
            env.drop_landing_files()
            try:
                env.stack.start()
                yield env
            finally:
                env.stack.stop()
    finally:
        services.stop()


def flights_per_day() -> dict[str, int]:
    flights = load_flights()
    day = pd.to_datetime(dict(year=flights["year"], month=flights["month"], day=flights["day"])).dt.date
    return {d.isoformat(): n for d, n in day.value_counts().items()}


def test_a_week_on_postgresql_survives_a_scheduler_kill_and_every_day_flows_once(env):
    stack = env.stack
    import psycopg2

    stack.unpause([*PIPELINE, *env.source_dags])
    ingests = [d for d in env.per_day_dags if d.startswith("ingest_")]
    for ds in DAYS:  # as an external system would: one ingest run per source and day, the day as the key
        for dag_id in ingests:
            assert stack.trigger(dag_id, partition_key=ds).partition_key == ds
    with psycopg2.connect(env.services.airflow_db) as connection, connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM dag WHERE dag_id = ANY(%s) AND NOT is_paused", (PIPELINE,))
        assert cur.fetchone()[0] == len(PIPELINE)  # the metadata lives in this run's own database
    stack.wait_for(lambda: len(env.finished(f"validate_{UC}")) >= 2, 300, "the first validations")
    scheduler = stack.component_pid("scheduler")
    assert scheduler, stack.tail()
    os.kill(scheduler, signal.SIGKILL)
    stack.wait_for(lambda: "scheduler restarted" in stack.supervisor_output(), 60, "the scheduler restart")

    stack.wait_for(lambda: len(env.finished(f"features_{UC}")) >= len(DAYS), 600, "every day featured", every_s=3)
    retried = []
    for dag_id in env.per_day_dags:
        assert env.keys(dag_id) == Counter(DAYS), (dag_id, env.keys(dag_id))  # once each: none lost, none doubled
        for run in stack.runs(dag_id):
            assert run.state.value == "success", (dag_id, run.partition_key, run.state)
            for ti in stack.task_instances(dag_id, run.dag_run_id):
                # a first pass has nothing to re-announce to the other source (aerodrome.partitions)
                wanted = "skipped" if ti.task_id == "reannounce_companions" else "success"
                assert ti.state.value == wanted, (dag_id, run.partition_key, ti.task_id, ti.state)
                # a task still running 30 s after the kill is reset by the new scheduler and runs again
                retried += [(dag_id, run.partition_key, ti.task_id)] * (ti.try_number > 1)
    print(f"tasks that ran again after the scheduler kill: {retried}")
    counts = flights_per_day()
    for ds in DAYS:
        manifest = read_manifest(env.storage, partition_key("validated", UC, ds))
        assert manifest.rows == counts[ds], ds
        assert read_manifest(env.storage, partition_key("raw", UC, ds)).source.startswith(f"{env.landing}/")
    assert env.keys(f"train_{UC}") == Counter()  # W01 lacks 2012-12-31, W02 has one day: nothing trains by itself
    # every zone of the data root is in the bucket, each object written with SSE-KMS; nothing on local disk
    by_zone = env.data_objects()
    assert {"raw", "validated", "features", "state"} <= set(by_zone), sorted(by_zone)
    assert len(by_zone["features"]) >= 2 * len(DAYS) * len(env.spec.features.views)  # data + manifest per view-day
    assert not (env.root / "data").exists() and (env.services.workdir / "feature_repo").is_dir()

    # the online store is this run's namespace in Redis, and serves the newest day's features
    import dataclasses

    from aerodrome.features import online_features

    assert env.services.redis_keys()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.env.items():
            if key.startswith("AERODROME_"):
                mp.setenv(key, value)
        settings = Settings.from_env()
    assert settings.online_store == "redis" and settings.feature_registry
    settings = dataclasses.replace(settings, usecases_dir=env.usecases)
    row = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N12221", "dep_hour": 8, "weekday": 0}
    assert online_features(env.spec, settings, [row])["carrier_delay_rate_7d"][0] is not None


def test_a_training_run_survives_a_scheduler_kill_and_registers_its_model_once(env):
    stack, client = env.stack, env.mlflow()
    run = stack.trigger(f"train_{UC}")  # an external system asks for a model on the newest featured days

    def training() -> bool:
        states = {t.task_id: t.state and t.state.value for t in stack.task_instances(f"train_{UC}", run.dag_run_id)}
        return states.get("train_model") == "running"

    stack.wait_for(training, 300, "the training task to run")
    restarts = stack.supervisor_output().count("scheduler restarted")
    os.kill(stack.component_pid("scheduler"), signal.SIGKILL)  # the scheduler dies while the model trains
    stack.wait_for(lambda: stack.supervisor_output().count("scheduler restarted") > restarts, 60, "the restart")
    stack.wait_for(lambda: env.keys(f"promote_{UC}", "success")["v1"] == 1, 600, "training and promotion", every_s=3)

    (trained,) = stack.runs(f"train_{UC}")
    assert trained.state.value == "success"
    tries = {}
    for ti in stack.task_instances(f"train_{UC}", trained.dag_run_id):
        assert ti.state.value == "success", (ti.task_id, ti.state, ti.try_number)
        tries[ti.task_id] = ti.try_number
    # a LocalExecutor cannot adopt a dead scheduler's tasks: the new scheduler resets one still running
    # (after `scheduler_health_check_threshold`) and it runs again; the model must not be registered twice
    print(f"tries after the scheduler kill: {tries}")
    # one version registered, announced once, judged once, crowned (nothing to canary against)
    versions = client.search_model_versions(f"name = '{UC}'")
    assert [v.version for v in versions] == ["1"], [(v.version, v.tags) for v in versions]
    assert versions[0].tags["airflow_run_id"] == trained.dag_run_id
    assert [e.extra["version"] for e in stack.asset_events(f"candidate/{UC}")] == ["1"]
    assert env.keys(f"promote_{UC}") == Counter(["v1"])
    assert str(client.get_model_version_by_alias(UC, "champion").version) == "1"
    # the MLflow server keeps the run in PostgreSQL and the model files in the S3 bucket
    objects = env.services.s3_client().list_objects_v2(Bucket=env.services.bucket, Prefix="mlflow/")
    assert any(o["Key"].endswith("MLmodel") for o in objects.get("Contents", [])), objects.get("Contents")
    for o in objects["Contents"]:
        head = env.services.s3_client().head_object(Bucket=env.services.bucket, Key=o["Key"])
        assert head.get("ServerSideEncryption") == "aws:kms", (o["Key"], head.get("ServerSideEncryption"))
    for dag_id in env.per_day_dags:  # the days flowed once, before and after the crash
        assert env.keys(dag_id) == Counter(DAYS), (dag_id, env.keys(dag_id))
    # the training set was Feast's join over the offline store in the bucket; the verdict is kept there too
    assert f"registry/{UC}/promotions/v1.json" in env.data_objects()["registry"]


def test_the_gateway_answers_every_request_under_load_through_a_canary_step_and_a_reload(env):
    """A second process sends 1-row predictions (8 async workers) while the challenger gets 25 % of the
    traffic and the gateway reloads both models from the MLflow server (artifacts from S3)."""
    from aerodrome.serving.client import GatewayClient
    from aerodrome.serving.replay import day_traffic
    from aerodrome_airflow.loadgen import load_during

    stack, client = env.stack, env.mlflow()
    stack.trigger(f"train_{UC}", conf={"params": {"n_estimators": 150}, "seed": 7})  # a second candidate
    stack.wait_for(lambda: env.keys(f"promote_{UC}", "success")["v2"] == 1, 600, "the promotion of v2", every_s=3)
    assert str(client.get_model_version_by_alias(UC, "challenger").version) == "2"  # the canary DAG stays paused

    token, admin = env.env["AERODROME_GATEWAY_TOKEN"], env.env["AERODROME_GATEWAY_ADMIN_TOKEN"]
    url = f"http://127.0.0.1:{stack.gateway_port}"
    gateway = GatewayClient(url, token, admin, timeout_s=120)
    gateway.reload(UC)
    assert gateway.health()["usecases"][UC]["models"] == {"champion": "1", "challenger": "2"}
    rows, _ = day_traffic(env.spec, env.storage, LAST)
    seconds = float(os.environ.get("AERODROME_LOAD_SECONDS", "20"))
    actions = [
        (seconds / 4, "canary step", lambda: gateway.set_traffic(UC, 25)["challenger_percent"]),
        (seconds / 2, "model reload", lambda: gateway.reload(UC, force=True)["models"]),
    ]
    load, done = load_during(url, token, UC, rows, seconds, actions, env.root / "load")
    print(f"gateway under load: {load} during {done}")
    assert [a["answer"] for a in done] == [25, {"champion": "1", "challenger": "2"}], done
    assert load["failed"] == 0 and load["sent"] > 100, load
    assert load["served_by"].get("champion v1", 0) > 0 and load["served_by"].get("challenger v2", 0) > 0, load
