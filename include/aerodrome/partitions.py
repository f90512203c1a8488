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
VALIDATION_RECORD = "_validation.json"  # aerodrome.validate.gate.RECORD_FILE (importing the gate loads GX)
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


def _days(storage: Storage, zone: str, spec: UseCase, dataset: str | None = None) -> set[str]:
    """The days in `zone` of the use case (or of its dataset `dataset`, e.g. a second source's)."""
    prefix = f"{zone}/{dataset or spec.name}"
    return {p.split("=", 1)[1] for p in storage.partitions(prefix) if p.startswith("date=")}


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


def _recorded_at(storage: Storage, key: str, name: str) -> datetime | None:
    """The time `name` of the JSON record at `key` (None when the record or the field is absent)."""
    try:
        value = json.loads(storage.read_bytes(key)).get(name)
    except (AerodromeError, ValueError):
        return None
    return datetime.fromisoformat(value) if value else None


def source_datasets(spec: UseCase) -> dict[str, str]:
    """The dataset (zone folder) of each second source of `spec`: `{"weather": "flight_delay__weather"}`."""
    from aerodrome.ingest.datasets import dataset_name

    return {source: dataset_name(spec.name, source) for source in spec.sources}


def revalidated_days(storage: Storage, spec: UseCase, days: set[str]) -> set[str]:
    """Those featured `days` that some source (the main one or a second one) validated again after their features
    were recorded: the re-run's event waits for the other sources' events of the day, already consumed."""
    datasets = [spec.name, *source_datasets(spec).values()]
    found = set()
    for ds in days:
        featured = _recorded_at(storage, _state_key(spec, "featured", ds), "at")  # recorded to the second
        if featured is None:
            continue
        for name in datasets:
            validated = _recorded_at(storage, f"validated/{name}/date={ds}/{VALIDATION_RECORD}", "validated_at")
            if validated is not None and validated.replace(microsecond=0) > featured:
                found.add(ds)
                break
    return found


@dataclass(frozen=True)
class ZoneBacklog:
    """Partitions left behind between zones, and weeks ready for training that no rollup will fire."""

    unvalidated: tuple[str, ...] = ()  # in raw, neither validated nor quarantined
    unfeatured: tuple[str, ...] = ()  # validated, features never recorded (or older than a validation of the day)
    closable_weeks: tuple[str, ...] = ()  # every day settled, enough featured, some missing
    open_weeks: dict[str, list[str]] = field(default_factory=dict)  # week -> days not settled yet
    # second source -> the days of `unfeatured` it has validated: re-announced on its own validated asset too, so
    # the features run of a day (which waits for every source's event of the day) starts
    source_unfeatured: dict[str, tuple[str, ...]] = field(default_factory=dict)
    revalidated: tuple[str, ...] = ()  # of `unfeatured`: featured, then validated again in some source

    @property
    def empty(self) -> bool:
        return not (self.unvalidated or self.unfeatured or self.closable_weeks)

    def summary(self) -> str:
        parts = [
            f"{len(self.unvalidated)} raw partition(s) never validated {list(self.unvalidated)[:10]}",
            f"{len(self.unfeatured)} validated partition(s) without features {list(self.unfeatured)[:10]}"
            + (f" ({len(self.revalidated)} validated again after their features)" if self.revalidated else ""),
            *(f"of which validated in {s}: {list(days)[:10]}" for s, days in self.source_unfeatured.items()),
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

    A day is unfeatured when it is validated and its features were never recorded, or were recorded before a
    later validation of the day in any source. A dataset without features (a second source's) only has
    unvalidated days.
    """
    need = min_week_days or spec.model.min_week_days
    raw, validated = _days(storage, "raw", spec), _days(storage, "validated", spec)
    quarantined = _days(storage, "quarantine", spec)
    unvalidated = sorted(raw - validated - quarantined)
    if spec.features is None:  # nothing downstream of this gate to finish
        return ZoneBacklog(tuple(unvalidated))
    featured = featured_days(storage, spec)
    requested = set(_requested_weeks(storage, spec))
    revalidated = revalidated_days(storage, spec, validated & featured)
    unfeatured = sorted((validated - featured) | revalidated)
    in_sources = {}
    for source, name in source_datasets(spec).items():
        ready = _days(storage, "validated", spec, name)
        in_sources[source] = tuple(d for d in unfeatured if d in ready)
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
    return ZoneBacklog(
        tuple(unvalidated), tuple(unfeatured), tuple(closable), waiting, in_sources, tuple(sorted(revalidated))
    )


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
            {s: tuple(d for d in days if d in seen.unfeatured) for s, days in found.source_unfeatured.items()},
            tuple(d for d in found.revalidated if d in seen.unfeatured),
        )
    featured = featured_days(storage, spec) if found.closable_weeks else set()
    for week in found.closable_weeks:
        count = sum(d.isoformat() in featured for d in week_days(week, spec))
        record_week_request(storage, spec, week, f"week closed by the sweep with {count} featured day(s)")
    return found


def companion_datasets(spec: UseCase, source: str | None) -> list[str]:
    """The use case's other datasets whose validated day a features run also waits for (main source and
    second sources), as seen from dataset `source` (None: the main source)."""
    from aerodrome.ingest.datasets import dataset_name

    datasets = [dataset_name(spec.name, s) for s in [None, *spec.sources]]
    return [d for d in datasets if d != dataset_name(spec.name, source)]


def companions_to_reannounce(
    storage: Storage, spec: UseCase, source: str | None, ds: str, since: datetime | None = None
) -> list[str]:
    """After dataset `source` validated `ds` again: its companions to announce once more, so the features of a
    day that was featured already run again (their own events were consumed by its first features run).

    Empty on a day not featured yet (each dataset announces itself on the first pass, exactly one features run),
    when the day was featured at or after `since` (the validate run's start: its features already saw this
    validation, e.g. a task re-run after a scheduler restart), and when a companion has no validated partition
    of the day (the features would wait for it anyway).
    """
    featured = _state_key(spec, "featured", ds)
    if not storage.exists(featured):  # one key per check: no listing of the whole zone on each validate run
        return []
    featured_at = _recorded_at(storage, featured, "at")
    if since is not None and featured_at is not None and featured_at >= since.replace(microsecond=0):
        return []
    companions = companion_datasets(spec, source)
    if any(not storage.exists(f"validated/{name}/date={ds}") for name in companions):
        return []
    return companions
