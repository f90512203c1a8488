"""Features on real flights: point-in-time correct rows, a Feast repository per use case, training sets.

One module-wide data root holds validated partitions for 2013-01-01..02-14 (ingested through the real
landing feed and ingest path, then published to `validated/` as the validation gate does), their
feature partitions and one applied, materialized Feast repository on SQLite. Tests that change the
repository use their own namespace so they never disturb the shared one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from aerodrome.errors import SpecError
from aerodrome.features import (
    apply_definitions,
    build_training_set,
    check_freshness,
    compute_features,
    compute_features_range,
    feature_refs,
    feature_store,
    materialize,
    online_features,
)
from aerodrome.features.builders import builder_for
from aerodrome.features.offline import read_validated, view_prefix
from aerodrome.features.publish import materialize_lock
from aerodrome.features.repo import clear_store_cache, registry_exists
from aerodrome.features.training import labelled_events, point_in_time_join
from aerodrome.ingest import ingest_interval, partition_key, read_partition
from aerodrome.ingest.datasets import source_dataset
from aerodrome.ingest.partition import DATA_FILE, MANIFEST_FILE
from aerodrome.ingest.run import landing_storage
from aerodrome.landing import feed_for
from aerodrome.serving.inputs import entity_rows, request_events
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from aerodrome.usecase import ColumnType, UseCase, load_usecase

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS = load_usecase(ROOT / "include/usecases/flight_delay")
DEMAND = load_usecase(ROOT / "include/usecases/store_demand")
FIRST, LAST = date(2013, 1, 1), date(2013, 2, 14)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own; keys are removed afterwards
LEAKY = ["dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"]


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def publish_validated(storage: LocalStorage, spec: UseCase, wanted: list[date]) -> None:
    """Land, ingest and publish `wanted` days as the validation gate does (raw files copied), with the days
    of each second source (the flights feed drops the weather beside the flights)."""
    feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, wanted)
    for day in wanted:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for data in [spec, *(source_dataset(spec, source) for source in spec.sources)]:
            ingest_interval(data, storage, start, start + timedelta(days=1))
            raw = partition_key("raw", data.name, day.isoformat())
            files = {name: storage.read_bytes(f"{raw}/{name}") for name in (DATA_FILE, MANIFEST_FILE)}
            storage.replace_prefix(partition_key("validated", data.name, day.isoformat()), files)


def settings_for(root: Path, **overrides) -> Settings:
    base = Settings(data_root=str(root), usecases_dir=ROOT / "include/usecases", feature_repo=str(root / "repo"))
    return replace(base, **overrides)


def view_rows(storage: LocalStorage, spec: UseCase, view: str) -> pd.DataFrame:
    """Every offline row of a view, read straight from its partitions."""
    return pd.read_parquet(sorted(Path(storage.uri(view_prefix(spec, view))).glob(f"*/{DATA_FILE}")))


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> LocalStorage:
    storage = LocalStorage(tmp_path_factory.mktemp("features") / "data")
    publish_validated(storage, FLIGHTS, days(FIRST, LAST))
    compute_features_range(FLIGHTS, storage, FIRST, LAST)
    return storage


@pytest.fixture(scope="module")
def repo(lake) -> Settings:
    """The shared SQLite repository, applied and materialized up to the end of the last day."""
    settings = settings_for(Path(lake.root))
    assert apply_definitions(FLIGHTS, settings) is True
    materialize(FLIGHTS, settings, builder_for(FLIGHTS).horizon(LAST))
    return settings


# --- the spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f["views"][0].update(ttl_days=1), r"features\.views\[0\]\.ttl_days: unknown field"),
        (lambda f: f["views"][0].update(entities=["gate"]), r"uses entities \['gate'\] not declared"),
        (lambda f: f["views"][1]["features"].update(temp="float"), r"feature 'temp' is in views"),
        (lambda f: f.update(timezone="Mars/Olympus"), r"not an IANA zone"),
    ],
)
def test_features_section_is_strict(tmp_path, mutate, message):
    import yaml

    raw = yaml.safe_load((ROOT / "include/usecases/flight_delay/usecase.yaml").read_text())
    mutate(raw["features"])
    (tmp_path / "flight_delay").mkdir()
    (tmp_path / "flight_delay/usecase.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=message):
        load_usecase(tmp_path / "flight_delay")


def test_a_feature_the_legacy_builder_cannot_compute_is_named():
    """A spec that still names a hand-written builder gets its names checked by it (declarative names are free)."""
    from aerodrome.features.spec import FeatureSpec, FeatureView

    view = FeatureView(
        name="carrier_delays",
        entities=["carrier"],
        ttl_hours=48,
        compute="trailing_outcomes",
        features={"carrier_delays_7x": ColumnType.float},
    )
    features = FeatureSpec(builder="flights", timezone="America/New_York", entities={"carrier": "string"}, views=[view])
    spec = FLIGHTS.model_copy(update={"features": features})
    with pytest.raises(SpecError, match=r"'carrier_delays_7x' does not read as <prefix>_<metric>_<N>d"):
        builder_for(spec).lookback_days  # noqa: B018 - parsing the names is the check


# --- offline rows -----------------------------------------------------------------------------


def test_every_view_is_written_with_its_declared_schema(lake):
    result = compute_features(FLIGHTS, lake, "2013-02-10")
    assert result.horizon == datetime(2013, 2, 11, 5, tzinfo=UTC)  # local midnight after the day
    for view in FLIGHTS.features.views:
        frame = pd.read_parquet(f"{result.uris[view.name]}/{DATA_FILE}")
        assert list(frame.columns) == ["event_timestamp", *view.entities, *view.features], view.name
        assert len(frame) == result.rows[view.name] > 0, view.name
        assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"
        assert not frame.duplicated([*view.entities, "event_timestamp"]).any()


def test_rerun_gives_the_same_rows_as_the_first_run_and_the_backfill(lake):
    first = compute_features(FLIGHTS, lake, "2013-02-12")
    again = compute_features(FLIGHTS, lake, "2013-02-12")
    (backfill,) = compute_features_range(FLIGHTS, lake, date(2013, 2, 12), date(2013, 2, 12))
    assert first.sha256 == again.sha256 == backfill.sha256
    assert lake.partitions("features/flight_delay/carrier_delays") == [f"date={d}" for d in days(FIRST, LAST)]


def test_outcomes_known_after_the_stamp_never_reach_a_daily_row(tmp_path):
    """Rewriting the outcome of every flight that lands after midnight leaves day D's rows unchanged."""
    storage = LocalStorage(tmp_path / "data")
    publish_validated(storage, FLIGHTS, days(date(2013, 1, 20), date(2013, 1, 27)))
    before = compute_features(FLIGHTS, storage, "2013-01-27")
    key = partition_key("validated", "flight_delay", "2013-01-27")
    frame = read_partition(storage, key)
    builder = builder_for(FLIGHTS)
    prepared = builder.prepare(frame.assign(_day=pd.Timestamp("2013-01-27")))
    late = (prepared["outcome_known_at"] >= before.horizon).to_numpy()
    assert 0 < late.sum() < len(frame)

    def rewrite(mask) -> dict[str, str]:
        changed = frame.copy()
        changed.loc[mask, "arr_delay"] = 999
        storage.replace_prefix(key, {DATA_FILE: changed.to_parquet(index=False)})
        return compute_features(FLIGHTS, storage, "2013-01-27").sha256

    after = rewrite(late)
    daily = [v.name for v in FLIGHTS.features.views if v.kind == "trailing" and v.every == "day"]
    assert {v: after[v] for v in daily} == {v: before.sha256[v] for v in daily}
    landed_before = rewrite(~late & frame["arr_delay"].notna().to_numpy())  # the test has teeth
    assert landed_before["carrier_delays"] != before.sha256["carrier_delays"]


