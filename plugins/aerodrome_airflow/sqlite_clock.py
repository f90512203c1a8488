"""Millisecond `now()` for Airflow's metadata database on SQLite (the embedded profile).

SQLAlchemy renders `func.now()` as `CURRENT_TIMESTAMP` on SQLite, which has whole seconds, while
Airflow stores times with microseconds. The scheduler starts a queued run only once
`run_after <= now()`: a run created at 12:00:00.4 waited until 12:00:01, i.e. every run (each hop of
a partition from ingest to validate to features) lost 0.5 s on average. PostgreSQL's `now()` has
microseconds and is unaffected. Installed by the scheduler's executor (`WarmLocalExecutor`).
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> None:
    """Render `func.now()` on SQLite with milliseconds (a no-op on other databases; idempotent)."""
    global _installed
    if _installed:
        return
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql import functions

    @compiles(functions.now, "sqlite")
    def _now_with_milliseconds(element: Any, compiler: Any, **kw: Any) -> str:
        return "strftime('%Y-%m-%d %H:%M:%f', 'now')"

    _installed = True
