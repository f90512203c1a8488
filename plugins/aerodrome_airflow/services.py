"""The production services on loopback, for `make test-services`: Airflow on PostgreSQL, MLflow server, Redis, S3.

PostgreSQL and Redis are this machine's system services (`scripts/ensure-services.sh` starts them when
they are installed but stopped). `ServicesProfile` adds, per run and removed afterwards:

- fresh PostgreSQL databases `aerodrome_svc_<id>` (Airflow's metadata), `..._mlflow` (MLflow's backend
  store) and `..._feast` (Feast's SQL registry);
- an S3-compatible endpoint (`moto` in server mode, a child process) over TLS (a self-signed certificate
  made for the run, trusted through `AWS_CA_BUNDLE`), with a bucket in `me-central-1` encrypted by
  default with SSE-KMS;
- an MLflow tracking server process on PostgreSQL whose artifacts are proxied to that bucket (uploaded
  with SSE-KMS);
- a Feast namespace `svc_<id>` in Redis (its keys deleted afterwards);
- the data root `s3://<bucket>/data`: every zone (raw, validated, quarantine, features, reports) lives in
  the bucket; what is per host stays under the work folder (generated Feast definitions, the signing key
  made for the run, the audit file), and the gateway's tokens come from the environment, as a secret store
  would give them;

and `environ()`: the variables an `EmbeddedStack` (the real scheduler, LocalExecutor) needs to use them.
`python -m aerodrome_airflow.services` starts them in the foreground and prints that environment.
Dev tooling: nothing in a task or a production image imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aerodrome_airflow.embedded import API_HOST, PROJECT_ROOT
from aerodrome_airflow.stack import free_port

PG_URL = os.environ.get("AERODROME_SERVICES_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("AERODROME_SERVICES_REDIS", "redis://127.0.0.1:6379/0")
REGION = "me-central-1"
# moto accepts any credentials; these never leave the loopback endpoint
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "aerodrome-local", "AWS_SECRET_ACCESS_KEY": "aerodrome-local"}


class ServiceError(RuntimeError):
    """A service did not start; the message names it and carries its last output."""


def ensure_system_services() -> None:
    """Start PostgreSQL and Redis when installed but not running (the project's own script)."""
    subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "ensure-services.sh")], check=False, timeout=120)


def _admin():
    import psycopg2

    connection = psycopg2.connect(f"{PG_URL}/postgres", connect_timeout=5)
    connection.autocommit = True
    return connection


def create_database(name: str) -> str:
    """A new empty database `name` (dropped first if a crashed run left it); returns its URL."""
    with contextlib.closing(_admin()) as connection, connection.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_URL}/{name}"


