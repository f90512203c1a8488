import boto3
import pytest
from aerodrome.errors import ResidencyError, SourceError
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage, S3Storage, open_storage
from moto import mock_aws


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


# S3 itself cannot run on this machine (no network, no S3-compatible server in the registries'
# packages we use), so the S3 path is exercised against moto's in-process S3 API.
@mock_aws
def test_s3_storage_round_trip_and_residency():
    settings = Settings(data_root="s3://lake/prod", usecases_dir=None, s3_region="me-central-1")
    client = boto3.client("s3", region_name="me-central-1")
    client.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "me-central-1"})
    s = S3Storage("s3://lake/prod", settings, client)
    s.replace_prefix("raw/uc/date=2013-01-01", {"a": b"1", "b": b"2"})
    s.replace_prefix("raw/uc/date=2013-01-01", {"a": b"3"})
    assert s.list("raw/uc") == ["raw/uc/date=2013-01-01/a"]
    assert s.read_bytes("raw/uc/date=2013-01-01/a") == b"3"
    assert s.sub("raw").list("uc") == ["uc/date=2013-01-01/a"]
    s.move_prefix("raw/uc/date=2013-01-01", "quarantine/uc/date=2013-01-01")
    assert s.list("quarantine") == ["quarantine/uc/date=2013-01-01/a"] and not s.exists("raw/uc")

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="elsewhere")
    outside = S3Storage("s3://elsewhere/x", settings, client)
    with pytest.raises(ResidencyError, match="region 'us-east-1'.*me-central-1"):
        outside.write_bytes("k", b"data")


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
