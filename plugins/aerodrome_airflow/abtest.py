"""A/B operators: hold a fixed split for the horizon (deferred), judge the outcomes, apply the decision."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.bases.skipmixin import SkipMixin

from aerodrome_airflow.canary import challenger_of_run, serve_challenger
from aerodrome_airflow.candidates import version_key
from aerodrome_airflow.operators import UseCaseOperator, fail_without_retry, spec_and_storage
from aerodrome_airflow.promotion import run_actor

# the task that applies each decision (the branch `ABTestOperator` follows)
DECISION_TASKS = {"promote": "promote", "keep": "keep", "inconclusive": "inconclusive"}
VERDICT_KEY = "verdict"


def ab_policy(spec, context: Any):
    """The spec's `ab` policy, with the form's horizon and split where given."""
    params = context.get("params") or {}
    update = {k: params[k] for k in ("horizon_hours", "split_percent") if params.get(k) is not None}
    return spec.ab.model_validate({**spec.ab.model_dump(), **update})


class ABTestOperator(UseCaseOperator, SkipMixin):
    """Give the challenger the policy's fixed share for the horizon, then judge both models on their outcomes.

    Deferred to `CanaryWindowTrigger` (no worker slot held; the canary's harm limits stop it early).
    When it fires: traffic back to 0 %, the labelled outcomes of the horizon read from the prediction
    log and compared (aerodrome.serving.abtest), the report written; the task then follows the branch
    named by the decision (`promote`, `keep` or `inconclusive`) and skips the others.
    """

    ui_color = "#fcf3cf"
    inherits_from_skipmixin = True

    def execute(self, context: Any) -> None:
        from aerodrome_airflow.gateway import gateway_client
        from aerodrome_airflow.triggers import CanaryWindowTrigger

        settings, spec, _ = spec_and_storage(self.usecase)
        policy = ab_policy(spec, context)
        version = challenger_of_run(context, spec, settings)
        client = gateway_client()
        served = serve_challenger(client, spec.name, version, policy.split_percent, "this A/B test")
        seconds = policy.horizon_hours * 3600
        self.log.info(
            "%s: v%s gets %g %% of the traffic, v%s the rest, for %.0f s (deferred: no worker slot held)",
            spec.name,
            version,
            policy.split_percent,
            served.get("champion"),
            seconds,
        )
        now = time.time()
        trigger = CanaryWindowTrigger(
            spec.name,
            client.base_url,
            client.token,
            now,
            now + seconds,
            spec.canary.model_dump(),
            poll_seconds=min(30.0, max(1.0, seconds / 10)),
        )
        kwargs = {"version": version, "champion": served.get("champion"), "started": now, "policy": policy.model_dump()}
        self.defer(trigger=trigger, method_name="execute_complete", kwargs=kwargs)

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        version: str,
        champion: str | None,
        started: float,
        policy: dict[str, Any],
    ) -> dict[str, Any]:
        from aerodrome.serving.abtest import horizon_outcomes, judge, stopped_early, write_report
        from aerodrome.serving.client import GatewayError
        from aerodrome.usecase import ABPolicy

        from aerodrome_airflow.gateway import gateway_client

        _, spec, storage = spec_and_storage(self.usecase)
        ended = time.time()
        try:
            gateway_client().set_traffic(spec.name, 0)  # the horizon is over; the decision task retries this
        except GatewayError as exc:
            self.log.warning("could not set the challenger's traffic to 0 yet: %s", exc)
        if event["status"] == "unreachable":
            raise fail_without_retry(f"the gateway could not be watched: {event.get('reason')}")
        rules = ABPolicy.model_validate(policy)
        task = spec.target.task
        if event["status"] == "breach":
            verdict = stopped_early(rules, spec.name, task, champion, version, event["reason"])
        else:
            since, until = (datetime.fromtimestamp(t, UTC) for t in (started, ended))
            outcomes = horizon_outcomes(storage, spec.name, since, until, [champion or "", version])
            verdict = judge(rules, spec.name, task, outcomes.get(champion or ""), outcomes[version])
        for line in verdict.lines():
            self.log.info("%s", line)
        key = write_report(storage, verdict, datetime.fromtimestamp(started, UTC), datetime.fromtimestamp(ended, UTC))
        self.log.info("report: %s", storage.uri(key))
        record = {**verdict.as_dict(), "report_key": key}
        # pushed first: skipping the other branches ends this method (Airflow's DownstreamTasksSkipped)
        context["ti"].xcom_push(key=VERDICT_KEY, value=record)
        self.skip_all_except(context["ti"], DECISION_TASKS[verdict.decision])
        return record


class ApplyABDecisionOperator(UseCaseOperator):
    """Apply the A/B test's `decision` (promote: crown; keep: reject; inconclusive: keep it @challenger).

    Traffic to 0 % first, then the alias moves (aerodrome.serving.abtest.record_decision); the gateway
    reloads. A promotion emits its outlets keyed `v<version>`; a test stopped on harm raises an alert.
    """

    ui_color = "#d5f5e3"

    def __init__(self, *, decision: str, judge_task: str = "ab_test", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.judge_task = judge_task

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.registry.decisions import DecisionError
        from aerodrome.serving.abtest import record_decision
        from aerodrome.serving.alerts import alert

        from aerodrome_airflow.gateway import gateway_client

        settings, spec, storage = spec_and_storage(self.usecase)
        verdict = context["ti"].xcom_pull(task_ids=self.judge_task, key=VERDICT_KEY) or {}
        if verdict.get("decision") != self.decision:
            raise fail_without_retry(f"the A/B verdict is {verdict.get('decision')!r}, not {self.decision!r}")
        client = gateway_client()
        client.set_traffic(spec.name, 0)
        try:
            moves = record_decision(settings, storage, verdict, run_actor(context))
        except DecisionError as exc:
            raise fail_without_retry(str(exc)) from None
        client.reload(spec.name)
        version = verdict["challenger"]
        self.log.info("%s v%s: %s (%s)", spec.name, version, self.decision, verdict["reason"])
        if verdict.get("stopped_early"):
            alert("abtest_stopped", spec.name, f"v{version}: {verdict['reason']}", version=version)
        for outlet in self.outlets:
            event = context["outlet_events"][outlet]
            event.add_partitions(version_key(version))
            event.extra = {"model": spec.name, "version": version, "previous": moves[0]["previous"], "by": "abtest"}
        return moves[0]
