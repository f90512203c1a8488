"""One storage abstraction for every stage: a local folder or an S3 prefix, addressed by relative keys.

Keys look like `raw/flight_delay/date=2013-01-01/part-0.parquet`. Writing a partition replaces it
as a whole, so re-running an interval never leaves duplicates behind.

Before its first write a storage checks residency: the bucket's real region and every database the
settings name (`aerodrome.residency`). S3 objects are written with SSE-KMS (`AERODROME_KMS_KEY_ID`),
over TLS only (`s3_client`); a bucket without default encryption is flagged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aerodrome.errors import ResidencyError, SourceError
from aerodrome.residency import check_connections, is_loopback
from aerodrome.settings import Settings, SettingsError

log = logging.getLogger("aerodrome.storage")
SSE_KMS = "aws:kms"


def require_tls(endpoint_url: str | None, allow_http_loopback: bool = False) -> None:
    """Refuse an S3 endpoint reached without TLS, except a loopback one when explicitly allowed (tests)."""
    if not endpoint_url or endpoint_url.startswith("https://"):
        return
    parsed = urlparse(endpoint_url)
    if parsed.scheme == "http" and allow_http_loopback and is_loopback(parsed.hostname or ""):
        return
    raise SettingsError(
        f"AERODROME_S3_ENDPOINT_URL={endpoint_url}: S3 is reached over TLS only (use an https:// endpoint); "
        "plain http is allowed to a loopback endpoint alone, with AERODROME_S3_ALLOW_HTTP_LOOPBACK=true (tests)"
    )


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the settings' region and endpoint, refusing plain http (see `require_tls`)."""
    import boto3

    require_tls(settings.s3_endpoint_url, settings.s3_allow_http_loopback)
    return boto3.client("s3", region_name=settings.s3_region, endpoint_url=settings.s3_endpoint_url)


def encryption_args(settings: Settings) -> dict[str, str]:
    """The SSE-KMS arguments of every put and copy (the key from settings, else the account's aws/s3 key)."""
    args = {"ServerSideEncryption": SSE_KMS}
    if settings.kms_key_id:
        args["SSEKMSKeyId"] = settings.kms_key_id
    return args


