"""Ingest one data interval of a use case into its raw partition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aerodrome.errors import SourceError
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.ingest.sources import PostgresDsn, read_file_drop, read_postgres_interval
from aerodrome.schema import conform
from aerodrome.storage import Storage, open_storage
from aerodrome.usecase import FileDropSource, PostgresSource, UseCase

RAW_ZONE = "raw"


@dataclass(frozen=True)
class IngestResult:
    usecase: str
    ds: str
    partition_uri: str
    rows: int
    sha256: str
    source: str


def landing_storage(spec: UseCase, storage: Storage) -> Storage:
    """The storage holding a file-drop source: relative paths live under the data root."""
    assert isinstance(spec.source, FileDropSource)
    path = spec.source.path
    return open_storage(path) if path.startswith(("s3://", "/")) else storage.sub(path)


def ingest_interval(
    spec: UseCase,
    storage: Storage,
    start: datetime,
    end: datetime,
    dsn: PostgresDsn | None = None,
) -> IngestResult:
    """Read `[start, end)` from the use case's source, conform it to the spec, write `raw/.../date=<ds>`.

    A re-run for the same interval replaces the partition, so the result is the same and never doubled.
    """
    ds = start.strftime("%Y-%m-%d")
    if isinstance(spec.source, FileDropSource):
        frame, where = read_file_drop(landing_storage(spec, storage), spec.source, ds)
    elif isinstance(spec.source, PostgresSource):
        if dsn is None:
            raise SourceError(f"use case {spec.name!r}: a PostgreSQL source needs connection details")
        frame, where = read_postgres_interval(dsn, spec.source.table, spec.timestamp_column, start, end)
    else:  # pragma: no cover - the spec's discriminator admits no other kind
        raise SourceError(f"use case {spec.name!r}: unsupported source kind")
    frame = conform(frame, spec.columns, where)
    info = write_partition(storage, partition_key(RAW_ZONE, spec.name, ds), frame, where)
    return IngestResult(spec.name, ds, info.uri, info.rows, info.sha256, where)
