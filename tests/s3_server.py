"""An S3-compatible endpoint on loopback for tests: moto's S3 in server mode (real HTTP, boto3 as in production).

Used instead of AWS S3, which cannot be reached from CI; moto keeps regions, SSE-KMS headers and default
bucket encryption as S3 does (it does not check that the KMS key exists).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aerodrome.settings import Settings

KMS_KEY = "arn:aws:kms:me-central-1:111122223333:key/aerodrome-test"
ROOT = Path(__file__).resolve().parents[1]


def s3_settings(endpoint: str, root: str, tmp_path: Path, **overrides) -> Settings:
    """Settings for an S3 data root on the test endpoint (http on loopback, allowed explicitly), KMS key set."""
    values = {
        "data_root": root,
        "usecases_dir": ROOT / "include/usecases",
        "s3_endpoint_url": endpoint,
        "s3_allow_http_loopback": True,
        "kms_key_id": KMS_KEY,
        "feature_repo": str(tmp_path / "feature_repo"),
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    return Settings(**(values | overrides))


def serve_s3() -> Iterator[str]:
    """`http://127.0.0.1:<port>` of a moto S3 server while the generator runs (AWS credentials for it set).

    A test module makes it a fixture: `s3_endpoint = pytest.fixture(scope="module")(serve_s3)`.
    """
    from moto.server import ThreadedMotoServer

    patch = pytest.MonkeyPatch()
    for name, value in (("AWS_ACCESS_KEY_ID", "test-key"), ("AWS_SECRET_ACCESS_KEY", "test-secret")):
        patch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        patch.undo()


def admin_client(endpoint: str):
    """A plain boto3 client on the test endpoint: sets buckets up and inspects what the platform wrote."""
    import boto3

    return boto3.client("s3", region_name="me-central-1", endpoint_url=endpoint)


def new_bucket(client, region: str) -> str:
    """A bucket of its own in `region` (moto's state is process-wide, so names never repeat)."""
    import boto3

    name = f"lake-{region}-{uuid.uuid4().hex[:10]}"
    config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    boto3.client("s3", region_name=region, endpoint_url=client.meta.endpoint_url).create_bucket(Bucket=name, **config)
    return name