def test_second_domain_runs_through_the_same_code(tmp_path):
    storage = LocalStorage(tmp_path / "data")
    publish_validated(storage, DEMAND, days(date(2024, 3, 1), date(2024, 3, 10)))
    results = compute_features_range(DEMAND, storage, date(2024, 3, 1), date(2024, 3, 10))
    assert results[-1].rows == {"store_daily_demand": 20, "sku_daily_demand": 5}
    settings = settings_for(Path(storage.root))
    training = build_training_set(
        DEMAND, settings, storage, datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)
    )
    assert training.rows_in == training.rows_out == 9 * 1400 and training.dropped == 0
    assert training.frame["store_units_mean_7d"].notna().all()


# --- the Feast repository ---------------------------------------------------------------------


def test_apply_runs_only_when_definitions_change_and_keeps_the_watermark(repo):
    store = feature_store(FLIGHTS, repo)
    watermarks = {v.name: v.most_recent_end_time for v in store.list_feature_views(allow_cache=False)}
    assert set(watermarks) == {v.name for v in FLIGHTS.features.views} and all(watermarks.values())
    assert apply_definitions(FLIGHTS, repo) is False  # nothing changed: no Feast call at all

    views = [v.model_copy(update={"description": v.description + " (edited)"}) for v in FLIGHTS.features.views]
    edited = FLIGHTS.model_copy(update={"features": FLIGHTS.features.model_copy(update={"views": views})})
    assert apply_definitions(edited, repo) is True
    assert apply_definitions(edited, repo) is False
    store = feature_store(edited, repo)
    assert {v.name: v.most_recent_end_time for v in store.list_feature_views(allow_cache=False)} == watermarks
    assert apply_definitions(FLIGHTS, repo) is True  # back to the shipped definitions
    assert (
        feature_store(FLIGHTS, repo).get_feature_view("origin_weather").most_recent_end_time
        == watermarks["origin_weather"]
    )


