"""Feature store figures on the 2013 flights year: materialization, online lookups, the training-set join.

Setup (not timed): validated partitions for the year in a temporary data root, then the features
backfill (`compute_features_range`, timed and reported). Then:
  materialize   `aerodrome.features.materialize` from a one-day seed to the last horizon, into SQLite
                and into Redis (127.0.0.1:6379, db 15, a throwaway namespace removed afterwards): offline
                rows in the window per second, then one daily step;
  lookups       1 and 100 entities x N calls in-process: the platform's `online_features` vs a bare
                `FeatureStore.get_online_features` with the same feature list on the same store,
                interleaved call by call; p50/p99 and the platform/bare ratio;
  training set  `build_training_set` for the whole year in a fresh interpreter: wall time (imports
                excluded), peak RSS, rows in vs rows out;
  declarative   the spec's declarative views vs the hand-written `flights` builder computing the same
                views from the same validated history (`build` only, no I/O): wall time (best of 2)
                and peak traced memory (tracemalloc: numpy + pandas buffers), rows checked equal.
                `python -m bench.bench_features --declarative [--quick]` runs this part alone.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from aerodrome.features import (
    compute_features_range,
    feature_refs,
    feature_store,
    materialize,
    online_features,
)
from aerodrome.features.builders import builder_for
from aerodrome.features.offline import validated_days
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.landing.flights import load_flights
from aerodrome.schema import conform
from aerodrome.settings import PROJECT_ROOT, Settings
from aerodrome.storage import LocalStorage
from aerodrome.usecase import UseCase, load_usecase

USECASE = "flight_delay"
REDIS_URL = os.environ.get("AERODROME_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
# stack notes (same kind of machine): bare Feast, 1M source rows -> 10k entities
MATERIALIZE_BASELINE = {"sqlite": 1_000_000 / 3.0, "redis": 1_000_000 / 2.2}
FILE_STORE_PEAK_MB = 2600  # Feast file (Dask) offline store, 100k entity rows (stack notes)

TRAINING_CHILD = """
import json, sys, time
from datetime import datetime
from pathlib import Path
import feast  # noqa: F401 - imported before the clock starts
from aerodrome.features import build_training_set
from aerodrome.settings import Settings
from aerodrome.storage import LocalStorage
from aerodrome.usecase import load_usecase
def peak_mb():  # VmHWM: this interpreter's own peak (ru_maxrss also counts the parent's pages at fork)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
a = json.loads(sys.argv[1])
settings = Settings(data_root=a["root"], usecases_dir=Path(a["usecases"]), feature_repo=a["repo"])
spec = load_usecase(settings.usecases_dir / a["usecase"])
before = peak_mb()
started = time.perf_counter()
ts = build_training_set(spec, settings, LocalStorage(a["root"]), datetime.fromisoformat(a["start"]),
                        datetime.fromisoformat(a["end"]))
print(json.dumps({"seconds": time.perf_counter() - started, "rows_in": ts.rows_in, "rows_out": ts.rows_out,
                  "unlabelled": ts.unlabelled, "columns": len(ts.feature_columns), "before_mb": before,
                  "peak_mb": peak_mb()}))
