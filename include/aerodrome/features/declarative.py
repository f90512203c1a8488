"""The declarative feature engine: views computed from the spec alone, point-in-time correct by construction.

Each kind stamps a row at the moment its value became known, never earlier:

- `trailing`, `every: day`: one row per entity at local midnight after day D, aggregating the rows whose
  `known_at` fell on the days of the window (a row counts from the later of its known day and its
  partition day, so computing D alone or in a range gives the same rows); an entity gets a row when it
  has a known row in a window;
- `trailing`, `every: hour`: rows at each full hour H of day D for every entity with a known row in the
  day or the widest window before it, aggregating rows of partitions up to D known in `[H - N h, H)`;
- `lag`: the latest known value (or the N-th latest) stamped at its `known_at`; with `days`/`hours`,
  the value of an event stamped that long after it (and never before it was known);
- `asof`: a second source's rows, stamped at their own timestamp (`time`), for the point-in-time join;
- `compute: module:function`: what the function returns (signature in `aerodrome.features.hooks`).

Everything is vectorised: daily windows are cumulative sums on a (key x day) grid (`np.bincount`), hourly
windows binary searches on rows sorted by (key, known_at).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.columns import ColumnType
from aerodrome.errors import SchemaError, SourceError, SpecError
from aerodrome.features.builders.base import (
    DAY,
    EVENT_TIMESTAMP,
    Computation,
    DayClock,
    FeatureBuilder,
    number,
    text,
    utc_instant,
    whole,
)
from aerodrome.features.checks import SOURCE_DATASET, calendar_types, validate_features, window_days
from aerodrome.features.hooks import load_hook
from aerodrome.features.spec import FeatureDef, FeatureView, Holiday, parse_condition
from aerodrome.usecase import UseCase

EVENT_TIME = "_event_time"  # the prediction moment of each row (UTC), in the prepared frame
PANDAS_TYPES = {
    ColumnType.string: "string",
    ColumnType.int: "Int64",
    ColumnType.float: "float64",
    ColumnType.bool: "boolean",
    ColumnType.timestamp: "datetime64[us, UTC]",
}


@dataclass
class FeatureContext:
    """What a `module:function` gets besides the frame: the days wanted, the day clock, the storage."""

    usecase: UseCase
    days: list[pd.Timestamp]
    clock: DayClock
    usecase_dir: Path | None = None
    storage: Any = None  # aerodrome.storage.Storage when computing for the offline store
    extra: dict[str, Any] = field(default_factory=dict)


def usecase_folder(spec: UseCase) -> Path | None:
    """The spec's folder: under the configured use-cases folder, else the project's own."""
    from aerodrome.settings import PROJECT_ROOT, Settings

    for root in (Settings.from_env().usecases_dir, PROJECT_ROOT / "include" / "usecases"):
        if (root / spec.name / "usecase.yaml").is_file():
            return root / spec.name
    return None


def declared_sources(spec: UseCase) -> dict[str, dict[str, ColumnType]] | None:
    """The spec's second sources (name -> columns), when the spec declares any."""
    sources = getattr(spec, "sources", None)
    if not sources:
        return None
    return {name: dict(getattr(s, "columns", {}) or {}) for name, s in dict(sources).items()}


