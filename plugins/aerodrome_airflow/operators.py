"""Operators: thin adapters from the Airflow context to one aerodrome library call each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseOperator


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
        from aerodrome.settings import Settings
        from aerodrome.storage import open_storage
        from aerodrome.usecase import PostgresSource, load_usecase

        settings = Settings.from_env()
        spec = load_usecase(settings.usecases_dir / self.usecase)
        storage = open_storage(settings.data_root, settings)
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
        self.log.info("Wrote %d rows for %s to %s (from %s)", result.rows, result.ds, result.partition_uri, result.source)
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"ds": result.ds, "rows": result.rows, "uri": result.partition_uri}
        return asdict(result)