def test_a_reshaped_view_starts_over_while_the_others_keep_their_watermark(lake):
    settings = settings_for(Path(lake.root), feature_namespace="reshape")
    materialize(FLIGHTS, settings, builder_for(FLIGHTS).horizon(LAST))
    views = list(FLIGHTS.features.views)
    views[0] = views[0].model_copy(update={"features": {"temp": ColumnType.float}})  # fewer weather features
    reshaped = FLIGHTS.model_copy(update={"features": FLIGHTS.features.model_copy(update={"views": views})})
    assert apply_definitions(reshaped, settings) is True
    store = feature_store(reshaped, settings)
    assert store.get_feature_view("origin_weather").most_recent_end_time is None
    assert store.get_feature_view("carrier_delays").most_recent_end_time is not None


def test_materialize_is_incremental_and_freshness_follows_the_ttl(repo):
    horizon = builder_for(FLIGHTS).horizon(LAST)
    again = materialize(FLIGHTS, repo, horizon)
    assert all(v.skipped for v in again.views) and again.rows == 0
    assert check_freshness(FLIGHTS, repo, horizon).ok
    late = check_freshness(FLIGHTS, repo, horizon + timedelta(hours=4))
    stale = {v.view for v in late.views if not v.ok}
    assert stale == {"origin_weather", "origin_departures"} and "older than 3:00:00" in late.summary()


