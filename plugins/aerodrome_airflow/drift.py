"""The nightly drift check as an Airflow task, with a link to its Evidently report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

from aerodrome_airflow.operators import UseCaseOperator, fail_without_retry, form_param, spec_and_storage


class DriftReportLink(BaseOperatorLink):
    """The task's "Drift report" button: the Evidently HTML of the run (or our summary when there is none),
    served in the UI by the `aerodrome_reports` plugin (a relative URL: the UI resolves it against its base)."""

    name = "Drift report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from aerodrome.reports import served_path

        uri = getattr(operator, "report_uri", "") or ""  # set by execute in the same worker process
        return served_path(uri) or uri


class CheckDriftOperator(UseCaseOperator):
    """Check the served days ending with the form's `ds` (default: the prediction log's newest event day),
    and their validated partitions, against the champion's reference; log the summary; return the retrain
    week when the policy is breached.

    The following `request_retrain` task announces that week on `retrain_requested/<use case>`.
    """

    ui_color = "#fadbd8"
    operator_extra_links = (DriftReportLink(),)

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import date

        from aerodrome.drift.run import NoChampion, check_day, latest_served_day
        from airflow.sdk.exceptions import AirflowSkipException

        settings, spec, storage = spec_and_storage(self.usecase)
        chosen = form_param(context, "ds")
        day = date.fromisoformat(str(chosen)) if chosen else latest_served_day(storage, spec.name)
        if day is None:
            raise AirflowSkipException(f"{spec.name}: nothing served yet, no drift to check")
        try:
            run = check_day(spec, settings, storage, day)
        except NoChampion as exc:
            raise AirflowSkipException(str(exc)) from None
        except ValueError as exc:
            raise fail_without_retry(str(exc)) from None
        for line in run.lines(storage.uri):
            self.log.info("%s", line)
        self.report_uri = storage.uri(run.reports.html or run.reports.summary)
        result = run.result
        return {
            "day": day.isoformat(),
            "version": result.version,
            "rows": result.rows,
            "dataset_drift": result.dataset_drift,
            "drifted_share": round(result.drifted_share, 4),
            "drifted": [c.column for c in result.drifted],
            "validated_drifted": [c.column for c in result.validated.drifted] if result.validated else [],
            "prediction_drift": result.prediction_drift,
            "report": self.report_uri,
            "summary": storage.uri(run.reports.summary),
            "retrain_weeks": [run.retrain.week] if run.retrain else [],
            "reason": run.retrain.reason if run.retrain else run.decision,
        }
