"""A LocalExecutor whose workers start with the ML stack already imported.

Every task runs in a process forked from a LocalExecutor worker, which is forked from the scheduler.
A task that imports Great Expectations (4-9 s) or Feast (7-12 s) pays that on every run; imported
once here, before the workers are forked, it costs nothing per task (copy-on-write pages), so a
one-day task takes about as long as its data work. Select it with
`AIRFLOW__CORE__EXECUTOR=aerodrome_airflow.executor.WarmLocalExecutor` (the embedded profile does);
`AERODROME_PRELOAD` lists the modules (comma-separated; empty = plain LocalExecutor behaviour).
Only third-party libraries are preloaded: upgrading one needs a scheduler restart (as any deploy does),
while the project's own code is read afresh by every task.
"""

from __future__ import annotations

import importlib
import os
import time

from airflow.executors.local_executor import LocalExecutor

# third-party libraries only: the project's own modules are imported fresh by each task, so an edited
# operator or library module takes effect on the next task without restarting the scheduler
DEFAULT_PRELOAD = "pandas,pyarrow.parquet,duckdb,great_expectations,feast,feast.infra.offline_stores.duckdb"


def preload(modules: str) -> dict[str, float]:
    """Import each module once (seconds per module); one that fails is reported and skipped."""
    from aerodrome_airflow.logs import quiet_third_party_loggers

    spent: dict[str, float] = {}
    for name in [m.strip() for m in modules.split(",") if m.strip()]:
        began = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional module must not stop the scheduler
            spent[f"{name} (failed: {type(exc).__name__}: {exc})"] = 0.0
            continue
        spent[name] = round(time.perf_counter() - began, 2)
    quiet_third_party_loggers()
    return spent


class WarmLocalExecutor(LocalExecutor):
    """LocalExecutor that imports `AERODROME_PRELOAD` before forking its workers."""

    def start(self) -> None:
        from aerodrome_airflow.sqlite_clock import install

        install()  # the scheduler's process: queued runs start within a loop, not at the next second
        modules = os.environ.get("AERODROME_PRELOAD", DEFAULT_PRELOAD)
        if modules.strip():
            spent = preload(modules)
            self.log.info("Preloaded for task processes in %.1fs: %s", sum(spent.values()), spent)
        super().start()