def drop_database(name: str) -> None:
    with contextlib.closing(_admin()) as connection, connection.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def self_signed_certificate(folder: Path, host: str = API_HOST) -> tuple[Path, Path]:
    """A certificate for `host` (its own CA, a day valid) and its key: TLS to the loopback S3 endpoint."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "s3-endpoint.crt", folder / "s3-endpoint.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _get(url: str, timeout_s: float = 2.0, cafile: Path | None = None) -> int:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as answer:  # noqa: S310 - loopback
            return answer.status
    except OSError:
        return 0


class ChildService:
    """One service process on a free loopback port, its output in `log`; stopped with its process group."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], health_url: str, log: Path, cafile: Path | None = None
    ) -> None:
        self.name, self.argv, self.env, self.health_url, self.log = name, argv, env, health_url, log
        self.cafile = cafile
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while _get(self.health_url, cafile=self.cafile) != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                what = f"{self.name} did not answer {self.health_url} within {timeout_s:.0f}s"
                raise ServiceError(f"{what}:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class ServicesProfile:
    """Fresh databases, an S3 endpoint and an MLflow server for one run; `stop()` removes them all."""

    def __init__(self, workdir: Path, run_id: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.id = run_id or secrets.token_hex(4)
        self.db = f"aerodrome_svc_{self.id}"
        self.bucket = f"aerodrome-svc-{self.id}"
        self.namespace = f"svc_{self.id}"
        self.s3_url = f"https://{API_HOST}:{free_port()}"  # TLS, as the platform requires of S3
        self.ca_bundle = self.workdir / "tls" / "s3-endpoint.crt"
        self.mlflow_url = f"http://{API_HOST}:{free_port()}"
        self.data_root = f"s3://{self.bucket}/data"
        self.signing_key = self.workdir / "signing" / "ed25519.pem"
        self.gateway_tokens = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))  # (serving, admin)
        self.children: list[ChildService] = []
        self.databases: list[str] = []

    def _database(self, suffix: str = "") -> str:
        name = self.db + suffix
        url = create_database(name)
        self.databases.append(name)
        return url

    def s3_environ(self) -> dict[str, str]:
        return {
            **S3_CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CA_BUNDLE": str(self.ca_bundle),  # boto3 trusts the endpoint's own certificate
            "AERODROME_S3_ENDPOINT_URL": self.s3_url,
            "AERODROME_S3_REGION": REGION,
        }

    def start(self) -> ServicesProfile:
        from aerodrome.security.signing import generate_key

        ensure_system_services()
        if not self.signing_key.exists():  # the secret a deployment would mount
            generate_key(self.signing_key)
        self.airflow_db = self._database()
        mlflow_db, self.feast_db = self._database("_mlflow"), self._database("_feast")
        python = sys.executable
        base = {**os.environ, **self.s3_environ(), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        host, s3_port = API_HOST, self.s3_url.rsplit(":", 1)[1]
        cert, key = self_signed_certificate(self.ca_bundle.parent, host)
        argv = [python, "-m", "moto.server", "-H", host, "-p", s3_port, "-c", str(cert), "-k", str(key)]
        self._child("s3", argv, base, f"{self.s3_url}/moto-api/", cafile=cert)
        self.create_bucket(self.bucket)
        mlflow = str(Path(python).with_name("mlflow"))
        argv = [
            mlflow,
            "server",
            "--backend-store-uri",
            mlflow_db,
            "--artifacts-destination",
            f"s3://{self.bucket}/mlflow",
        ]
        argv += ["--host", host, "--port", self.mlflow_url.rsplit(":", 1)[1], "--workers", "1"]
        # the server uploads the artifacts it proxies: over TLS, each object with SSE-KMS
        sse = json.dumps({"ServerSideEncryption": "aws:kms"})
        env = {**base, "MLFLOW_S3_ENDPOINT_URL": self.s3_url, "MLFLOW_S3_UPLOAD_EXTRA_ARGS": sse}
        self._child("mlflow", argv, env, f"{self.mlflow_url}/health")
        return self

    def _child(
        self, name: str, argv: list[str], env: dict[str, str], health_url: str, cafile: Path | None = None
    ) -> None:
        child = ChildService(name, argv, env, health_url, self.workdir / f"{name}.log", cafile)
        child.start()
        self.children.append(child)

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=REGION,
            verify=str(self.ca_bundle),
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        """A bucket in the allowed region, encrypted by default with SSE-KMS, as the platform expects."""
        client = self.s3_client()
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
        client.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})

    def environ(self) -> dict[str, str]:
        """What the Airflow components, their tasks and the gateway need to use these services."""
        return {
            **self.s3_environ(),
            "AERODROME_DATA_ROOT": self.data_root,
            "AERODROME_FEATURE_REPO": str(self.workdir / "feature_repo"),  # generated definitions only
            "AERODROME_SIGNING_KEY": str(self.signing_key),
            "AERODROME_AUDIT_LOG": str(self.workdir / "audit" / "audit.jsonl"),
            "AERODROME_GATEWAY_TOKEN": self.gateway_tokens[0],
            "AERODROME_GATEWAY_ADMIN_TOKEN": self.gateway_tokens[1],
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_db.replace("postgresql://", "postgresql+psycopg2://"),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            # every database and cache here is this machine: tagged with the allowed region all the same
            "AERODROME_DB_REGIONS": json.dumps({API_HOST: REGION}),
            "AERODROME_ONLINE_STORE": "redis",
            "AERODROME_REDIS_URL": REDIS_URL,
            "AERODROME_FEATURE_NAMESPACE": self.namespace,
            "AERODROME_FEATURE_REGISTRY": self.feast_db,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # artifacts go through the tracking server both ways: clients never hold S3 credentials or URLs
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
        }

    def redis_keys(self) -> list[bytes]:
        """This run's keys in Redis (Feast's keys end with the project name)."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        return list(client.scan_iter(match=f"*{self.namespace}_*".encode(), count=1000))

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        with contextlib.suppress(Exception):  # Redis is shared: remove only this run's keys
            import redis

            keys = self.redis_keys()
            if keys:
                redis.Redis.from_url(REDIS_URL).delete(*keys)
        for name in reversed(self.databases):
            drop_database(name)
        self.databases.clear()

    def __enter__(self) -> ServicesProfile:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=PROJECT_ROOT / ".aerodrome" / "services")
    args = parser.parse_args(argv)
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    with ServicesProfile(args.workdir) as services:
        print("services up; export these for `make up` (Ctrl-C stops and removes them):")
        for key, value in services.environ().items():
            print(f"export {key}={shlex.quote(value)}")
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
