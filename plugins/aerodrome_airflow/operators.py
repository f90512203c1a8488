"""Operators: thin adapters from the Airflow context to one aerodrome library call each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from aerodrome_airflow.logs import quiet_third_party_loggers


def spec_and_storage(usecase: str):
    """Settings, the checked spec and the data storage; a broken spec fails the task at once (no retry)."""
    from aerodrome.errors import PermanentError, SpecError
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import load_usecase

    quiet_third_party_loggers()
    settings = Settings.from_env()
    try:
        spec = load_usecase(settings.usecases_dir / usecase)
    except SpecError as exc:
        raise fail_without_retry(str(exc)) from None
    storage = open_storage(settings.data_root, settings)
    try:
        storage.check_residency()  # every place the task may write (bucket, databases), before its first byte
    except PermanentError as exc:
        raise fail_without_retry(str(exc)) from None
    return settings, spec, storage


def fail_without_retry(message: str) -> Exception:
    """The exception for an error no retry can fix (bad data, bad key): the task fails at once."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def partition_day(context: Any, spec) -> str:
    """The day (YYYY-MM-DD) a run works on: its partition key, else the trigger form's `ds`.

    A key that is not a day of the schedule, or a form date that contradicts the key, fails at once
    (no retry can fix it).
    """
    from aerodrome.partitions import PartitionKeyError, parse_day

    key = context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)
    requested = (context.get("params") or {}).get("ds") or None
    if key and requested and str(requested) != str(key):
        message = f"the form's ds={requested} contradicts the run's partition key {key!r}: leave ds empty"
        raise fail_without_retry(message)
    if not (key or requested):
        raise fail_without_retry(
            "no partition to work on: pick the day in the form's 'ds' field, or trigger through the REST "
            "API with partition_key=YYYY-MM-DD"
        )
    try:
        return parse_day(key or requested, spec).isoformat()
    except PartitionKeyError as exc:
        raise fail_without_retry(str(exc)) from None


def announce(context: Any, outlets: list, keys: str | list[str], **extra: Any) -> None:
    """One asset event per partition key on each outlet, so each downstream partitioned run gets its day."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    for outlet in outlets:
        event = context["outlet_events"][outlet]
        event.add_partitions(keys)
        event.extra = {"ds": keys[-1], **extra} if len(keys) == 1 else {"partitions": keys, **extra}


def form_param(context: Any, name: str, default: Any = None) -> Any:
    """A trigger-form value as its native type (params are rendered, never re-parsed from strings)."""
    return (context.get("params") or {}).get(name, default)


class UseCaseOperator(BaseOperator):
    """An operator of one use case (`usecase`: the folder name under the use-cases directory)."""

    template_fields: Sequence[str] = ("usecase",)

    def __init__(self, *, usecase: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase


class DatasetOperator(UseCaseOperator):
    """An operator of one dataset of a use case: its main source, or its second source `source` (spec `sources:`)."""

    template_fields: Sequence[str] = ("usecase", "source")

    def __init__(self, *, source: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source

    def dataset_and_storage(self):
        """`spec_and_storage`, the spec being the dataset's (`aerodrome.ingest.datasets.dataset_spec`)."""
        from aerodrome.errors import SpecError
        from aerodrome.ingest.datasets import dataset_spec

        settings, spec, storage = spec_and_storage(self.usecase)
        try:
            return settings, dataset_spec(spec, self.source), storage
        except SpecError as exc:
            raise fail_without_retry(str(exc)) from None


class IngestPartitionOperator(DatasetOperator):
    """Ingest one day of `usecase` (the run's partition) into its raw partition and announce it.

    With the form's `replay_drop` the use case's demo feed first drops the day's file into the landing
    zone (for demos and manual runs on the embedded default).
    """

    ui_color = "#d6eaf8"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import PermanentError
        from aerodrome.ingest import ingest_interval
        from aerodrome.ingest.run import landing_storage
        from aerodrome.landing import feed_for
        from aerodrome.usecase import PostgresSource

        _, spec, storage = self.dataset_and_storage()
        day = datetime.fromisoformat(partition_day(context, spec)).replace(tzinfo=UTC)
        start, end = day, day + timedelta(days=1)
        if form_param(context, "replay_drop", False) and spec.source.kind == "file_drop":
            if not spec.source.replay:
                raise fail_without_retry(f"use case {spec.name!r} has no demo feed (source.replay) to drop from")
            drop = feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, [start.date()])[0]
            self.log.info("Replayed demo drop %s (%d rows)", drop.uri, drop.rows)
        dsn = None
        if isinstance(spec.source, PostgresSource):
            from aerodrome_airflow.connections import postgres_dsn

            dsn = postgres_dsn(spec.source.conn_id)
        try:
            result = ingest_interval(spec, storage, start, end, dsn=dsn)
        except PermanentError as exc:  # a missing column or a bad value: the same data fails every retry
            raise fail_without_retry(str(exc)) from None
        self.log.info(
            "Wrote %d rows for %s to %s (from %s)", result.rows, result.ds, result.partition_uri, result.source
        )
        announce(context, self.outlets, result.ds, rows=result.rows, uri=result.partition_uri)
        return asdict(result)