"""


def publish_year(storage: LocalStorage, spec: UseCase, last: date) -> int:
    """Validated partitions of every local flight day up to `last` and of its weather, the spec's second source
    (what ingest + validate publish). A day without weather observations (2013-12-31) fails the weather gate, so
    the platform never features it: it is left out. Returns the flights published."""
    from aerodrome.ingest.datasets import source_dataset
    from aerodrome.landing.flights import weather_for

    weather = source_dataset(spec, "weather")
    flights = load_flights()
    day = pd.to_datetime(dict(year=flights["year"], month=flights["month"], day=flights["day"])).dt.date
    rows = 0
    for when, frame in flights[day <= last].groupby(day[day <= last]):
        observed = weather_for(when)
        if observed.empty:
            continue
        key = partition_key("validated", weather.name, when.isoformat())
        write_partition(storage, key, conform(observed, weather.columns, key), key)
        key = partition_key("validated", spec.name, when.isoformat())
        rows += write_partition(storage, key, conform(frame, spec.columns, key), key).rows
    return rows


def _materialize_rows(spec: UseCase, settings: Settings, first: date, last: date) -> list[dict]:
    builder = builder_for(spec)
    store = settings.online_store
    materialize(spec, settings, builder.horizon(first))  # seed: each view over its TTL
    bulk = materialize(spec, settings, builder.horizon(last - timedelta(days=1)))
    step = materialize(spec, settings, builder.horizon(last))
    rate = bulk.rows / bulk.seconds
    return [
        {
            "name": f"materialize into {store} ({bulk.rows:,} offline rows)",
            "value": round(rate),
            "unit": "rows/s",
            "baseline": round(MATERIALIZE_BASELINE[store]),
            "note": f"{bulk.entities:,} entity rows written in {bulk.seconds:.1f} s (Feast keeps the latest "
            f"per entity), {len(bulk.views)} views; baseline = bare Feast, 1M rows -> 10k entities",
        },
        {
            "name": f"materialize into {store}, one daily step",
            "value": round(step.seconds, 2),
            "unit": "s",
            "note": f"{step.rows:,} offline rows, {step.entities:,} entity rows written",
        },
    ]


def _percentiles(samples: list[int]) -> tuple[float, float]:
    values = np.array(samples) / 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _lookup_rows(spec: UseCase, settings: Settings, entities: list[dict], calls: int) -> list[dict]:
    store, refs = feature_store(spec, settings), feature_refs(spec)
    rows = []
    for size in (1, 100):
        batches = [entities[(i * size) % len(entities) :][:size] for i in range(calls)]
        batches = [b if len(b) == size else entities[:size] for b in batches]
        for batch in batches[:50]:  # warm-up: connections, registry cache, first-call imports
            store.get_online_features(features=refs, entity_rows=batch).to_dict()
            online_features(spec, settings, batch)
        bare, ours = [], []
        for i, batch in enumerate(batches):
            for which in (0, 1) if i % 2 else (1, 0):
                started = time.perf_counter_ns()
                if which == 0:
                    store.get_online_features(features=refs, entity_rows=batch).to_dict()
                    bare.append(time.perf_counter_ns() - started)
                else:
                    online_features(spec, settings, batch)
                    ours.append(time.perf_counter_ns() - started)
        (b50, b99), (o50, o99) = _percentiles(bare), _percentiles(ours)
        label = f"online lookup {settings.online_store}, {size} entit{'y' if size == 1 else 'ies'}"
        common = f"{calls} calls each, interleaved; {len(refs)} features from {len(spec.features.views)} views"
        rows += [
            {
                "name": f"{label} p50",
                "value": round(o50, 3),
                "unit": "ms",
                "baseline": round(b50, 3),
                "note": common,
            },
            {
                "name": f"{label} p99",
                "value": round(o99, 3),
                "unit": "ms",
                "baseline": round(b99, 3),
                "note": common,
            },
            {
                "name": f"{label}: platform / bare p99",
                "value": round(o99 / b99, 3),
                "unit": "x",
                "goal": "< 1.2",
                "note": f"p50 ratio {o50 / b50:.3f}; bare Feast on Redis per stack notes: "
                + ("p99 0.64 ms" if size == 1 else "p99 17 ms")
                + " (fewer features)",
            },
        ]
    return rows


def _lookup_entities(spec: UseCase, storage: LocalStorage, last: date) -> list[dict]:
    from aerodrome.features.offline import read_validated

    events = builder_for(spec).entity_frame(read_validated(storage, spec, last, last))
    keys = list(spec.features.entities)
    events = events.dropna(subset=keys).drop_duplicates(keys).sample(frac=1.0, random_state=7)
    return [
        {k: (int(v) if k in ("dep_hour", "weekday") else str(v)) for k, v in r.items()}
        for r in events[keys].to_dict("records")
    ]


def _training_rows(settings: Settings, spec: UseCase, first: date, last: date) -> list[dict]:
    builder = builder_for(spec)
    start, end = builder.clock.start_of(first), builder.horizon(last)
    payload = {
        "root": settings.data_root,
        "usecases": str(settings.usecases_dir),
        "repo": settings.feature_repo,
        "usecase": spec.name,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    done = subprocess.run(
        [sys.executable, "-c", TRAINING_CHILD, json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"training-set child failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    window = f"{first:%Y-%m-%d}..{last:%Y-%m-%d} local days"
    return [
        {
            "name": f"training set, point-in-time join ({window})",
            "value": round(out["seconds"], 1),
            "unit": "s",
            "goal": "< 60",
            "note": f"Feast get_historical_features on the DuckDB offline store, {out['columns']} features; "
            f"imports excluded; {len(spec.features.views)} views",
        },
        {
            "name": "training set peak memory (whole process)",
            "value": round(out["peak_mb"]),
            "unit": "MB",
            "baseline": FILE_STORE_PEAK_MB,
            "note": f"{out['before_mb']:.0f} MB after imports; baseline = Feast file store, 100k rows (stack notes)",
        },
        {
            "name": "training set rows in -> out",
            "value": out["rows_out"],
            "unit": "rows",
            "baseline": out["rows_in"],
            "note": f"{out['rows_in']:,} labelled flights in, {out['rows_out']:,} out; "
            f"{out['unlabelled']:,} cancelled/diverted (no label) left out before the join",
        },
        {
            "name": "training set dropped rows",
            "value": out["rows_in"] - out["rows_out"],
            "unit": "rows",
            "goal": "< 1",
        },
    ]


def _build_cost(builder, history: pd.DataFrame, days: list, storage: LocalStorage) -> tuple[float, float, dict]:
    """(best wall seconds of 2, peak traced MB, frames) of `builder.build` over `days`."""
    walls = []
    for _ in range(2):
        gc.collect()
        started = time.perf_counter()
        frames = builder.build(history, days, storage=storage)
        walls.append(time.perf_counter() - started)
        del frames
    gc.collect()
    tracemalloc.start()
    frames = builder.build(history, days, storage=storage)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(walls), peak, frames


def _same_rows(spec: UseCase, ours: dict, theirs: dict) -> None:
    for view in spec.features.views:
        keys = [*view.entities, "event_timestamp"]
        a = ours[view.name].sort_values(keys, kind="stable")[list(view.features)].astype("float64").to_numpy()
        b = theirs[view.name].sort_values(keys, kind="stable")[list(view.features)].astype("float64").to_numpy()
        if a.shape != b.shape or not np.allclose(a, b, equal_nan=True):
            raise AssertionError(f"declarative and builder rows differ in view {view.name!r}")


def _declarative_rows(spec: UseCase, storage: LocalStorage, first: date, last: date) -> list[dict]:
    from aerodrome.features.builders.flights import builder_spec
    from aerodrome.features.offline import read_validated

    ours, theirs = builder_for(spec), builder_for(builder_spec(spec))
    history = read_validated(storage, spec, first - timedelta(days=ours.lookback_days), last)
    days = [pd.Timestamp(d) for d in sorted(history["_day"].dt.date.unique())]
    ours_s, ours_mb, ours_frames = _build_cost(ours, history, days, storage)
    theirs_s, theirs_mb, theirs_frames = _build_cost(theirs, history, days, storage)
    _same_rows(spec, ours_frames, theirs_frames)
    rows = sum(len(f) for f in ours_frames.values())
    common = f"{len(days)} days, {len(history):,} flights, {rows:,} feature rows in {len(ours_frames)} views, equal"
    return [
        {
            "name": f"declarative features vs hand-written builder, {len(days)} days: wall",
            "value": round(ours_s, 2),
            "unit": "s",
            "baseline": round(theirs_s, 2),
            "ratio": round(ours_s / theirs_s, 3),
            "goal": "<= 1 (no slower)",
            "note": common,
        },
        {
            "name": f"declarative features vs hand-written builder, {len(days)} days: peak traced memory",
            "value": round(ours_mb),
            "unit": "MB",
            "baseline": round(theirs_mb),
            "ratio": round(ours_mb / theirs_mb, 3),
            "note": "tracemalloc peak during build (numpy and pandas buffers)",
        },
    ]


def run_declarative(quick: bool = False) -> list[dict]:
    """Only the declarative-vs-builder comparison (validated partitions are written first, not timed)."""
    spec = load_usecase(PROJECT_ROOT / "include" / "usecases" / USECASE)
    first, last = spec.schedule.start_date, date(2013, 2, 28) if quick else date(2013, 12, 31)
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-declarative-") as tmp:
        storage = LocalStorage(Path(tmp, "data"))
        publish_year(storage, spec, last)
        return _declarative_rows(spec, storage, first, last)


def _redis_ready(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        return str(exc)
    return None


def _forget_redis_project(url: str, project: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=b"*" + project.encode(), count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def run(quick: bool = False) -> list[dict]:
    spec = load_usecase(PROJECT_ROOT / "include" / "usecases" / USECASE)
    first = spec.schedule.start_date
    last = date(2013, 2, 28) if quick else date(2013, 12, 31)
    calls = 200 if quick else 1000
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-features-") as tmp:
        storage = LocalStorage(Path(tmp, "data"))
        settings = Settings(
            data_root=storage.root,
            usecases_dir=PROJECT_ROOT / "include" / "usecases",
            feature_repo=f"{tmp}/repo",
        )
        flights = publish_year(storage, spec, last)
        last = max(validated_days(storage, spec))  # the newest day with its weather (2013-12-31 has none)
        started = time.perf_counter()
        written = compute_features_range(spec, storage, first, last)
        backfill_s = time.perf_counter() - started
        feature_rows = sum(sum(r.rows.values()) for r in written)
        results.append(
            {
                "name": f"features backfill, {len(written)} days ({flights:,} flights)",
                "value": round(backfill_s, 1),
                "unit": "s",
                "note": f"{feature_rows:,} feature rows in {len(spec.features.views)} views; "
                f"{backfill_s / len(written) * 1000:.0f} ms per interval",
            }
        )
        entities = _lookup_entities(spec, storage, last)
        results += _materialize_rows(spec, settings, first, last)
        results += _lookup_rows(spec, settings, entities, calls)
        problem = _redis_ready(REDIS_URL)
        if problem:
            results.append({"name": "redis figures", "value": None, "unit": "", "note": f"skipped: {problem}"})
        else:
            namespace = f"bench{uuid.uuid4().hex[:6]}"
            redis = replace(settings, online_store="redis", redis_url=REDIS_URL, feature_namespace=namespace)
            try:
                results += _materialize_rows(spec, redis, first, last)
                results += _lookup_rows(spec, redis, entities, calls)
            finally:
                _forget_redis_project(REDIS_URL, f"{namespace}_{spec.name}")
        results += _training_rows(settings, spec, first, last)
        results += _declarative_rows(spec, storage, first, last)
    return results


if __name__ == "__main__":
    part = run_declarative if "--declarative" in sys.argv else run
    for row in part(quick="--quick" in sys.argv):
        print(row)
