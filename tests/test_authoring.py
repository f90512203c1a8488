"""Hand-written DAGs: the public API, and the example batch-scoring DAG run for real.

The example DAG runs through `dag.test()` against a real trained champion: validated flight days of
January 2013, their Feast features, an XGBoost model registered in MLflow (SQLite) and crowned
`@champion`, all in a data root of this module's own (so no other test's registry is touched).
Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import ROOT, USECASES_DIR, publish_flights

USECASE = "flight_delay"
DAG_ID = f"example_batch_scoring_{USECASE}"
FIRST, LAST = date(2013, 1, 1), date(2013, 1, 21)
HEAVY = ["pandas", "numpy", "pyarrow", "feast", "mlflow", "torch", "xgboost", "great_expectations"]

pytestmark = pytest.mark.slow


def test_the_public_api_names_every_export_and_imports_nothing_heavy():
    code = (
        "import sys, json, aerodrome_airflow, aerodrome_airflow.tasks;"
        "from aerodrome_airflow import features_asset, zone_asset, tasks;"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules];"
        "names = sorted(aerodrome_airflow.__all__);"
        "missing = [n for n in names if getattr(aerodrome_airflow, n, None) is None];"
        "print(json.dumps({'heavy': heavy, 'names': names, 'missing': missing}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["heavy"] == [], f"importing the public API loads {found['heavy']}"
    assert found["missing"] == []
    operators = {n for n in found["names"] if n.endswith("Operator")}
    assert {"IngestPartitionOperator", "ValidatePartitionOperator", "PublishFeaturesOperator"} <= operators
    assert {"JudgeCandidateOperator", "CanaryStepOperator", "CheckDriftOperator", "TrainingPodOperator"} <= operators
    assert {"tasks", "features_asset", "zone_asset", "partition_day", "announce"} <= set(found["names"])


def test_the_example_dag_imports_and_follows_the_conventions(dagbag):
    from airflow.sdk import PartitionedAssetTimetable

    assert not {f: e for f, e in dagbag.import_errors.items() if "example_" in f}
    dag = dagbag.get_dag(DAG_ID)
    assert dag is not None and "scores/flight_delay" in dag.doc_md
    assert {"aerodrome", "example", USECASE} <= set(dag.tags)
    assert set(dag.params) == {"ds", "alias"}
    assert isinstance(dag.timetable, PartitionedAssetTimetable)
    assert dag.timetable.asset_condition.name == "features/flight_delay"
    score = dag.get_task("score_partition")
    assert [o.name for o in score.outlets] == ["scores/flight_delay"]
    for task in dag.tasks:
        assert task.owner == "ml-engineering" and task.retries >= 1


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A data root with validated + featured Jan 1-21 2013 and a small XGBoost model as @champion."""
    from aerodrome.features import compute_features_range
    from aerodrome.partitions import mark_featured
    from aerodrome.registry.aliases import AliasMove, move_alias, registry_client
    from aerodrome.settings import Settings
    from aerodrome.storage import LocalStorage
    from aerodrome.train import train_model
    from aerodrome.usecase import load_usecase

    root = tmp_path_factory.mktemp("authoring") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AERODROME_DATA_ROOT", str(root))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("AERODROME_FEATURE_REPO", raising=False)
        settings = Settings.from_env()
        spec = load_usecase(USECASES_DIR / USECASE)
        storage = LocalStorage(root)
        publish_flights(storage, spec, FIRST, LAST)
        compute_features_range(spec, storage, FIRST, LAST)
        for day in range(1, 22):
            mark_featured(storage, spec, date(2013, 1, day).isoformat())
        start, end = (datetime(2013, 1, d, 5, tzinfo=UTC) for d in (1, 15))
        trained = train_model(spec, settings, storage, start, end, params={"n_estimators": 40, "max_depth": 3})
        client = registry_client(settings.tracking_uri)
        move_alias(client, storage, AliasMove(USECASE, "champion", trained.version, None, "test", "example DAG test"))
        yield settings, storage, trained.version


def run_scoring(dag, **conf):
    task = dag.get_task("score_partition")
    retries, task.retries = task.retries, 0  # a crash's retry would wait retry_delay in dag.test()
    try:
        # explicit values for every param: dag.test() keeps the params of an earlier run of the same DAG object
        conf = {"ds": None, "alias": "champion", **conf}
        run = dag.test(logical_date=datetime(2013, 1, 22, tzinfo=UTC), run_conf=conf)
    finally:
        task.retries = retries
    return str(run.state), {ti.task_id: ti for ti in run.get_task_instances()}


