"""Task logs say what the task did: third-party libraries speak only at WARNING or above."""

from __future__ import annotations

import logging

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
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(level)
