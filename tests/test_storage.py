"""Storage: local and S3 (moto's S3 server on loopback, real HTTP through boto3), encryption, shared state."""

import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import SourceError
from aerodrome.settings import Settings, SettingsError
from aerodrome.storage import (
    LocalStorage,
    bucket_encryption_problem,
    mlflow_artifact_environ,
    open_storage,
    require_tls,
)
from s3_server import KMS_KEY, admin_client, new_bucket, s3_settings, serve_s3

ROOT = Path(__file__).resolve().parents[1]
s3_endpoint = pytest.fixture(scope="module")(serve_s3)


@pytest.fixture
def s3_admin(s3_endpoint):
    return admin_client(s3_endpoint)


def test_local_replace_prefix_replaces_whole_partition(tmp_path):
    s = LocalStorage(tmp_path)
    s.replace_prefix("raw/uc/date=2013-01-01", {"a.parquet": b"1", "b.parquet": b"2"})
    s.replace_prefix("raw/uc/date=2013-01-01", {"a.parquet": b"3"})
    assert s.list("raw/uc") == ["raw/uc/date=2013-01-01/a.parquet"]
    assert s.read_bytes("raw/uc/date=2013-01-01/a.parquet") == b"3"
    assert s.partitions("raw/uc") == ["date=2013-01-01"]
    assert not [p for p in (tmp_path / "raw/uc").iterdir() if p.name.startswith(".")]


def test_local_move_never_overwrites(tmp_path):
    s = LocalStorage(tmp_path)
    s.write_bytes("raw/uc/date=1/x", b"first")
    s.write_bytes("quarantine/uc/date=1/x", b"older")
    s.move_prefix("raw/uc/date=1", "quarantine/uc/date=1")
    assert s.read_bytes("quarantine/uc/date=1/x") == b"older"
    assert len(s.list("quarantine/uc")) == 2 and not s.exists("raw/uc/date=1")


def test_missing_key_is_named(tmp_path):
    with pytest.raises(SourceError, match="nope.csv: file not found"):
        LocalStorage(tmp_path).read_bytes("nope.csv")


def test_unsupported_scheme():
    with pytest.raises(SourceError, match="unsupported storage scheme"):
        open_storage("gs://bucket/x")


def test_local_listing_skips_writes_in_flight_and_survives_concurrent_replaces(tmp_path):
    """Parallel features runs list a view while others replace their partitions next to it."""
    import threading

    from aerodrome.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    storage.replace_prefix("v/date=2013-01-01", {"part-0.parquet": b"x"})
    (tmp_path / "v" / ".date=2013-01-02.abc.staging").mkdir()
    (tmp_path / "v" / ".date=2013-01-02.abc.staging" / "part-0.parquet").write_bytes(b"y")
    assert storage.list("v") == ["v/date=2013-01-01/part-0.parquet"]
    assert storage.partitions("v") == ["date=2013-01-01"]

    stop = threading.Event()

    def churn():
        while not stop.is_set():
            storage.replace_prefix("v/date=2013-01-03", {"part-0.parquet": b"z"})

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(300):
            assert "date=2013-01-01" in storage.partitions("v")
    finally:
        stop.set()
        writer.join()


