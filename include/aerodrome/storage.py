"""One storage abstraction for every stage: a local folder or an S3 prefix, addressed by relative keys.

Keys look like `raw/flight_delay/date=2013-01-01/part-0.parquet`. Writing a partition replaces it
as a whole, so re-running an interval never leaves duplicates behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from aerodrome.errors import ResidencyError, SourceError
from aerodrome.settings import Settings


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

    @abstractmethod
    def sub(self, prefix: str) -> Storage:
        """Storage rooted at `prefix` below this one."""

    def partitions(self, prefix: str) -> list[str]:
        """Partition folder names (`date=...`) directly under `prefix`."""
        names = {k[len(prefix) :].lstrip("/").split("/", 1)[0] for k in self.list(prefix)}
        return sorted(n for n in names if "=" in n)


class LocalStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())

    def _path(self, key: str) -> Path:
        return Path(self.root, key)

    def sub(self, prefix: str) -> Storage:
        return LocalStorage(self._path(prefix))

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
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
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

    def move_prefix(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.exists():
            raise SourceError(f"{source}: nothing to move")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}")
        source.rename(target)


class S3Storage(Storage):
    """S3 prefix via boto3; the bucket's region is checked against the allowed list before writing."""

    def __init__(self, root: str, settings: Settings, client=None) -> None:
        parsed = urlparse(root)
        self.root = root.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = settings
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=settings.s3_region, endpoint_url=settings.s3_endpoint_url)
        self.client = client
        self._region_checked = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".lstrip("/")

    def sub(self, prefix: str) -> Storage:
        return S3Storage(f"{self.root}/{prefix.strip('/')}", self.settings, self.client)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def check_residency(self) -> None:
        if self._region_checked:
            return
        location = self.client.get_bucket_location(Bucket=self.bucket).get("LocationConstraint") or "us-east-1"
        if location not in self.settings.allowed_regions:
            raise ResidencyError(
                f"s3://{self.bucket} is in region {location!r}; data may only be written to "
                f"{', '.join(self.settings.allowed_regions)} (AERODROME_ALLOWED_REGIONS)"
            )
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
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ServerSideEncryption="aws:kms")

    def replace_prefix(self, prefix: str, files: dict[str, bytes]) -> None:
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
                ServerSideEncryption="aws:kms",
            )
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_storage(root: str, settings: Settings | None = None) -> Storage:
    """Storage for a local folder or an `s3://bucket/prefix` root."""
    settings = settings or Settings.from_env()
    if root.startswith("s3://"):
        return S3Storage(root, settings)
    if "://" in root:
        raise SourceError(f"{root}: unsupported storage scheme (use a local path or s3://bucket/prefix)")
    return LocalStorage(root)
