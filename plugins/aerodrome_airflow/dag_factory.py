"""Generate the DAGs of every use case from its spec, so onboarding a domain adds no DAG code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aerodrome.settings import Settings
from aerodrome.usecase import UseCase, discover_usecases
from airflow.sdk import DAG, AssetOrTimeSchedule, CronDataIntervalTimetable, CronTriggerTimetable, Param

from aerodrome_airflow.assets import features_asset, raw_asset, retrain_asset, validated_asset
from aerodrome_airflow.operators import (
    CheckFeatureFreshnessOperator,
    ComputeFeaturesOperator,
    IngestPartitionOperator,
    MaterializeFeaturesOperator,
    ValidatePartitionOperator,
)

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
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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


VALIDATE_DOC = """
### Validate `{name}`

Runs the use case's Great Expectations suite ({count} expectations from the spec, plus schema and
type checks) on each new raw partition. Scheduled on the asset `raw/{name}`; trigger by hand with
**ds** to (re)validate one day, and **release** to re-check a fixed partition from quarantine.

* **Pass** -> copied to `validated/{name}/date=YYYY-MM-DD/`, asset `validated/{name}` emitted.
* **Fail** -> moved to `quarantine/{name}/date=YYYY-MM-DD/` with `validation_result.json` and
  `reason.txt`; the task fails (no retry) with a readable summary; nothing downstream runs.
  Data Docs: `data_docs/{name}/index.html` under the data root. Nothing is ever deleted.
"""

FEATURES_DOC = """
### Features `{name}`

On each validated partition: compute the point-in-time correct feature rows ({views}) into the
offline store (`features/{name}/<view>/date=YYYY-MM-DD/`), apply the Feast definitions (only when
they changed; the incremental watermark is preserved), `materialize_incremental` into the online
store (SQLite or Redis, by `AERODROME_ONLINE_STORE`), then check freshness. Re-running a day gives
the same rows. Emits `features/{name}`.
"""


def _ds_params(release: bool = False) -> dict[str, Param]:
    params = {
        "ds": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Partition date",
            description="YYYY-MM-DD; empty = the days named by the triggering asset events.",
        )
    }
    if release:
        params["release"] = Param(
            False, type="boolean", title="Release from quarantine", description="Re-check a fixed partition."
        )
    return params


def build_validate_dag(spec: UseCase) -> DAG:
    with DAG(
        dag_id=f"validate_{spec.name}",
        description=f"Great Expectations gate: raw/{spec.name} -> validated/ or quarantine/",
        doc_md=VALIDATE_DOC.format(name=spec.name, count=len(spec.expectations)),
        schedule=[raw_asset(spec.name)],
        start_date=_utc(spec.schedule.start_date),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(spec),
        tags=["aerodrome", "validate", spec.name, *spec.tags],
        params=_ds_params(release=True),
    ) as dag:
        ValidatePartitionOperator(
            task_id="validate_partition",
            usecase=spec.name,
            ds="{{ params.ds }}",
            release="{{ params.release }}",
            outlets=[validated_asset(spec.name)],
        )
    return dag


def build_features_dag(spec: UseCase) -> DAG:
    views = ", ".join(v.name for v in spec.features.views) if spec.features else "none"
    with DAG(
        dag_id=f"features_{spec.name}",
        description=f"Feast features of {spec.name}: offline store, materialize online, freshness",
        doc_md=FEATURES_DOC.format(name=spec.name, views=views),
        schedule=[validated_asset(spec.name)],
        start_date=_utc(spec.schedule.start_date),
        catchup=False,
        max_active_runs=1,  # materializations must happen in order
        default_args=default_args(spec),
        tags=["aerodrome", "features", spec.name, *spec.tags],
        params={
            **_ds_params(),
            "strict_freshness": Param(False, type="boolean", title="Fail on stale feature views"),
        },
    ) as dag:
        compute = ComputeFeaturesOperator(task_id="compute_features", usecase=spec.name, ds="{{ params.ds }}")
        horizon = "{{ ti.xcom_pull(task_ids='compute_features')['horizon'] }}"
        publish = MaterializeFeaturesOperator(task_id="materialize_online", usecase=spec.name, end=horizon)
        fresh = CheckFeatureFreshnessOperator(
            task_id="check_freshness",
            usecase=spec.name,
            now=horizon,
            strict="{{ params.strict_freshness }}",
            outlets=[features_asset(spec.name)],
        )
        compute >> publish >> fresh
    return dag


TRAIN_DOC = """
### Train `{name}`

Builds the training set with the Feast point-in-time join over the window, splits by time
(train / validation / recent holdout), trains **{flavor}** with early stopping, evaluates overall and
per slice ({slices}), logs everything to MLflow (params, metrics, data fingerprint, features, code
version, signature) and registers a new version with alias `candidate`.

Backend by settings, never by DAG code: `AERODROME_TRAIN_BACKEND={backend}` (`local` = the same
entrypoint as a subprocess; `kubernetes` = a pod with {gpu} GPU(s), node selector and tolerations from
the spec). Runs weekly, on the asset `retrain_requested/{name}`, or by hand with the form below.
"""


def build_train_dag(spec: UseCase) -> DAG:
    from aerodrome_airflow.training import TrainingBackend, trainer_arguments

    backend = TrainingBackend()
    start = spec.schedule.start_date
    window_end = (spec.schedule.end_date or start) + timedelta(days=1)  # exclusive: the last day included
    with DAG(
        dag_id=f"train_{spec.name}",
        description=f"Train {spec.name} ({spec.model.flavor}) and register an MLflow candidate",
        doc_md=TRAIN_DOC.format(
            name=spec.name,
            flavor=spec.model.flavor,
            slices=", ".join(spec.model.slices) or "none",
            backend=backend.kind,
            gpu=backend.resources(spec.model.resources).gpu,
        ),
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("@weekly", timezone="UTC"), assets=[retrain_asset(spec.name)]
        ),
        start_date=_utc(start),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(spec),
        tags=["aerodrome", "train", spec.name, *spec.tags],
        params={
            "start": Param(str(start), type="string", format="date", title="Training window start"),
            "end": Param(str(window_end), type="string", format="date", title="Window end (exclusive)"),
            "holdout_start": Param(None, type=["null", "string"], title="Holdout from (default: last 25 %)"),
            "flavor": Param(spec.model.flavor, enum=["xgboost", "pytorch"], title="Model flavor"),
            "params": Param({}, type="object", title="Hyper-parameters (override the spec)"),
            "seed": Param(42, type="integer", title="Random seed"),
        },
    ) as dag:
        backend.operator(
            "train_model",
            spec.model.resources,
            trainer_arguments(
                spec.name,
                "{{ params.start }}",
                "{{ params.end }}",
                "{{ params.holdout_start or '' }}",
                "{{ params.seed }}",
                "{{ params.flavor }}",
                "{{ params.params | tojson }}",
            ),
            pool="training",
        )
    return dag


def build_usecase_dags(usecases_dir: Path | None = None) -> dict[str, DAG]:
    """All generated DAGs keyed by dag_id (for a DAG file's `globals()`)."""
    specs = discover_usecases(usecases_dir or Settings.from_env().usecases_dir)
    dags = [build_ingest_dag(spec) for spec in specs]
    dags += [build_validate_dag(spec) for spec in specs if spec.expectations]
    dags += [build_features_dag(spec) for spec in specs if spec.features]
    dags += [build_train_dag(spec) for spec in specs if spec.features]
    return {dag.dag_id: dag for dag in dags}
