"""Source readers: file drops (local folder or S3 through `Storage`) and PostgreSQL tables by interval."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from aerodrome.errors import SourceError
from aerodrome.storage import Storage
from aerodrome.usecase import FileDropSource


def drop_key(source: FileDropSource, ds: str) -> str:
    """Key of the landing file for interval `ds` (YYYY-MM-DD), relative to the landing storage."""
    return source.pattern.format(ds=ds)


def read_file_drop(storage: Storage, source: FileDropSource, ds: str) -> tuple[pd.DataFrame, str]:
    """Read the drop for `ds`; returns the frame and the file's URI (for lineage and errors)."""
    key = drop_key(source, ds)
    uri = storage.uri(key)
    if not storage.exists(key):
        raise SourceError(
            f"{uri}: no file dropped for {ds}. Check that the upstream feed delivered it "
            f"(expected pattern {source.pattern!r} in {storage.root}), then clear the task to retry."
        )
    data = storage.read_bytes(key)
    if not data.strip():
        raise SourceError(f"{uri}: the file is empty. Ask the upstream feed to re-deliver {ds}.")
    try:
        if source.format == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), engine="pyarrow", dtype_backend="numpy_nullable")
    except Exception as exc:  # pyarrow/pandas raise many types for corrupt input
        raise SourceError(
            f"{uri}: cannot be read as {source.format} ({type(exc).__name__}: {exc}). "
            f"The file is corrupt or truncated; ask the upstream feed to re-deliver {ds}."
        ) from exc
    return frame, uri


@dataclass(frozen=True)
class PostgresDsn:
    host: str
    port: int
    dbname: str
    user: str
    password: str | None = None

    def describe(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def read_postgres_interval(
    dsn: PostgresDsn, table: str, timestamp_column: str, start: datetime, end: datetime
) -> tuple[pd.DataFrame, str]:
    """Rows of `table` with `start <= timestamp_column < end`, in a stable order."""
    import psycopg2
    from psycopg2 import sql

    where = f"{dsn.describe()} table {table}"
    try:
        conn = psycopg2.connect(
            host=dsn.host,
            port=dsn.port,
            dbname=dsn.dbname,
            user=dsn.user,
            password=dsn.password,
            connect_timeout=10,
        )
    except psycopg2.OperationalError as exc:
        raise SourceError(
            f"cannot reach PostgreSQL at {dsn.describe()}: {str(exc).strip()}. "
            f"Check that the server runs and the Airflow connection points at it."
        ) from exc
    schema_name, _, table_name = table.rpartition(".")
    ident = sql.Identifier(schema_name, table_name) if schema_name else sql.Identifier(table_name)
    query = sql.SQL("SELECT * FROM {t} WHERE {ts} >= %s AND {ts} < %s ORDER BY {ts}").format(
        t=ident, ts=sql.Identifier(timestamp_column)
    )
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, (start, end))
            names = [d.name for d in cur.description]
            frame = pd.DataFrame.from_records(cur.fetchall(), columns=names)
    except psycopg2.Error as exc:
        raise SourceError(f"{where}: query failed: {str(exc).strip()}") from exc
    finally:
        conn.close()
    return frame, f"{where}"
