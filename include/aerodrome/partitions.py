"""Partition keys and the zones' bookkeeping: which day is where, which week may be trained on.

A partition is one day of a use case, keyed `YYYY-MM-DD` (the key Airflow's partitioned runs carry);
a training week is keyed like Airflow's `StartOfWeekMapper`: `2013-01-07 (W02)` (its Monday, ISO
week). `zone_backlog` compares the zones (raw, validated, quarantine, featured) so a sweep can
finish any partition whose asset event was lost, and close weeks that will never be complete.
Plain Python: no Airflow import.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from aerodrome.errors import AerodromeError
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase

DAY_FORMAT = "%Y-%m-%d"
WEEK_FORMAT = "%Y-%m-%d (W%V)"  # airflow.sdk.StartOfWeekMapper's default output format
STATE_ZONE = "state"
_WEEK = re.compile(r"^(\d{4}-\d{2}-\d{2}) \(W\d{2}\)$")


class PartitionKeyError(AerodromeError):
    """A partition key that does not name a day (or a week) of the use case."""


def parse_day(key: str, spec: UseCase | None = None) -> date:
    """The day a partition key names; refuses anything but `YYYY-MM-DD` inside the spec's schedule."""
    text = str(key or "").strip()
    try:
        day = datetime.strptime(text, DAY_FORMAT).date()
    except ValueError:
        raise PartitionKeyError(
            f"partition key {key!r} is not a day: use YYYY-MM-DD (e.g. 2013-01-05), in the form's "
            f"'ds' field or the REST API's partition_key"
        ) from None
    if spec is not None:
        first, last = spec.schedule.start_date, spec.schedule.end_date
        if day < first or (last and day > last):
            span = f"{first} .. {last}" if last else f"from {first}"
            raise PartitionKeyError(f"partition {text} is outside the schedule of {spec.name} ({span})")
    return day


def week_key(day: date) -> str:
    """The training week of `day`: its Monday, formatted as Airflow's StartOfWeekMapper does."""
    monday = day - timedelta(days=day.weekday())
    return monday.strftime(WEEK_FORMAT)


def parse_week(key: str) -> date:
    """The Monday a week key (`2013-01-07 (W02)`) starts on."""
    match = _WEEK.match(str(key or "").strip())
    if not match:
        raise PartitionKeyError(f"week key {key!r} is not like '2013-01-07 (W02)' (the Monday and its ISO week)")
    monday = datetime.strptime(match.group(1), DAY_FORMAT).date()
    if monday.weekday() != 0:
        raise PartitionKeyError(f"week key {key!r} does not start on a Monday")
    return monday


def week_days(key: str, spec: UseCase) -> list[date]:
    """The days of a week that lie inside the spec's schedule (the first and last weeks are partial)."""
    monday = parse_week(key)
    days = [monday + timedelta(days=i) for i in range(7)]
    last = spec.schedule.end_date
    return [d for d in days if d >= spec.schedule.start_date and (last is None or d <= last)]


@dataclass(frozen=True)
class TrainingWindow:
    """The sliding window a training run fits on: `[start, end)` in days, ending with `week` if any."""

    start: date
    end: date  # exclusive
    week: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "week": self.week}


def training_window(
    spec: UseCase, *, week: str | None = None, end: date | None = None, window_days: int | None = None
) -> TrainingWindow:
    """The window ending with `week` (or on `end`, exclusive), `window_days` long, clipped to the schedule."""
    days = window_days or spec.model.window_days
    if days < 1:
        raise PartitionKeyError(f"window_days={days}: a training window needs at least one day")
    if week:
        end = parse_week(week) + timedelta(days=7)
    if end is None:
        raise PartitionKeyError("no training window: give a week partition key or an end date")
    if spec.schedule.end_date:
        end = min(end, spec.schedule.end_date + timedelta(days=1))
    start = max(spec.schedule.start_date, end - timedelta(days=days))
    if start >= end:
        raise PartitionKeyError(
            f"training window {start} .. {end} of {spec.name} is empty: the schedule starts "
            f"{spec.schedule.start_date}; pick a later week or end date"
        )
    return TrainingWindow(start, end, week)


def _state_key(spec: UseCase, kind: str, name: str) -> str:
    return f"{STATE_ZONE}/{spec.name}/{kind}/{name}.json"


def _days(storage: Storage, zone: str, spec: UseCase) -> set[str]:
    return {p.split("=", 1)[1] for p in storage.partitions(f"{zone}/{spec.name}") if p.startswith("date=")}


def mark_featured(storage: Storage, spec: UseCase, ds: str, **detail) -> None:
    """Record that the features of `ds` reached the offline and online stores (the features run's last step)."""
    record = {"ds": ds, "at": datetime.now(UTC).isoformat(timespec="seconds"), **detail}
    storage.write_bytes(_state_key(spec, "featured", ds), json.dumps(record, sort_keys=True).encode())


def featured_days(storage: Storage, spec: UseCase) -> set[str]:
    prefix = f"{STATE_ZONE}/{spec.name}/featured/"
    return {k[len(prefix) : -len(".json")] for k in storage.list(prefix) if k.endswith(".json")}


def latest_featured_day(storage: Storage, spec: UseCase) -> date | None:
    days = featured_days(storage, spec)
    return max(date.fromisoformat(d) for d in days) if days else None


