"""`make demo`: the flight-delay lifecycle on the embedded default, as far as it exists, with progress.

Replays N days of 2013 as daily drops into the landing zone, then runs the real Airflow DAGs for each
data interval through `dag.test()` (SQLite metadata DB, no services), and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from aerodrome_airflow.embedded import PROJECT_ROOT, apply_embedded_environ


def _say(message: str) -> None:
    print(f"[aerodrome {time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_airflow_home() -> None:
    """Create/upgrade the SQLite metadata DB and load airflow_settings.yaml (both idempotent)."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"`airflow db migrate` failed (exit {result.returncode}); see the output above")
    from aerodrome_airflow.airflow_settings import load_airflow_settings

    counts = load_airflow_settings(PROJECT_ROOT / "airflow_settings.yaml")
    _say(f"airflow_settings.yaml loaded: {counts.connections} connections, {counts.variables} variables, "
         f"{counts.pools} pools")


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_interval(dag, day: date) -> tuple[str, dict]:
    """Run `dag` for the interval starting at `day`; returns the run state and the tasks' states."""
    # a manual run's data interval is the period that ends at its logical date
    logical = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    run = dag.test(logical_date=logical)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return str(run.state), states


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usecase", default="flight_delay")
    parser.add_argument("--start", type=date.fromisoformat, default=None, help="first day (default: spec start)")
    parser.add_argument("--days", type=int, default=31, help="days to replay (365 = the full year)")
    args = parser.parse_args(argv)

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # progress lines only
    warnings.filterwarnings("ignore")
    apply_embedded_environ()
    started = time.perf_counter()
    from aerodrome.ingest.partition import read_manifest
    from aerodrome.ingest.run import RAW_ZONE, landing_storage
    from aerodrome.landing import feed_for
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import load_usecase

    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / args.usecase)
    storage = open_storage(settings.data_root, settings)
    first = args.start or spec.schedule.start_date
    days = [first + timedelta(days=i) for i in range(args.days)]
    _say(f"use case {spec.name}: {spec.description}")
    _say(f"data root {storage.root}; replaying {len(days)} day(s) {days[0]} .. {days[-1]}")

    prepare_airflow_home()
    if spec.source.kind == "file_drop" and spec.source.replay:
        drops = feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, days)
        _say(f"landing zone: {len(drops)} drop(s), {sum(d.rows for d in drops):,} rows")

    ingest = load_dag(f"ingest_{spec.name}")
    failures = []
    for i, day in enumerate(days, 1):
        t0 = time.perf_counter()
        state, tasks = run_interval(ingest, day)
        key = f"{RAW_ZONE}/{spec.name}/date={day.isoformat()}"
        rows = read_manifest(storage, key).rows if state == "success" else 0
        _say(f"[{i}/{len(days)}] ingest {day}: {state} ({rows:,} rows, {time.perf_counter() - t0:.1f}s)")
        if state != "success":
            failures.append((day, tasks))

    partitions = storage.partitions(f"{RAW_ZONE}/{spec.name}")
    total = sum(read_manifest(storage, f"{RAW_ZONE}/{spec.name}/{p}").rows for p in partitions)
    print("\n=== Aerodrome demo summary ===")
    print(f"use case          {spec.name} ({spec.target.task}, target {spec.target.column})")
    print(f"raw partitions    {len(partitions)} under {storage.uri(f'{RAW_ZONE}/{spec.name}')}")
    print(f"raw rows          {total:,}")
    print(f"failed intervals  {len(failures)}")
    print(f"wall time         {time.perf_counter() - started:.1f}s")
    print("next: `make up` opens the Airflow UI at http://127.0.0.1:8080 with every DAG")
    for day, tasks in failures:
        print(f"  FAILED {day}: {tasks} (see {Path.cwd()}/.airflow/logs)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
