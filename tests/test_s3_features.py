"""Features and training sets on an `s3://` data root, over TLS, against an S3-compatible server.

The endpoint is moto in server mode (a child process serving https on loopback with a certificate made
for the run, trusted through `AWS_CA_BUNDLE`): the stand-in for AWS S3, which cannot be reached from CI.
The platform's own code paths run unchanged: validated flight days are published to the bucket, the
features step writes the offline store there (SSE-KMS on every object), and the training set is
Feast's point-in-time join reading those partitions through `aerodrome.storage` (DuckDB's own S3
reader would download its `httpfs` extension at run time). The result must equal the same join run by
Feast's stock DuckDB store on a local copy of the same objects.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from aerodrome.errors import SourceError
from aerodrome.features import build_training_set, compute_features
from aerodrome.features.offline import view_prefix
from aerodrome.features.repo import repo_config
from aerodrome.features.storage_offline_store import StorageOfflineStoreConfig
from aerodrome.ingest.partition import DATA_FILE
from aerodrome.settings import SettingsError
from aerodrome.storage import LocalStorage, S3Storage, open_storage
from aerodrome.usecase import load_usecase
from conftest import USECASES_DIR, publish_flights
from s3_server import KMS_KEY, s3_settings

FIRST, LAST = date(2013, 1, 1), date(2013, 1, 10)
REGION = "me-central-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": REGION}


@pytest.fixture(scope="module")
def tls_endpoint(tmp_path_factory):
    """`https://127.0.0.1:<port>` of a moto S3 server (its own certificate, trusted via AWS_CA_BUNDLE)."""
    from aerodrome_airflow.services import ChildService, self_signed_certificate
    from aerodrome_airflow.stack import free_port

    folder = tmp_path_factory.mktemp("s3-tls")
    cert, key = self_signed_certificate(folder, "127.0.0.1")
    url = f"https://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1], "-c", str(cert)]
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {**CREDENTIALS, "AWS_CA_BUNDLE": str(cert)}.items():
            mp.setenv(name, value)
        server = ChildService(
            "s3",
            [*argv, "-k", str(key)],
            dict(os.environ),
            f"{url}/moto-api/",
            folder / "moto.log",
            cafile=cert,
        )
        server.start()
        try:
            yield url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def lake(tls_endpoint, tmp_path_factory):
    """Validated flight days 01-01..01-10 and their features under `s3://<bucket>/data`, written by the platform."""
    import boto3

    bucket = "aerodrome-features-test"
    admin = boto3.client("s3", region_name=REGION, endpoint_url=tls_endpoint)
    admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    tmp = tmp_path_factory.mktemp("s3-features")
    settings = s3_settings(
        tls_endpoint, f"s3://{bucket}/data", tmp, usecases_dir=USECASES_DIR, s3_allow_http_loopback=False
    )
    spec = load_usecase(USECASES_DIR / "flight_delay")
    storage = open_storage(settings.data_root, settings)
    assert isinstance(storage, S3Storage)
    publish_flights(storage, spec, FIRST, LAST)
    for day in range((LAST - FIRST).days + 1):
        compute_features(spec, storage, (FIRST + timedelta(days=day)).isoformat())
    return {"admin": admin, "bucket": bucket, "settings": settings, "spec": spec, "storage": storage, "tmp": tmp}


def window(first_day: int, end_day: int) -> tuple[datetime, datetime]:
    return datetime(2013, 1, first_day, tzinfo=UTC), datetime(2013, 1, end_day, tzinfo=UTC)


def local_copy(storage, folder: Path) -> LocalStorage:
    """The same objects in a local folder: the reference for Feast's stock DuckDB store."""
    local = LocalStorage(folder)
    for key in storage.list(""):
        local.write_bytes(key, storage.read_bytes(key))
    return local