def scores_partition(storage, ds: str) -> Path:
    return Path(storage.uri(f"scores/{USECASE}/date={ds}"))


def test_the_example_dag_scores_a_day_and_a_rerun_gives_the_same_file(dagbag, champion):
    import pandas as pd
    from aerodrome.ingest.partition import read_manifest

    settings, storage, version = champion
    dag = dagbag.get_dag(DAG_ID)
    state, tasks = run_scoring(dag, ds="2013-01-18")
    assert state == "success", {k: t.state for k, t in tasks.items()}
    folder = scores_partition(storage, "2013-01-18")
    first_bytes = (folder / "part-0.parquet").read_bytes()
    scores = pd.read_parquet(folder / "part-0.parquet")
    flights = storage.read_bytes(f"validated/{USECASE}/date=2013-01-18/part-0.parquet")
    day_flights = pd.read_parquet(__import__("io").BytesIO(flights))
    labelled = int(day_flights["arr_delay"].notna().sum())
    assert len(scores) == labelled > 500  # every flight of the day with a known outcome, once
    assert not scores["row_id"].duplicated().any()
    assert scores["score"].between(0, 1).all() and scores["score"].nunique() > 10
    assert set(scores["model_version"]) == {version}
    manifest = read_manifest(storage, f"scores/{USECASE}/date=2013-01-18")
    assert manifest.sha256 == hashlib.sha256(first_bytes).hexdigest() and manifest.rows == len(scores)
    assert manifest.source == f"models:/{USECASE}/{version}"

    state, _ = run_scoring(dag, ds="2013-01-18")  # the same partition again: the same file, no duplicates
    assert state == "success"
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-0.parquet"]
    assert (folder / "part-0.parquet").read_bytes() == first_bytes


def test_without_a_day_the_example_scores_the_newest_featured_one(dagbag, champion):
    _, storage, _ = champion
    state, tasks = run_scoring(dagbag.get_dag(DAG_ID))
    assert state == "success", {k: t.state for k, t in tasks.items()}
    assert (scores_partition(storage, "2013-01-21") / "part-0.parquet").is_file()


def test_without_a_model_under_the_alias_the_run_is_skipped_not_failed(dagbag, champion):
    _, storage, _ = champion
    state, tasks = run_scoring(dagbag.get_dag(DAG_ID), ds="2013-01-19", alias="challenger")
    assert state == "success"
    assert str(tasks["score_partition"].state) == "skipped"
    assert not scores_partition(storage, "2013-01-19").exists()


def test_a_day_outside_the_schedule_fails_at_once_naming_the_key(dagbag, champion):
    dag = dagbag.get_dag(DAG_ID)
    assert dag.get_task("pick_partition").retries > 0  # retries are for crashes, not for a bad key
    state, tasks = run_scoring(dag, ds="2014-02-01")
    assert state == "failed" and tasks["pick_partition"].try_number == 1


def test_the_library_call_needs_a_model_under_the_alias(champion):
    from aerodrome.scoring import ModelNotFound, score_partition
    from aerodrome.usecase import load_usecase

    settings, storage, _ = champion
    spec = load_usecase(ROOT / "include/usecases" / USECASE)
    with pytest.raises(ModelNotFound, match="no @challenger"):
        score_partition(spec, settings, storage, "2013-01-18", alias="challenger")


def test_the_taskflow_calls_read_the_zones_of_the_data_root(champion):
    from aerodrome_airflow import tasks
    from airflow.sdk.exceptions import AirflowFailException

    assert tasks.latest_partition(USECASE) == "2013-01-21"  # the newest day recorded as featured
    assert tasks.latest_partition(USECASE, "validated") == "2013-01-21"
    assert tasks.latest_partition(USECASE, "quarantine") is None
    day = tasks.read_partition(USECASE, "2013-01-18")
    assert len(day) > 500 and {"carrier", "origin", "time_hour"} <= set(day.columns)
    assert tasks.load_model(USECASE).version == champion[2]
    with pytest.raises(AirflowFailException, match="no validated partition for 2013-02-18"):
        tasks.read_partition(USECASE, "2013-02-18")
    with pytest.raises(AirflowFailException, match="zone 'gold' is unknown"):
        tasks.latest_partition(USECASE, "gold")
