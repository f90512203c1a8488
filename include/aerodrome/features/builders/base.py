"""What every feature builder shares: the partition-day clock, trailing-window sums, name parsing.

A builder turns validated partitions into feature rows, one frame per declared view. Each row
carries `event_timestamp`, the moment its values became known, and `_day`, the partition (interval)
that produced it. Rows of day D only use partitions up to D, so computing D alone or as part of a
range gives the same rows.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from aerodrome.errors import SchemaError, SpecError
from aerodrome.usecase import FeatureSpec, FeatureView, UseCase

DAY = "_day"  # partition (interval) column: naive midnight of the partition date
EVENT_TIMESTAMP = "event_timestamp"

Computation = Callable[[pd.DataFrame, FeatureView, list[pd.Timestamp]], pd.DataFrame]


class DayClock:
    """Day boundaries of the partition time zone, as UTC instants."""

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)

    def start_of(self, day: date) -> pd.Timestamp:
        return pd.Timestamp(datetime(day.year, day.month, day.day), tz=self.tz).tz_convert(UTC)

    def end_of(self, day: date) -> pd.Timestamp:
        """Local midnight after `day`: the stamp of daily rows that cover `day`."""
        return self.start_of(day + pd.Timedelta(days=1))

    def end_of_days(self, days: pd.Series) -> pd.Series:
        """`end_of` for a column of partition days (computed once per distinct day)."""
        ends = {d: self.end_of(d) for d in days.unique()}
        return days.map(ends).astype("datetime64[us, UTC]")

    def local_day(self, instants: pd.Series) -> pd.Series:
        """Naive local midnight of each UTC instant (NaT stays NaT)."""
        return instants.dt.tz_convert(self.tz).dt.tz_localize(None).dt.normalize()

    def local(self, instants: pd.Series) -> pd.Series:
        return instants.dt.tz_convert(self.tz)


class WindowedName:
    """Parse `<prefix>_<metric>_<N><unit>` feature names, e.g. `carrier_delay_rate_7d`."""

    def __init__(self, metrics: Sequence[str], unit: str) -> None:
        self.metrics = tuple(metrics)
        self.unit = unit
        alternatives = "|".join(sorted(map(re.escape, self.metrics), key=len, reverse=True))
        self.pattern = re.compile(rf"^(?P<prefix>[a-z0-9_]+?)_(?P<metric>{alternatives})_(?P<n>\d+){unit}$")

    def parse(self, view: FeatureView, feature: str) -> tuple[str, int]:
        match = self.pattern.match(feature)
        if not match or int(match["n"]) < 1:
            raise SpecError(
                f"feature view {view.name!r}: feature {feature!r} does not read as "
                f"<prefix>_<metric>_<N>{self.unit} with metric one of {', '.join(self.metrics)} "
                f"(e.g. carrier_{self.metrics[0]}_7{self.unit})"
            )
        return match["metric"], int(match["n"])


def trailing_sums(
    frame: pd.DataFrame,
    keys: list[str],
    day_column: str,
    values: list[str],
    days: Sequence[pd.Timestamp],
    windows: Sequence[int],
) -> pd.DataFrame:
    """Sums of `values` per key over the `w` days ending on each of `days` (inclusive), for each window.

    Returns columns `keys`, `_day`, `<value>_<w>` for every value and window; one row per day and key
    with activity in the widest window (measured by the first value, a row count).
    """
    widest = max(windows)
    wanted = pd.DatetimeIndex(sorted(set(days)))
    first, last = wanted.min() - pd.Timedelta(days=widest - 1), wanted.max()
    rows = frame[(frame[day_column] >= first) & (frame[day_column] <= last)]
    columns = [*keys, DAY] + [f"{v}_{w}" for w in windows for v in values]
    daily = rows.groupby([*keys, day_column], observed=True, dropna=True)[values].sum()
    if daily.empty:
        return pd.DataFrame(columns=columns)
    key_index = daily.index.droplevel(-1).unique()
    slot = key_index.get_indexer(daily.index.droplevel(-1))
    when = ((daily.index.get_level_values(-1) - first) // pd.Timedelta(days=1)).to_numpy()
    span = (last - first).days + 1
    grid = np.zeros((span + 1, len(values), len(key_index)))  # row 0 stays zero: cumulative sums start there
    grid[when + 1, :, slot] = daily.to_numpy()
    running = grid.cumsum(axis=0)
    at = ((wanted - first) // pd.Timedelta(days=1)).to_numpy() + 1
    sums = {w: running[at] - running[np.maximum(at - w, 0)] for w in windows}  # (days, values, keys)
    day_pos, key_pos = np.nonzero(sums[widest][:, 0, :] > 0)
    key_frame = key_index.to_frame(index=False) if len(keys) > 1 else pd.DataFrame({keys[0]: key_index})
    out = key_frame.iloc[key_pos].reset_index(drop=True)
    out[DAY] = wanted[day_pos]
    for w in windows:
        for i, value in enumerate(values):
            out[f"{value}_{w}"] = sums[w][day_pos, i, key_pos]
    return out[columns]


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, NaN where the denominator is 0."""
    num, den = numerator.to_numpy(dtype="float64"), denominator.to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.Series(np.where(den > 0, num / den, np.nan), index=numerator.index)