class DeclarativeBuilder(FeatureBuilder):
    """Computes a `features:` section without a builder: kinds and module:function views."""

    def __init__(
        self,
        spec: UseCase,
        usecase_dir: Path | None = None,
        sources: Mapping[str, Mapping[str, ColumnType]] | None = None,
    ) -> None:
        assert spec.features is not None
        self.usecase_dir = usecase_dir if usecase_dir is not None else usecase_folder(spec)
        self.sources = dict(sources) if sources is not None else declared_sources(spec)
        schedule = spec.schedule
        span = (schedule.end_date - schedule.start_date).days + 1 if schedule.end_date else None
        problems = validate_features(
            spec.features,
            spec.columns,
            self.usecase_dir,
            sources=self.sources,
            schedule_days=span,
            event_timestamp=spec.event_timestamp,
        )
        if problems:
            raise SpecError(f"use case {spec.name!r} ({self.usecase_dir}): " + "; ".join(problems))
        self.hooks = {
            v.name: load_hook(v.hook, "compute", self.usecase_dir, f"{spec.name}: features.views[{i}].compute")
            for i, v in enumerate(spec.features.views)
            if v.hook
        }
        self.derivers = [
            load_hook(d.function, "derive", self.usecase_dir, f"{spec.name}: features.derive[{i}].function")
            for i, d in enumerate(spec.features.derive)
        ]
        super().__init__(spec)
        self.holidays = {
            column: self._holiday_dates(part.holiday)
            for column, part in self.features.calendar.items()
            if isinstance(part, Holiday)
        }
        self.calendar = calendar_types(self.features)
        self.EVENT_TYPES = self._event_types()
        self._known_days: dict[tuple, tuple[pd.DataFrame, pd.Series]] = {}

    # -- the builder interface ------------------------------------------------------------------

    def computation(self, view: FeatureView) -> Computation:
        if view.hook:
            return lambda f, v, days: self._hooked(f, v, days)
        return {"trailing": self._trailing, "lag": self._lag, "asof": self._asof}[view.kind]  # type: ignore[index]

    @property
    def lookback_days(self) -> int:
        days = [1]
        for view in self.features.views:
            for d in view.definitions.values():
                if view.kind == "trailing":
                    days.append(math.ceil(window_days(d)) + 1)
                elif view.kind == "lag":
                    days.append(math.ceil((d.days or 0) + (d.hours or 0) / 24) + (7 if (d.periods or 1) > 1 else 0))
            if view.hook:
                days.append(getattr(self.hooks[view.name], "lookback_days", 0))
        days += [getattr(fn, "lookback_days", 0) for fn in self.derivers]
        return max(days) + 1  # + outcomes known the day after their partition

    def build(self, history: pd.DataFrame, days: Sequence[date], storage: Any = None) -> dict[str, pd.DataFrame]:
        self.storage, self._known_days = storage, {}
        try:
            return super().build(history, days)
        finally:
            self._known_days = {}

    def prepare(self, history: pd.DataFrame) -> pd.DataFrame:
        f = history.copy()
        f[EVENT_TIME] = self._event_times(history)
        local = self.clock.local(f[EVENT_TIME])
        for column, part in self.features.calendar.items():
            f[column] = self._calendar_part(local, column, part)
        context = self._context([])
        for step, fn in zip(self.features.derive, self.derivers, strict=True):
            out = fn(f, context)
            missing = [c for c in step.columns if not isinstance(out, pd.DataFrame) or c not in out.columns]
            if missing:
                raise SchemaError(
                    f"{self.spec.name}: derive {step.function} returned no column(s) {', '.join(missing)}; "
                    "it must return the frame with the declared columns added"
                )
            f = out
        return f

    def _event_types(self) -> dict[str, str]:
        names = list(dict.fromkeys([*self.features.entities, *self.features.request_features]))
        types = {}
        for name in names:
            if name in self.calendar:
                types[name] = "boolean" if self.calendar[name] is ColumnType.bool else "int64"
            else:
                types[name] = PANDAS_TYPES[self.spec.columns[name]]
        return types

    def event_row(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The prediction moment, entities and request features of one raw row (calendar parts local)."""
        column, minutes = self._event_columns()
        moment = utc_instant(raw[column], column)
        if minutes:
            moment += timedelta(minutes=number(raw[minutes], minutes))
        local = pd.Timestamp(moment).tz_convert(self.clock.tz)
        row: dict[str, Any] = {EVENT_TIMESTAMP: moment}
        for name in self.EVENT_TYPES:
            if name in self.calendar:
                row[name] = self._calendar_value(local, name, self.features.calendar[name])
                continue
            kind, value = self.spec.columns[name], raw[name]
            if kind is ColumnType.string:
                row[name] = text(value)
            elif kind is ColumnType.int:
                row[name] = whole(value, name)
            elif kind is ColumnType.float:
                row[name] = number(value, name)
            elif kind is ColumnType.timestamp:
                row[name] = utc_instant(value, name)
            else:
                row[name] = None if value is None else bool(value)
        return row

    # -- event time and calendar ----------------------------------------------------------------

    def _event_columns(self) -> tuple[str, str | None]:
        event = self.features.event_time
        return (event.column, event.add_minutes) if event else (self.spec.event_timestamp, None)

    def _event_times(self, frame: pd.DataFrame) -> pd.Series:
        column, minutes = self._event_columns()
        moments = pd.to_datetime(frame[column], utc=True).dt.as_unit("us")
        if minutes:
            moments = moments + pd.to_timedelta(frame[minutes].astype("float64"), unit="m")
        return moments

    def _holiday_dates(self, name: str) -> set[date]:
        path = (self.usecase_dir / name) if self.usecase_dir else Path(name)
        return set(pd.to_datetime(pd.read_csv(path, usecols=["date"])["date"]).dt.date)

    def _calendar_part(self, local: pd.Series, column: str, part: str | Holiday) -> pd.Series:
        if isinstance(part, Holiday):
            return local.dt.date.isin(self.holidays[column])
        values = {
            "hour": lambda: local.dt.hour,
            "weekday": lambda: local.dt.weekday,
            "month": lambda: local.dt.month,
            "day": lambda: local.dt.day,
            "minute_of_day": lambda: local.dt.hour * 60 + local.dt.minute,
            "day_of_year": lambda: local.dt.dayofyear,
            "week": lambda: local.dt.isocalendar().week,
        }[part]()
        return values.astype("int64")

    def _calendar_value(self, local: pd.Timestamp, column: str, part: str | Holiday) -> Any:
        if isinstance(part, Holiday):
            return local.date() in self.holidays[column]
        return {
            "hour": local.hour,
            "weekday": local.weekday(),
            "month": local.month,
            "day": local.day,
            "minute_of_day": local.hour * 60 + local.minute,
            "day_of_year": local.dayofyear,
            "week": local.isocalendar()[1],
        }[part]

    def _context(self, days: list[pd.Timestamp]) -> FeatureContext:
        return FeatureContext(self.spec, days, self.clock, self.usecase_dir, getattr(self, "storage", None))

    def _known_at(self, f: pd.DataFrame, view: FeatureView) -> pd.Series:
        known = _utc(f[view.known_at]) if view.known_at else f[EVENT_TIME]
        return known + pd.Timedelta(minutes=view.known_after_minutes) if view.known_after_minutes else known

    # -- trailing -------------------------------------------------------------------------------

    def _trailing(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        keys = list(view.entities)
        needed = list(dict.fromkeys([*keys, DAY, *(d.column for d in view.definitions.values() if d.column)]))
        known = self._known_at(f, view)
        usable = (known.notna() & f[keys].notna().all(axis=1)).to_numpy()
        if view.every == "hour":
            return self._trailing_hourly(f.loc[usable, needed], known[usable], view, days)
        return self._trailing_daily(f[needed], usable, self._known_day(f, view), view, days)

    def _known_day(self, f: pd.DataFrame, view: FeatureView) -> pd.Series:
        """The partition-local day each row became known, never before its partition (computed once per build)."""
        key = (id(f), view.known_at, view.known_after_minutes)
        cached = self._known_days.get(key)
        if cached is None or cached[0] is not f:
            days = np.maximum(self.clock.local_day(self._known_at(f, view)), f[DAY])
            self._known_days[key] = cached = (f, days)
        return cached[1]

    def _trailing_daily(
        self, f: pd.DataFrame, usable: np.ndarray, known_day: pd.Series, view: FeatureView, days: list[pd.Timestamp]
    ) -> pd.DataFrame:
        keys = list(view.entities)
        wanted = pd.DatetimeIndex(sorted(set(days)))
        reach = max(d.days + d.lag for d in view.definitions.values())  # type: ignore[operator]
        first, last = wanted.min() - pd.Timedelta(days=reach - 1), wanted.max()
        inside = usable & ((known_day >= first) & (known_day <= last)).to_numpy()
        f, known_day = f.loc[inside], known_day[inside]
        span = (last - first).days + 1
        codes, uniques = _factorize(f, keys)
        slot = codes * span + ((known_day - first) // pd.Timedelta(days=1)).to_numpy()
        size = len(uniques) * span
        at = ((wanted - first) // pd.Timedelta(days=1)).to_numpy()  # day positions asked for
        values = _Values(f)

        running_sums: dict[str, np.ndarray] = {}

        def window(series: str, d: FeatureDef) -> np.ndarray:
            """Sum of a value column over the window of `d` ending on each wanted day: (days, keys)."""
            running = running_sums.get(series)
            if running is None:
                grid = np.bincount(slot, weights=values.get(series), minlength=size).reshape(len(uniques), span)
                running = running_sums[series] = np.concatenate(
                    [np.zeros((len(uniques), 1)), grid.cumsum(axis=1)], axis=1
                )
            end = np.clip(at + 1 - d.lag, 0, span)
            start = np.clip(end - d.days, 0, span)  # type: ignore[operator]
            return (running[:, end] - running[:, start]).T

        def extreme(column: str, d: FeatureDef, how: str) -> np.ndarray:
            cells = pd.Series(values.get(f"value:{column}")).groupby(slot).agg(how)
            grid = np.full(size, np.nan)
            grid[cells.index.to_numpy()] = cells.to_numpy()
            rolled = pd.DataFrame(grid.reshape(len(uniques), span).T).rolling(d.days, min_periods=1).agg(how)
            end = at - d.lag
            out = np.full((len(at), len(uniques)), np.nan)
            ok = end >= 0
            out[ok] = rolled.to_numpy()[end[ok]]
            return out

        active = np.zeros((len(at), len(uniques)), dtype=bool)
        for d in view.definitions.values():
            active |= window("rows", d) > 0
        day_pos, key_pos = np.nonzero(active)
        out = uniques.iloc[key_pos].reset_index(drop=True)
        out[DAY] = wanted[day_pos]
        out[EVENT_TIMESTAMP] = self.clock.end_of_days(out[DAY])
        for name, d in view.definitions.items():
            result = _aggregate(d, lambda s, d=d: window(s, d), lambda c, how, d=d: extreme(c, d, how))
            out[name] = result[day_pos, key_pos]
        return out

    def _trailing_hourly(
        self, f: pd.DataFrame, known: pd.Series, view: FeatureView, days: list[pd.Timestamp]
    ) -> pd.DataFrame:
        keys = list(view.entities)
        widest = pd.Timedelta(hours=max((d.hours or 0) + 24 * (d.days or 0) + d.lag for d in view.definitions.values()))
        order = np.argsort(_instants(known), kind="stable")
        f, known = f.iloc[order], known.iloc[order]
        parts = []
        for day in days:
            start, end = self.clock.start_of(day), self.clock.end_of(day)
            lo, hi = known.searchsorted(start - widest, side="left"), known.searchsorted(end, side="left")
            rows, when = f.iloc[lo:hi], known.iloc[lo:hi]
            mine = (rows[DAY] <= day).to_numpy()
            rows, when = rows.loc[mine], when[mine]
            if rows.empty:
                continue
            stamps = pd.date_range(start, end, freq="h", inclusive="left").as_unit("us")
            windows = _HourlyWindows(rows, when, keys, start, stamps, widest)
            out = windows.uniques.iloc[windows.key_of].reset_index(drop=True)
            out[EVENT_TIMESTAMP] = stamps[windows.stamp_of]
            out[DAY] = day
            for name, d in view.definitions.items():
                out[name] = _aggregate(d, windows.summer(d), windows.extremer(d))
            parts.append(out)
        if not parts:
            return pd.DataFrame(columns=[*keys, EVENT_TIMESTAMP, DAY, *view.features])
        return pd.concat(parts, ignore_index=True)

    # -- lag ------------------------------------------------------------------------------------

    def _lag(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        keys = list(view.entities)
        known = self._known_at(f, view)
        needed = list(dict.fromkeys([*keys, DAY, EVENT_TIME, *(d.column for d in view.definitions.values())]))
        usable = (known.notna() & f[keys].notna().all(axis=1)).to_numpy()
        f = f.loc[usable, needed].assign(_known=known[usable])
        f = f.iloc[np.lexsort((_instants(f[EVENT_TIME]), _instants(f["_known"])))]  # by known, then event time
        wanted = pd.DatetimeIndex(sorted(set(days)))
        groups: dict[tuple[pd.Timedelta, int], list[str]] = {}  # features sharing an offset share their rows
        for name, d in view.definitions.items():
            groups.setdefault((pd.Timedelta(days=d.days or 0, hours=d.hours or 0), d.periods or 1), []).append(name)
        parts = []
        for (offset, periods), names in groups.items():
            part = f[keys].copy()
            if offset:
                part[EVENT_TIMESTAMP] = np.maximum(f[EVENT_TIME] + offset, f["_known"])
                part[DAY] = f[DAY] + pd.Timedelta(days=offset.days)
            else:
                part[EVENT_TIMESTAMP] = f["_known"]
                part[DAY] = f[DAY]
            for name in names:
                column = view.definitions[name].column
                shifted = f.groupby(keys, sort=False)[column].shift(periods - 1) if periods > 1 else f[column]
                part[name] = shifted
            part = part[part[DAY].isin(wanted)]
            parts.append(part.drop_duplicates([*keys, EVENT_TIMESTAMP], keep="last"))
        out = parts[0]
        for part in parts[1:]:
            out = out.merge(part, on=[*keys, EVENT_TIMESTAMP, DAY], how="outer")
        return out.reset_index(drop=True)

    # -- asof -----------------------------------------------------------------------------------

    def _asof(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        assert view.source is not None and view.time is not None
        storage = getattr(self, "storage", None)
        if storage is None:
            raise SourceError(f"{self.spec.name}: view {view.name!r} joins source {view.source!r}; it needs storage")
        source = read_source(storage, self.spec, view.source, [d.date() for d in days])
        on = {e: (view.on or {}).get(e, e) for e in view.entities}
        stamps = pd.to_datetime(source[view.time], utc=True).dt.as_unit("us")
        stamps = stamps + pd.Timedelta(minutes=view.known_after_minutes)
        rows = pd.DataFrame({e: source[c] for e, c in on.items()})
        rows[EVENT_TIMESTAMP] = stamps
        for name, d in view.definitions.items():
            rows[name] = source[d.column or name]
        rows = rows.sort_values(EVENT_TIMESTAMP, kind="stable").drop_duplicates([*on, EVENT_TIMESTAMP], keep="last")
        parts = []
        for day in days:
            start, end = self.clock.start_of(day), self.clock.end_of(day)
            inside = rows[(rows[EVENT_TIMESTAMP] >= start) & (rows[EVENT_TIMESTAMP] < end)]
            parts.append(inside.assign(**{DAY: day}))
        return pd.concat(parts, ignore_index=True)

    # -- module:function ------------------------------------------------------------------------

    def _hooked(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        out = self.hooks[view.name](f, view, self._context(days))
        where = f"{self.spec.name}: view {view.name!r} ({view.compute})"
        if not isinstance(out, pd.DataFrame):
            raise SchemaError(f"{where} returned {type(out).__name__}, not a DataFrame")
        missing = [c for c in [EVENT_TIMESTAMP, *view.entities, *view.features] if c not in out.columns]
        if missing:
            raise SchemaError(f"{where} returned no column(s) {', '.join(missing)}")
        out = out.copy()
        out[EVENT_TIMESTAMP] = pd.to_datetime(out[EVENT_TIMESTAMP], utc=True).dt.as_unit("us")
        if DAY not in out.columns:
            out[DAY] = self.clock.local_day(out[EVENT_TIMESTAMP])
        return out[out[DAY].isin(set(days))].reset_index(drop=True)


def read_source(storage: Any, spec: UseCase, source: str, days: Sequence[date]) -> pd.DataFrame:
    """A second source's validated partitions of `days` (`validated/<usecase>__<source>/`), and of the day before
    and after each range when present (a local day's rows may lie in a neighbour's partition).

    Each day's own partition is required (`aerodrome.ingest.datasets.require_validated`): a day missing its source
    fails with the retryable `SourcePartitionMissing`, a quarantined one with the permanent
    `SourcePartitionQuarantined`, rather than being computed without that source.
    """
    from aerodrome.ingest.datasets import require_validated
    from aerodrome.ingest.partition import DATA_FILE, partition_key

    require_validated(storage, spec, source, days)
    dataset = SOURCE_DATASET.format(usecase=spec.name, source=source)
    wanted = sorted({d + timedelta(days=shift) for d in days for shift in (-1, 0, 1)})
    frames = []
    for day in wanted:  # only the days asked for: the cost of a day does not grow with the stored year
        key = f"{partition_key('validated', dataset, day.isoformat())}/{DATA_FILE}"
        if storage.exists(key):
            frames.append(pd.read_parquet(io.BytesIO(storage.read_bytes(key))))
    return pd.concat(frames, ignore_index=True)


class _HourlyWindows:
    """Sums and extremes over `[H - N h - lag, H - lag)` for every (key, stamp H) of one day."""

    def __init__(
        self,
        rows: pd.DataFrame,
        when: pd.Series,
        keys: list[str],
        start: pd.Timestamp,
        stamps: pd.DatetimeIndex,
        widest: pd.Timedelta,
    ) -> None:
        codes, self.uniques = _factorize(rows, keys)
        seconds = (when - start).dt.total_seconds().to_numpy()  # known instants, relative to the day start
        scale = 2.0 ** math.ceil(math.log2(widest.total_seconds() + 2 * 86400 + 1))  # > any seconds spread
        composite = codes * scale + seconds  # ordered by key, then by known instant
        order = np.argsort(composite, kind="stable")
        self.composite, self.values = composite[order], _Values(rows, order)
        self.key_of = np.repeat(np.arange(len(self.uniques)), len(stamps))
        self.stamp_of = np.tile(np.arange(len(stamps)), len(self.uniques))
        self.base = self.key_of * scale
        self.stamp_seconds = ((stamps - start) / pd.Timedelta(seconds=1)).to_numpy()[self.stamp_of]

    def bounds(self, d: FeatureDef) -> tuple[np.ndarray, np.ndarray]:
        hours = (d.hours or 0) + 24 * (d.days or 0)
        upper = self.base + self.stamp_seconds - 3600 * d.lag
        hi = np.searchsorted(self.composite, upper, side="left")
        return np.searchsorted(self.composite, upper - 3600 * hours, side="left"), hi

    def summer(self, d: FeatureDef) -> Any:
        lo, hi = self.bounds(d)

        def window(series: str) -> np.ndarray:
            running = np.concatenate([[0.0], np.cumsum(self.values.get(series))])
            return running[hi] - running[lo]

        return window

    def extremer(self, d: FeatureDef) -> Any:
        lo, hi = self.bounds(d)
        return lambda column, how: _range_extreme(self.values.get(f"value:{column}"), lo, hi, how)


class _Values:
    """The per-row series trailing aggregates sum: row counts, known values, squares, condition hits."""

    def __init__(self, frame: pd.DataFrame, order: np.ndarray | None = None) -> None:
        self.frame, self.order, self.cache = frame, order, {}

    def get(self, series: str) -> np.ndarray:
        if series not in self.cache:
            self.cache[series] = self._compute(series)
        return self.cache[series]

    def _compute(self, series: str) -> np.ndarray:
        if series == "rows":
            values = np.ones(len(self.frame))
        else:
            kind, _, column = series.partition(":")
            raw = self.frame[column.split("|")[0]]
            numeric = _floats(raw) if kind in ("value", "sum", "square") else None
            if kind == "known":
                values = raw.notna().to_numpy(dtype="float64")
            elif kind == "value":
                values = numeric.to_numpy()  # type: ignore[union-attr]
            elif kind == "sum":
                values = numeric.fillna(0.0).to_numpy()  # type: ignore[union-attr]
            elif kind == "square":
                values = (numeric.fillna(0.0) ** 2).to_numpy()  # type: ignore[union-attr,operator]
            else:  # hit:<column>|<condition>
                values = _holds(raw, column.split("|", 1)[1]).to_numpy(dtype="float64")
        return values if self.order is None else values[self.order]


def _instants(values: pd.Series) -> np.ndarray:
    """UTC instants as datetime64 (a tz-aware `.to_numpy()` would build one object per row)."""
    return values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()


def _utc(values: pd.Series) -> pd.Series:
    """A timestamp column in UTC, microseconds (no parsing when it already is one)."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values, utc=True)
    return values.dt.tz_convert("UTC").dt.as_unit("us")


def _floats(values: pd.Series) -> pd.Series:
    """A numeric or boolean column as float64, missing values (None, NA, NaN) as NaN."""
    if values.dtype == object:
        values = pd.to_numeric(values, errors="raise")
    return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)


