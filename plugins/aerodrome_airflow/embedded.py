"""The embedded Airflow profile: SQLite, LocalExecutor, loopback only, home inside the project.

`python -m aerodrome_airflow.embedded <airflow args>` runs the airflow CLI with this environment.
Variables already set in the environment win, so production settings are never overridden.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
API_HOST = "127.0.0.1"
API_PORT = 8080


def api_environ(port: int = API_PORT) -> dict[str, str]:
    """Where the API server listens and where task processes reach it: loopback only."""
    return {
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{API_HOST}:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{API_HOST}:{port}/execution/",
    }


def embedded_environ(home: Path | None = None, root: Path = PROJECT_ROOT) -> dict[str, str]:
    home = Path(home or os.environ.get("AIRFLOW_HOME") or root / ".airflow")
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # LocalExecutor whose workers have pandas/GX/Feast imported already (aerodrome_airflow.executor)
        "AIRFLOW__CORE__EXECUTOR": "aerodrome_airflow.executor.WarmLocalExecutor",
        # 32 idle workers by default; 2 cores do not need more than a handful
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        **api_environ(),
        "AIRFLOW__API__WORKERS": "1",
        # the scheduler loop sleeps 1 s when idle by default: most of a short task's latency
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        # a task's supervisor polls every min_heartbeat_interval (5 s) and often notices the task
        # process has exited only on the next poll, holding the executor slot ~5 s after each task
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AERODROME_DATA_ROOT": str(root / ".aerodrome" / "data"),
        "AERODROME_USECASES_DIR": str(root / "include" / "usecases"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def apply_embedded_environ(home: Path | None = None) -> dict[str, str]:
    """Set the embedded profile's variables that are not already set; returns the effective values."""
    for key, value in embedded_environ(home).items():
        os.environ.setdefault(key, value)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    return {k: os.environ[k] for k in embedded_environ(home)}


def main(argv: list[str]) -> None:
    apply_embedded_environ()
    airflow = Path(sys.executable).with_name("airflow")
    os.execv(str(airflow), [str(airflow), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
