"""TaskFlow-friendly calls of the aerodrome library, for hand-written DAGs.

Each function takes a use-case name (the folder under the use-cases directory) and plain values, reads
the settings from the environment (never from DAG code), and returns something small enough for XCom
(a dict, a day) or an in-task object (a spec, a frame, a model). An error no retry can fix (bad data,
a bad key, a missing model) fails the task at once instead of waiting for retries. Call them inside a
`@task` function; importing this module loads no pandas, Feast or MLflow, so DAG parsing stays fast.

    from aerodrome_airflow import tasks

    @task
    def score(**context):
        ds = tasks.run_partition(context, "flight_delay")
        return tasks.score_partition("flight_delay", ds)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aerodrome_airflow.operators import announce, fail_without_retry, partition_day, spec_and_storage

if TYPE_CHECKING:
    import pandas as pd
    from aerodrome.scoring import RegisteredModel
    from aerodrome.usecase import UseCase

ZONES = ("raw", "validated", "quarantine", "features", "scores")


@contextmanager
def failing_at_once() -> Iterator[None]:
    """Turn the library's actionable errors (bad data, spec, key) into a task failure without retries."""
    from aerodrome.errors import AerodromeError

    try:
        yield
    except AerodromeError as exc:
        raise fail_without_retry(str(exc)) from None


def load_spec(usecase: str) -> UseCase:
    """The use case's checked spec (`include/usecases/<usecase>/usecase.yaml`, or AERODROME_USECASES_DIR)."""
    with failing_at_once():
        return spec_and_storage(usecase)[1]


def latest_partition(usecase: str, zone: str = "features") -> str | None:
    """The newest day (YYYY-MM-DD) of a zone of the use case, or None: `features` = newest featured day."""
    from aerodrome.scoring import latest_partition as newest

    if zone not in ZONES:
        raise fail_without_retry(f"zone {zone!r} is unknown: use one of {', '.join(ZONES)}")
    with failing_at_once():
        _, spec, storage = spec_and_storage(usecase)
        day = newest(spec, storage, zone)
    return day.isoformat() if day else None


def run_partition(context: Any, usecase: str, zone: str = "features") -> str:
    """The day a run works on: its partition key, else the trigger form's `ds`, else the newest day of `zone`.

    A key outside the spec's schedule, or a form date that contradicts the key, fails at once.
    """
    key = context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)
    if key or (context.get("params") or {}).get("ds"):
        with failing_at_once():
            return partition_day(context, load_spec(usecase))
    newest = latest_partition(usecase, zone)
    if newest is None:
        raise fail_without_retry(f"use case {usecase!r} has no {zone} partition yet: nothing to work on")
    return newest


def read_partition(usecase: str, ds: str, zone: str = "validated") -> pd.DataFrame:
    """The rows of one partition of a zone (`raw`, `validated`, `quarantine`, `scores`) as a frame."""
    from aerodrome.ingest import partition_key
    from aerodrome.ingest import read_partition as read

    if zone not in ZONES or zone == "features":
        raise fail_without_retry(
            f"zone {zone!r} has no single partition file: use raw, validated, quarantine or scores"
        )
    _, _, storage = spec_and_storage(usecase)
    key = partition_key(zone, usecase, ds)
    if not storage.exists(key):
        raise fail_without_retry(f"{storage.uri(key)}: no {zone} partition for {ds}")
    return read(storage, key)


def load_model(usecase: str, alias: str = "champion") -> RegisteredModel:
    """The registered version `alias` of the use case's model, loaded (`.version`, `.predictor.predict(frame)`)."""
    from aerodrome.scoring import load_registered_model

    with failing_at_once():
        settings, spec, _ = spec_and_storage(usecase)
        return load_registered_model(spec, settings, alias)


def score_partition(usecase: str, ds: str, alias: str = "champion", *, skip_without_model: bool = True) -> dict:
    """Score partition `ds` with the model `alias` into `scores/<usecase>/date=<ds>/` (replaced on re-run).

    Without such a model yet (no champion) the task is skipped, not failed, unless `skip_without_model`
    is False. Returns the `ScoredPartition` as a dict (rows, version, uri, sha256, mean score).
    """
    from aerodrome.errors import AerodromeError
    from aerodrome.scoring import ModelNotFound
    from aerodrome.scoring import score_partition as score

    settings, spec, storage = spec_and_storage(usecase)
    try:
        return asdict(score(spec, settings, storage, ds, alias))
    except ModelNotFound as exc:
        if not skip_without_model:
            raise fail_without_retry(str(exc)) from None
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(str(exc)) from None
    except AerodromeError as exc:
        raise fail_without_retry(str(exc)) from None


def emit_partition(context: Any, outlet: Any, ds: str, **extra: Any) -> None:
    """One asset event on `outlet` keyed by the day `ds` (downstream partitioned DAGs get that day)."""
    announce(context, [outlet], ds, **extra)
