"""Operators: thin adapters from the Airflow context to one aerodrome library call each."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseOperator


def _spec_and_storage(usecase: str):
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import load_usecase

    settings = Settings.from_env()
    return settings, load_usecase(settings.usecases_dir / usecase), open_storage(settings.data_root, settings)


def interval_days(context: Any, requested: str | None) -> list[str]:
    """The partitions (YYYY-MM-DD) a run works on: the `ds` param, else the triggering asset events."""
    if requested and str(requested).strip() not in ("", "None"):
        return [str(requested).strip()]
    days = {
        event.extra["ds"]
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if event.extra and "ds" in event.extra
    }
    if not days:
        raise ValueError("no partition to work on: trigger with the 'ds' param (YYYY-MM-DD) or from an asset event")
    return sorted(days)


def _emit(context: Any, outlets: list, days: list[str], **extra: Any) -> None:
    for outlet in outlets:
        # one event per partition, so downstream asset-scheduled runs know which days changed
        context["outlet_events"][outlet].extra = {"ds": days[-1], "days": days, **extra}


class IngestPartitionOperator(BaseOperator):
    """Ingest the data interval of `usecase` into its raw partition and report it on the raw asset.

    With `replay_drop` the use case's demo feed first drops the interval's file into the landing
    zone (for demos and manual runs on the embedded default).
    """

    template_fields: Sequence[str] = ("usecase", "replay_drop")
    ui_color = "#d6eaf8"

    def __init__(self, *, usecase: str, replay_drop: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase
        self.replay_drop = replay_drop

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.ingest import ingest_interval
        from aerodrome.ingest.run import landing_storage
        from aerodrome.landing import feed_for
        from aerodrome.usecase import PostgresSource

        _, spec, storage = _spec_and_storage(self.usecase)
        start, end = context["data_interval_start"], context["data_interval_end"]
        if str(self.replay_drop).lower() in ("true", "1") and spec.source.kind == "file_drop":
            if not spec.source.replay:
                raise ValueError(f"use case {spec.name!r} has no demo feed (source.replay) to drop from")
            drop = feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, [start.date()])[0]
            self.log.info("Replayed demo drop %s (%d rows)", drop.uri, drop.rows)
        dsn = None
        if isinstance(spec.source, PostgresSource):
            from aerodrome_airflow.connections import postgres_dsn

            dsn = postgres_dsn(spec.source.conn_id)
        result = ingest_interval(spec, storage, start, end, dsn=dsn)
        self.log.info(
            "Wrote %d rows for %s to %s (from %s)", result.rows, result.ds, result.partition_uri, result.source
        )
        _emit(context, self.outlets, [result.ds], rows=result.rows, uri=result.partition_uri)
        return asdict(result)


class ValidatePartitionOperator(BaseOperator):
    """Run the use case's Great Expectations suite on raw partitions: pass -> validated/, fail -> quarantine/.

    A failed suite fails the task without retries (AirflowFailException: retrying cannot change the data); the log shows
    which expectation, column, how many rows and example values, and where the result and Data Docs are.
    """

    template_fields: Sequence[str] = ("usecase", "ds")
    ui_color = "#d5f5e3"

    def __init__(self, *, usecase: str, ds: str | None = None, release: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase
        self.ds = ds
        self.release = release

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.validate import release_partition, validate_partition
        from airflow.sdk.exceptions import AirflowFailException

        _, spec, storage = _spec_and_storage(self.usecase)
        days = interval_days(context, self.ds)
        check = release_partition if str(self.release).lower() in ("true", "1") else validate_partition
        outcomes = [check(spec, storage, ds) for ds in days]
        for outcome in outcomes:
            self.log.info("%s", outcome.summary)
        failed = [o for o in outcomes if not o.passed]
        if failed:
            raise AirflowFailException("\n".join(o.summary for o in failed))
        _emit(context, self.outlets, days, rows=sum(o.rows for o in outcomes))
        return {"days": days, "rows": sum(o.rows for o in outcomes), "data_docs": outcomes[-1].data_docs_uri}


class ComputeFeaturesOperator(BaseOperator):
    """Compute the point-in-time correct feature rows of validated partitions into the offline store."""

    template_fields: Sequence[str] = ("usecase", "ds")
    ui_color = "#fdebd0"

    def __init__(self, *, usecase: str, ds: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase
        self.ds = ds

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.features import compute_features

        _, spec, storage = _spec_and_storage(self.usecase)
        days = interval_days(context, self.ds)
        results = [compute_features(spec, storage, ds) for ds in days]
        for r in results:
            self.log.info("Features for %s: %s rows per view", r.ds, r.rows)
        return {"days": days, "horizon": max(r.horizon for r in results).isoformat()}


class MaterializeFeaturesOperator(BaseOperator):
    """Apply the Feast definitions (only when they changed) and materialize up to `end` incrementally."""

    template_fields: Sequence[str] = ("usecase", "end")
    ui_color = "#fdebd0"

    def __init__(self, *, usecase: str, end: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase
        self.end = end

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import datetime

        from aerodrome.features import apply_definitions, materialize

        settings, spec, _ = _spec_and_storage(self.usecase)
        changed = apply_definitions(spec, settings)
        self.log.info("Feast definitions %s", "applied (changed)" if changed else "unchanged, apply skipped")
        with contextlib.redirect_stdout(io.StringIO()) as feast_output:  # Feast prints progress bars
            result = materialize(spec, settings, datetime.fromisoformat(self.end))
        self.log.debug("%s", feast_output.getvalue())
        for view in result.views:
            self.log.info(
                "materialized %s: %s .. %s, %d rows -> %d entities",
                view.view,
                view.start,
                view.end,
                view.rows,
                view.entities,
            )
        return {"online_store": result.online_store, "end": self.end, "seconds": round(result.seconds, 2)}


class CheckFeatureFreshnessOperator(BaseOperator):
    """Check every feature view's watermark and newest row are within its TTL of `now`.

    Stale views fail the task when `strict` is true; otherwise they are reported as warnings
    (the 2013 replay has a few multi-hour weather gaps).
    """

    template_fields: Sequence[str] = ("usecase", "now", "strict")
    ui_color = "#fdebd0"

    def __init__(self, *, usecase: str, now: str, strict: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usecase = usecase
        self.now = now
        self.strict = strict

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import datetime

        from aerodrome.features import check_freshness
        from airflow.sdk.exceptions import AirflowFailException

        settings, spec, _ = _spec_and_storage(self.usecase)
        result = check_freshness(spec, settings, datetime.fromisoformat(self.now))
        summary = result.summary()
        if result.ok:
            self.log.info("%s", summary)
        elif str(self.strict).lower() in ("true", "1"):
            raise AirflowFailException(summary)
        else:
            self.log.warning("%s", summary)
        _emit(context, self.outlets, [self.now[:10]], fresh=result.ok)
        return {"fresh": result.ok, "stale": [v.view for v in result.views if not v.ok]}
