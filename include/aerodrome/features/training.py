"""Training sets: labelled events joined point-in-time to their features through Feast.

The join is Feast's `get_historical_features` on the DuckDB offline store: for each event it takes,
per view, the newest feature row stamped at or before the event and no older than the view's TTL.
A row id travels with every event and the output is checked against the input: an event is never
dropped or duplicated (Feast's file offline store silently drops some; this raises instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from aerodrome.errors import AerodromeError, SchemaError, SourceError
from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import EVENT_TIMESTAMP
from aerodrome.features.offline import read_validated
from aerodrome.features.repo import (
    apply_definitions,
    feature_refs,
    feature_store,
    features_of,
    quiet_dependencies,
    require_offline_rows,
)
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase

ROW_ID = "row_id"
LABEL = "label"


class FeatureJoinError(AerodromeError):
    """The point-in-time join lost or duplicated events."""


@dataclass(frozen=True)
class TrainingSet:
    """Events in `[start, end)` with their features and label, in event-time order.

    `rows_in` events went into the join and `rows_out` came back (always equal); `unlabelled` events
    had no target (e.g. cancelled flights) and were left out before the join.
    """

    frame: pd.DataFrame
    label: str
    feature_columns: list[str]
    entity_columns: list[str]
    start: datetime
    end: datetime
    rows_in: int
    rows_out: int
    unlabelled: int
    seconds: float

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows_out


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def label_of(spec: UseCase, target: pd.Series) -> pd.Series:
    """The model's label from the target column: `column > threshold` (0/1) or the value itself."""
    if spec.target.task == "classification":
        if spec.target.threshold is None:
            return target.astype("boolean").astype("Int64")
        return (target.astype("float64") > spec.target.threshold).astype("int64")
    return target.astype("float64")


def labelled_events(spec: UseCase, storage: Storage, start: datetime, end: datetime) -> tuple[pd.DataFrame, int]:
    """Events with a known target whose event time lies in `[start, end)`, with a stable row id."""
    builder = builder_for(spec)
    first, last = (_utc(start) - timedelta(days=1)).date(), (_utc(end) + timedelta(days=1)).date()
    events = builder.entity_frame(read_validated(storage, spec, first, last))
    missing = [c for c in [*features_of(spec).request_features, spec.target.column] if c not in events.columns]
    if missing:
        raise SchemaError(
            f"use case {spec.name!r}: the events have no column(s) {', '.join(missing)}; "
            f"fix features.request_features (source or calendar columns) or the builder"
        )
    events = events[(events[EVENT_TIMESTAMP] >= _utc(start)) & (events[EVENT_TIMESTAMP] < _utc(end))]
    known = events[spec.target.column].notna()
    events = events[known].copy()
    events[LABEL] = label_of(spec, events[spec.target.column])
    events = events.drop(columns=[spec.target.column])
    order = [EVENT_TIMESTAMP, *[c for c in events.columns if c not in (EVENT_TIMESTAMP, LABEL)]]
    events = events.sort_values(order, kind="stable").reset_index(drop=True)
    events.insert(0, ROW_ID, range(len(events)))
    return events, int((~known).sum())


def point_in_time_join(spec: UseCase, settings: Settings, events: pd.DataFrame) -> pd.DataFrame:
    """Feast's point-in-time join of `events` (row id, event_timestamp, join keys) to every view."""
    keys = list(features_of(spec).entities)
    entity_df = events[[ROW_ID, EVENT_TIMESTAMP, *keys]]
    require_offline_rows(spec, settings)
    apply_definitions(spec, settings)
    store = feature_store(spec, settings)
    with quiet_dependencies():
        joined = store.get_historical_features(entity_df=entity_df, features=feature_refs(spec)).to_df()
    ids = joined[ROW_ID]
    if len(joined) != len(entity_df) or ids.duplicated().any() or not ids.isin(entity_df[ROW_ID]).all():
        raise FeatureJoinError(
            f"use case {spec.name!r}: the point-in-time join returned {len(joined)} rows "
            f"({joined[ROW_ID].nunique()} distinct) for {len(entity_df)} events; "
            f"no event may be lost or doubled"
        )
    return joined.sort_values(ROW_ID, kind="stable").reset_index(drop=True)


def build_training_set(
    spec: UseCase, settings: Settings, storage: Storage, start: datetime, end: datetime
) -> TrainingSet:
    """The training set of `[start, end)`: labelled events, request features and Feast features."""
    started = time.perf_counter()
    events, unlabelled = labelled_events(spec, storage, start, end)
    if events.empty:
        raise SourceError(f"use case {spec.name!r}: no labelled event between {start} and {end}")
    joined = point_in_time_join(spec, settings, events)
    features = features_of(spec)
    looked_up = [f for v in features.views for f in v.features]
    frame = events.merge(joined[[ROW_ID, *looked_up]], on=ROW_ID, how="left", validate="one_to_one")
    entity_columns = [c for c in features.entities if c in frame.columns]
    return TrainingSet(
        frame=frame,
        label=LABEL,
        feature_columns=[*features.request_features, *looked_up],
        entity_columns=entity_columns,
        start=_utc(start).to_pydatetime(),
        end=_utc(end).to_pydatetime(),
        rows_in=len(events),
        rows_out=len(joined),
        unlabelled=unlabelled,
        seconds=time.perf_counter() - started,
    )
