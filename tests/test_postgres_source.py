"""The PostgreSQL source kind against the real server on 127.0.0.1:5432."""

from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from aerodrome.errors import SourceError
from aerodrome.ingest import PostgresDsn, ingest_interval, read_partition
from aerodrome.usecase import UseCase

pytestmark = pytest.mark.postgres

SPEC = UseCase.model_validate(
    {
        "name": "pg_orders",
        "description": "orders read from a PostgreSQL table by interval",
        "owner": "ml-platform",
        "source": {"kind": "postgres", "table": "public.orders", "timestamp_column": "ordered_at"},
        "columns": {"order_id": "int", "ordered_at": "timestamp", "amount": "float", "late": "bool"},
        "natural_key": ["order_id"],
        "entity_keys": ["order_id"],
        "event_timestamp": "ordered_at",
        "target": {"column": "late", "task": "classification"},
        "schedule": {"start_date": "2024-01-01"},
    }
)
DAY = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def orders_db(pg_database):
    conn = psycopg2.connect(**pg_database)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS orders")
        cur.execute("CREATE TABLE orders (order_id int primary key, ordered_at timestamptz, amount numeric, late bool)")
        rows = [(i, DAY + timedelta(hours=i - 30), 10.5 + i, i % 3 == 0) for i in range(0, 80)]
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s)", rows)
    conn.close()
    return PostgresDsn(pg_database["host"], pg_database["port"], pg_database["dbname"], pg_database["user"])


def test_reads_exactly_the_interval(orders_db, storage):
    result = ingest_interval(SPEC, storage, DAY, DAY + timedelta(days=1), dsn=orders_db)
    frame = read_partition(storage, "raw/pg_orders/date=2024-01-02")
    assert result.rows == len(frame) == 24
    assert frame["ordered_at"].min() == DAY and frame["ordered_at"].max() == DAY + timedelta(hours=23)
    assert frame["order_id"].is_unique and frame["amount"].dtype == "float64"
    again = ingest_interval(SPEC, storage, DAY, DAY + timedelta(days=1), dsn=orders_db)
    assert again.sha256 == result.sha256


def test_unreachable_database_is_named(storage):
    dsn = PostgresDsn("127.0.0.1", 1, "nowhere", "postgres")
    with pytest.raises(SourceError, match=r"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:1/nowhere"):
        ingest_interval(SPEC, storage, DAY, DAY + timedelta(days=1), dsn=dsn)


def test_missing_table_is_named(orders_db, storage):
    spec = SPEC.model_copy(update={"source": SPEC.source.model_copy(update={"table": "public.nope"})})
    with pytest.raises(SourceError, match=r"table public.nope: query failed"):
        ingest_interval(spec, storage, DAY, DAY + timedelta(days=1), dsn=orders_db)
