"""Generate the DAGs of every use case from its spec, so onboarding a domain adds no DAG code."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from aerodrome.settings import Settings
from aerodrome.usecase import UseCase, discover_usecases
from aerodrome_airflow.assets import raw_asset
from aerodrome_airflow.operators import IngestPartitionOperator

INGEST_DOC = """
### Ingest `{name}`

{description}

Reads one data interval from the source (`{source_kind}`: `{source_where}`) and writes it as a single
Parquet partition `raw/{name}/date=YYYY-MM-DD/` under the data root, with a manifest (rows, sha256,
source). Re-running an interval **replaces** its partition: same result, never duplicates.
Emits the asset `raw/{name}`, which the validation DAG is scheduled on.

* Owner: `{owner}` · schedule `{schedule}` from {start} (catchup: {catchup})
* Trigger with **replay_drop** to let the demo feed (`{replay}`) drop the interval's file first.
* Spec: `include/usecases/{name}/usecase.yaml`
"""


def _utc(day) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def default_args(spec: UseCase) -> dict:
    return {"owner": spec.owner, "retries": 2, "retry_delay": timedelta(minutes=5)}


def build_ingest_dag(spec: UseCase) -> DAG:
    source = spec.source
    where = getattr(source, "path", None) or getattr(source, "table", "")
    with DAG(
        dag_id=f"ingest_{spec.name}",
        description=f"Ingest {spec.name} into raw/{spec.name}, one partition per interval",
        doc_md=INGEST_DOC.format(
            name=spec.name,
            description=spec.description,
            source_kind=source.kind,
            source_where=where,
            owner=spec.owner,
            # explicit data intervals: Airflow 3's cron default has zero-length intervals
        schedule=CronDataIntervalTimetable(spec.schedule.ingest, timezone="UTC"),
            start=spec.schedule.start_date,
            catchup=spec.schedule.catchup,
            replay=getattr(source, "replay", None) or "none",
        ),
        # explicit data intervals: Airflow 3's cron default has zero-length intervals
        schedule=CronDataIntervalTimetable(spec.schedule.ingest, timezone="UTC"),
        start_date=_utc(spec.schedule.start_date),
        end_date=_utc(spec.schedule.end_date) if spec.schedule.end_date else None,
        catchup=spec.schedule.catchup,
        max_active_runs=4,
        default_args=default_args(spec),
        tags=["aerodrome", "ingest", spec.name, *spec.tags],
        params={
            "replay_drop": Param(
                False,
                type="boolean",
                title="Replay demo drop",
                description="Drop the interval's file from the demo feed into the landing zone first.",
            )
        },
    ) as dag:
        IngestPartitionOperator(
            task_id="ingest_partition",
            usecase=spec.name,
            replay_drop="{{ params.replay_drop }}",
            outlets=[raw_asset(spec.name)],
            pool="ingestion",
            doc_md="Read the interval from the source, conform types, replace the raw partition.",
        )
    return dag


def build_usecase_dags(usecases_dir: Path | None = None) -> dict[str, DAG]:
    """All generated DAGs keyed by dag_id (for a DAG file's `globals()`)."""
    specs = discover_usecases(usecases_dir or Settings.from_env().usecases_dir)
    dags = [build_ingest_dag(spec) for spec in specs]
    return {dag.dag_id: dag for dag in dags}