def test_online_rows_equal_feasts_own_materialization(lake):
    """Our window-scoped materialization leaves the online store as Feast's `materialize` does."""
    seed_end, end = builder_for(FLIGHTS).horizon(LAST - timedelta(days=9)), builder_for(FLIGHTS).horizon(LAST)
    ours = settings_for(Path(lake.root), feature_namespace=f"ours{uuid.uuid4().hex[:6]}")
    feasts = settings_for(Path(lake.root), feature_namespace=f"feast{uuid.uuid4().hex[:6]}")
    materialize(FLIGHTS, ours, seed_end)
    step = materialize(FLIGHTS, ours, end)
    assert all(v.rows > 0 and v.start == seed_end for v in step.views)  # incremental: from the watermark
    apply_definitions(FLIGHTS, feasts)
    store = feature_store(FLIGHTS, feasts)
    for view in FLIGHTS.features.views:
        store.materialize(seed_end - timedelta(hours=view.ttl_hours), seed_end, feature_views=[view.name])
    store.materialize_incremental(end)
    flights = read_validated(lake, FLIGHTS, LAST, LAST).head(300).drop(columns=["_day"])
    keys = entity_rows(FLIGHTS, request_events(FLIGHTS, flights.to_dict("records")))
    got = online_features(FLIGHTS, ours, keys)
    assert got == online_features(FLIGHTS, feasts, keys)
    assert all(
        sum(v is not None for v in got[f]) > len(keys) // 2
        for f in ["temp", "carrier_delay_rate_7d", "tail_prev_arr_delay"]
    ), got


def latest_rows(storage: LocalStorage, spec: UseCase, view: str, keys: dict, at: datetime) -> pd.Series:
    frame = view_rows(storage, spec, view)
    for key, value in keys.items():
        frame = frame[frame[key] == value]
    return frame[frame["event_timestamp"] <= at].sort_values("event_timestamp").iloc[-1]


def assert_online_matches_offline(lake, settings: Settings) -> None:
    horizon = builder_for(FLIGHTS).horizon(LAST)
    row = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N14228", "dep_hour": 8, "weekday": 4}
    unknown = {**row, "carrier": "ZZ", "dest": "XXX", "tailnum": "NOPE"}
    got = online_features(FLIGHTS, settings, [row, unknown])
    carrier = latest_rows(lake, FLIGHTS, "carrier_delays", {"carrier": "UA"}, horizon)
    route = latest_rows(lake, FLIGHTS, "route_delays", {"origin": "EWR", "dest": "ORD"}, horizon)
    hour = latest_rows(lake, FLIGHTS, "hour_profile", {"origin": "EWR", "dep_hour": 8}, horizon)
    assert got["carrier_delay_rate_7d"][0] == pytest.approx(carrier["carrier_delay_rate_7d"])
    assert got["route_flights_28d"][0] == route["route_flights_28d"]
    assert got["hour_delay_rate_28d"][0] == pytest.approx(hour["hour_delay_rate_28d"])
    assert got["carrier_delay_rate_7d"][1] is None and got["route_flights_28d"][1] is None
    assert got["temp"][0] is not None and got["temp"][1] == got["temp"][0]  # same origin, same weather


def test_sqlite_online_lookup_serves_the_latest_rows(lake, repo):
    assert repo.online_store == "sqlite"
    assert_online_matches_offline(lake, repo)


@pytest.fixture(scope="module")
def redis_repo(lake):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        message = f"Redis on 127.0.0.1:6379 is not reachable ({exc}); start it (scripts/ensure-services.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    namespace = f"t{uuid.uuid4().hex[:8]}"
    settings = settings_for(Path(lake.root), online_store="redis", redis_url=REDIS_URL, feature_namespace=namespace)
    yield settings
    project = f"{namespace}_{FLIGHTS.name}".encode()
    keys = list(client.scan_iter(match=b"*" + project, count=1000))
    if keys:
        client.delete(*keys)
    assert not list(client.scan_iter(match=b"*" + project))


def test_redis_online_lookup_serves_the_latest_rows(lake, redis_repo):
    result = materialize(FLIGHTS, redis_repo, builder_for(FLIGHTS).horizon(LAST))
    assert result.online_store == "redis" and result.entities > 0
    assert_online_matches_offline(lake, redis_repo)


# --- point-in-time join and training sets -----------------------------------------------------


