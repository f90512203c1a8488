"""Store-demand features (synthetic retail): trailing sales per store or SKU.

Sales of hour H are known at H + 1 h; trailing rows for day D cover sales known by midnight after D
(in the spec's time zone) and are stamped there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

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
from aerodrome.usecase import FeatureView

SALES = WindowedName(["units_mean", "promo_share", "price_mean"], "d")
KNOWN_AFTER = pd.Timedelta(hours=1)  # an hour's sales are booked when the hour closes
SUMS = {"units_mean": "units", "promo_share": "promo", "price_mean": "price"}


class StoreDemandBuilder(FeatureBuilder):
    """Builder `store_demand`: computation trailing_sales."""

    @property
    def lookback_days(self) -> int:
        views = [v for v in self.features.views if v.computation == "trailing_sales"]
        return max((SALES.parse(v, f)[1] for v in views for f in v.features), default=1) + 1

    def prepare(self, history: pd.DataFrame) -> pd.DataFrame:
        f = pd.DataFrame(index=history.index)
        f["store_id"] = history["store_id"].astype("int64")
        f["sku"] = history["sku"].astype("string")
        f["sold_at"] = history["sold_at"].dt.as_unit("us")
        f[DAY] = history[DAY]
        f["known_day"] = np.maximum(self.clock.local_day(f["sold_at"] + KNOWN_AFTER), f[DAY])
        local = self.clock.local(f["sold_at"])
        f["hour"] = local.dt.hour.astype("int64")
        f["weekday"] = local.dt.weekday.astype("int64")
        f["n"] = 1.0
        f["units"] = history["units"].astype("float64")
        f["promo"] = history["promo"].astype("float64")
        f["price"] = history["price"].astype("float64")
        f["temperature"] = history["temperature"].astype("float64")
        return f

    EVENT_TYPES = {
        "store_id": "int64",
        "sku": "string",
        "price": "float64",
        "promo": "float64",
        "temperature": "float64",
        "hour": "int64",
        "weekday": "int64",
    }

    def event_row(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A sale hour: at `sold_at` (UTC); hour and weekday local."""
        sold_at = utc_instant(raw["sold_at"], "sold_at")
        local = sold_at.astimezone(self.clock.tz)
        return {
            EVENT_TIMESTAMP: sold_at,
            "store_id": whole(raw["store_id"], "store_id"),
            "sku": text(raw["sku"]),
            "price": number(raw["price"], "price"),
            "promo": number(raw["promo"], "promo"),
            "temperature": number(raw["temperature"], "temperature"),
            "hour": local.hour,
            "weekday": local.weekday(),
        }

    def compute_trailing_sales(self, f: pd.DataFrame, view: FeatureView, days: list[pd.Timestamp]) -> pd.DataFrame:
        self.require_entities(view, [["store_id"], ["sku"], ["store_id", "sku"]])
        wanted = {name: SALES.parse(view, name) for name in view.features}
        windows = sorted({n for _, n in wanted.values()})
        sums = trailing_sums(f, list(view.entities), "known_day", ["n", *SUMS.values()], days, windows)
        out = sums[[*view.entities, DAY]].copy()
        out[EVENT_TIMESTAMP] = self.clock.end_of_days(sums[DAY])
        for name, (metric, w) in wanted.items():
            out[name] = ratio(sums[f"{SUMS[metric]}_{w}"], sums[f"n_{w}"])
        return out