def test_a_training_set_from_an_s3_data_root_equals_the_local_one_and_every_object_is_sse_kms(lake):
    settings, spec, storage = lake["settings"], lake["spec"], lake["storage"]
    config = repo_config(spec, settings).offline_store
    assert isinstance(config, StorageOfflineStoreConfig) and config.s3_endpoint_url.startswith("https://")
    start, end = datetime(2013, 1, 8, 5, tzinfo=UTC), datetime(2013, 1, 11, 5, tzinfo=UTC)

    training = build_training_set(spec, settings, storage, start, end)

    frame = training.frame
    assert training.rows_in == training.rows_out == len(frame) > 2000 and training.dropped == 0
    assert frame["event_timestamp"].min() >= start and frame["event_timestamp"].max() < end
    assert frame["carrier_delay_rate_7d"].notna().mean() > 0.99  # the history of earlier days was joined
    local = local_copy(storage, lake["tmp"] / "local-data")
    local_settings = replace(settings, data_root=local.root, feature_repo=str(lake["tmp"] / "local-repo"))
    reference = build_training_set(spec, local_settings, local, start, end)
    pd.testing.assert_frame_equal(frame, reference.frame)
    print(f"training set of {len(frame)} events: s3:// {training.seconds:.2f}s, local {reference.seconds:.2f}s")

    keys = [
        o["Key"]
        for page in lake["admin"].get_paginator("list_objects_v2").paginate(Bucket=lake["bucket"], Prefix="data/")
        for o in page["Contents"]
    ]
    assert {"validated", "features"} <= {k.split("/")[1] for k in keys}
    assert sum(f"/{view_prefix(spec, '')}" in f"/{k}" for k in keys) >= 10 * len(spec.features.views)
    for key in keys:
        head = lake["admin"].head_object(Bucket=lake["bucket"], Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", KMS_KEY), key


def test_a_training_set_reads_only_the_partitions_its_window_and_ttl_reach(lake):
    """Days before the window less the longest TTL (48 h) and the stamping slack are never fetched: one spoiled
    there changes nothing, while a window that does reach it names the object."""
    settings, spec, storage = lake["settings"], lake["spec"], lake["storage"]
    view = spec.features.views[0].name
    spoiled = f"{view_prefix(spec, view)}/date={FIRST}/{DATA_FILE}"
    good = storage.read_bytes(spoiled)
    storage.write_bytes(spoiled, b"not parquet")
    try:
        late = build_training_set(
            spec, settings, storage, datetime(2013, 1, 9, tzinfo=UTC), datetime(2013, 1, 11, tzinfo=UTC)
        )
        assert late.rows_out > 1000
        with pytest.raises(SourceError, match=rf"{storage.uri(spoiled)}: not a readable Parquet file"):
            build_training_set(
                spec, settings, storage, datetime(2013, 1, 2, tzinfo=UTC), datetime(2013, 1, 4, tzinfo=UTC)
            )
    finally:
        storage.write_bytes(spoiled, good)


def test_the_offline_store_is_read_over_verified_tls_only(lake, monkeypatch):
    settings = lake["settings"]
    monkeypatch.delenv("AWS_CA_BUNDLE")  # the endpoint's certificate is no longer trusted: reading must fail
    from botocore.exceptions import SSLError

    with pytest.raises(SSLError):
        StorageOfflineStoreConfig.of(settings).storage().list("features")
    plain = replace(settings, s3_endpoint_url=settings.s3_endpoint_url.replace("https://", "http://"))
    with pytest.raises(SettingsError, match="over TLS only"):
        StorageOfflineStoreConfig.of(plain).storage()


def test_feasts_own_materialization_read_gets_the_newest_row_per_entity_of_its_window(lake):
    """`pull_latest_from_table_or_query` (what Feast's `materialize` reads) through the same partition reader."""
    from aerodrome.features.repo import feature_store
    from aerodrome.features.storage_offline_store import StorageOfflineStore

    settings, spec, storage = lake["settings"], lake["spec"], lake["storage"]
    view = next(v for v in spec.features.views if v.name == "carrier_delays")
    start, end = window(6, 9)
    store = feature_store(spec, settings)
    job = StorageOfflineStore.pull_latest_from_table_or_query(
        config=store.config,
        data_source=store.get_feature_view(view.name).batch_source,
        join_key_columns=list(view.entities),
        feature_name_columns=list(view.features),
        timestamp_field="event_timestamp",
        created_timestamp_column=None,
        start_date=start,
        end_date=end,
    )
    got = job.to_df().sort_values(list(view.entities)).reset_index(drop=True)
    rows = pd.concat(
        pd.read_parquet(io.BytesIO(storage.read_bytes(f"{view_prefix(spec, view.name)}/date={day}/{DATA_FILE}")))
        for day in pd.date_range(FIRST, LAST).date
    )
    rows = rows[(rows["event_timestamp"] >= start) & (rows["event_timestamp"] <= end)]
    want = rows.sort_values("event_timestamp").drop_duplicates(list(view.entities), keep="last")
    want = want.sort_values(list(view.entities)).reset_index(drop=True)
    assert len(got) == len(want) > 5
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
