"""Catch-up through the real scheduler vs the same work as direct library calls, and the per-day cost.

Setup (not timed): a temporary root, the flight_delay spec with its schedule cut to N days from
2013-01-01 (N = AERODROME_BENCH_CATCHUP_DAYS, default 365; --quick: 21), the day's drops in the
landing zone.
  scheduler  `make up` as a user runs it (`EmbeddedStack`: api-server, scheduler, dag-processor,
             triggerer, WarmLocalExecutor with parallelism 4, SQLite), unpause ingest, validate and
             features (training left paused: this is the data plane); wall time from unpause to the
             last featured partition; partitions lost (days without exactly one successful features
             run, must be 0); peak PSS of the whole process tree, sampled every 2 s.
  library    the platform's floor: the same work in one warm process on a second data root, in
             the order the scheduler does it (every day ingested and validated, then
             `publish_day` day by day: a day with others still computing leaves the online step to
             the last of them, Sundays always materialize). The materializing Sundays early vs late in
             the window show whether a day's cost grows with the partitions already stored.
  steady     one more day through the scheduler after the catch-up (a REST re-run of the last day's
             ingest, keyed by the day), 3 times: the ingest run queued -> the features run ended (run
             times from the API, split by stage and hop), and the same day through the library.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aerodrome_airflow.stack import EmbeddedStack

from bench.proc import tree_pss_mb

ROOT = Path(__file__).resolve().parents[1]
UC = "flight_delay"
FIRST = date(2013, 1, 1)
STEADY_REPEATS = 3
GOAL_YEAR_S = 600  # the goal: the 2013 year through the real scheduler under 10 minutes


def _prepare(root: Path, days: int):
    from aerodrome.ingest.run import landing_storage
    from aerodrome.landing import feed_for
    from aerodrome.storage import LocalStorage
    from aerodrome.usecase import load_usecase

    last = FIRST + timedelta(days=days - 1)
    text = (ROOT / "include" / "usecases" / UC / "usecase.yaml").read_text()
    (root / "usecases" / UC).mkdir(parents=True)
    (root / "usecases" / UC / "usecase.yaml").write_text(text.replace("end_date: 2013-12-31", f"end_date: {last}"))
    spec = load_usecase(root / "usecases" / UC)
    all_days = [FIRST + timedelta(days=i) for i in range(days)]
    for data in ("data", "library"):
        storage = LocalStorage(root / data)
        feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, all_days)
    return spec, [d.isoformat() for d in all_days]


def library_day(spec, settings, storage, ds: str) -> float:
    """The work of one day as direct library calls (no Airflow); seconds."""
    began = time.perf_counter()
    _land(spec, storage, ds)
    _publish(spec, settings, storage, ds)
    return time.perf_counter() - began


def _land(spec, storage, ds: str) -> None:
    from aerodrome.ingest import ingest_interval
    from aerodrome.validate import validate_partition

    day = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    ingest_interval(spec, storage, day, day + timedelta(days=1))
    assert validate_partition(spec, storage, ds).passed, ds


def _publish(spec, settings, storage, ds: str):
    from aerodrome.features import publish_day

    return publish_day(spec, settings, storage, ds)


def _library(root: Path, spec, days: list[str]) -> dict:
    """The catch-up as the scheduler does it, in one process: every day landed, then features in order."""
    import contextlib
    import io

    from aerodrome.settings import Settings
    from aerodrome.storage import LocalStorage

    os.environ["AERODROME_DATA_ROOT"] = str(root / "library")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/library-mlflow.db"
    settings = Settings.from_env()
    storage = LocalStorage(root / "library")
    began = time.perf_counter()
    for ds in days:
        _land(spec, storage, ds)
    landed = time.perf_counter() - began
    online, offline = [], []  # seconds of days that materialized (Sundays, the last day) and of the others
    by_day: dict[int, float] = {}  # the materializing days by their number in the catch-up (1 = first day)
    with contextlib.redirect_stdout(io.StringIO()):  # Feast's progress bars
        for n, ds in enumerate(days, start=1):
            t0 = time.perf_counter()
            published = _publish(spec, settings, storage, ds)
            spent = time.perf_counter() - t0
            if published.online_up_to:
                online.append(spent)
                by_day[n] = spent
            else:
                offline.append(spent)
        total = time.perf_counter() - began
        again = statistics.median(library_day(spec, settings, storage, days[-1]) for _ in range(STEADY_REPEATS))
    return {"total": total, "landed": landed, "online": online, "offline": offline, "again": again, "by_day": by_day}


class PeakPss:
    """Samples the total PSS of a process tree every `every_s` seconds in a thread."""

    def __init__(self, pid: int, every_s: float = 2.0) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, tree_pss_mb(self.pid)[0])

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _featured(stack: EmbeddedStack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in stack.runs(f"features_{UC}"):
        if run.state.value == "success":
            counts[run.partition_key] = counts.get(run.partition_key, 0) + 1
    return counts


def _newest_run(stack: EmbeddedStack, stage: str, key: str):
    runs = [r for r in stack.runs(f"{stage}_{UC}") if r.partition_key == key]
    return max(runs, key=lambda r: r.queued_at)


def _steady_day(stack: EmbeddedStack, day: str) -> dict[str, float]:
    """One day again, keyed, from the REST client to its features; seconds per stage from run and task times."""
    before = _featured(stack).get(day, 0)
    stack.trigger(f"ingest_{UC}", partition_key=day)
    stack.wait_for(lambda: _featured(stack).get(day, 0) > before, 300, "the steady-state day", every_s=0.5)
    runs = {stage: _newest_run(stack, stage, day) for stage in ("ingest", "validate", "features")}

    def span(a, b) -> float:
        return (b - a).total_seconds()

    split = {"total": span(runs["ingest"].queued_at, runs["features"].end_date)}
    previous = None
    for stage, run in runs.items():
        tasks = stack.task_instances(run.dag_id, run.dag_run_id)
        first, last = min(t.start_date for t in tasks), max(t.end_date for t in tasks)
        if previous is not None:
            split[f"hop {stage}"] = span(previous.end_date, run.queued_at)
        split[f"{stage} queued->task"] = span(run.queued_at, first)
        split[f"{stage} tasks"] = span(first, last)
        split[f"{stage} task->end"] = span(last, run.end_date)
        previous = run
    return split


def _scheduler(root: Path, days: list[str]) -> dict:
    env = {
        "AERODROME_DATA_ROOT": str(root / "data"),
        "AERODROME_USECASES_DIR": str(root / "usecases"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root}/airflow/airflow.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    stack = EmbeddedStack(root / "airflow", env).start()
    try:
        with PeakPss(stack.proc.pid) as memory:
            began = time.monotonic()
            stack.unpause([f"ingest_{UC}", f"validate_{UC}", f"features_{UC}"])
            budget = 120 + 12 * len(days)
            stack.wait_for(lambda: len(_featured(stack)) >= len(days), budget, "every day featured", every_s=5)
            wall = time.monotonic() - began
            featured = _featured(stack)
            lost = [d for d in days if featured.get(d) != 1]
            steady = [_steady_day(stack, days[-1]) for _ in range(STEADY_REPEATS)]
        return {"wall": wall, "lost": lost, "peak_mb": memory.peak, "steady": steady}
    finally:
        stack.stop()


def _day_30_vs_300(by_day: dict[int, float]) -> list[dict]:
    """A materializing day near day 30 against one near day 300 (when the window reaches that far)."""
    if max(by_day, default=0) < 300:
        return []
    early, late = (min(by_day, key=lambda n, target=t: abs(n - target)) for t in (30, 300))
    return [
        {
            "name": "catchup.day300_vs_day30",
            "value": round(by_day[late], 2),
            "unit": "s",
            "baseline": round(by_day[early], 2),
            "goal": "flat",
            "note": f"library, a materializing day with {late} partitions stored vs one with {early}",
        }
    ]


def run(quick: bool = False) -> list[dict]:
    count = 21 if quick else int(os.environ.get("AERODROME_BENCH_CATCHUP_DAYS", "365"))
    with tempfile.TemporaryDirectory(prefix="aerodrome-catchup-") as tmp:
        root = Path(tmp)
        spec, days = _prepare(root, count)
        via_airflow = _scheduler(root, days)
        floor = _library(root, spec, days)
    span = f"{days[0]} .. {days[-1]} ({count} days)"
    steady = {k: statistics.median(d[k] for d in via_airflow["steady"]) for k in via_airflow["steady"][0]}
    split = ", ".join(f"{k} {v:.2f}s" for k, v in steady.items() if k != "total")
    weeks = floor["online"][:-1]  # the Sundays; the last day is measured with them below
    early, late = weeks[: max(1, len(weeks) // 4)], weeks[-max(1, len(weeks) // 4) :]
    return [
        {
            "name": "catchup.scheduler_wall",
            "value": round(via_airflow["wall"], 1),
            "unit": "s",
            "baseline": round(floor["total"], 1),
            "goal": f"< {GOAL_YEAR_S}" if count >= 365 else None,
            "note": f"{span}: unpause -> last featured partition, real scheduler; baseline = the same work as "
            f"library calls in one process ({floor['landed']:.0f} s ingest+validate, the rest features)",
        },
        {
            "name": "catchup.partitions_lost",
            "value": len(via_airflow["lost"]),
            "unit": "partitions",
            "goal": "<= 0",
            "note": f"days without exactly one successful features run: {via_airflow['lost'][:10]}",
        },
        {
            "name": "catchup.peak_pss",
            "value": round(via_airflow["peak_mb"]),
            "unit": "MB",
            "note": "whole `make up` process tree during the catch-up, sampled every 2 s",
        },
        {
            "name": "catchup.features_day_offline",
            "value": round(statistics.median(floor["offline"]), 3) if floor["offline"] else None,
            "unit": "s/day",
            "note": f"library, median of {len(floor['offline'])} days whose online step went to a newer day",
        },
        {
            "name": "catchup.features_week_early",
            "value": round(statistics.median(early), 2) if early else None,
            "unit": "s",
            "note": f"library, a materializing day (Sunday): median of the first {len(early)}",
        },
        {
            "name": "catchup.features_week_late",
            "value": round(statistics.median(late), 2) if late else None,
            "unit": "s",
            "baseline": round(statistics.median(early), 2) if early else None,
            "note": f"library, the last {len(late)} materializing Sundays: growth with stored partitions",
        },
        *_day_30_vs_300(floor["by_day"]),
        {
            "name": "steady.scheduler_day",
            "value": round(steady["total"], 2),
            "unit": "s",
            "baseline": round(floor["again"], 2),
            "note": f"re-run of the last day (REST trigger keyed): ingest queued -> features run ended, median of "
            f"{STEADY_REPEATS}; by stage: {split}; baseline = library, same day",
        },
        {
            "name": "steady.scheduler_vs_library",
            "value": round(steady["total"] / floor["again"], 2),
            "unit": "x",
            "goal": "< 3",
            "note": "the steady-state day: real scheduler over library path (was ~14x)",
        },
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