def test_s3_storage_round_trip_and_residency(s3_endpoint, s3_admin, tmp_path):
    lake = new_bucket(s3_admin, "me-central-1")
    settings = s3_settings(s3_endpoint, f"s3://{lake}/prod", tmp_path)
    s = open_storage(settings.data_root, settings)
    s.replace_prefix("raw/uc/date=2013-01-01", {"a": b"1", "b": b"2"})
    s.replace_prefix("raw/uc/date=2013-01-01", {"a": b"3"})
    assert s.list("raw/uc") == ["raw/uc/date=2013-01-01/a"]
    assert s.read_bytes("raw/uc/date=2013-01-01/a") == b"3"
    assert s.sub("raw").list("uc") == ["uc/date=2013-01-01/a"]
    s.move_prefix("raw/uc/date=2013-01-01", "quarantine/uc/date=2013-01-01")
    assert s.list("quarantine") == ["quarantine/uc/date=2013-01-01/a"] and not s.exists("raw/uc")
    moved = s3_admin.head_object(Bucket=lake, Key="prod/quarantine/uc/date=2013-01-01/a")
    assert (moved["ServerSideEncryption"], moved["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)  # a copy re-encrypts


def test_every_object_of_a_real_run_is_written_with_sse_kms(s3_endpoint, s3_admin, tmp_path, monkeypatch, caplog):
    """ingest -> validate (a pass and a quarantine, Data Docs) -> features -> an MLflow model, all on S3.

    The bucket has no default encryption (flagged), so every header seen comes from the platform's own writes.
    """
    from aerodrome.features import publish_day
    from aerodrome.ingest import ingest_interval
    from aerodrome.ingest.partition import read_partition, write_partition
    from aerodrome.ingest.run import landing_storage
    from aerodrome.landing.synthetic import drop_demand_days
    from aerodrome.usecase import load_usecase
    from aerodrome.validate import validate_partition

    lake = new_bucket(s3_admin, "me-central-1")
    settings = s3_settings(s3_endpoint, f"s3://{lake}/prod", tmp_path)
    spec = load_usecase(ROOT / "include/usecases/store_demand")
    storage = open_storage(settings.data_root, settings)
    days = [date(2024, 5, 1) + timedelta(days=i) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="aerodrome.storage"):
        drop_demand_days(landing_storage(spec, storage), spec.source, days)
    assert f"s3://{lake} has no default encryption" in caplog.text
    for day in days:
        start = datetime.combine(day, datetime.min.time(), UTC)
        ingest_interval(spec, storage, start, start + timedelta(days=1))
    spoiled = "raw/store_demand/date=2024-05-02"
    raw = read_partition(storage, spoiled)
    write_partition(storage, spoiled, pd.concat([raw, raw.head(5)]), "test")  # duplicate keys: quarantined
    verdicts = {day.isoformat(): validate_partition(spec, storage, day.isoformat()).passed for day in days}
    assert verdicts == {"2024-05-01": True, "2024-05-02": False, "2024-05-03": True}
    for ds in ("2024-05-01", "2024-05-03"):
        publish_day(spec, settings, storage, ds)

    monkeypatch.setenv("AWS_DEFAULT_REGION", "me-central-1")
    for name, value in mlflow_artifact_environ(settings).items():
        monkeypatch.setenv(name, value)
    run_id = log_a_model(settings, spec.name)

    keys = [
        o["Key"] for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=lake) for o in page["Contents"]
    ]
    zones = {key.split("/")[1] for key in keys}
    assert {"landing", "raw", "validated", "quarantine", "data_docs", "features", "state", "mlflow"} <= zones, zones
    assert any(f"/{run_id}/" in k or "/models/" in k for k in keys if k.startswith("prod/mlflow/artifacts/"))
    unencrypted = {}
    for key in keys:
        head = s3_admin.head_object(Bucket=lake, Key=key)
        if (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) != ("aws:kms", KMS_KEY):
            unencrypted[key] = (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId"))
    assert not unencrypted, f"{len(unencrypted)} of {len(keys)} objects without SSE-KMS: {unencrypted}"
    assert len(keys) > 20


def log_a_model(settings: Settings, name: str) -> str:
    """An MLflow run with a pyfunc model and a dict, its experiment's artifacts under the S3 data root."""
    import mlflow
    from aerodrome.train.tracking import ensure_experiment, tracking_uri
    from mlflow import MlflowClient

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return [0.5] * len(model_input)

    with tracking_uri(settings.tracking_uri):
        client = MlflowClient()
        experiment = ensure_experiment(client, name, f"{settings.mlflow_artifact_root}/{name}")
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_dict({"rows": 3}, "lineage.json")
            mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["pandas"])
    return run.info.run_id


def test_a_bucket_without_kms_default_encryption_is_flagged(s3_admin):
    plain = new_bucket(s3_admin, "me-central-1")
    assert f"s3://{plain} has no default encryption" in bucket_encryption_problem(s3_admin, plain)
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    s3_admin.put_bucket_encryption(Bucket=plain, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert "AES256, not SSE-KMS" in bucket_encryption_problem(s3_admin, plain)
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_KEY}}
    s3_admin.put_bucket_encryption(Bucket=plain, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert bucket_encryption_problem(s3_admin, plain) is None


def test_s3_only_over_tls_unless_a_loopback_endpoint_is_explicitly_allowed(tmp_path):
    require_tls(None)  # AWS's own endpoints: https
    require_tls("https://s3.me-central-1.amazonaws.com")
    require_tls("http://127.0.0.1:9000", allow_http_loopback=True)
    with pytest.raises(SettingsError, match="over TLS only.*AERODROME_S3_ALLOW_HTTP_LOOPBACK"):
        require_tls("http://127.0.0.1:9000")
    with pytest.raises(SettingsError, match="http://minio.internal:9000: S3 is reached over TLS only"):
        require_tls("http://minio.internal:9000", allow_http_loopback=True)  # the override is for loopback only
    settings = Settings(data_root="s3://lake/x", usecases_dir=tmp_path, s3_endpoint_url="http://minio.internal:9000")
    with pytest.raises(SettingsError, match="TLS only"):
        open_storage(settings.data_root, settings)  # refused before any request is made
    with pytest.raises(SettingsError, match="MLFLOW_S3_IGNORE_TLS"):
        mlflow_artifact_environ(Settings(data_root="s3://lake/x", usecases_dir=tmp_path), {"MLFLOW_S3_IGNORE_TLS": "1"})


def test_mlflow_uploads_carry_the_kms_key_and_keep_other_extra_args(tmp_path):
    settings = Settings(data_root="s3://lake/x", usecases_dir=tmp_path, kms_key_id=KMS_KEY)
    given = {"MLFLOW_S3_UPLOAD_EXTRA_ARGS": json.dumps({"ACL": "bucket-owner-full-control", "SSEKMSKeyId": "other"})}
    extra = json.loads(mlflow_artifact_environ(settings, given)["MLFLOW_S3_UPLOAD_EXTRA_ARGS"])
    assert extra == {"ACL": "bucket-owner-full-control", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY}
    assert mlflow_artifact_environ(Settings(data_root=str(tmp_path), usecases_dir=tmp_path)) == {}


def test_an_s3_data_root_never_keeps_mlflow_or_the_feast_registry_on_local_disk(tmp_path):
    bare = Settings(data_root="s3://lake/prod", usecases_dir=tmp_path)
    with pytest.raises(SettingsError, match="MLflow would keep its runs.*set MLFLOW_TRACKING_URI"):
        _ = bare.tracking_uri
    with pytest.raises(SettingsError, match="Feast registry would stay.*AERODROME_FEATURE_REGISTRY=postgresql"):
        _ = bare.feature_repo_dir
    registry_only = Settings(data_root="s3://lake/prod", usecases_dir=tmp_path, feature_registry="postgresql://h/f")
    with pytest.raises(SettingsError, match="SQLite online store would stay.*AERODROME_ONLINE_STORE=redis"):
        _ = registry_only.feature_repo_dir
    shared = Settings(
        data_root="s3://lake/prod",
        usecases_dir=tmp_path,
        feature_registry="postgresql://h/f",
        online_store="redis",
        mlflow_tracking_uri="postgresql://h/mlflow",
    )
    assert shared.tracking_uri == "postgresql://h/mlflow" and shared.feature_repo_dir.name == "feature_repo"
    assert shared.mlflow_artifact_root == "s3://lake/prod/mlflow/artifacts"
    volume = Settings(data_root="s3://lake/prod", usecases_dir=tmp_path, feature_repo="/mnt/shared/repo")
    assert volume.feature_repo_dir == Path("/mnt/shared/repo")  # named by hand: a volume every host mounts
    local = Settings(data_root=str(tmp_path), usecases_dir=tmp_path)
    assert local.tracking_uri.startswith("sqlite:///") and local.feature_repo_dir == tmp_path / "feature_repo"


def test_the_trainer_refuses_an_s3_root_without_a_tracking_store(monkeypatch, capsys):
    from aerodrome.train import entrypoint, exitcodes

    monkeypatch.setenv("AERODROME_DATA_ROOT", "s3://lake/prod")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert entrypoint.main(["--usecase=store_demand", "--start=2024-05-01", "--end=2024-05-08"]) == exitcodes.INPUT
    assert "set MLFLOW_TRACKING_URI" in capsys.readouterr().err
