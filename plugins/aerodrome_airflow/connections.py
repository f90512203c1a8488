"""Turn Airflow connections into the plain connection details the library takes.

Connections come from Airflow (AIRFLOW_CONN_* environment variables or the configured secrets backend),
never from code; each one's host is checked for residency (its extra `{"region": ...}` or
AERODROME_DB_REGIONS) before it is used.
"""

from __future__ import annotations

from aerodrome.errors import SourceError
from aerodrome.ingest import PostgresDsn


def postgres_dsn(conn_id: str) -> PostgresDsn:
    from aerodrome.residency import Connection, check_connection
    from aerodrome.settings import Settings
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise SourceError(
            f"Airflow connection {conn_id!r} is not defined: add it to airflow_settings.yaml "
            f"(then `make settings`) or set AIRFLOW_CONN_{conn_id.upper()}"
        ) from exc
    host = conn.host or "127.0.0.1"
    region = (conn.extra_dejson or {}).get("region") or None
    check_connection(Connection(f"the Airflow connection {conn_id!r}", host, region), Settings.from_env())
    return PostgresDsn(
        host=host,
        port=int(conn.port or 5432),
        dbname=conn.schema or "postgres",
        user=conn.login or "postgres",
        password=conn.password or None,
    )