def test_a_feature_row_stamped_after_the_event_is_never_joined(lake, repo):
    rows = view_rows(lake, FLIGHTS, "carrier_delays")
    ua = rows[rows["carrier"] == "UA"].sort_values("event_timestamp")
    before, stamp, first = ua.iloc[-2], ua.iloc[-1]["event_timestamp"], ua.iloc[0]["event_timestamp"]
    instants = [stamp - timedelta(microseconds=1), stamp, first - timedelta(microseconds=1)]
    events = pd.DataFrame(
        {
            "row_id": range(3),
            "event_timestamp": pd.to_datetime(instants, utc=True),
            **{k: [v] * 3 for k, v in {"carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N14228"}.items()},
            "dep_hour": 8,
            "weekday": 4,
        }
    )
    joined = point_in_time_join(FLIGHTS, repo, events)
    assert joined.loc[0, "carrier_delay_rate_7d"] == pytest.approx(before["carrier_delay_rate_7d"])  # not the future
    assert joined.loc[1, "carrier_delay_rate_7d"] == pytest.approx(ua.iloc[-1]["carrier_delay_rate_7d"])  # at it
    assert pd.isna(joined.loc[2, "carrier_flights_7d"])  # before the first row: null, and the event is kept
    assert joined["row_id"].tolist() == [0, 1, 2]


def test_feast_join_equals_a_textbook_as_of_join_on_every_view(lake, repo):
    """Each joined value is the newest row at or before the event within the TTL (pandas merge_asof)."""
    events, _ = labelled_events(FLIGHTS, lake, datetime(2013, 2, 1, tzinfo=UTC), datetime(2013, 2, 15, tzinfo=UTC))
    joined = point_in_time_join(FLIGHTS, repo, events).set_index("row_id")
    for view in FLIGHTS.features.views:
        keys = list(view.entities)
        rows = view_rows(lake, FLIGHTS, view.name).rename(columns={"event_timestamp": "stamp"})
        rows[keys] = rows[keys].astype(object)
        left = events[["row_id", "event_timestamp", *keys]].dropna(subset=keys)
        left[keys] = left[keys].astype(object)
        expected = pd.merge_asof(
            left.sort_values("event_timestamp"),
            rows.sort_values("stamp"),
            left_on="event_timestamp",
            right_on="stamp",
            by=keys,
            tolerance=pd.Timedelta(hours=view.ttl_hours),
            direction="backward",
        ).set_index("row_id")
        assert (expected["stamp"].dropna() <= expected.loc[expected["stamp"].notna(), "event_timestamp"]).all()
        for feature in view.features:
            got = joined.loc[expected.index, feature].astype("float64").to_numpy()
            want = expected[feature].astype("float64").to_numpy()
            assert np.allclose(got, want, equal_nan=True), f"{view.name}.{feature}"


def test_training_set_keeps_every_event_and_no_leaky_column(lake, repo):
    start, end = datetime(2013, 1, 1, 5, tzinfo=UTC), datetime(2013, 2, 15, 5, tzinfo=UTC)
    training = build_training_set(FLIGHTS, repo, lake, start, end)
    frame = training.frame
    flights = read_validated(lake, FLIGHTS, FIRST, LAST)
    assert training.rows_in == training.rows_out == len(frame) and training.dropped == 0
    assert training.rows_in + training.unlabelled == len(flights)  # every flight of the window, once
    assert frame["row_id"].tolist() == list(range(len(frame)))
    assert frame["label"].isin([0, 1]).all() and 0.1 < frame["label"].mean() < 0.4
    assert not set(LEAKY) & set(frame.columns) and not set(LEAKY) & set(training.feature_columns)
    assert set(training.feature_columns) <= set(frame.columns)
    first_day = frame["event_timestamp"] < datetime(2013, 1, 2, 5, tzinfo=UTC)
    assert frame.loc[first_day, "carrier_delay_rate_7d"].isna().all()  # no history yet: kept, with nulls
    assert frame.loc[~first_day, "carrier_delay_rate_7d"].notna().mean() > 0.99
    assert set(feature_refs(FLIGHTS)) == {f"{v.name}:{f}" for v in FLIGHTS.features.views for f in v.features}