@dataclass(frozen=True)
class ZoneBacklog:
    """Partitions left behind between zones, and weeks ready for training that no rollup will fire."""

    unvalidated: tuple[str, ...] = ()  # in raw, neither validated nor quarantined
    unfeatured: tuple[str, ...] = ()  # validated, features never recorded
    closable_weeks: tuple[str, ...] = ()  # every day settled, enough featured, some missing
    open_weeks: dict[str, list[str]] = field(default_factory=dict)  # week -> days not settled yet

    @property
    def empty(self) -> bool:
        return not (self.unvalidated or self.unfeatured or self.closable_weeks)

    def summary(self) -> str:
        parts = [
            f"{len(self.unvalidated)} raw partition(s) never validated {list(self.unvalidated)[:10]}",
            f"{len(self.unfeatured)} validated partition(s) without features {list(self.unfeatured)[:10]}",
            f"{len(self.closable_weeks)} incomplete week(s) to train on {list(self.closable_weeks)}",
        ]
        waiting = [f"{w} waits for {', '.join(d)}" for w, d in list(self.open_weeks.items())[:5]]
        return "; ".join(parts) + (f"; open: {'; '.join(waiting)}" if waiting else "")


def zone_backlog(storage: Storage, spec: UseCase, *, min_week_days: int | None = None) -> ZoneBacklog:
    """Compare the zones of `spec` and say what a sweep must re-announce.

    A week is closable when each of its scheduled days is settled (featured or quarantined) and at
    least `min_week_days` are featured, yet fewer than 7: the Airflow rollup (WaitForAll over the 7
    calendar days) never fires for it, e.g. a week with a quarantined day or the schedule's first week.
    Weeks already requested (see `record_week_request`) are not offered again.
    """
    need = min_week_days or spec.model.min_week_days
    raw, validated = _days(storage, "raw", spec), _days(storage, "validated", spec)
    quarantined = _days(storage, "quarantine", spec)
    featured = featured_days(storage, spec)
    requested = set(_requested_weeks(storage, spec))
    unvalidated = sorted(raw - validated - quarantined)
    unfeatured = sorted(validated - featured)
    closable, waiting = [], {}
    weeks = sorted({week_key(date.fromisoformat(d)) for d in featured | quarantined})
    for week in weeks:
        days = [d.isoformat() for d in week_days(week, spec)]
        unsettled = [d for d in days if d not in featured and d not in quarantined]
        done = sum(d in featured for d in days)
        if unsettled:
            waiting[week] = unsettled
        # the rollup fires only when all 7 calendar days arrived: a partial first/last week never does
        elif done < 7 and done >= min(need, len(days)) and week not in requested:
            closable.append(week)
    return ZoneBacklog(tuple(unvalidated), tuple(unfeatured), tuple(closable), waiting)


def _requested_weeks(storage: Storage, spec: UseCase) -> list[str]:
    prefix = f"{STATE_ZONE}/{spec.name}/train_requests/"
    return [json.loads(storage.read_bytes(k))["week"] for k in storage.list(prefix) if k.endswith(".json")]


def record_week_request(storage: Storage, spec: UseCase, week: str, reason: str) -> None:
    """Remember that a training run was requested for `week`, so the sweep asks only once."""
    record = {"week": week, "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    storage.write_bytes(_state_key(spec, "train_requests", parse_week(week).isoformat()), json.dumps(record).encode())


@dataclass(frozen=True)
class SweepRecord:
    """What the previous sweep saw: only what is still behind one sweep later is re-announced."""

    unvalidated: list[str]
    unfeatured: list[str]

    @classmethod
    def load(cls, storage: Storage, spec: UseCase) -> SweepRecord:
        key = _state_key(spec, "sweep", "last")
        if not storage.exists(key):
            return cls([], [])
        doc = json.loads(storage.read_bytes(key))
        return cls(doc.get("unvalidated", []), doc.get("unfeatured", []))

    def save(self, storage: Storage, spec: UseCase) -> None:
        storage.write_bytes(_state_key(spec, "sweep", "last"), json.dumps(asdict(self)).encode())


def sweep(storage: Storage, spec: UseCase, *, immediate: bool = False) -> ZoneBacklog:
    """The partitions to re-announce now, and the weeks to close (recorded so they are asked once).

    Without `immediate`, a partition is re-announced only if the previous sweep saw it behind too:
    one sweep interval of grace, so a partition still on its way is not processed twice.
    """
    found = zone_backlog(storage, spec)
    seen = SweepRecord.load(storage, spec)
    SweepRecord(list(found.unvalidated), list(found.unfeatured)).save(storage, spec)
    if not immediate:
        found = ZoneBacklog(
            tuple(d for d in found.unvalidated if d in seen.unvalidated),
            tuple(d for d in found.unfeatured if d in seen.unfeatured),
            found.closable_weeks,
            found.open_weeks,
        )
    featured = featured_days(storage, spec) if found.closable_weeks else set()
    for week in found.closable_weeks:
        count = sum(d.isoformat() in featured for d in week_days(week, spec))
        record_week_request(storage, spec, week, f"week closed by the sweep with {count} featured day(s)")
    return found
