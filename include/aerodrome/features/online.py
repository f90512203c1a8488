"""The online store: materialize feature rows into it, check they are fresh, look them up.

`materialize` brings each view from its watermark up to `end` (the interval's horizon), reading only
the partitions of that window, so a day's cost does not grow with the history stored. A view never
materialized is seeded over its TTL (Feast's `materialize_incremental` would start from the wall
clock minus the TTL, which lies after replayed data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.offline import DAY_SLACK, latest_stamp, read_view_window
from aerodrome.features.repo import (
    apply_definitions,
    feature_store,
    features_of,
    project_name,
    quiet_dependencies,
    require_offline_rows,
    store_entry,
)
from aerodrome.settings import Settings
from aerodrome.storage import open_storage
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


def _latest_per_entity(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest row of each entity (what Feast's materialization keeps); rows with a null key dropped."""
    if rows.empty:
        return rows
    rows = rows.dropna(subset=keys)
    return rows.sort_values(EVENT_TIMESTAMP, kind="stable").drop_duplicates(keys, keep="last")


def materialize(spec: UseCase, settings: Settings, end: datetime, day: date | None = None) -> MaterializeResult:
    """Bring the online store up to `end`: incremental from each view's watermark (seeded over its TTL).

    The window's rows are read from the partitions that can hold them (not the view's whole history),
    reduced to the newest row per entity and written with Feast's `write_to_online_store`; the view's
    watermark then moves to `end` in the Feast registry, as Feast's own `materialize` records it.
    `day`: the day just (re)computed. When the watermark has passed it already (a day released from
    quarantine late, or re-run after a fix), its rows are written again: the window then starts at
    that day and ends at the watermark, so an entity keeps its newest row and the store never goes back.
    """
    end = _utc(end)
    require_offline_rows(spec, settings)
    apply_definitions(spec, settings)
    store = feature_store(spec, settings)
    store.refresh_registry()
    storage = open_storage(settings.data_root, settings)
    project = project_name(spec, settings)
    revisit = None
    if day is not None:
        revisit = (_utc(builder_for(spec).horizon(day)), datetime.combine(day - DAY_SLACK, datetime.min.time(), UTC))
    done, seconds = [], 0.0
    for view in features_of(spec).views:
        registered = store.get_feature_view(view.name)
        watermark = _utc(registered.most_recent_end_time) if registered.most_recent_end_time else None
        upto = max(end, watermark) if watermark else end
        if watermark is None:
            start = end - timedelta(hours=view.ttl_hours)
        elif revisit is not None and revisit[0] <= watermark:
            start = revisit[1]  # the day lies behind the watermark: write its window again
        elif watermark >= end:
            done.append(ViewMaterialization(view.name, watermark, end, 0, 0, skipped=True))
            continue
        else:
            start = watermark
        rows = read_view_window(storage, spec, view.name, start, upto)
        latest = _latest_per_entity(rows, list(view.entities))
        began = time.perf_counter()
        with quiet_dependencies():
            if len(latest):
                store.write_to_online_store(view.name, df=latest, transform_on_write=False)
            if watermark is None or upto > watermark:
                store.registry.apply_materialization(registered, project, start, upto, commit=True)
        seconds += time.perf_counter() - began
        done.append(ViewMaterialization(view.name, start, upto, len(rows), len(latest)))
    store.refresh_registry()
    return MaterializeResult(spec.name, settings.online_store, end, seconds, tuple(done))


def check_freshness(spec: UseCase, settings: Settings, now: datetime) -> FreshnessResult:
    """Each view is fresh when its watermark and its newest row are at most its TTL older than `now`.

    Past the TTL an online lookup returns nothing for that view, so the model would serve on nulls.
    """
    now = _utc(now)
    store = feature_store(spec, settings)
    store.refresh_registry()
    storage = open_storage(settings.data_root, settings)
    checks = []
    for view in features_of(spec).views:
        max_age = timedelta(hours=view.ttl_hours)
        watermark = store.get_feature_view(view.name).most_recent_end_time
        watermark = _utc(watermark) if watermark else None
        latest = latest_stamp(storage, spec, view.name, now)
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


class OnlineReader:
    """The serving path's online lookup: what `online_features` returns, read view by view.

    Feast's `get_online_features` plans every request anew (feature references, views, entity
    columns, response protos: ~1.5 ms of Python for a 1-row lookup); here the views, join keys and
    key types are resolved once and each view is one `online_read` of the Feast online store. Build
    a new reader after the definitions change (the gateway does on reload).
    """

    def __init__(self, spec: UseCase, settings: Settings) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type

        store = feature_store(spec, settings)
        entities = features_of(spec).entities
        self._config, self._provider = store.config, store.provider
        self._entity_key, self._value, self._python = EntityKey, Value, feast_value_type_to_python_type
        self._fields = {name: _VALUE_FIELDS[str(kind)] for name, kind in entities.items()}
        self._views = [
            (store.get_feature_view(view.name), list(view.entities), list(view.features))
            for view in features_of(spec).views
        ]
        self.features = [f for _, _, names in self._views for f in names]

    def _key(self, row: dict[str, Any], keys: list[str]) -> Any:
        values = [self._value(**{self._fields[k]: row[k]}) for k in keys]
        return self._entity_key(join_keys=keys, entity_values=values)

    def read(self, entity_rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Every feature for `entity_rows` (each names every join key), column-wise; None where nothing is stored."""
        out: dict[str, list[Any]] = {}
        for view, keys, names in self._views:
            found = self._provider.online_read(self._config, view, [self._key(r, keys) for r in entity_rows], names)
            for name in names:
                out[name] = [
                    None if values is None or name not in values else self._python(values[name]) for _, values in found
                ]
        return out


_VALUE_FIELDS = {"string": "string_val", "int": "int64_val", "float": "double_val", "bool": "bool_val"}