def test_a_catch_up_leaves_the_online_step_to_the_newest_day(tmp_path):
    """Days with others still computing leave the online step to the last; its window covers them all."""
    from aerodrome.features import publish_day
    from aerodrome.partitions import featured_days

    storage = LocalStorage(tmp_path / "data")
    wanted = days(date(2013, 3, 5), date(2013, 3, 10))  # Tuesday .. Sunday
    publish_validated(storage, FLIGHTS, wanted)
    settings = settings_for(tmp_path / "data")
    published = [publish_day(FLIGHTS, settings, storage, d.isoformat()) for d in wanted]
    assert [p.online_up_to for p in published] == [None] * 5 + ["2013-03-10"]
    assert published[0].waiting_for == ("2013-03-06", "2013-03-07", "2013-03-08", "2013-03-09", "2013-03-10")
    assert published[-1].materialized is not None and published[-1].freshness.ok
    assert featured_days(storage, FLIGHTS) == {d.isoformat() for d in wanted}
    # every day's rows reached the online store: a full materialization from scratch gives the same answer
    row = {"carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N12221", "dep_hour": 8, "weekday": 0}
    caught_up = online_features(FLIGHTS, settings, [row])
    fresh = settings_for(tmp_path / "data", feature_namespace="reference")
    materialize(FLIGHTS, fresh, published[-1].written.horizon)
    assert caught_up == online_features(FLIGHTS, fresh, [row])
    # a Sunday materializes even with newer days waiting, so the online store never lags a week
    more = days(date(2013, 3, 17), date(2013, 3, 18))
    publish_validated(storage, FLIGHTS, more)
    assert publish_day(FLIGHTS, settings, storage, "2013-03-17").online_up_to == "2013-03-17"
    assert publish_day(FLIGHTS, settings, storage, "2013-03-18").online_up_to == "2013-03-18"
    # out of order: a day whose predecessor is still computing never moves the watermark past it
    publish_validated(storage, FLIGHTS, days(date(2013, 3, 19), date(2013, 3, 20)))
    later = publish_day(FLIGHTS, settings, storage, "2013-03-20")
    assert later.online_up_to is None and later.waiting_for == ("2013-03-19",)
    assert publish_day(FLIGHTS, settings, storage, "2013-03-19").online_up_to == "2013-03-20"


def test_the_serving_reader_returns_what_feast_returns(lake, repo):
    from aerodrome.features.online import OnlineReader

    flights = read_validated(lake, FLIGHTS, LAST, LAST).head(200).drop(columns=["_day"])
    keys = entity_rows(FLIGHTS, request_events(FLIGHTS, flights.to_dict("records")))
    keys.append({**keys[0], "carrier": "ZZ", "tailnum": "\x00missing"})  # nothing stored for these
    reader = OnlineReader(FLIGHTS, repo)
    got = reader.read(keys)
    feast = online_features(FLIGHTS, repo, keys)
    assert set(got) == set(reader.features) and got == {f: feast[f] for f in reader.features}
    assert got["carrier_delay_rate_7d"][-1] is None and got["temp"][-1] is not None


def test_a_day_behind_the_watermark_reaches_the_online_store_when_rewritten(lake, tmp_path):
    """A day released late (or re-run) is written again; entities with newer rows keep them."""
    import shutil

    late, horizon = LAST - timedelta(days=1), builder_for(FLIGHTS).horizon(LAST)
    root = tmp_path / "data"
    shutil.copytree(Path(lake.root) / "features", root / "features")
    storage, settings = LocalStorage(root), settings_for(root, feature_repo=str(tmp_path / "repo"))
    partition = root / "features/flight_delay/tail_last_flight" / f"date={late}"
    shutil.move(partition, tmp_path / "held")  # the late day is not released yet
    materialize(FLIGHTS, settings, horizon)
    others = set(view_rows(storage, FLIGHTS, "tail_last_flight")["tailnum"])
    shutil.move(tmp_path / "held", partition)
    released = set(pd.read_parquet(partition / DATA_FILE)["tailnum"].dropna())
    only_late, newer_too = sorted(released - others)[:5], sorted(released & others)[:5]
    assert only_late and newer_too
    keys = [{"carrier": "x", "origin": "x", "dest": "x", "tailnum": t, "dep_hour": 0, "weekday": 0} for t in only_late]
    keys += [{**keys[0], "tailnum": t} for t in newer_too]
    assert online_features(FLIGHTS, settings, keys)["tail_prev_arr_delay"][: len(only_late)] == [None] * len(only_late)
    assert materialize(FLIGHTS, settings, horizon).rows == 0  # the watermark is past the late day
    assert materialize(FLIGHTS, settings, horizon, day=late).rows > 0
    newest = [latest_rows(storage, FLIGHTS, "tail_last_flight", {"tailnum": k["tailnum"]}, horizon) for k in keys]
    got = online_features(FLIGHTS, settings, keys)
    assert got["tail_prev_arr_delay"] == pytest.approx([r["tail_prev_arr_delay"] for r in newest], nan_ok=True)


