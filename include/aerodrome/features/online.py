"""The online store: materialize feature rows into it, check they are fresh, look them up.

`materialize` runs Feast's `materialize_incremental` from each view's watermark up to `end` (the
interval's horizon). A view never materialized is seeded over its TTL first, because Feast would
otherwise start from the wall clock minus the TTL, which lies after replayed data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.repo import (
    apply_definitions,
    feature_store,
    features_of,
    quiet_dependencies,
    require_offline_rows,
    store_entry,
    view_sources,
)
from aerodrome.settings import Settings
from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class ViewMaterialization:
    view: str
    start: datetime | None
    end: datetime
    rows: int  # offline rows in the window
    entities: int  # distinct entities written (Feast keeps the latest row of each)
    skipped: bool = False


@dataclass(frozen=True)
class MaterializeResult:
    usecase: str
    online_store: str
    end: datetime
    seconds: float  # time spent in Feast
    views: tuple[ViewMaterialization, ...]

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.views)

    @property
    def entities(self) -> int:
        return sum(v.entities for v in self.views)


@dataclass(frozen=True)
class ViewFreshness:
    view: str
    watermark: datetime | None
    latest_event: datetime | None
    max_age: timedelta
    ok: bool
    reason: str


@dataclass(frozen=True)
class FreshnessResult:
    usecase: str
    now: datetime
    views: tuple[ViewFreshness, ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.views)

    def summary(self) -> str:
        stale = [f"{v.view}: {v.reason}" for v in self.views if not v.ok]
        return "all views fresh" if not stale else "stale feature views: " + "; ".join(stale)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _window_counts(path: str, keys: list[str], start: datetime | None, end: datetime) -> tuple[int, int]:
    where = f"{EVENT_TIMESTAMP} <= $end" + (f" AND {EVENT_TIMESTAMP} >= $start" if start else "")
    distinct = ", ".join(f'"{k}"' for k in keys)
    query = f"SELECT count(*), count(DISTINCT ({distinct})) FROM read_parquet('{path}') WHERE {where}"
    params: dict[str, Any] = {"end": end, **({"start": start} if start else {})}
    with duckdb.connect() as con:
        rows, entities = con.execute(query, params).fetchone()
    return int(rows), int(entities)


def materialize(spec: UseCase, settings: Settings, end: datetime) -> MaterializeResult:
    """Bring the online store up to `end`: incremental from each view's watermark (seeded over its TTL)."""
    end = _utc(end)
    require_offline_rows(spec, settings)
    apply_definitions(spec, settings)
    store = feature_store(spec, settings)
    store.refresh_registry()
    sources = view_sources(spec, settings)
    seeds, incremental, done = [], [], []
    for view in features_of(spec).views:
        watermark = store.get_feature_view(view.name).most_recent_end_time
        if watermark is None:
            seeds.append((view, end - timedelta(hours=view.ttl_hours)))
        elif _utc(watermark) >= end:
            done.append(ViewMaterialization(view.name, _utc(watermark), end, 0, 0, skipped=True))
        else:
            incremental.append((view, _utc(watermark)))
    started = time.perf_counter()
    with quiet_dependencies():
        for view, start in seeds:
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        if incremental:
            store.materialize_incremental(end_date=end, feature_views=[v.name for v, _ in incremental])
    seconds = time.perf_counter() - started
    for view, start in seeds + incremental:
        rows, entities = _window_counts(sources[view.name], list(view.entities), start, end)
        done.append(ViewMaterialization(view.name, start, end, rows, entities))
    order = {v.name: i for i, v in enumerate(features_of(spec).views)}
    views = tuple(sorted(done, key=lambda v: order[v.view]))
    return MaterializeResult(spec.name, settings.online_store, end, seconds, views)


def check_freshness(spec: UseCase, settings: Settings, now: datetime) -> FreshnessResult:
    """Each view is fresh when its watermark and its newest row are at most its TTL older than `now`.

    Past the TTL an online lookup returns nothing for that view, so the model would serve on nulls.
    """
    now = _utc(now)
    store = feature_store(spec, settings)
    store.refresh_registry()
    sources = view_sources(spec, settings)
    checks = []
    for view in features_of(spec).views:
        max_age = timedelta(hours=view.ttl_hours)
        watermark = store.get_feature_view(view.name).most_recent_end_time
        watermark = _utc(watermark) if watermark else None
        with duckdb.connect() as con:
            (latest,) = con.execute(
                f"SELECT max({EVENT_TIMESTAMP}) FROM read_parquet('{sources[view.name]}') "
                f"WHERE {EVENT_TIMESTAMP} <= $now",
                {"now": now},
            ).fetchone()
        latest = _utc(latest) if latest else None
        if watermark is None:
            ok, reason = False, "never materialized"
        elif now - watermark > max_age:
            ok, reason = (
                False,
                f"online store materialized up to {watermark:%Y-%m-%d %H:%M}Z, older than {max_age}",
            )
        elif latest is None or now - latest > max_age:
            newest = f"{latest:%Y-%m-%d %H:%M}Z" if latest else "none"
            ok, reason = False, f"newest feature row {newest}, older than {max_age}"
        else:
            ok, reason = True, "fresh"
        checks.append(ViewFreshness(view.name, watermark, latest, max_age, ok, reason))
    return FreshnessResult(spec.name, now, tuple(checks))


def online_features(spec: UseCase, settings: Settings, entity_rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The platform's online lookup: every feature of the use case for `entity_rows`, column-wise.

    Each row names every join key of `features.entities` (for flights: carrier, origin, dest,
    tailnum, dep_hour, weekday); a value is None where the online store holds nothing fresh.
    """
    entry = store_entry(spec, settings)
    return entry.store.get_online_features(features=entry.refs, entity_rows=entity_rows).to_dict()
