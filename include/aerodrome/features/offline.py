"""The offline store: feature rows as Parquet partitions `features/<usecase>/<view>/date=<ds>/`.

`compute_features` is the features step of one interval: it reads the validated partition and the
history its trailing windows need, computes every declared view and replaces that interval's feature
partitions, so a re-run gives the same rows and never duplicates them.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aerodrome.errors import SchemaError, SourceError
from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import DAY, EVENT_TIMESTAMP
from aerodrome.ingest.partition import DATA_FILE, MANIFEST_FILE, partition_key, read_partition
from aerodrome.storage import Storage
from aerodrome.usecase import ColumnType, FeatureView, UseCase

VALIDATED_ZONE = "validated"
DAY_SLACK = timedelta(days=2)  # a day's feature rows are stamped within this of the day (UTC)
FEATURES_ZONE = "features"

_ARROW = {
    ColumnType.string: pa.string(),
    ColumnType.int: pa.int64(),
    ColumnType.float: pa.float64(),
    ColumnType.bool: pa.bool_(),
}


@dataclass(frozen=True)
class FeatureWriteResult:
    """What the features step wrote for one interval; `horizon` is where to materialize up to."""

    usecase: str
    ds: str
    horizon: datetime
    rows: dict[str, int]
    uris: dict[str, str]
    history_partitions: int
    sha256: dict[str, str] = field(default_factory=dict)


def view_prefix(spec: UseCase, view: str) -> str:
    return f"{FEATURES_ZONE}/{spec.name}/{view}"


def view_glob(storage: Storage, spec: UseCase, view: str) -> str:
    """Every Parquet file of a view, as the offline store reads them (absolute path or s3:// URI)."""
    return f"{storage.uri(view_prefix(spec, view))}/*/{DATA_FILE}"


def view_days(storage: Storage, spec: UseCase, view: str) -> list[date]:
    """The days of a view's offline partitions, oldest first."""
    return [date.fromisoformat(p.removeprefix("date=")) for p in storage.partitions(view_prefix(spec, view))]


def read_view_window(storage: Storage, spec: UseCase, view: str, start: datetime, end: datetime) -> pd.DataFrame:
    """A view's offline rows stamped in [start, end], reading only the partitions that can hold them.

    A day's partition holds rows stamped within `DAY_SLACK` of that day (checked when it is written),
    so the cost follows the window, not the history stored.
    """
    first, last = start.date() - DAY_SLACK, end.date() + DAY_SLACK
    frames = [
        pd.read_parquet(io.BytesIO(storage.read_bytes(f"{view_prefix(spec, view)}/date={d}/{DATA_FILE}")))
        for d in view_days(storage, spec, view)
        if first <= d <= last
    ]
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    stamps = rows[EVENT_TIMESTAMP]
    return rows[(stamps >= start) & (stamps <= end)].reset_index(drop=True)


def latest_stamp(storage: Storage, spec: UseCase, view: str, now: datetime) -> datetime | None:
    """The newest row stamp of a view at or before `now`, reading partitions newest first."""
    best: datetime | None = None
    for day in reversed(view_days(storage, spec, view)):
        if day - DAY_SLACK > now.date():
            continue  # every row of that day is stamped after `now`
        if best is not None and day + DAY_SLACK < best.date():
            break  # older days cannot hold a newer stamp
        data = storage.read_bytes(f"{view_prefix(spec, view)}/date={day}/{DATA_FILE}")
        stamps = pq.read_table(io.BytesIO(data), columns=[EVENT_TIMESTAMP]).column(EVENT_TIMESTAMP).to_pandas()
        stamps = stamps[stamps <= now]
        if len(stamps) and (best is None or stamps.max() > best):
            best = stamps.max().to_pydatetime()
    return best


def validated_days(storage: Storage, spec: UseCase) -> list[date]:
    prefix = f"{VALIDATED_ZONE}/{spec.name}"
    return [date.fromisoformat(p.removeprefix("date=")) for p in storage.partitions(prefix)]


def read_validated(storage: Storage, spec: UseCase, first: date, last: date) -> pd.DataFrame:
    """Validated partitions from `first` to `last` (those that exist), with their day in `_day`."""
    frames = []
    for day in validated_days(storage, spec):
        if first <= day <= last:
            frame = read_partition(storage, partition_key(VALIDATED_ZONE, spec.name, day.isoformat()))
            frames.append(frame.assign(**{DAY: pd.Timestamp(day)}))
    if not frames:
        raise SourceError(
            f"{storage.uri(f'{VALIDATED_ZONE}/{spec.name}')}: no validated partition between {first} "
            f"and {last}; run ingest and validate for these intervals first"
        )
    return pd.concat(frames, ignore_index=True)


def conform_view(spec: UseCase, view: FeatureView, frame: pd.DataFrame) -> pa.Table:
    """The builder's rows as the declared schema: event_timestamp, entities, features; checked unique."""
    assert spec.features is not None
    declared = {**{e: spec.features.entities[e] for e in view.entities}, **view.features}
    missing = [c for c in [EVENT_TIMESTAMP, *declared] if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"feature view {view.name!r}: its computation ({view.kind or view.computation}) produced no "
            f"column(s) {', '.join(missing)}; fix the view's features in the spec or its computation"
        )
    keys = [*view.entities, EVENT_TIMESTAMP]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        example = frame.loc[duplicated, keys].iloc[0].to_dict()
        raise SchemaError(
            f"feature view {view.name!r}: {int(duplicated.sum())} row(s) share entity and timestamp "
            f"(e.g. {example}); a point-in-time join could pick either"
        )
    arrays = {EVENT_TIMESTAMP: pa.array(pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.as_unit("us"))}
    for column, kind in declared.items():
        values = frame[column]
        if kind is ColumnType.string:
            values = values.astype("string")
        elif kind is ColumnType.int:
            values = values.astype("Int64")
        arrays[column] = pa.array(values, type=_ARROW[kind], from_pandas=True)
    return pa.table(arrays)


def _require_stamps_near(spec: UseCase, view: str, day: date, table: pa.Table) -> None:
    """A day's rows must be stamped within `DAY_SLACK` of it: the online step reads by day."""
    if not table.num_rows:
        return
    stamps = table.column(EVENT_TIMESTAMP).to_pandas()
    low = pd.Timestamp(day - DAY_SLACK, tz="UTC")
    high = pd.Timestamp(day + DAY_SLACK + timedelta(days=1), tz="UTC")
    outside = stamps[(stamps < low) | (stamps >= high)]
    if len(outside):
        raise SchemaError(
            f"feature view {view!r} of {spec.name!r}, day {day}: {len(outside)} row(s) stamped outside "
            f"{low:%Y-%m-%d} .. {high:%Y-%m-%d} UTC (e.g. {outside.iloc[0]}); a day's builder must stamp "
            f"its rows within {DAY_SLACK.days} days of the day"
        )


def _by_day(frames: dict[str, pd.DataFrame]) -> dict[str, dict[pd.Timestamp | None, pd.DataFrame]]:
    """Each view's rows split by partition day; key None holds an empty frame with the columns."""
    return {
        view: {None: frame.iloc[0:0], **dict(list(frame.groupby(DAY, sort=False)))} for view, frame in frames.items()
    }


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _write_day(
    storage: Storage,
    spec: UseCase,
    day: date,
    frames: dict[str, dict[pd.Timestamp | None, pd.DataFrame]],
    horizon: datetime,
    history: int,
) -> FeatureWriteResult:
    assert spec.features is not None
    ds = day.isoformat()
    rows, uris, digests = {}, {}, {}
    for view in spec.features.views:
        by_day = frames[view.name]
        table = conform_view(spec, view, by_day.get(pd.Timestamp(day), by_day[None]))
        _require_stamps_near(spec, view.name, day, table)
        data = _parquet(table)
        key = f"{view_prefix(spec, view.name)}/date={ds}"
        manifest = {
            "rows": table.num_rows,
            "sha256": hashlib.sha256(data).hexdigest(),
            "horizon": horizon.isoformat(),
        }
        storage.replace_prefix(key, {DATA_FILE: data, MANIFEST_FILE: json.dumps(manifest, indent=2).encode()})
        rows[view.name], uris[view.name], digests[view.name] = (
            table.num_rows,
            storage.uri(key),
            manifest["sha256"],
        )
    return FeatureWriteResult(spec.name, ds, horizon, rows, uris, history, digests)


def compute_features_range(spec: UseCase, storage: Storage, first: date, last: date) -> list[FeatureWriteResult]:
    """Compute and write every validated interval from `first` to `last` in one pass (a backfill).

    Gives the same rows as `compute_features` day by day, reading the history once.
    """
    builder = builder_for(spec)
    days = [d for d in validated_days(storage, spec) if first <= d <= last]
    if not days:
        raise SourceError(f"use case {spec.name!r}: no validated partition between {first} and {last}")
    history = read_validated(storage, spec, days[0] - timedelta(days=builder.lookback_days), days[-1])
    frames = _by_day(builder.build(history, days, storage=storage))
    partitions = history[DAY].nunique()
    return [_write_day(storage, spec, d, frames, builder.horizon(d), partitions) for d in days]


def compute_features(spec: UseCase, storage: Storage, ds: str) -> FeatureWriteResult:
    """The features of interval `ds` (YYYY-MM-DD) from its validated partition and trailing history."""
    builder = builder_for(spec)
    day = date.fromisoformat(ds)
    if not storage.exists(f"{partition_key(VALIDATED_ZONE, spec.name, ds)}/{DATA_FILE}"):
        raise SourceError(
            f"{storage.uri(partition_key(VALIDATED_ZONE, spec.name, ds))}: no validated partition for {ds}; "
            f"the validate step must pass for this interval before features run"
        )
    history = read_validated(storage, spec, day - timedelta(days=builder.lookback_days), day)
    frames = _by_day(builder.build(history, [day], storage=storage))
    return _write_day(storage, spec, day, frames, builder.horizon(day), history[DAY].nunique())
