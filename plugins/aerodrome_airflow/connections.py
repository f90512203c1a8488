"""Turn Airflow connections into the plain connection details the library takes."""

from __future__ import annotations

from aerodrome.errors import SourceError
from aerodrome.ingest import PostgresDsn


def postgres_dsn(conn_id: str) -> PostgresDsn:
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise SourceError(
            f"Airflow connection {conn_id!r} is not defined: add it to airflow_settings.yaml "
            f"(then `make settings`) or set AIRFLOW_CONN_{conn_id.upper()}"
        ) from exc
    return PostgresDsn(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 5432),
        dbname=conn.schema or "postgres",
        user=conn.login or "postgres",
        password=conn.password or None,
    )