# -- plain values of one raw row (event_row): missing is None / NaN, a wrong type names its column ----


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def utc_instant(value: Any, column: str) -> datetime:
    """A UTC datetime from a timestamp, datetime or ISO-8601 text (naive = UTC)."""
    if _missing(value):
        raise SchemaError(f"{column} is required")
    try:
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(f"{column}: {value!r} is not an ISO-8601 timestamp") from None
    stamp = stamp.to_pydatetime() if isinstance(stamp, pd.Timestamp) else stamp
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def number(value: Any, column: str) -> float:
    if _missing(value):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SchemaError(f"{column}: {value!r} is not a number") from None


def whole(value: Any, column: str) -> int | None:
    if _missing(value):
        return None
    result = number(value, column)
    if not result.is_integer():
        raise SchemaError(f"{column}: {value!r} is not a whole number")
    return int(result)


def text(value: Any) -> str | None:
    return None if _missing(value) else str(value)


class FeatureBuilder(ABC):
    """Computes the feature views a use case declares, from its validated partitions.

    A view's `compute` names a method `compute_<name>(prepared, view, days)` of the builder.
    """

    def __init__(self, spec: UseCase) -> None:
        if spec.features is None:
            raise SpecError(f"use case {spec.name!r} declares no 'features' section")
        self.spec = spec
        self.features: FeatureSpec = spec.features
        self.clock = DayClock(self.features.timezone)
        for view in self.features.views:
            self.computation(view)

    def computation(self, view: FeatureView) -> Computation:
        method = getattr(self, f"compute_{view.computation}", None)
        if method is None:
            known = sorted(n.removeprefix("compute_") for n in dir(self) if n.startswith("compute_"))
            raise SpecError(
                f"feature view {view.name!r}: builder {self.features.builder!r} has no computation "
                f"{view.computation!r} (known: {', '.join(known)})"
            )
        return method

    @property
    @abstractmethod
    def lookback_days(self) -> int:
        """Partitions before the interval that its rows may depend on."""

    @abstractmethod
    def prepare(self, history: pd.DataFrame) -> pd.DataFrame:
        """Add the derived columns every computation reads (event instants, outcomes, join keys)."""

    # column -> pandas dtype of what `event_row` returns (besides `event_timestamp`)
    EVENT_TYPES: dict[str, str] = {}

    @abstractmethod
    def event_row(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """One event from the raw columns known at its prediction moment, as plain Python values:
        `event_timestamp` (a UTC datetime), the join keys and the request features.

        The one function that builds events: the training set (`entity_frame`) and the gateway (one
        request row at a time) both go through it, so a request feature cannot differ between them.
        """

    def entity_frame(self, history: pd.DataFrame) -> pd.DataFrame:
        """One row per event (`event_row` of each row of `history`) with the target column."""
        records = history.to_dict("records")
        frame = pd.DataFrame([self.event_row(r) for r in records], columns=[EVENT_TIMESTAMP, *self.EVENT_TYPES])
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.as_unit("us")
        frame = frame.astype(self.EVENT_TYPES)
        target = self.spec.target.column
        frame[target] = history[target].to_numpy()
        return frame.set_axis(history.index)

    def horizon(self, day: date) -> datetime:
        """Instant up to which the rows of `day` are complete: materialize up to here."""
        return self.clock.end_of(day).to_pydatetime()

    def build(self, history: pd.DataFrame, days: Sequence[date], storage: Any = None) -> dict[str, pd.DataFrame]:
        """Feature rows of every declared view for the partitions `days` (`storage`: for second sources)."""
        prepared = self.prepare(history)
        stamps = [pd.Timestamp(d) for d in days]
        return {view.name: self.computation(view)(prepared, view, stamps) for view in self.features.views}

    def require_entities(self, view: FeatureView, allowed: Sequence[Sequence[str]]) -> None:
        if list(view.entities) not in [list(a) for a in allowed]:
            raise SpecError(
                f"feature view {view.name!r}: computation {view.computation!r} is keyed by "
                f"{' or '.join(str(list(a)) for a in allowed)}, not {list(view.entities)}"
            )