def mlflow_artifact_environ(settings: Settings, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """MLflow's environment for artifacts under an S3 data root: SSE-KMS on every upload, the endpoint, TLS.

    MLflow's S3 artifact repository reads MLFLOW_S3_UPLOAD_EXTRA_ARGS (JSON, passed to boto3's
    `upload_file` as ExtraArgs) and MLFLOW_S3_ENDPOINT_URL at each upload; extra args already set are
    kept, the encryption ones are ours. Nothing for a local data root.
    """
    if not settings.remote_data_root:
        return {}
    if environ.get("MLFLOW_S3_IGNORE_TLS", "").strip().lower() in ("1", "true", "yes"):
        raise SettingsError("MLFLOW_S3_IGNORE_TLS is set: model artifacts travel over verified TLS only; unset it")
    require_tls(settings.s3_endpoint_url, settings.s3_allow_http_loopback)
    given = environ.get("MLFLOW_S3_UPLOAD_EXTRA_ARGS", "").strip()
    try:
        extra = json.loads(given) if given else {}
    except json.JSONDecodeError as exc:
        raise SettingsError(f"MLFLOW_S3_UPLOAD_EXTRA_ARGS is not valid JSON ({exc}): {given!r}") from None
    extra = {k: v for k, v in extra.items() if k not in ("ServerSideEncryption", "SSEKMSKeyId")}
    found = {"MLFLOW_S3_UPLOAD_EXTRA_ARGS": json.dumps(extra | encryption_args(settings))}
    if settings.s3_endpoint_url:
        found["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return found


def bucket_encryption_problem(client: Any, bucket: str) -> str | None:
    """Why the bucket's default encryption falls short (none, or not KMS), or None when it is SSE-KMS."""
    from botocore.exceptions import ClientError

    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
            return f"s3://{bucket} has no default encryption: an object written by another tool would be stored as is"
        raise
    algorithms = {r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
    if SSE_KMS not in algorithms and "aws:kms:dsse" not in algorithms:
        return f"s3://{bucket} encrypts by default with {', '.join(sorted(map(str, algorithms)))}, not SSE-KMS"
    return None


class Storage(ABC):
    """Object storage rooted at `root`; all keys are relative, `/`-separated."""

    root: str

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys of all objects under `prefix` (recursive), sorted."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
        """Make `prefix` hold exactly `files` (name -> content), replacing what was there."""

    @abstractmethod
    def move_prefix(self, src: str, dst: str) -> None:
        """Move every object under `src` to `dst` (used for quarantine and release; never deletes)."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix` (transient state only, e.g. the gateway replicas' window)."""
        if self.list(prefix):
            self.replace_prefix(prefix, {})

    @abstractmethod
    def sub(self, prefix: str) -> Storage:
        """Storage rooted at `prefix` below this one."""

    @abstractmethod
    def check_residency(self) -> None:
        """Raise ResidencyError when this storage or a connection of its settings lies outside the policy.

        Runs by itself before the first write; call it earlier where something else writes first (MLflow).
        """

    def partitions(self, prefix: str) -> list[str]:
        """Partition folder names (`date=...`) directly under `prefix`."""
        names = {k[len(prefix) :].lstrip("/").split("/", 1)[0] for k in self.list(prefix)}
        return sorted(n for n in names if "=" in n)


class LocalStorage(Storage):
    """A local folder; with `settings`, the databases they name are checked for residency before the first write."""

    def __init__(self, root: str | Path, settings: Settings | None = None) -> None:
        self.root = str(Path(root).resolve())
        self.settings = settings
        self._checked = settings is None

    def _path(self, key: str) -> Path:
        return Path(self.root, key)

    def sub(self, prefix: str) -> Storage:
        child = LocalStorage(self._path(prefix), self.settings)
        child._checked = self._checked
        return child

    def check_residency(self) -> None:
        if not self._checked:
            check_connections(self.settings)
            self._checked = True

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> list[str]:
        """Committed files under `prefix`; in-flight writes (hidden `.name.*.staging/.tmp/.retired`) are not.

        Safe while other processes replace partitions next to it: a folder renamed away mid-walk is skipped.
        """
        base = self._path(prefix)
        if not base.is_dir():
            return [prefix] if base.is_file() else []
        found = []
        for folder, dirs, files in os.walk(base):  # os.walk ignores folders that vanish under it
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.relpath(os.path.join(folder, f), self.root) for f in files if not f.startswith(".")]
        return sorted(found)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{self.uri(key)}: file not found") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.check_residency()
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
        self.check_residency()
        target = self._path(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.staging")
        staging.mkdir()
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.retired")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired)  # the superseded copy of the same interval
        else:
            staging.rename(target)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def move_prefix(self, src: str, dst: str) -> None:
        self.check_residency()
        source, target = self._path(src), self._path(dst)
        if not source.exists():
            raise SourceError(f"{source}: nothing to move")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}")
        source.rename(target)


class S3Storage(Storage):
    """S3 prefix via boto3 over TLS; region checked before writing; every object written with SSE-KMS."""

    def __init__(self, root: str, settings: Settings, client=None) -> None:
        parsed = urlparse(root)
        self.root = root.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = settings
        self.client = s3_client(settings) if client is None else client
        self._region_checked = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".lstrip("/")

    def sub(self, prefix: str) -> Storage:
        child = S3Storage(f"{self.root}/{prefix.strip('/')}", self.settings, self.client)
        child._region_checked = self._region_checked  # same bucket, same settings
        return child

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check_residency(self) -> None:
        """The bucket's real region (GetBucketLocation) and the settings' databases against the policy, once.

        A bucket without SSE-KMS default encryption is flagged (a warning): our writes are encrypted
        either way, but anything else writing there would not be.
        """
        if self._region_checked:
            return
        location = self.client.get_bucket_location(Bucket=self.bucket).get("LocationConstraint") or "us-east-1"
        if location not in self.settings.allowed_regions:
            raise ResidencyError(
                f"s3://{self.bucket} is in region {location!r}; data may only be written to "
                f"{', '.join(self.settings.allowed_regions)} (AERODROME_ALLOWED_REGIONS)"
            )
        check_connections(self.settings)
        problem = bucket_encryption_problem(self.client, self.bucket)
        if problem:
            log.warning("%s; set SSE-KMS default encryption on the bucket", problem)
        self._region_checked = True

    def exists(self, key: str) -> bool:
        return bool(self.list(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            keys += [o["Key"] for o in page.get("Contents", [])]
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in keys if k == full or k.startswith(full.rstrip("/") + "/"))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise SourceError(f"{self.uri(key)}: object not found") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.check_residency()
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **encryption_args(self.settings))

    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
        self.check_residency()
        stale = set(self.list(prefix))
        for name, data in files.items():
            key = f"{prefix.rstrip('/')}/{name}"
            self.write_bytes(key, data)
            stale.discard(key)
        for key in stale:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def move_prefix(self, src: str, dst: str) -> None:
        self.check_residency()
        keys = self.list(src)
        if not keys:
            raise SourceError(f"{self.uri(src)}: nothing to move")
        for key in keys:
            new = dst.rstrip("/") + key[len(src.rstrip("/")) :]
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(new),
                CopySource={"Bucket": self.bucket, "Key": self._key(key)},
                **encryption_args(self.settings),
            )
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_storage(root: str, settings: Settings | None = None) -> Storage:
    """Storage for a local folder or an `s3://bucket/prefix` root (residency checked before its first write)."""
    settings = settings or Settings.from_env()
    if root.startswith("s3://"):
        return S3Storage(root, settings)
    if "://" in root:
        raise SourceError(f"{root}: unsupported storage scheme (use a local path or s3://bucket/prefix)")
    return LocalStorage(root, settings)
