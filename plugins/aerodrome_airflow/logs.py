"""Task logs say what the task did: third-party libraries speak only at WARNING or above."""

from __future__ import annotations

import logging
import warnings

# loggers that fill a task log with import-time and progress chatter at INFO
THIRD_PARTY = (
    "great_expectations",
    "feast",
    "mlflow",
    "alembic",
    "urllib3",
    "botocore",
    "duckdb",
    "numexpr",
    "typeguard",
)


def quiet_third_party_loggers(level: int = logging.WARNING) -> None:
    """Third-party loggers at `level`; and no pathspec deprecation at the top of every task log.

    Airflow's task-side plugins loader compiles plugins/.airflowignore with a deprecated pathspec class,
    and `airflow.configuration` turns DeprecationWarnings from airflow modules back on: called in the
    scheduler before the executor forks its workers, this filter reaches every task process.
    """
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message="GitWildMatchPattern", category=DeprecationWarning)