class ValidatePartitionOperator(DatasetOperator):
    """Run the use case's Great Expectations suite on the run's raw partition: pass -> validated/, fail -> quarantine/.

    A failed suite fails the task without retries (AirflowFailException: retrying cannot change the data); the
    first line says which expectation, column, how many rows and example values, and where the evidence is.
    With the form's `release`, a fixed partition is re-checked in quarantine and, if it passes, published.
    """

    ui_color = "#d5f5e3"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.validate import release_partition, validate_partition

        _, spec, storage = self.dataset_and_storage()
        ds = partition_day(context, spec)
        release = bool(form_param(context, "release", False))
        try:
            outcome = (release_partition if release else validate_partition)(spec, storage, ds)
        except AerodromeError as exc:
            raise fail_without_retry(str(exc)) from None
        if not outcome.passed:
            raise fail_without_retry(outcome.summary)
        self.log.info("%s", outcome.summary)
        announce(context, self.outlets, ds, rows=outcome.rows, released=release)
        return {"ds": ds, "rows": outcome.rows, "released": release, "data_docs": outcome.data_docs_uri}


class AnnounceCompanionsOperator(DatasetOperator):
    """After a day validated again in one dataset, re-announce its companions' validated day (skipped otherwise).

    The features of a day wait for the day validated in every dataset of the use case; a re-run of one side
    (a fixed drop, a release) would otherwise wait for the other side's event, consumed by the first run.
    """

    ui_color = "#eaeded"

    def execute(self, context: Any) -> list[str]:
        from aerodrome.partitions import companions_to_reannounce
        from airflow.sdk.exceptions import AirflowSkipException

        _, spec, storage = spec_and_storage(self.usecase)
        ds = partition_day(context, spec)
        started = getattr(context.get("dag_run"), "start_date", None)  # features after it saw this validation
        companions = companions_to_reannounce(storage, spec, self.source, ds, since=started)
        if not companions:
            raise AirflowSkipException(
                f"{ds}: not featured yet, featured since this run began, or a companion is not validated: "
                "nothing to redo"
            )
        self.log.info("%s was featured before: re-announcing the validated day of %s", ds, ", ".join(companions))
        announce(context, self.outlets, ds, reason="companion re-validated")
        return companions


class PublishFeaturesOperator(UseCaseOperator):
    """The run's validated day through the feature store, in one task (one process, Feast loaded once).

    Computes the day's point-in-time correct rows into the offline store, applies the Feast definitions
    only when they changed, materializes the online store up to the day's horizon, checks freshness,
    records the day as featured and announces it. Days run in parallel: the online step goes only up
    to the newest day whose predecessors all have their rows, and is left to the last of a batch
    still computing (Sundays always materialize; `aerodrome.features.publish`).
    Stale views fail the task when the form's `strict_freshness` is set; otherwise they are warnings
    (the 2013 replay has a few weather gaps). A second source's partition of the day not validated yet is
    retried (it may arrive); a quarantined one fails at once, naming its reason.
    """

    ui_color = "#fdebd0"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.features import publish_day
        from aerodrome.ingest.datasets import SourcePartitionMissing

        settings, spec, storage = spec_and_storage(self.usecase)
        ds = partition_day(context, spec)
        try:
            published = publish_day(spec, settings, storage, ds)
        except SourcePartitionMissing:
            raise  # a second source's day not validated yet may still arrive: Airflow's retries wait for it
        except AerodromeError as exc:
            raise fail_without_retry(str(exc)) from None
        for line in published.lines():
            self.log.info("%s", line)
        if published.freshness is not None and not published.freshness.ok:
            if form_param(context, "strict_freshness", False):
                raise fail_without_retry(published.freshness.summary())
            self.log.warning("%s", published.freshness.summary())
        announce(context, self.outlets, ds, fresh=published.fresh, online_up_to=published.online_up_to)
        return {
            "ds": ds,
            "horizon": published.written.horizon.isoformat(),
            "rows": published.written.rows,
            "fresh": published.fresh,
            "online_up_to": published.online_up_to,
            "seconds": published.seconds,
        }


class SweepPartitionsOperator(DatasetOperator):
    """Compare the zones (raw, validated, quarantine, featured) and list what was left behind.

    Returns the partitions to re-announce and the weeks to close; the announce tasks after it emit them.
    A partition is re-announced only when the previous sweep saw it behind too, unless `immediate`.
    Under `source_field(source)`, the unfeatured days each second source has validated: the features run of a
    day waits for every source's event of the day, so each is announced again, not only the main source's.
    """

    ui_color = "#eaeded"

    @staticmethod
    def source_field(source: str) -> str:
        """The result's field listing the unfeatured days second source `source` has validated."""
        return f"unfeatured_{source}"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.partitions import sweep

        _, spec, storage = self.dataset_and_storage()
        found = sweep(storage, spec, immediate=bool(form_param(context, "immediate", False)))
        self.log.info("%s", found.summary())
        return {
            "unvalidated": list(found.unvalidated),
            "unfeatured": list(found.unfeatured),
            "weeks": list(found.closable_weeks),
            **{self.source_field(s): list(days) for s, days in found.source_unfeatured.items()},
        }


class AnnouncePartitionsOperator(BaseOperator):
    """Emit one keyed event per partition that `sweep_task` found under `field` (skipped when there is none)."""

    template_fields: Sequence[str] = ("sweep_task", "field", "reason")
    ui_color = "#eaeded"

    def __init__(self, *, sweep_task: str, field: str, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweep_task = sweep_task
        self.field = field
        self.reason = reason

    def execute(self, context: Any) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        keys = (context["ti"].xcom_pull(task_ids=self.sweep_task) or {}).get(self.field) or []
        if not keys:
            raise AirflowSkipException(f"nothing left behind ({self.field})")
        self.log.info("Re-announcing %d partition(s) (%s): %s", len(keys), self.reason, ", ".join(keys))
        announce(context, self.outlets, keys, reason=self.reason)
        return keys
