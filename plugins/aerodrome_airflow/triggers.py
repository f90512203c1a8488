"""Deferrable waits (they run in the triggerer, holding no worker slot)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class CanaryWindowTrigger(BaseTrigger):
    """Watch one canary step's (or A/B test's) live traffic until `end_epoch`; fire early on clear harm.

    Polls the gateway's `GET /v1/{usecase}/window` (the traffic since the step began) every
    `poll_seconds`. The event carries the last window summary, `status` `done` or `breach` (with the
    reason), or `unreachable` when the gateway never answered.
    """

    def __init__(
        self,
        usecase: str,
        base_url: str,
        token: str,
        started_epoch: float,
        end_epoch: float,
        policy: dict[str, Any],
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.usecase, self.base_url, self.token = usecase, base_url, token
        self.started_epoch, self.end_epoch = started_epoch, end_epoch
        self.policy, self.poll_seconds = policy, poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "aerodrome_airflow.triggers.CanaryWindowTrigger",
            {
                "usecase": self.usecase,
                "base_url": self.base_url,
                "token": self.token,
                "started_epoch": self.started_epoch,
                "end_epoch": self.end_epoch,
                "policy": self.policy,
                "poll_seconds": self.poll_seconds,
            },
        )

    async def run(self):
        import httpx
        from aerodrome.serving.canary import breach
        from aerodrome.usecase import CanaryPolicy

        policy = CanaryPolicy.model_validate(self.policy)
        url = f"{self.base_url.rstrip('/')}/v1/{self.usecase}/window"
        last, problem = None, None
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=10) as http:
            while True:
                await asyncio.sleep(max(0.0, min(self.poll_seconds, self.end_epoch - time.time())))
                try:
                    answer = await http.get(url, params={"seconds": max(1.0, time.time() - self.started_epoch)})
                    answer.raise_for_status()
                    last, problem = answer.json(), None
                except httpx.HTTPError as exc:
                    problem = f"gateway {self.base_url}: {exc}"
                    self.log.warning("canary window poll failed: %s", problem)
                if last is not None and (reason := breach(policy, last["aliases"])):
                    yield TriggerEvent({"status": "breach", "reason": reason, "window": last})
                    return
                if time.time() >= self.end_epoch:
                    status = "done" if last is not None else "unreachable"
                    yield TriggerEvent({"status": status, "reason": problem, "window": last})
                    return
