"""`make demo-drift`: the drift loop on real drift, a documented longer scenario (~6 minutes after install).

The flights of 2013 change regime with the seasons: winter, then summer (June/July, ~0.3 of flights
late) and autumn (September-November, ~0.15). A first model is trained on January (the spec's window
ending that month) and becomes `@champion`; the gateway then serves July days through the replayer
(with their outcomes), and the real DAGs run
through `dag.test()` on the embedded profile: `drift_<uc>` compares the served days with the champion's
reference and requests a retrain, `train_<uc>` fits on the window ending that week, `promote_<uc>` judges
the new model against the champion and, when it passes, `canary_<uc>` steps it through the gateway.
Data up to the served days is landed, validated and featured with direct library calls first (the
catch-up itself is what `make demo` and the scheduler tests show). Needs an empty embedded data root
(`make clean`): it refuses to mix with an earlier demo's models.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aerodrome_airflow.demo import champion_of, load_dag, prepare_airflow_home, train_candidate
from aerodrome_airflow.demo import promote_candidate as judge_and_promote
from aerodrome_airflow.embedded import apply_embedded_environ


def _say(message: str) -> None:
    print(f"[aerodrome drift demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def land_and_feature(spec, settings, storage, days: list[date]) -> None:
    """Every day landed, ingested and validated (with each second source, e.g. the weather) and featured
    (library calls), then online up to the last."""
    from aerodrome.features import compute_features_range
    from aerodrome.features.builders import builder_for
    from aerodrome.features.online import materialize
    from aerodrome.features.repo import apply_definitions
    from aerodrome.ingest import ingest_interval
    from aerodrome.ingest.datasets import source_dataset
    from aerodrome.ingest.run import landing_storage
    from aerodrome.landing import feed_for
    from aerodrome.validate import validate_partition

    feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, days)
    datasets = [spec, *(source_dataset(spec, name) for name in spec.sources)]  # the flights, then the weather
    for n, day in enumerate(days, 1):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for dataset in datasets:
            ingest_interval(dataset, storage, start, start + timedelta(days=1))
            validate_partition(dataset, storage, day.isoformat())
        if n % 30 == 0 or n == len(days):
            _say(f"landed, ingested and validated {n}/{len(days)} days")
    compute_features_range(spec, storage, days[0], days[-1])
    apply_definitions(spec, settings)
    materialize(spec, settings, builder_for(spec).horizon(days[-1]))
    _say(f"features of {days[0]} .. {days[-1]} written; online store up to {days[-1]}")


def serve(spec, storage, gateway, days: list[date]) -> str:
    """The days' flights through the gateway as clients would, then their outcomes."""
    from aerodrome.serving.replay import day_traffic, replay

    sent = []
    for day in days:
        rows, labels = day_traffic(spec, storage, day)
        stats = replay(gateway.client, spec.name, rows, labels, prefix=f"drift-demo-{day}")
        sent.append(f"{day}: {stats.summary()}")
    time.sleep(2)  # the prediction log is flushed every second
    return "; ".join(sent)


def check_drift(spec, storage, day: date) -> dict:
    """Run `drift_<uc>` for `day`; its stored summary."""
    when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    run = load_dag(f"drift_{spec.name}").test(logical_date=when, run_conf={"ds": day.isoformat()})
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    _say(f"drift_{spec.name} {run.state}: {tasks}")
    key = f"drift/{spec.name}/date={day.isoformat()}/summary.json"
    return json.loads(storage.read_bytes(key)) if storage.exists(key) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usecase", default="flight_delay")
    parser.add_argument("--train-end", type=date.fromisoformat, default=date(2013, 1, 31))
    parser.add_argument("--serve", type=date.fromisoformat, default=date(2013, 7, 10), help="last served day")
    parser.add_argument("--serve-days", type=int, default=3)
    parser.add_argument("--canary-seconds", type=float, default=15)
    parser.add_argument(
        "--retrain-days",
        type=int,
        default=182,
        help="retraining window ending the requested week (0 = the spec's model.window_days, 91)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore")
    apply_embedded_environ()
    started = time.perf_counter()
    from aerodrome.settings import Settings
    from aerodrome.storage import open_storage
    from aerodrome.usecase import load_usecase

    from aerodrome_airflow.demo_canary import ServedGateway, canary_of_challenger, demo_usecases

    env = Settings.from_env()
    target = Path(env.data_root) / "demo" / "usecases"
    demo_dir = demo_usecases(env.usecases_dir, target, args.usecase, args.canary_seconds)
    os.environ["AERODROME_USECASES_DIR"] = str(demo_dir)
    settings = Settings.from_env()
    spec = load_usecase(settings.usecases_dir / args.usecase)
    storage = open_storage(settings.data_root, settings)
    if champion_of(spec) is not None:
        raise SystemExit(f"{spec.name} has a @champion from an earlier run: `make clean` first")
    prepare_airflow_home()
    first = spec.schedule.start_date
    days = [first + timedelta(days=i) for i in range((args.serve - first).days + 1)]
    served = days[-args.serve_days :]
    _say(f"{spec.name}: {len(days)} days {days[0]} .. {days[-1]} into {storage.root}")
    land_and_feature(spec, settings, storage, days)

    failures: list = []
    window = [d for d in days if d <= args.train_end]
    model = train_candidate(spec, window, failures)
    verdict = judge_and_promote(spec, storage, args.train_end, failures) if model else []
    _say(f"first model: {model}; {verdict[0] if verdict else 'not promoted'}")
    if champion_of(spec) is None:
        raise SystemExit("the first model did not become @champion: nothing to watch for drift")

    with ServedGateway(spec.name, Path(storage.root) / "drift-demo-gateway.log") as gateway:
        _say(f"serving {served[0]} .. {served[-1]} through the gateway: {serve(spec, storage, gateway, served)}")
    summary = check_drift(spec, storage, served[-1])
    drifted = summary.get("drifted", [])
    _say(
        f"drift of {served[0]} .. {served[-1]}: dataset drift {summary.get('dataset_drift')}, "
        f"{summary.get('drifted_share', 0):.0%} of the features drifted ({', '.join(drifted[:8])}"
        f"{' ...' if len(drifted) > 8 else ''}); prediction drift {summary.get('prediction_drift')}; "
        f"realized {json.dumps(summary.get('realized'), default=str)[:300]}"
    )
    _say(f"report: {storage.uri(f'drift/{spec.name}/date={served[-1]}/report.html')} (UI: Browse → Aerodrome reports)")
    request_key = f"state/{spec.name}/retrain_requested.json"
    if not storage.exists(request_key):
        _say(f"no retrain requested (drifted: {drifted}); the loop ends here")
        return 0
    request = json.loads(storage.read_bytes(request_key))
    _say(f"retrain requested for week {request['week']}: {request['reason'][:300]}")

    week_end = date.fromisoformat(request["week"][:10]) + timedelta(days=6)
    span = args.retrain_days or spec.model.window_days
    window = [d for d in days if week_end - timedelta(days=span) < d <= week_end]
    retrained = train_candidate(spec, window, failures)
    second = judge_and_promote(spec, storage, week_end, failures) if retrained else []
    for line in second:
        _say(f"  {line}")
    if second and "@challenger" in second[0]:
        for line in canary_of_challenger(spec, storage, served, load_dag, _say):
            _say(f"  {line}")
    _say(f"done in {time.perf_counter() - started:.0f}s; `make up` shows every run, its logs and the report")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
