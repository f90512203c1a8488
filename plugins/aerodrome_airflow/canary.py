"""Canary operators: step the challenger's traffic, watch it (deferred), then crown it or roll it back."""

from __future__ import annotations

import json
import time
from typing import Any

from aerodrome_airflow.candidates import version_key
from aerodrome_airflow.operators import UseCaseOperator, fail_without_retry, spec_and_storage
from aerodrome_airflow.promotion import requested_version, run_actor


def verdict_key(usecase: str, version: str, percent: float) -> str:
    return f"registry/{usecase}/canary/v{version}/step-{percent:g}.json"


def challenger_of_run(context: Any, spec, settings) -> str:
    """The version this canary run is about (`v<version>` key, the form, else @challenger)."""
    return requested_version(context, spec, settings, fallback_alias="challenger")


def serve_challenger(client: Any, usecase: str, version: str, percent: float, what: str) -> dict[str, Any]:
    """Have the gateway load the aliases, check it serves `version` as @challenger, give it `percent` of the traffic.

    A gateway serving another challenger fails at once (`what` names the stale run); an unreachable or
    refusing gateway raises a plain error, so a retry may find it back. Returns the versions served.
    """
    from aerodrome.serving.client import GatewayError

    try:
        served = client.reload(usecase)["models"]
        if served.get("challenger") != version:
            raise fail_without_retry(
                f"the gateway serves @challenger v{served.get('challenger')}, not v{version}: {what} is stale"
            )
        client.set_traffic(usecase, percent)
    except GatewayError as exc:
        raise RuntimeError(str(exc)) from None
    return served


