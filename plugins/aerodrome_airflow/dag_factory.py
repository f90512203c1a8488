"""Generate the DAGs of every use case from its spec, so onboarding a domain adds no DAG code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aerodrome.ingest.datasets import dataset_name, dataset_spec
from aerodrome.settings import Settings
from aerodrome.usecase import SPEC_FILE, UseCase
from airflow.sdk import (
    DAG,
    CronPartitionTimetable,
    CronTriggerTimetable,
    IdentityMapper,
    Param,
    PartitionedAssetTimetable,
    RollupMapper,
    StartOfWeekMapper,
    WaitForAll,
    WeekWindow,
)

from aerodrome_airflow.assets import (
    candidate_asset,
    challenger_asset,
    champion_asset,
    features_asset,
    raw_asset,
    retrain_asset,
    validated_asset,
)
from aerodrome_airflow.candidates import AnnounceCandidateOperator, PlanTrainingWindowOperator
from aerodrome_airflow.drift import CheckDriftOperator
from aerodrome_airflow.operators import (
    AnnounceCompanionsOperator,
    AnnouncePartitionsOperator,
    IngestPartitionOperator,
    PublishFeaturesOperator,
    SweepPartitionsOperator,
    ValidatePartitionOperator,
)
from aerodrome_airflow.promotion import JudgeCandidateOperator, MoveAliasOperator

DAY_KEY = "%Y-%m-%d"  # one partition = one day; aerodrome.partitions.DAY_FORMAT

INGEST_DOC = """
### Ingest `{name}`

{description}

