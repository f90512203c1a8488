"""A small synthetic regression domain (daily store demand), deterministic per day."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from aerodrome.landing import Drop
from aerodrome.storage import Storage
from aerodrome.usecase import FileDropSource

STORES = 20
SKUS = ("bread", "milk", "dates", "coffee", "rice")


def demand_for(day: date) -> pd.DataFrame:
    """One row per store, SKU and opening hour; `units` depends on price, promotion and temperature."""
    rng = np.random.default_rng(day.toordinal())
    hours = np.arange(8, 22)
    store, sku, hour = np.meshgrid(np.arange(1, STORES + 1), np.arange(len(SKUS)), hours, indexing="ij")
    store, sku, hour = store.ravel(), sku.ravel(), hour.ravel()
    n = store.size
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    price = np.round(2.0 + sku * 1.5 + rng.normal(0, 0.2, n), 2)
    promo = rng.random(n) < 0.15
    temperature = 25 + 10 * np.sin(2 * np.pi * day.timetuple().tm_yday / 365) + rng.normal(0, 2, n)
    units = np.maximum(0, 30 - 4 * price + 12 * promo + 0.3 * temperature + store % 5 + rng.normal(0, 3, n))
    return pd.DataFrame(
        {
            "store_id": store,
            "sku": np.array(SKUS)[sku],
            "sold_at": pd.to_datetime(base) + pd.to_timedelta(hour, unit="h"),
            "price": price,
            "promo": promo,
            "temperature": np.round(temperature, 1),
            "units": np.round(units, 1),
        }
    )


def drop_demand_days(storage: Storage, source: FileDropSource, days: list[date]) -> list[Drop]:
    drops = []
    for day in days:
        frame = demand_for(day)
        buffer = io.BytesIO()
        if source.format == "parquet":
            frame.to_parquet(buffer, index=False)
        else:
            frame.to_csv(buffer, index=False)
        key = source.pattern.format(ds=day.isoformat())
        storage.write_bytes(key, buffer.getvalue())
        drops.append(Drop(day.isoformat(), storage.uri(key), len(frame)))
    return drops