class CanaryStepOperator(UseCaseOperator):
    """Give the challenger `percent` % of the traffic, then watch the window without holding a worker slot.

    Deferred to `CanaryWindowTrigger`; on its event the step is judged (aerodrome.serving.canary) and
    the verdict stored; a failed check fails this task at once (no retry), which starts the rollback.
    """

    ui_color = "#fcf3cf"
    template_fields = (*UseCaseOperator.template_fields, "percent")

    def __init__(self, *, percent: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.percent = percent

    def execute(self, context: Any) -> None:
        from aerodrome_airflow.gateway import gateway_client
        from aerodrome_airflow.triggers import CanaryWindowTrigger

        settings, spec, _ = spec_and_storage(self.usecase)
        version = challenger_of_run(context, spec, settings)
        client = gateway_client()
        serve_challenger(client, spec.name, version, self.percent, "this canary")
        seconds = spec.canary.analysis_minutes * 60
        self.log.info(
            "%s v%s: %g %% of the traffic; watching %.0f s (deferred: no worker slot held)",
            spec.name,
            version,
            self.percent,
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
            poll_seconds=min(10.0, max(1.0, seconds / 6)),
        )
        self.defer(trigger=trigger, method_name="execute_complete", kwargs={"version": version})

    def execute_complete(self, context: Any, event: dict[str, Any], version: str | None = None) -> dict[str, Any]:
        from aerodrome.registry.gates import Gate
        from aerodrome.serving.canary import analyze_step

        settings, spec, storage = spec_and_storage(self.usecase)
        # `dag.test()` resumes without the defer kwargs (the triggerer passes them): find the version again
        version = version or challenger_of_run(context, spec, settings)
        if event["status"] == "unreachable" or not event.get("window"):
            raise fail_without_retry(f"the gateway could not be watched: {event.get('reason')}")
        verdict = analyze_step(spec.canary, spec.target.task, self.percent, event["window"]["aliases"])
        if event["status"] == "breach":
            verdict.checks.append(Gate("early_stop", False, f"stopped before the window ended: {event['reason']}"))
        for line in verdict.lines():
            self.log.info("%s", line)
        record = {
            "usecase": spec.name,
            "version": version,
            "percent": self.percent,
            "passed": verdict.passed,
            "reasons": verdict.reasons(),
            "checks": [c.as_dict() for c in verdict.checks],
            "figures": verdict.figures,
        }
        storage.write_bytes(verdict_key(spec.name, version, self.percent), json.dumps(record, indent=2).encode())
        if not verdict.passed:
            raise fail_without_retry(f"canary step {self.percent:g} % failed: {verdict.reasons()}")
        return record


class CrownChallengerOperator(UseCaseOperator):
    """Every step passed: `champion` moves to the challenger (the old one stays registered); traffic back to 0."""

    ui_color = "#d5f5e3"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.registry.decisions import crown

        from aerodrome_airflow.gateway import gateway_client

        settings, spec, storage = spec_and_storage(self.usecase)
        version = challenger_of_run(context, spec, settings)
        steps = ", ".join(f"{p:g} %" for p in spec.canary.steps)
        moves = crown(settings, storage, spec.name, version, run_actor(context), f"canary passed every step ({steps})")
        client = gateway_client()
        client.reload(spec.name)
        client.set_traffic(spec.name, 0)
        champion = moves[0]
        self.log.info("%s @champion: v%s -> v%s", spec.name, champion["previous"], version)
        for outlet in self.outlets:
            event = context["outlet_events"][outlet]
            event.add_partitions(version_key(version))
            event.extra = {"model": spec.name, "version": version, "previous": champion["previous"], "by": "canary"}
        return champion


class RollbackCanaryOperator(UseCaseOperator):
    """A step failed: traffic back to 0 first, then alias `rejected` with the reason, and an alert."""

    ui_color = "#fadbd8"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.registry.decisions import reject
        from aerodrome.serving.alerts import alert

        from aerodrome_airflow.gateway import gateway_client

        settings, spec, storage = spec_and_storage(self.usecase)
        version = challenger_of_run(context, spec, settings)
        client = gateway_client()
        client.set_traffic(spec.name, 0)  # stop the harm before anything else
        failed = []
        for percent in spec.canary.steps:
            key = verdict_key(spec.name, version, percent)
            if storage.exists(key):
                record = json.loads(storage.read_bytes(key))
                if not record["passed"]:
                    failed.append(record)
        reason = failed[0]["reasons"] if failed else "a canary step failed before it was judged (see its log)"
        where = f"step {failed[0]['percent']:g} %" if failed else "a step"
        moves = reject(
            settings, storage, spec.name, version, run_actor(context), f"canary {where}: {reason}", {"steps": failed}
        )
        client.reload(spec.name)
        alert("canary_rollback", spec.name, f"v{version} rolled back at {where}: {reason}", version=version)
        self.log.error("%s v%s rolled back at %s: %s", spec.name, version, where, reason)
        return moves[0]


class RestoreChampionOperator(UseCaseOperator):
    """Manual rollback: `champion` back to the previous champion (or the form's version); traffic to 0."""

    ui_color = "#fadbd8"

    def execute(self, context: Any) -> dict[str, Any]:
        from aerodrome.errors import AerodromeError
        from aerodrome.registry.decisions import restore_champion

        from aerodrome_airflow.gateway import gateway_client

        settings, spec, storage = spec_and_storage(self.usecase)
        wanted = (context.get("params") or {}).get("version") or None
        reason = (context.get("params") or {}).get("reason") or "manual rollback"
        try:
            move = restore_champion(settings, storage, spec.name, run_actor(context), reason, wanted)
        except AerodromeError as exc:
            raise fail_without_retry(str(exc)) from None
        client = gateway_client()
        client.set_traffic(spec.name, 0)
        client.reload(spec.name)
        self.log.info("%s @champion: v%s -> v%s (%s)", spec.name, move["previous"], move["version"], reason)
        for outlet in self.outlets:
            event = context["outlet_events"][outlet]
            event.add_partitions(version_key(move["version"]))
            event.extra = {
                "model": spec.name,
                "version": move["version"],
                "previous": move["previous"],
                "by": "rollback",
            }
        return move
