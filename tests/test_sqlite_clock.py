"""The scheduler's `now()` on SQLite has milliseconds, so a queued run starts within a loop."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa


def test_now_on_sqlite_has_milliseconds_and_orders_against_stored_times(tmp_path):
    from aerodrome_airflow.sqlite_clock import install

    install()
    install()  # idempotent
    engine = sa.create_engine(f"sqlite:///{tmp_path}/clock.db")
    runs = sa.Table("runs", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("run_after", sa.DateTime))
    runs.metadata.create_all(engine)
    just_now = datetime.now(UTC).replace(tzinfo=None) - timedelta(milliseconds=5)
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)
    with engine.begin() as db:
        db.execute(runs.insert(), [{"id": 1, "run_after": just_now}, {"id": 2, "run_after": later}])
        due = db.execute(sa.select(runs.c.id).where(runs.c.run_after <= sa.func.now())).scalars().all()
        (now,) = db.execute(sa.select(sa.func.now())).one()
    assert due == [1]  # with CURRENT_TIMESTAMP (whole seconds) run 1 waited for the next second
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=2) and now.microsecond % 1000 == 0


def test_plain_sqlite_current_timestamp_has_whole_seconds():
    """Why the override exists: SQLite's own clock, as SQLAlchemy renders `now()` by default."""
    (stamp,) = sqlite3.connect(":memory:").execute("SELECT CURRENT_TIMESTAMP").fetchone()
    assert "." not in stamp
