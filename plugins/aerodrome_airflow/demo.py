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
from datetime import UTC, date, datetime, timedelta
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
    _say(
        f"airflow_settings.yaml loaded: {counts.connections} connections, {counts.variables} variables, "
        f"{counts.pools} pools"
    )


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


def run_day(dag, day: date, **params) -> tuple[str, dict]:
    """Run `dag` for the partition `day` (the form's `ds`); returns the run state and the tasks' states."""
    # any logical date after the DAG's start works (the day comes from ds); the ingest DAG starts a day late
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    run = dag.test(logical_date=logical, run_conf={"ds": day.isoformat(), **params})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    if not states:
        raise SystemExit(f"{dag.dag_id} ran no task for {day}: its start_date is after the run's logical date")
    return str(run.state), states


def run_second_sources(dags: list, day: date) -> tuple[str, dict]:
    """Ingest and validate the day of each second source, in order; stops at the first run that fails."""
    for dag in dags:
        state, tasks = run_day(dag, day)
        if state != "success":
            return state, {dag.dag_id: tasks}
    return "success", {}


def spoil_drop(storage, spec, day: date) -> str:
    """Blank the carrier of 60 flights in one landing drop: a realistic upstream bug for the gate to stop."""
    import io

    import pandas as pd
    from aerodrome.ingest.run import landing_storage

    landing = landing_storage(spec, storage)
    key = spec.source.pattern.format(ds=day.isoformat())
    frame = pd.read_csv(io.BytesIO(landing.read_bytes(key)))
    frame.loc[100:159, "carrier"] = None
    landing.write_bytes(key, frame.to_csv(index=False).encode())
    return landing.uri(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usecase", default="flight_delay")
    parser.add_argument("--start", type=date.fromisoformat, default=None, help="first day (default: spec start)")
    parser.add_argument("--days", type=int, default=31, help="days to replay (365 = the full year)")
    parser.add_argument("--bad-day", type=int, default=10, help="which replayed day gets a spoiled drop (0 = none)")
    parser.add_argument(
        "--canary-seconds",
        type=float,
        default=15,
        help="analysis window per canary step (the spec's is 30 min); 0 = stop after the first promotion",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # progress lines only
    warnings.filterwarnings("ignore")
    apply_embedded_environ()
    started = time.perf_counter()
    loop = args.canary_seconds > 0 and args.days >= 21
    if loop:  # the same spec, with canary windows a demo can wait for
        from aerodrome.settings import Settings as _Settings

        from aerodrome_airflow.demo_canary import demo_usecases

        env = _Settings.from_env()
        target = Path(env.data_root) / "demo" / "usecases"
        os.environ["AERODROME_USECASES_DIR"] = str(
            demo_usecases(env.usecases_dir, target, args.usecase, args.canary_seconds)
        )
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
    bad_day = days[args.bad_day - 1] if 0 < args.bad_day <= len(days) else None
    _say(f"use case {spec.name}: {spec.description}")
    _say(f"data root {storage.root}; replaying {len(days)} day(s) {days[0]} .. {days[-1]}")

    prepare_airflow_home()
    from aerodrome_airflow.logs import quiet_third_party_loggers

    quiet_third_party_loggers()
    if spec.source.kind == "file_drop" and spec.source.replay:
        drops = feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, days)
        _say(f"landing zone: {len(drops)} drop(s), {sum(d.rows for d in drops):,} rows")
    if bad_day and spec.name == "flight_delay":
        _say(
            f"spoiling the drop of {bad_day} (60 flights without carrier) to show the quality gate: "
            f"{spoil_drop(storage, spec, bad_day)}"
        )

    ingest = load_dag(f"ingest_{spec.name}")
    validate = load_dag(f"validate_{spec.name}") if spec.expectations else None
    features = load_dag(f"features_{spec.name}") if spec.features else None
    # each second source (spec `sources:`, e.g. the flights' weather): its own ingest and validate per day
    second = [load_dag(f"{stage}_{spec.name}__{s}") for s in spec.sources for stage in ("ingest", "validate")]
    failures, quarantined, featured = [], [], 0
    for i, day in enumerate(days, 1):
        t0 = time.perf_counter()
        ds = day.isoformat()
        state, tasks = run_day(ingest, day)
        rows = read_manifest(storage, f"{RAW_ZONE}/{spec.name}/date={ds}").rows if state == "success" else 0
        steps = [f"ingest {state} ({rows:,} rows)"]
        if state != "success":
            failures.append((day, tasks))
        elif validate:
            state, tasks = run_day(validate, day)
            steps.append("validated" if state == "success" else "QUARANTINED")
            if state != "success":
                reason_key = f"quarantine/{spec.name}/date={ds}/reason.txt"
                reason = storage.read_bytes(reason_key).decode() if storage.exists(reason_key) else str(tasks)
                quarantined.append((ds, reason))
            elif features:
                state, tasks = run_second_sources(second, day)
                if state == "success":
                    state, tasks = run_day(features, day)
                steps.append(f"features {state}")
                featured += state == "success"
                if state != "success":
                    failures.append((day, tasks))
        _say(f"[{i}/{len(days)}] {ds}: {', '.join(steps)} ({time.perf_counter() - t0:.1f}s)")

    # a first model on the early days becomes @champion; with the loop, a second on every day is canaried
    if loop and champion_of(spec) is not None:
        _say(f"a @champion exists from an earlier run (v{champion_of(spec)}): `make clean` first for the full loop")
        loop = False
    first_window = days[: len(days) // 3] if loop else days
    trained = train_candidate(spec, first_window, failures) if features and featured else None
    verdict = promote_candidate(spec, storage, first_window[-1], failures) if trained else []
    loop_lines: list[str] = []
    if loop and trained and verdict and "@" in verdict[0]:
        second = train_candidate(spec, days, failures)
        loop_lines = promote_candidate(spec, storage, days[-1], failures) if second else []
        if loop_lines and "@challenger" in loop_lines[0]:
            from aerodrome_airflow.demo_canary import canary_of_challenger

            loop_lines += canary_of_challenger(spec, storage, days, load_dag, _say)

    partitions = storage.partitions(f"{RAW_ZONE}/{spec.name}")
    total = sum(read_manifest(storage, f"{RAW_ZONE}/{spec.name}/{p}").rows for p in partitions)
    print("\n=== Aerodrome demo summary ===")
    print(f"use case          {spec.name} ({spec.target.task}, target {spec.target.column})")
    print(f"raw partitions    {len(partitions)} ({total:,} rows) under {storage.uri(f'{RAW_ZONE}/{spec.name}')}")
    print(f"validated         {len(storage.partitions(f'validated/{spec.name}'))} partitions")
    print(f"quarantined       {len(quarantined)} partitions under {storage.uri(f'quarantine/{spec.name}')}")
    for _ds, reason in quarantined:
        print("  " + reason.strip().replace("\n", "\n  "))
    if features:
        print(f"features          {featured} day(s) computed and materialized ({settings.online_store} online store)")
        print(f"online lookup     {online_example(spec, settings, storage, days[-1])}")
    if trained:
        print(f"model             {trained}")
        print(f"                  MLflow UI: mlflow ui --backend-store-uri {settings.tracking_uri}")
    for n, line in enumerate(verdict):
        print(f"{'promotion' if n == 0 else '':<18}{line}")
    for n, line in enumerate(loop_lines):
        print(f"{'second model' if n == 0 else '':<18}{line}")
    print(f"failed runs       {len(failures)}")
    for day, tasks in failures:
        print(f"  FAILED {day}: {tasks} (logs under {os.environ['AIRFLOW_HOME']}/logs)")
    print(f"wall time         {time.perf_counter() - started:.1f}s")
    print("next: `make up` opens the Airflow UI at http://127.0.0.1:8080 with every DAG")
    return 1 if failures else 0


def train_candidate(spec, days: list[date], failures: list) -> str | None:
    """Run the training DAG over the replayed window (local backend); describe the registered candidate."""
    train = load_dag(f"train_{spec.name}")
    end = days[-1] + timedelta(days=1)
    _say(f"training {spec.model.flavor} on {days[0]} .. {days[-1]} (train_{spec.name}, local backend) ...")
    t0 = time.perf_counter()
    conf = {"start": days[0].isoformat(), "end": end.isoformat(), "holdout_start": None, "params": {}, "seed": 42}
    run = train.test(logical_date=datetime(end.year, end.month, end.day, tzinfo=UTC), run_conf=conf)
    state, tasks = str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    _say(f"training {state} ({time.perf_counter() - t0:.1f}s)")
    if state != "success":
        failures.append((end, tasks))
        return None
    return describe_candidate(spec)


def promote_candidate(spec, storage, last_day: date, failures: list) -> list[str]:
    """Run the promotion DAG on the new candidate (gates vs the champion); the verdict's lines."""
    import json

    from aerodrome.registry.aliases import CANDIDATE, alias_version, registry_client
    from aerodrome.registry.promote import report_key
    from aerodrome.settings import Settings

    version = alias_version(registry_client(Settings.from_env().tracking_uri), spec.name, CANDIDATE)
    _say(f"promotion gates for {spec.name} v{version} (promote_{spec.name}) ...")
    t0 = time.perf_counter()
    when = datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC) + timedelta(days=1)
    run = load_dag(f"promote_{spec.name}").test(logical_date=when, run_conf={"version": version})
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    _say(f"promotion {run.state} ({time.perf_counter() - t0:.1f}s): {tasks}")
    if str(run.state) != "success":
        failures.append((last_day, tasks))
        return []
    report = json.loads(storage.read_bytes(report_key(spec, version)))
    lines = [f"[{'pass' if g['passed'] else 'FAIL'}] {g['name']}: {g['detail']}" for g in report["gates"]]
    verdict = f"v{version} -> @{report['target_alias']}" if report["passed"] else f"v{version} rejected"
    return [verdict, *lines]


def champion_of(spec) -> str | None:
    from aerodrome.registry.aliases import CHAMPION, alias_version, registry_client
    from aerodrome.settings import Settings

    return alias_version(registry_client(Settings.from_env().tracking_uri), spec.name, CHAMPION)


def describe_candidate(spec) -> str:
    """`flight_delay v3 @candidate: roc_auc 0.71, ...; weakest origin slice ...; data sha256 ...` from MLflow."""
    from aerodrome.settings import Settings
    from mlflow import MlflowClient

    uri = Settings.from_env().tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with warnings.catch_warnings():  # MLflow's SQLAlchemy deprecation notices are not the user's business
        warnings.simplefilter("ignore")
        version = client.get_model_version_by_alias(spec.name, "candidate")
        run = client.get_run(version.run_id)
    metrics = run.data.metrics
    headline = [m for m in ("roc_auc", "pr_auc", "log_loss", "mae", "rmse") if m in metrics]
    figures = ", ".join(f"{m} {metrics[m]:.3f}" for m in headline)
    judged = spec.promotion.metric
    worse_is_higher = judged in ("log_loss", "mae", "rmse")
    slices = sorted(
        ((v, k) for k, v in metrics.items() if k.startswith("slice.") and k.endswith(f".{judged}")),
        reverse=worse_is_higher,
    )
    weakest = f"; weakest slice {slices[0][1][len('slice.') : -len(judged) - 1]} {slices[0][0]:.3f}" if slices else ""
    fingerprint = run.data.params.get("data_fingerprint", "?")[:12]
    return f"{spec.name} v{version.version} @candidate (holdout {figures}{weakest}; data {fingerprint}...)"


def online_example(spec, settings, storage, day: date) -> str:
    """Read the online features of one event of the last day, as the serving gateway will."""
    from aerodrome.features import online_features, read_validated
    from aerodrome.features.builders import builder_for

    key = f"validated/{spec.name}/date={day.isoformat()}"
    if not storage.exists(key):
        return "n/a (last day not validated)"
    events = builder_for(spec).entity_frame(read_validated(storage, spec, day, day))
    events = events.dropna(subset=list(spec.features.entities))
    first = events.iloc[len(events) // 2]
    entity = {k: first[k].item() if hasattr(first[k], "item") else first[k] for k in spec.features.entities}
    values = online_features(spec, settings, [entity])
    found = {k: v[0] for k, v in values.items() if k not in entity and v and v[0] is not None}
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(found.items())[:5])
    return f"{entity} -> {len(found)} features ({shown}, ...)"


if __name__ == "__main__":
    raise SystemExit(main())
