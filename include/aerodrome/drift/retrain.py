"""The retrain request: at most one per `drift.cooldown_hours`, keyed by the week to train up to.

The state (`state/<use case>/retrain_requested.json`: when, why, which week) lives under the data
root, so every worker sees the same cool-down. The cool-down runs on wall-clock time: it bounds how
often the platform retrains, whatever days the checks look at (a catch-up of many days asks once).

The key is the newest complete training week (Monday..Sunday) up to the checked day and the newest
featured day, formatted as the train DAG's weekly rollup keys (`2013-01-07 (W02)`): the train DAG
maps `retrain_requested/<use case>` with an identity mapper, so one keyed event starts one run on the
sliding window ending that week.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from aerodrome.partitions import STATE_ZONE, latest_featured_day, week_key
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class RetrainRequest:
    usecase: str
    week: str
    reason: str
    requested_at: str


def state_key(usecase: str) -> str:
    return f"{STATE_ZONE}/{usecase}/retrain_requested.json"


def last_request(storage: Storage, usecase: str) -> RetrainRequest | None:
    key = state_key(usecase)
    return RetrainRequest(**json.loads(storage.read_bytes(key))) if storage.exists(key) else None


def retrain_week(spec: UseCase, storage: Storage, day: date) -> str | None:
    """The newest complete week ending on or before `day` and the newest featured day (None: none yet)."""
    newest = latest_featured_day(storage, spec)
    last = min(day, newest) if newest else day
    sunday = last - timedelta(days=(last.weekday() + 1) % 7)
    return week_key(sunday) if sunday >= spec.schedule.start_date else None


def request_retrain(
    spec: UseCase, storage: Storage, reasons: list[str], day: date, now: datetime | None = None
) -> tuple[RetrainRequest | None, str]:
    """Record a retrain request when `reasons` is not empty and no request was made within the cool-down.
    Returns (the request or None, what was decided, for the log)."""
    if not reasons:
        return None, "within the policy: no retrain"
    now = now or datetime.now(UTC)
    previous = last_request(storage, spec.name)
    if previous is not None:
        until = datetime.fromisoformat(previous.requested_at) + timedelta(hours=spec.drift.cooldown_hours)
        if now < until:
            return None, (
                f"cooling down: retrain requested {previous.requested_at} (week {previous.week}); "
                f"next possible {until.isoformat(timespec='seconds')} "
                f"(drift.cooldown_hours {spec.drift.cooldown_hours:g})"
            )
    week = retrain_week(spec, storage, day)
    if week is None:
        return None, f"no complete training week up to {day}: no retrain"
    request = RetrainRequest(spec.name, week, "; ".join(reasons)[:2000], now.isoformat(timespec="seconds"))
    storage.write_bytes(state_key(spec.name), json.dumps(asdict(request), indent=1).encode())
    return request, f"retrain requested on the window ending week {week}: {request.reason}"