def _holds(values: pd.Series, condition: str) -> pd.Series:
    op, operand = parse_condition(condition)
    if op == "isnull":
        return values.isna()
    if op == "notnull":
        return values.notna()
    compare = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne"}[op]
    return getattr(values, compare)(operand).fillna(False).astype(bool)


def _aggregate(d: FeatureDef, window: Any, extreme: Any) -> np.ndarray:
    """One trailing feature from window sums (`window(series)`) and window extremes (`extreme(column, how)`)."""
    agg, column = d.agg, d.column
    if agg == "count":
        return window(f"known:{column}") if column else window("rows")
    if agg in ("min", "max"):
        return extreme(column, agg)
    if agg == "share":
        op, _ = parse_condition(d.when or "")
        base = window("rows") if op in ("isnull", "notnull") else window(f"known:{column}")
        return _ratio(window(f"hit:{column}|{d.when}"), base)
    known, total = window(f"known:{column}"), window(f"sum:{column}")
    if agg == "sum":
        return total
    if agg == "mean":
        return _ratio(total, known)
    squares = window(f"square:{column}")
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (squares - np.where(known > 0, total**2 / np.maximum(known, 1), 0.0)) / (known - 1)
    return np.where(known > 1, np.sqrt(np.maximum(variance, 0.0)), np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _factorize(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer codes of the key combinations (in sorted key order) and the combinations (one row per code)."""
    combined = np.zeros(len(frame), dtype=np.int64)
    for key in keys:
        codes, uniques = pd.factorize(frame[key], sort=True)
        combined = combined * max(len(uniques), 1) + codes
    _, first, codes = np.unique(combined, return_index=True, return_inverse=True)
    return codes.reshape(-1), frame[keys].iloc[first].reset_index(drop=True)


def _range_extreme(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, how: str) -> np.ndarray:
    """min/max of values[lo:hi] for each pair (NaN when empty or all missing): a sparse table, O(1) per query."""
    pick = np.fmin if how == "min" else np.fmax
    levels = [values.astype("float64")]
    while (1 << len(levels)) <= max(len(values), 1):
        step = 1 << (len(levels) - 1)
        prev = levels[-1]
        levels.append(pick(prev[:-step], prev[step:]) if len(prev) > step else prev[:0])
    out = np.full(len(lo), np.nan)
    size = hi - lo
    ok = size > 0
    k = np.zeros(len(lo), dtype=int)
    k[ok] = np.floor(np.log2(size[ok])).astype(int)
    for level in np.unique(k[ok]):
        rows = ok & (k == level)
        table = levels[level]
        out[rows] = pick(table[lo[rows]], table[hi[rows] - (1 << level)])
    return out