One run = one day = one **partition** (the run's partition key, `YYYY-MM-DD`). Reads that day from the
source (`{source_kind}`: `{source_where}`) and writes it as a single Parquet partition
`raw/{name}/date=YYYY-MM-DD/` under the data root, with a manifest (rows, sha256, source). Re-running a
day **replaces** its partition: same result, never duplicates. Emits `raw/{name}` for that partition
key; the validation DAG runs once per key.

* Owner: `{owner}` · one partition per day from {start} to {end} at `{cron}` UTC after the day ends
  (catch-up: {catchup})
* Manual run: pick the day in **ds** (that day is ingested), or `POST /api/v2/dags/ingest_{name}/dagRuns`
  with `{{"partition_key": "YYYY-MM-DD", "logical_date": null}}`. Manual runs never block catch-up.
* **replay_drop** lets the demo feed (`{replay}`) drop the day's file first.
* Spec: `include/usecases/{usecase}/usecase.yaml`
"""


def _utc(day) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def default_args(spec: UseCase) -> dict:
    return {"owner": spec.owner, "retries": 2, "retry_delay": timedelta(minutes=5)}


def stage_dag(spec: UseCase, stage: str, **settings) -> DAG:
    """The DAG `<stage>_<use case>`: owned and tagged from the spec, starting with its schedule, no catch-up
    (events and sweeps start its runs); `settings` add to or override these."""
    base = {
        "dag_id": f"{stage}_{spec.name}",
        "start_date": _utc(spec.schedule.start_date),
        "catchup": False,
        "default_args": default_args(spec),
        "tags": ["aerodrome", stage, spec.name, *spec.tags],
    }
    return DAG(**{**base, **settings})


def _ds_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        format="date",
        title="Partition (day)",
        description="The day this manual run works on. Leave empty when the run has a partition key.",
    )


def dataset_settings(spec: UseCase, stage: str, source: str | None) -> dict:
    """DAG settings of a second source's DAG: tagged with its use case too."""
    if not source:
        return {}
    return {"tags": ["aerodrome", stage, "source", spec.name, dataset_name(spec.name, source), *spec.tags]}


SOURCE_DOC = """
**Second source `{source}` of `{usecase}`** (spec `sources.{source}`): ingested and validated like the
main source, on the same days (partition keys), into `raw|validated|quarantine/{name}/`. The features
of a day (`features_{usecase}`) start only once this source's partition of the day is validated too.
"""


def build_ingest_dag(spec: UseCase, source: str | None = None) -> DAG:
    data = dataset_spec(spec, source)
    where = getattr(data.source, "path", None) or getattr(data.source, "table", "")
    last = spec.schedule.end_date
    doc_extra = SOURCE_DOC.format(source=source, usecase=spec.name, name=data.name) if source else ""
    with stage_dag(
        data,
        "ingest",
        description=f"Ingest {data.name} into raw/{data.name}, one partition per interval",
        doc_md=doc_extra
        + INGEST_DOC.format(
            name=data.name,
            description=spec.description,
            source_kind=data.source.kind,
            source_where=where,
            owner=spec.owner,
            cron=spec.schedule.ingest,
            start=spec.schedule.start_date,
            end=last or "open-ended",
            catchup=spec.schedule.catchup,
            replay=getattr(data.source, "replay", None) or "none",
            usecase=spec.name,
        ),
        # the run at midnight after a day ingests that day (run_offset=-1): its key is the day, not the next
        schedule=CronPartitionTimetable(spec.schedule.ingest, timezone="UTC", run_offset=-1, key_format=DAY_KEY),
        start_date=_utc(spec.schedule.start_date) + timedelta(days=1),
        end_date=_utc(last) + timedelta(days=1) if last else None,
        catchup=spec.schedule.catchup,
        max_active_runs=4,
        params={
            "ds": _ds_param(),
            "replay_drop": Param(
                False,
                type="boolean",
                title="Replay demo drop",
                description="Drop the day's file from the demo feed into the landing zone first.",
            ),
        },
        **dataset_settings(spec, "ingest", source),
    ) as dag:
        ingest = IngestPartitionOperator(
            task_id="ingest_partition",
            usecase=spec.name,
            source=source,
            outlets=work_outlets(data, "ingest", [raw_asset(data.name)]),
            pool="ingestion",
            doc_md="Read the interval from the source, conform types, replace the raw partition.",
        )
        with_extensions(data, "ingest", ingest, [raw_asset(data.name)])
    return dag


VALIDATE_DOC = """
### Validate `{name}`

Runs the use case's Great Expectations suite ({count} expectations from the spec, plus schema and
type checks) on one raw partition per run: each `raw/{name}` event starts one run keyed by its day
(partitioned asset, identity mapping), so a failed day fails only its own run. By hand: pick the day in
**ds** (or the REST API's `partition_key`); tick **release** to re-check a fixed partition in quarantine
and, if it passes, publish it and send it on to features.

* **Pass** -> copied to `validated/{name}/date=YYYY-MM-DD/`, asset `validated/{name}` emitted.
* **Fail** -> moved to `quarantine/{name}/date=YYYY-MM-DD/` with `validation_result.json` and
  `reason.txt`; the task fails (no retry) with a readable summary; nothing downstream runs.
  Data Docs: `data_docs/{name}/index.html` under the data root. Nothing is ever deleted.
"""

FEATURES_DOC = """
### Features `{name}`

One run per validated partition (keyed by its day), one task (`publish_features`: one process, Feast
loaded once): compute the point-in-time correct feature rows ({views}) into the offline store
(`features/{name}/<view>/date=YYYY-MM-DD/`), apply the Feast definitions (only when they changed; the
incremental watermark is preserved), `materialize_incremental` into the online store (SQLite or Redis,
by `AERODROME_ONLINE_STORE`) up to the newest day whose predecessors all have their rows, check
freshness and record the day as featured. Four days run at once; in a catch-up the online step is left
to the last of a batch (and done every Sunday). The task log lists each step with its time.
Re-running a day gives the same rows. Emits `features/{name}` for the day; a week
of featured days starts one training run.{sources}
"""


def build_validate_dag(spec: UseCase, source: str | None = None) -> DAG:
    data = dataset_spec(spec, source)
    doc_extra = SOURCE_DOC.format(source=source, usecase=spec.name, name=data.name) if source else ""
    with stage_dag(
        data,
        "validate",
        description=f"Great Expectations gate: raw/{data.name} -> validated/ or quarantine/",
        doc_md=doc_extra + VALIDATE_DOC.format(name=data.name, count=len(data.expectations)),
        schedule=PartitionedAssetTimetable(assets=raw_asset(data.name), default_partition_mapper=IdentityMapper()),
        max_active_runs=4,  # one partition per run: days are independent
        params={
            "ds": _ds_param(),
            "release": Param(
                False,
                type="boolean",
                title="Release from quarantine",
                description="Re-check the day's fixed partition in quarantine; publish it if it passes.",
            ),
        },
        **dataset_settings(spec, "validate", source),
    ) as dag:
        validated = [validated_asset(data.name)]
        validate = ValidatePartitionOperator(
            task_id="validate_partition",
            usecase=spec.name,
            source=source,
            outlets=work_outlets(data, "validate", validated),
        )
        _, last = with_extensions(data, "validate", validate, validated)
        if spec.sources:  # a day validated again after its features: the other datasets' day once more
            from aerodrome.partitions import companion_datasets

            last >> AnnounceCompanionsOperator(
                task_id="reannounce_companions",
                usecase=spec.name,
                source=source,
                outlets=[validated_asset(name) for name in companion_datasets(spec, source)],
                doc_md="Skipped on a first pass. When the day was featured already, re-announces the other "
                "datasets' validated day so the features run again with this fix.",
            )
    return dag


def validated_assets(spec: UseCase):
    """What a features run of a day waits for: the day validated in the main source and in every second source."""
    datasets = [spec.name, *(dataset_name(spec.name, source) for source in spec.sources)]
    return functools.reduce(lambda left, right: left & right, [validated_asset(name) for name in datasets])


def features_sources_doc(spec: UseCase) -> str:
    if not spec.sources:
        return ""
    waits = ", ".join(f"`validated/{dataset_name(spec.name, s)}`" for s in spec.sources)
    return f"\n\nA run of a day starts once the day is validated in `validated/{spec.name}` **and** {waits}."


def build_features_dag(spec: UseCase) -> DAG:
    views = ", ".join(v.name for v in spec.features.views) if spec.features else "none"
    with stage_dag(
        spec,
        "features",
        description=f"Feast features of {spec.name}: offline store, materialize online, freshness",
        doc_md=FEATURES_DOC.format(name=spec.name, views=views, sources=features_sources_doc(spec)),
        schedule=PartitionedAssetTimetable(assets=validated_assets(spec), default_partition_mapper=IdentityMapper()),
        max_active_runs=4,  # days compute in parallel; the online step waits for its frontier (publish_day)
        params={
            "ds": _ds_param(),
            "strict_freshness": Param(False, type="boolean", title="Fail on stale feature views"),
        },
    ) as dag:
        featured = [features_asset(spec.name)]
        publish = PublishFeaturesOperator(
            task_id="publish_features", usecase=spec.name, outlets=work_outlets(spec, "features", featured)
        )
        with_extensions(spec, "features", publish, featured)
    return dag


TRAIN_DOC = """
### Train `{name}`

A **rollup**: once every day of a week is featured (`features/{name}` events, `WeekWindow`, wait for
all 7), one run starts keyed by that week (`2013-01-07 (W02)`) and trains on the sliding window of
`model.window_days` = {window_days} days that ends with the week. A week that can never complete (a
quarantined day, the schedule's first or last week) is closed by `reconcile_{name}` with a
`retrain_requested/{name}` event for the week once at least `model.min_week_days` = {min_days} of its
days are featured; drift requests use the same asset.

Builds the training set with the Feast point-in-time join, splits by time (train / validation / recent
holdout), trains **{flavor}** with early stopping, evaluates overall and per slice ({slices}), logs to
MLflow (params, metrics, data fingerprint, features, code version, signature, the Airflow run) and
registers a version with alias `candidate`, then announces it on `candidate/{name}` (the event carries
the version; promotion is scheduled on it).

Backend by settings, never by DAG code: `AERODROME_TRAIN_BACKEND={backend}` (`local` = the same
entrypoint as a subprocess; `kubernetes` = a pod with {gpu} GPU(s), node selector and tolerations from
the spec). A manual run (form below, no partition key) trains on the window that ends with the newest
featured day unless **end** says otherwise.
"""


def build_train_dag(spec: UseCase) -> DAG:
    from aerodrome_airflow.training import TrainingBackend, trainer_arguments

    backend = TrainingBackend()
    featured, retrain = features_asset(spec.name), retrain_asset(spec.name)
    weekly = RollupMapper(
        upstream_mapper=StartOfWeekMapper(input_format=DAY_KEY), window=WeekWindow(), wait_policy=WaitForAll()
    )
    plan = "ti.xcom_pull(task_ids='plan_window')"
    with stage_dag(
        spec,
        "train",
        description=f"Train {spec.name} ({spec.model.flavor}) on each week's sliding window; announce the candidate",
        doc_md=TRAIN_DOC.format(
            name=spec.name,
            flavor=spec.model.flavor,
            slices=", ".join(spec.model.slices) or "none",
            backend=backend.kind,
            gpu=backend.resources(spec.model.resources).gpu,
            window_days=spec.model.window_days,
            min_days=spec.model.min_week_days,
        ),
        schedule=PartitionedAssetTimetable(
            assets=featured | retrain,
            partition_mapper_config={featured: weekly, retrain: IdentityMapper()},
        ),
        max_active_runs=1,
        params={
            "start": Param(None, type=["null", "string"], format="date", title="Window start (default: end - window)"),
            "end": Param(
                None, type=["null", "string"], format="date", title="Window end, exclusive (default: newest day + 1)"
            ),
            "window_days": Param(
                spec.model.window_days, type="integer", minimum=1, title="Sliding window length (days)"
            ),
            "holdout_start": Param(None, type=["null", "string"], title="Holdout from (default: last 25 %)"),
            "flavor": Param(spec.model.flavor, enum=["xgboost", "pytorch"], title="Model flavor"),
            "params": Param({}, type="object", title="Hyper-parameters (override the spec)"),
            "seed": Param(42, type="integer", title="Random seed"),
        },
    ) as dag:
        window = PlanTrainingWindowOperator(task_id="plan_window", usecase=spec.name)
        train = backend.operator(
            "train_model",
            spec.model.resources,
            trainer_arguments(
                spec.name,
                f"{{{{ {plan}['start'] }}}}",
                f"{{{{ {plan}['end'] }}}}",
                f"{{{{ {plan}['holdout_start'] }}}}",
                "{{ params.seed }}",
                "{{ params.flavor }}",
                "{{ params.params | tojson }}",
            ),
            pool="training",
        )
        announce = AnnounceCandidateOperator(
            task_id="announce_candidate", usecase=spec.name, outlets=[candidate_asset(spec.name)]
        )
        first, last = with_extensions(spec, "train", train, [])
        window >> first
        last >> announce
    return dag


PROMOTE_DOC = """
### Promote `{name}`

One run per new candidate: each `candidate/{name}` event (a training run registered a version) is keyed
`v<version>` and starts one run with that key. By hand: a version in the form (default: `@candidate`).

`judge_candidate` scores the candidate and the current `champion` on the **same** rows (the candidate's
recent holdout window, built by the same point-in-time join as training), then applies the gates of
the spec (`promotion:`):

| gate | passes when |
|---|---|
| artifact | the model files hash to the digest recorded at training (an altered artifact is never loaded) |
| signature | the MLflow input signature equals the serving schema (numeric features + category strings) |
| metric | `{metric}` improves on the champion by at least {min_improvement} (or no champion yet) |
| slices | no slice ({slices}) loses significantly more than {max_slice} (family-wise alpha {alpha}) |
| baselines | `{metric}` beats the task's naive baselines (recorded by the trainer) by {margin} |
| latency | a 1-row prediction's p99 is at most {latency} ms |

Differences are absolute for AUCs and relative for error metrics. The verdict goes to the version's
tags (`promotion.status`, `promotion.reasons`) and to `registry/{name}/promotions/v<version>.json`;
the log lists every gate. **Rejected**: the rest is skipped and no alias moves. **Passed**:
{approval}`set_challenger` gives it `@challenger` and emits `challenger/{name}` (the canary starts), or
when no champion serves yet, `set_champion` makes it `@champion` at once (nothing to canary against).
Every alias move is appended to `registry/{name}/alias_moves/` (hash-chained: who, when, from, to, why).
"""


def build_promote_dag(spec: UseCase) -> DAG:
    policy = spec.promotion
    with stage_dag(
        spec,
        "promote",
        description=f"Promotion gates for each {spec.name} candidate: @challenger (or first @champion) or rejected",
        doc_md=PROMOTE_DOC.format(
            name=spec.name,
            metric=policy.metric,
            min_improvement=policy.min_improvement,
            slices=", ".join(spec.model.slices) or "none declared",
            max_slice=policy.max_slice_regression,
            alpha=policy.slice_alpha,
            margin=policy.min_baseline_margin,
            latency=policy.latency_budget_ms,
            approval="a person approves in the UI (`approve`, required by the spec), then " * policy.require_approval,
        ),
        schedule=PartitionedAssetTimetable(
            assets=candidate_asset(spec.name), default_partition_mapper=IdentityMapper()
        ),
        max_active_runs=1,  # judged one at a time: each against the champion of the moment
        params={
            "version": Param(
                None, type=["null", "string"], title="Version", description="Default: the @candidate version"
            ),
        },
    ) as dag:
        judge = JudgeCandidateOperator(task_id="judge_candidate", usecase=spec.name)
        setters = [
            MoveAliasOperator(
                task_id="set_challenger", usecase=spec.name, alias="challenger", outlets=[challenger_asset(spec.name)]
            ),
            MoveAliasOperator(
                task_id="set_champion", usecase=spec.name, alias="champion", outlets=[champion_asset(spec.name)]
            ),
        ]
        if policy.require_approval:
            # only here: the HITL operator imports ~25 provider modules, ~15 ms of every parse process
            from aerodrome_airflow.approval import AuditedApprovalOperator

            verdict = "ti.xcom_pull(task_ids='judge_candidate')"
            approve = AuditedApprovalOperator(
                task_id="approve",
                subject=(
                    f"Promote {spec.name} v{{{{ {verdict}['candidate'] }}}} to @{{{{ {verdict}['target_alias'] }}}}?"
                ),
                body=f"```\n{{{{ {verdict}['summary'] }}}}\n```",
                response_timeout=timedelta(days=7),
            )
            judge >> approve >> setters
        else:
            judge >> setters
    return dag


CANARY_DOC = """
### Canary `{name}`

One run per new challenger: each `challenger/{name}` event (a version passed its promotion gates) is
keyed `v<version>`. By hand: a version in the form (default: the current `@challenger`).

Steps the challenger's share of live traffic through the model gateway ({steps} %). After each step
the task **defers** (no worker slot held) for {minutes:g} min of traffic, watched by
`CanaryWindowTrigger` in the triggerer, then judges the challenger against the champion on the same
window: enough traffic (≥ {min_requests} requests), error rate ≤ {max_error_rate:.1%}, p99 latency ≤ {p99:g}
ms and ≤ {ratio:g}x the champion's, prediction shift (PSI) ≤ {psi:g}, and once outcomes arrive the online
metric no more than {online:.0%} worse. Clear harm (errors, latency) stops the wait early.

* **All steps pass** → `crown`: `@champion` moves to it (the previous champion stays registered),
  the gateway reloads, traffic split back to 0 %, `champion/{name}` emitted.
* **A step fails** → `rollback`: traffic to 0 % at once, alias `rejected` with the reason (also on
  the version's tags and `registry/{name}/canary/`), an alert (log + `AERODROME_ALERT_CALLBACK`).
  The run is failed, and the failed step's log says why. A challenger that errors never fails a
  client: the gateway answers with the champion.

The gateway: Airflow connection `aerodrome_gateway` if defined, else the one `make up` starts.
"""

ROLLBACK_DOC = """
### Roll back `{name}`

By hand only: points `@champion` back at the previous champion (from the alias history under
`registry/{name}/alias_moves/`), or at the **version** in the form; sets the challenger's traffic to 0 %
and reloads the gateway. The move is recorded with who triggered it and the **reason**.
"""


def build_canary_dag(spec: UseCase) -> DAG:
    from airflow.sdk import TriggerRule

    from aerodrome_airflow.canary import CanaryStepOperator, CrownChallengerOperator, RollbackCanaryOperator

    policy = spec.canary
    with stage_dag(
        spec,
        "canary",
        description=f"Canary of each {spec.name} challenger through the gateway: crown it or roll it back",
        doc_md=CANARY_DOC.format(
            name=spec.name,
            steps=" → ".join(f"{p:g}" for p in policy.steps),
            minutes=policy.analysis_minutes,
            min_requests=policy.min_requests,
            max_error_rate=policy.max_error_rate,
            p99=policy.max_p99_latency_ms,
            ratio=policy.max_latency_ratio,
            psi=policy.max_prediction_psi,
            online=policy.max_online_regression,
        ),
        schedule=PartitionedAssetTimetable(
            assets=challenger_asset(spec.name), default_partition_mapper=IdentityMapper()
        ),
        max_active_runs=1,
        params={
            "version": Param(
                None, type=["null", "string"], title="Version", description="Default: the @challenger version"
            ),
        },
    ) as dag:
        steps = [
            CanaryStepOperator(task_id=f"step_{p:g}".replace(".", "_"), usecase=spec.name, percent=p)
            for p in policy.steps
        ]
        crown = CrownChallengerOperator(task_id="crown", usecase=spec.name, outlets=[champion_asset(spec.name)])
        rollback = RollbackCanaryOperator(task_id="rollback", usecase=spec.name, trigger_rule=TriggerRule.ONE_FAILED)
        for before, after in zip(steps, steps[1:], strict=False):
            before >> after
        steps[-1] >> crown
        steps >> rollback
    return dag


AB_DOC = """
### A/B test `{name}`

The spec's `rollout: ab`: one run per new challenger, instead of the canary. Each `challenger/{name}`
event (a version passed its promotion gates) is keyed `v<version>`. By hand: a version in the form
(default: the current `@challenger`), and optionally another horizon or split.

`ab_test` gives the challenger a fixed **{split:g} %** of the live traffic (the champion the rest) for
**{hours:g} h**, **deferred** to `CanaryWindowTrigger` in the triggerer (no worker slot held; the canary's
harm limits, errors > {max_error_rate:.1%} or p99 > {p99:g} ms, stop it early). Then the split goes back to
0 % and the two models are compared once, on the outcomes labelled by then, read from the durable
prediction log (`predictions/` joined with `labels/` on request id and row: a gateway restart loses
nothing): {test}. Significant at alpha = {alpha:g}; each model needs at least {min_labelled} labelled
outcomes.

* **promote** (the challenger errs significantly less, by at least {min_effect:.0%}) → `@champion` moves
  to it, `champion/{name}` emitted.
* **keep** (it errs significantly more, or less by under {min_effect:.0%}, or the test stopped on harm) →
  alias `rejected` with the reason (and an alert when stopped on harm).
* **inconclusive** (too few outcomes, or no significant difference) → it keeps `@challenger` at 0 %
  of the traffic, for a longer test by hand; the log says how many outcomes would settle it.

Every decision: traffic at 0 %, the version's tags `abtest.*`, a record appended to
`registry/{name}/alias_moves/`, the report under `registry/{name}/abtest/v<version>/`.
"""

AB_TESTS = {
    "classification": "error rate (misclassified at 0.5), two-proportion z-test, Newcombe (Wilson) interval, Cohen's h",
    "regression": "absolute error, Welch t-test (each request is answered by one model: no pairs), t interval, "
    "Cohen's d",
}


def build_abtest_dag(spec: UseCase) -> DAG:
    from aerodrome_airflow.abtest import DECISION_TASKS, ABTestOperator, ApplyABDecisionOperator

    policy = spec.ab
    with stage_dag(
        spec,
        "abtest",
        description=f"A/B test of each {spec.name} challenger through the gateway: promote, keep or inconclusive",
        doc_md=AB_DOC.format(
            name=spec.name,
            split=policy.split_percent,
            hours=policy.horizon_hours,
            max_error_rate=spec.canary.max_error_rate,
            p99=spec.canary.max_p99_latency_ms,
            test=AB_TESTS[spec.target.task],
            alpha=policy.alpha,
            min_labelled=policy.min_labelled,
            min_effect=policy.min_effect,
        ),
        schedule=PartitionedAssetTimetable(
            assets=challenger_asset(spec.name), default_partition_mapper=IdentityMapper()
        ),
        max_active_runs=1,
        params={
            "version": Param(
                None, type=["null", "string"], title="Version", description="Default: the @challenger version"
            ),
            "horizon_hours": Param(
                None, type=["null", "number"], exclusiveMinimum=0, title="Horizon (hours; default: the spec's)"
            ),
            "split_percent": Param(
                None,
                type=["null", "number"],
                exclusiveMinimum=0,
                exclusiveMaximum=100,
                title="Challenger's share, % (default: the spec's)",
            ),
        },
    ) as dag:
        judge = ABTestOperator(task_id="ab_test", usecase=spec.name)
        judge >> [
            ApplyABDecisionOperator(
                task_id=task_id,
                usecase=spec.name,
                decision=decision,
                outlets=[champion_asset(spec.name)] if decision == "promote" else [],
            )
            for decision, task_id in DECISION_TASKS.items()
        ]
    return dag


def build_rollback_dag(spec: UseCase) -> DAG:
    from aerodrome_airflow.canary import RestoreChampionOperator

    with stage_dag(
        spec,
        "rollback",
        description=f"Manual rollback: {spec.name} @champion back to the previous champion",
        doc_md=ROLLBACK_DOC.format(name=spec.name),
        schedule=None,
        max_active_runs=1,
        params={
            "version": Param(None, type=["null", "string"], title="Version (default: the previous champion)"),
            "reason": Param("manual rollback", type="string", title="Reason (recorded)"),
        },
    ) as dag:
        RestoreChampionOperator(task_id="restore_champion", usecase=spec.name, outlets=[champion_asset(spec.name)])
    return dag


RECONCILE_DOC = """
### Reconcile `{name}`

A sweep that compares the zones of `{name}`: raw partitions neither validated nor quarantined, and
validated partitions whose features were never recorded, are re-announced (`raw/{name}` /
`validated/{name}` events keyed by their day), so a lost asset event, a crash or a restart never
leaves a day behind. A partition is re-announced only when the previous sweep saw it behind too
(one sweep of grace, so work in flight is not done twice); tick **immediate** to skip the grace.

It also closes weeks the training rollup will never see complete (a quarantined day, the schedule's
first or last week): when every day is settled and at least {min_days} are featured, one
`retrain_requested/{name}` event for the week starts one training run (once per week).{sources}
"""

RECONCILE_SOURCES_DOC = """

Second sources ({names}): a day's features wait for the day's event of every source, so `refeature_<source>`
re-announces the source's `validated/` event of each unfeatured day it has validated, beside `refeature`. A day
is unfeatured too when a source validated it again after its features were recorded (a re-run on one side,
whose event would wait for the other side's, already consumed). Raw days of a source never validated go back
to its own gate (`sweep_<source>` -> `revalidate_<source>`).
"""


def build_reconcile_dag(spec: UseCase) -> DAG:
    with stage_dag(
        spec,
        "reconcile",
        description=f"Sweep: finish {spec.name} partitions left behind between zones, close incomplete weeks",
        doc_md=RECONCILE_DOC.format(
            name=spec.name,
            min_days=spec.model.min_week_days,
            sources=RECONCILE_SOURCES_DOC.format(names=", ".join(f"`{s}`" for s in spec.sources))
            if spec.sources
            else "",
        ),
        schedule=CronTriggerTimetable("*/30 * * * *", timezone="UTC"),
        max_active_runs=1,
        params={
            "immediate": Param(False, type="boolean", title="Re-announce what is behind now (no grace)"),
        },
    ) as dag:
        sweep = SweepPartitionsOperator(task_id="sweep", usecase=spec.name)
        for task_id, field, asset, reason in (
            ("revalidate", "unvalidated", raw_asset(spec.name), "never validated"),
            ("refeature", "unfeatured", validated_asset(spec.name), "features never recorded"),
            ("close_weeks", "weeks", retrain_asset(spec.name), "week closed incomplete"),
        ):
            if field != "unvalidated" and not spec.features:
                continue
            sweep >> AnnouncePartitionsOperator(
                task_id=task_id, sweep_task="sweep", field=field, reason=reason, outlets=[asset]
            )
        for source in spec.sources:  # a second source's raw days never validated go back to its own gate
            if spec.features:  # and its validated days without features are announced again beside the main's
                sweep >> AnnouncePartitionsOperator(
                    task_id=f"refeature_{source}",
                    sweep_task="sweep",
                    field=SweepPartitionsOperator.source_field(source),
                    reason="features never recorded",
                    outlets=[validated_asset(dataset_name(spec.name, source))],
                )
            swept = SweepPartitionsOperator(task_id=f"sweep_{source}", usecase=spec.name, source=source)
            swept >> AnnouncePartitionsOperator(
                task_id=f"revalidate_{source}",
                sweep_task=f"sweep_{source}",
                field="unvalidated",
                reason="never validated",
                outlets=[raw_asset(dataset_name(spec.name, source))],
            )
    return dag


DRIFT_DOC = """
### Drift `{name}`

Nightly (`{schedule}`): the served predictions of the last {lookback} day(s) (the gateway's prediction
log, by event day; the form's **ds** picks the last day, default the log's newest) against the
**champion's reference statistics** (`registry/{name}/reference/v<version>.json`, computed when a
version is crowned, or here when missing; the training set is never re-read).

* Data drift per feature on the reference's stored bins: numeric `{num_method}` (drift at >= {num_threshold}),
  categorical `{cat_method}` (>= {cat_threshold}); the data drifts when more than {max_share:.0%} of the
  features do. Prediction drift: `{pred_method}` (>= {pred_threshold}).
* Realized `{metric}` on the rows whose labels have arrived (coverage shown), against the champion's
  holdout; judged from {min_labelled} labelled rows, breached {max_drop} below.
* Reports under `drift/{name}/date=<day>/`: Evidently's `report.html` + `report.json` (a sample of
  {report_rows} rows, the {report_columns} most drifted features and the prediction) and our
  `summary.json`. The task's **Drift report** link opens the HTML; the log has the summary.
* Beyond the policy: `request_retrain` emits `retrain_requested/{name}` keyed with the newest complete
  training week (`2013-01-07 (W02)`), which starts one `train_{name}` run on the window ending that
  week; at most once per {cooldown:g} h (state in `state/{name}/retrain_requested.json`).
"""


def build_drift_dag(spec: UseCase) -> DAG:
    policy = spec.drift
    with stage_dag(
        spec,
        "drift",
        description=f"Nightly drift of served {spec.name} data against the champion; retrain beyond the policy",
        doc_md=DRIFT_DOC.format(
            name=spec.name,
            schedule=policy.schedule,
            lookback=policy.lookback_days,
            num_method=policy.numeric.method,
            num_threshold=policy.numeric.threshold,
            cat_method=policy.categorical.method,
            cat_threshold=policy.categorical.threshold,
            max_share=policy.max_drifted_share,
            pred_method=policy.prediction.method,
            pred_threshold=policy.prediction.threshold,
            metric=spec.promotion.metric,
            min_labelled=policy.min_labelled,
            max_drop=policy.max_metric_drop,
            report_rows=policy.report_rows,
            report_columns=policy.report_columns,
            cooldown=policy.cooldown_hours,
        ),
        schedule=policy.schedule,
        max_active_runs=1,
        params={"ds": _ds_param()},
    ) as dag:
        check = CheckDriftOperator(task_id="check_drift", usecase=spec.name)
        check >> AnnouncePartitionsOperator(
            task_id="request_retrain",
            sweep_task="check_drift",
            field="retrain_weeks",
            reason="{{ ti.xcom_pull(task_ids='check_drift')['reason'] }}",
            outlets=[retrain_asset(spec.name)],
        )
    return dag


def work_outlets(spec: UseCase, stage: str, outlets: list) -> list:
    """The outlets of a stage's work task: none when extensions run after it (the last one announces)."""
    return [] if any(e.stage == stage and e.when == "after" for e in spec.extensions) else outlets


def with_extensions(spec: UseCase, stage: str, work, outlets: list) -> tuple:
    """The spec's extensions of `stage` as tasks chained before and after `work` (inside the DAG being built).

    The last extension after the work carries `outlets` (it announces the partition), so a failing check
    stops the partition before the next stage. Returns the chain's first and last task.
    """
    from airflow.sdk import chain

    from aerodrome_airflow.extensions import RunExtensionOperator

    def tasks(when: str) -> list:
        picked = [e for e in spec.extensions if e.stage == stage and e.when == when]
        return [
            RunExtensionOperator(
                task_id=e.task_id,
                usecase=spec.name,
                target=e.task,
                stage=stage,
                when=when,
                outlets=outlets if when == "after" and i == len(picked) - 1 else [],
                doc_md=f"Extension `{e.task}` (spec `extensions`), {when} {stage}: `fn(StepContext)`.",
            )
            for i, e in enumerate(picked)
        ]

    steps = [*tasks("before"), work, *tasks("after")]
    chain(*steps)
    return steps[0], steps[-1]


def stage_builders(spec: UseCase) -> dict[str, Callable[[], DAG]]:
    """Each DAG of a use case by its id, built only when called."""
    builders: list[tuple[str, Callable[[UseCase], DAG]]] = [("ingest", build_ingest_dag)]
    if spec.expectations:
        builders += [("validate", build_validate_dag), ("reconcile", build_reconcile_dag)]
    if spec.features:
        rollout = ("abtest", build_abtest_dag) if spec.rollout == "ab" else ("canary", build_canary_dag)
        builders += [
            ("features", build_features_dag),
            ("train", build_train_dag),
            ("promote", build_promote_dag),
            rollout,
            ("rollback", build_rollback_dag),
            ("drift", build_drift_dag),
        ]
    dags = {f"{stage}_{spec.name}": functools.partial(build, spec) for stage, build in builders}
    for source in spec.sources:  # each second source: its own ingest and validate DAGs, on the same days
        name = dataset_name(spec.name, source)
        dags[f"ingest_{name}"] = functools.partial(build_ingest_dag, spec, source)
        dags[f"validate_{name}"] = functools.partial(build_validate_dag, spec, source)
    return dags


def checked_spec(folder: Path) -> UseCase:
    """`load_usecase(folder)`, kept checked on disk (`aerodrome.spec_cache`): a re-parse of an unchanged spec
    skips the YAML, the checks and the extension imports."""
    from aerodrome.spec_cache import load_usecase_cached, spec_cache_dir

    return load_usecase_cached(folder, spec_cache_dir(Settings.from_env().data_root))


def usecase_dags(name: str, usecases_dir: Path | None = None, only: str | None = None) -> dict[str, DAG]:
    """The DAGs of use case `name` keyed by dag_id, for its own DAG file (`dags/usecases/<name>.py`,
    written by `aerodrome.dag_files.write_dag_file`): a broken spec raises `SpecError` (an import error
    of that file alone, naming the use case, file, field and fix). No folder `name` under the use-case
    folder in use (`AERODROME_USECASES_DIR`): no DAGs.

    `only`: the one DAG a task needs (Airflow's parsing context names it when a task runs); a dag_id of
    another use case, or none, builds them all, as at parse.
    """
    root = Path(usecases_dir or Settings.from_env().usecases_dir)
    if not (root / name).is_dir():  # not a use case of this deployment's folder (AERODROME_USECASES_DIR)
        return {}
    builders = stage_builders(checked_spec(root / name))
    wanted = [only] if only in builders else list(builders)
    return {dag_id: builders[dag_id]() for dag_id in wanted}


def build_usecase_dags(
    usecases_dir: Path | None = None, only: str | None = None, dags_folder: Path | None = None
) -> dict[str, DAG]:
    """The generated DAGs of every use case keyed by dag_id, for a DAG file's `globals()`.

    `dags_folder`: leave out the use cases that have a DAG file of their own there (`dags/usecases/`).
    `only`: the one DAG a task needs (Airflow's parsing context names it when a task runs), so a task
    process builds one DAG and loads one spec instead of every use case's (~0.2 s less per task).
    """
    from aerodrome.dag_files import dag_file_path

    root = Path(usecases_dir or Settings.from_env().usecases_dir)
    folders = [d for d in sorted(root.iterdir()) if (d / SPEC_FILE).is_file()]
    if dags_folder is not None:
        folders = [d for d in folders if not dag_file_path(d.name, dags_folder).is_file()]
    if only:
        for folder in (d for d in folders if only.endswith(f"_{d.name}") or f"_{d.name}__" in only):
            builders = stage_builders(checked_spec(folder))
            if only in builders:
                return {only: builders[only]()}
    builders = {i: b for d in folders for i, b in stage_builders(checked_spec(d)).items()}
    return {dag_id: build() for dag_id, build in builders.items()}