# --- a SQL registry shared by the pipelines and the gateway -----------------------------------

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
GATEWAY_READ = """
import json, sys
from aerodrome.features.online import OnlineReader
from aerodrome.features.repo import registry_exists
from aerodrome.settings import Settings
from aerodrome.usecase import load_usecase
settings = Settings.from_env()
spec = load_usecase(settings.usecases_dir / "flight_delay")
assert registry_exists(spec, settings), "the gateway sees no applied definitions"
print(json.dumps(OnlineReader(spec, settings).read(json.loads(sys.stdin.read())), sort_keys=True))
"""


@pytest.fixture
def sql_registry():
    """The URL of a fresh PostgreSQL database for Feast's SQL registry, dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc}); start it (scripts/ensure-services.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    database = f"aerodrome_registry_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{database}"
        finally:
            clear_store_cache()  # cached stores hold connections to it
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def advisory_locks(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        held = "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        held += " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        return connection.execute(held).fetchone()[0]


def test_a_sql_registry_serves_a_gateway_in_another_process_as_the_file_does(lake, repo, sql_registry, tmp_path):
    settings = settings_for(Path(lake.root), feature_repo=str(tmp_path / "repo"), feature_registry=sql_registry)
    assert registry_exists(FLIGHTS, settings) is False
    with materialize_lock(FLIGHTS, settings):
        assert advisory_locks(sql_registry) == 1  # held in the registry's database: across hosts
        assert apply_definitions(FLIGHTS, settings) is True
        materialize(FLIGHTS, settings, builder_for(FLIGHTS).horizon(LAST))
    assert advisory_locks(sql_registry) == 0
    assert apply_definitions(FLIGHTS, settings) is False  # unchanged and still registered: no apply
    assert registry_exists(FLIGHTS, settings) and not list((tmp_path / "repo").rglob("registry.*"))

    flights = read_validated(lake, FLIGHTS, LAST, LAST).head(200).drop(columns=["_day"])
    keys = entity_rows(FLIGHTS, request_events(FLIGHTS, flights.to_dict("records")))
    gateway_env = {
        **os.environ,
        "AERODROME_DATA_ROOT": lake.root,
        "AERODROME_USECASES_DIR": str(ROOT / "include/usecases"),
        "AERODROME_FEATURE_REPO": settings.feature_repo,
        "AERODROME_FEATURE_REGISTRY": sql_registry,
        "AERODROME_ONLINE_STORE": "sqlite",
        "AERODROME_FEATURE_NAMESPACE": "",
    }
    gateway = subprocess.run(
        [sys.executable, "-c", GATEWAY_READ],
        input=json.dumps(keys),
        env=gateway_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert gateway.returncode == 0, gateway.stderr[-3000:]
    got = json.loads(gateway.stdout.splitlines()[-1])
    from_file_registry = online_features(FLIGHTS, repo, keys)
    assert json.dumps(got, sort_keys=True) == json.dumps({f: from_file_registry[f] for f in got}, sort_keys=True)
    assert set(got) == {f for v in FLIGHTS.features.views for f in v.features}
