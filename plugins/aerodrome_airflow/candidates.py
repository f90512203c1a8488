"""Around the trainer: which window a training run fits on, and announcing the candidate it registered."""

from __future__ import annotations

from datetime import date
from typing import Any

from aerodrome_airflow.operators import UseCaseOperator, fail_without_retry, form_param, spec_and_storage


def version_key(version: str) -> str:
    """The partition key of a model version's events (`v12`): one promotion / canary run per version."""
    return f"v{version}"


def version_of_key(key: str) -> str:
    """The version in a `v<version>` partition key."""
    if not (key.startswith("v") and key[1:].isdigit()):
        raise fail_without_retry(f"partition key {key!r} is not a model version (v<number>)")
    return key[1:]


class PlanTrainingWindowOperator(UseCaseOperator):
    """The sliding window of this training run, from its week partition key or the trigger form.

    A week key (`2013-01-07 (W02)`, from the rollup of featured days or a `retrain_requested` event)
    gives the `model.window_days` days that end with that week. A manual run uses the form's `end`
    (exclusive; default: the day after the newest featured day) and optional `start`.
    """

    ui_color = "#e8daef"

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import timedelta

        from aerodrome.partitions import PartitionKeyError, latest_featured_day, training_window

        _, spec, storage = spec_and_storage(self.usecase)
        week = context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)
        window_days = form_param(context, "window_days") or None
        try:
            if week:
                window = training_window(spec, week=week, window_days=window_days)
            else:
                end = form_param(context, "end")
                if end:
                    end = date.fromisoformat(str(end))
                else:
                    newest = latest_featured_day(storage, spec)
                    if newest is None:
                        raise PartitionKeyError(f"{spec.name} has no featured day yet: nothing to train on")
                    end = newest + timedelta(days=1)
                window = training_window(spec, end=end, window_days=window_days)
                if form_param(context, "start"):
                    start = date.fromisoformat(str(form_param(context, "start")))
                    window = type(window)(start, window.end, None)
        except (PartitionKeyError, ValueError) as exc:
            raise fail_without_retry(str(exc)) from None
        plan = {**window.as_dict(), "holdout_start": form_param(context, "holdout_start") or ""}
        self.log.info(
            "Training window %s .. %s (exclusive)%s", plan["start"], plan["end"], f", week {week}" * bool(week)
        )
        return plan


class AnnounceCandidateOperator(UseCaseOperator):
    """Find the MLflow version this DAG run registered and announce it on `candidate/<usecase>`.

    The version is found by its lineage tags (`airflow_dag_id`, `airflow_run_id`), so it works the same
    for the local trainer and for a pod that returns nothing to Airflow.
    """

    ui_color = "#e8daef"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.train.tracking import version_trained_by

        settings, spec, _ = spec_and_storage(self.usecase)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        found = version_trained_by(spec.name, dag_id, run_id, settings.tracking_uri)
        if found is None:
            raise fail_without_retry(f"no MLflow version of {spec.name} is tagged with this run ({dag_id} / {run_id})")
        plan = context["ti"].xcom_pull(task_ids="plan_window") or {}
        extra = {**found, "week": plan.get("week")}
        # keyed by the version, so each candidate starts exactly one promotion run (manual trainings too)
        for outlet in self.outlets:
            event = context["outlet_events"][outlet]
            event.add_partitions(version_key(found["version"]))
            event.extra = extra
        self.log.info(
            "New candidate %s v%s (window %s), announced as partition %s",
            spec.name,
            found["version"],
            found["window"],
            version_key(found["version"]),
        )
        return extra
