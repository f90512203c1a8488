"""Promotion operators: judge a candidate on its gates, then move the alias the verdict names."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk.bases.skipmixin import SkipMixin

from aerodrome_airflow.candidates import version_key, version_of_key
from aerodrome_airflow.operators import UseCaseOperator, fail_without_retry, form_param, spec_and_storage


def run_actor(context: Any) -> str:
    """Who acts: the DAG run (and the user who triggered it, when a person did)."""
    run = context["dag_run"]
    user = getattr(run, "triggering_user_name", None)
    return f"{context['dag'].dag_id} / {context['run_id']}" + (f" (by {user})" if user else "")


def requested_version(context: Any, spec, settings, fallback_alias: str = "candidate") -> str:
    """The version a run is about: its `v<version>` partition key, else the form's `version`, else the alias's."""
    key = context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)
    if key:
        return version_of_key(str(key))
    if form_param(context, "version"):
        return str(form_param(context, "version")).removeprefix("v")
    from aerodrome.registry.aliases import alias_version, registry_client

    found = alias_version(registry_client(settings.tracking_uri), spec.name, fallback_alias)
    if found is None:
        raise fail_without_retry(f"{spec.name} has no version with alias @{fallback_alias}: nothing to work on")
    return found


def approver(answer: dict[str, Any]) -> str:
    """Who answered an approval request (Airflow HITL's `responded_by_user`)."""
    who = answer.get("responded_by_user") or {}
    return str(who.get("name") or who.get("id") or "an unnamed user")


def record_decision(verdict: dict[str, Any], decision: str, actor: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A person's answer to a promotion's approval request (Airflow HITL) in the audit trail.

    `decision`: approved, rejected, or timed_out (no answer in time); `verdict`: the judge's (use case, model,
    candidate, target alias); `answer`: the HITL response (chosen options, who, when).
    """
    from aerodrome.security import audit

    alias = verdict.get("target_alias")
    return audit.record(
        "approval",
        verdict.get("usecase"),
        f"{verdict.get('model')} v{verdict.get('candidate')} -> @{alias} {decision.replace('_', ' ')}",
        actor=actor,
        versions={"model": verdict.get("model"), "version": verdict.get("candidate"), "alias": alias},
        details={
            "decision": decision,
            "chosen": answer.get("chosen_options"),
            "responded_by": answer.get("responded_by_user"),
            "responded_at": str(answer.get("responded_at") or ""),
        },
    )


class JudgeCandidateOperator(UseCaseOperator, SkipMixin):
    """Judge the run's candidate against the champion; record the verdict; a failed gate skips the promotion.

    The verdict goes to the version's tags and `registry/<use case>/promotions/v<version>.json`; the
    task log lists every gate with its figures. A rejected candidate leaves every alias as it was.
    """

    ui_color = "#fdebd0"
    inherits_from_skipmixin = True

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.registry.promote import judge_candidate, record_verdict

        settings, spec, storage = spec_and_storage(self.usecase)
        version = requested_version(context, spec, settings)
        try:
            report = judge_candidate(spec, settings, storage, version, progress=self.log.info)
        except AerodromeError as exc:
            raise fail_without_retry(str(exc)) from None
        key = record_verdict(spec, settings, storage, report)
        for line in report.lines():
            self.log.info("%s", line)
        verdict = {**report.as_dict(), "report_key": key, "summary": "\n".join(report.lines())}
        if not report.passed:
            self.log.warning("Rejected: %s", "; ".join(f"{g.name}: {g.detail}" for g in report.failed))
            downstream = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
            self.skip(ti=context["ti"], tasks=downstream)
        return json.loads(json.dumps(verdict, default=str))


class MoveAliasOperator(UseCaseOperator):
    """Point `alias` at the judged candidate when the verdict names that alias; otherwise skip (no event).

    Emits its outlet keyed `v<version>` with the move (version, previous, report) as the event's extra.
    """

    ui_color = "#d5f5e3"
    template_fields = (*UseCaseOperator.template_fields, "alias")

    def __init__(self, *, alias: str, judge_task: str = "judge_candidate", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        self.judge_task = judge_task

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.registry.promote import promote
        from airflow.sdk.exceptions import AirflowSkipException

        settings, _, storage = spec_and_storage(self.usecase)
        verdict = context["ti"].xcom_pull(task_ids=self.judge_task) or {}
        if verdict.get("target_alias") != self.alias:
            raise AirflowSkipException(f"the verdict moves @{verdict.get('target_alias')}, not @{self.alias}")
        actor = run_actor(context)
        if "approve" in context["task"].upstream_task_ids:  # the approval itself is audited by the approve task
            actor += f", approved by {approver(context['ti'].xcom_pull(task_ids='approve') or {})}"
        try:
            move = promote(settings, storage, verdict, actor)
        except AerodromeError as exc:
            raise fail_without_retry(str(exc)) from None
        self.log.info(
            "%s @%s: v%s -> v%s (%s)", move["model"], self.alias, move["previous"], move["version"], move["reason"]
        )
        extra = {k: move[k] for k in ("model", "alias", "version", "previous", "actor", "at")}
        for outlet in self.outlets:
            event = context["outlet_events"][outlet]
            event.add_partitions(version_key(move["version"]))
            event.extra = {**extra, "report": verdict.get("report_key")}
        return move
