"""Data residency: buckets by their real region (moto's S3 server on loopback), databases by their region tag."""

import json
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import ResidencyError
from aerodrome.ingest.partition import write_partition
from aerodrome.residency import Connection, check_connection, check_connections
from aerodrome.settings import Settings, SettingsError
from aerodrome.storage import open_storage
from s3_server import admin_client, new_bucket, s3_settings, serve_s3

ROOT = Path(__file__).resolve().parents[1]
s3_endpoint = pytest.fixture(scope="module")(serve_s3)
FOREIGN_MLFLOW = "postgresql://postgres@127.0.0.1:5432/mlflow"


@pytest.fixture
def s3_admin(s3_endpoint):
    return admin_client(s3_endpoint)


def objects(client, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_bucket_in_the_allowed_region_takes_the_partition(s3_endpoint, s3_admin, tmp_path):
    lake = new_bucket(s3_admin, "me-central-1")
    settings = s3_settings(s3_endpoint, f"s3://{lake}/prod", tmp_path)
    write_partition(open_storage(settings.data_root, settings), "raw/uc/date=2024-05-01", pd.DataFrame({"a": [1]}), "t")
    assert objects(s3_admin, lake) == [
        "prod/raw/uc/date=2024-05-01/_manifest.json",
        "prod/raw/uc/date=2024-05-01/part-0.parquet",
    ]


def test_a_foreign_bucket_is_refused_before_a_byte_is_written(s3_endpoint, s3_admin, tmp_path):
    foreign = new_bucket(s3_admin, "eu-west-1")
    settings = s3_settings(s3_endpoint, f"s3://{foreign}/prod", tmp_path)
    storage = open_storage(settings.data_root, settings)
    expected = (
        rf"s3://{foreign} is in region 'eu-west-1'; "
        r"data may only be written to me-central-1 \(AERODROME_ALLOWED_REGIONS\)"
    )
    with pytest.raises(ResidencyError, match=expected):
        write_partition(storage, "raw/uc/date=2024-05-01", pd.DataFrame({"a": [1]}), "t")
    with pytest.raises(ResidencyError, match=expected):
        storage.sub("landing").write_bytes("drop.csv", b"a\n1\n")
    assert objects(s3_admin, foreign) == []
    us_east = new_bucket(s3_admin, "us-east-1")  # S3 answers no LocationConstraint for us-east-1
    settings = s3_settings(s3_endpoint, f"s3://{us_east}/prod", tmp_path)
    with pytest.raises(ResidencyError, match="region 'us-east-1'"):
        open_storage(settings.data_root, settings).check_residency()
    allowed = s3_settings(s3_endpoint, f"s3://{foreign}/prod", tmp_path, allowed_regions=("me-central-1", "eu-west-1"))
    open_storage(allowed.data_root, allowed).write_bytes("k", b"1")  # the policy, not the code, decides
    assert objects(s3_admin, foreign) == ["prod/k"]


def test_a_database_tagged_outside_the_policy_is_refused_before_the_first_write(tmp_path):
    settings = Settings(
        data_root=str(tmp_path / "data"),
        usecases_dir=tmp_path,
        mlflow_tracking_uri=FOREIGN_MLFLOW,
        db_regions={"127.0.0.1": "eu-central-1"},
    )
    storage = open_storage(settings.data_root, settings)
    message = (
        r"the MLflow tracking store \(MLFLOW_TRACKING_URI\) at host '127.0.0.1' is in region 'eu-central-1'; "
        r"data may only be written to me-central-1 \(AERODROME_ALLOWED_REGIONS\)"
    )
    with pytest.raises(ResidencyError, match=message):
        storage.write_bytes("raw/x", b"1")
    assert not (tmp_path / "data").exists()


def test_tags_untagged_hosts_and_loopback(tmp_path):
    def settings(**kw) -> Settings:
        return Settings(data_root=str(tmp_path), usecases_dir=tmp_path, **kw)

    remote = "postgresql://feast:s3cret@feast-db.internal:5432/feast"
    with pytest.raises(
        ResidencyError, match=r"Feast registry.*'feast-db.internal' has no region tag.*AERODROME_DB_REGIONS"
    ):
        check_connections(settings(feature_registry=remote))
    check_connections(settings(feature_registry=remote, db_regions={"feast-db.internal": "me-central-1"}))
    check_connections(settings(feature_registry=remote, db_regions={"*": "me-central-1"}))  # every host at once
    with pytest.raises(ResidencyError, match="Redis online store.*'cache.eu' is in region 'eu-west-1'"):
        check_connections(
            settings(online_store="redis", redis_url="redis://cache.eu:6379/0", db_regions={"*": "eu-west-1"})
        )
    check_connections(settings(redis_url="redis://cache.eu:6379/0", db_regions={"*": "eu-west-1"}))  # Redis not in use
    check_connections(settings(mlflow_tracking_uri=FOREIGN_MLFLOW))  # loopback, untagged: this machine
    check_connections(settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db", db_regions={"*": "eu-west-1"}))
    with pytest.raises(ResidencyError) as refused:
        check_connections(settings(feature_registry=remote))
    assert "s3cret" not in str(refused.value)  # the error names the host, never the credentials
    check_connection(Connection("the Airflow connection 'src'", "10.0.0.5", "me-central-1"), settings())
    with pytest.raises(
        ResidencyError, match="the Airflow connection 'src' at host '10.0.0.5' is in region 'us-west-2'"
    ):
        check_connection(Connection("the Airflow connection 'src'", "10.0.0.5", "us-west-2"), settings())


def test_region_tags_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AERODROME_DB_REGIONS", json.dumps({"db.internal": "me-central-1", "*": "eu-west-1"}))
    assert dict(Settings.from_env().db_regions) == {"db.internal": "me-central-1", "*": "eu-west-1"}
    monkeypatch.setenv("AERODROME_DB_REGIONS", json.dumps({"db.internal": 5}))
    with pytest.raises(SettingsError, match="AERODROME_DB_REGIONS: the region of 'db.internal' must be a region name"):
        Settings.from_env()


def test_an_airflow_connection_tagged_abroad_is_refused(monkeypatch):
    from aerodrome_airflow.connections import postgres_dsn

    conn = {"conn_type": "postgres", "host": "orders.db.example", "login": "reader", "extra": {"region": "eu-west-1"}}
    monkeypatch.setenv("AIRFLOW_CONN_ORDERS_ABROAD", json.dumps(conn))
    with pytest.raises(ResidencyError, match="the Airflow connection 'orders_abroad' at host 'orders.db.example'"):
        postgres_dsn("orders_abroad")
    monkeypatch.setenv("AIRFLOW_CONN_ORDERS_HOME", json.dumps(conn | {"extra": {"region": "me-central-1"}}))
    assert postgres_dsn("orders_home").host == "orders.db.example"


def test_a_task_and_the_trainer_stop_at_once_on_a_foreign_store(monkeypatch, tmp_path, capsys):
    from aerodrome.train import entrypoint, exitcodes
    from aerodrome_airflow.operators import spec_and_storage
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AERODROME_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AERODROME_USECASES_DIR", str(ROOT / "include/usecases"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", FOREIGN_MLFLOW)
    monkeypatch.setenv("AERODROME_DB_REGIONS", json.dumps({"127.0.0.1": "eu-central-1"}))
    with pytest.raises(AirflowFailException, match="MLflow tracking store.*'eu-central-1'"):  # no retry
        spec_and_storage("store_demand")
    assert entrypoint.main(["--usecase=store_demand", "--start=2024-05-01", "--end=2024-05-08"]) == exitcodes.INPUT
    assert "is in region 'eu-central-1'" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
