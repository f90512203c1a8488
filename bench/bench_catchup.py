"""Catch-up through the real scheduler vs the same work as direct library calls, and the per-day cost.

Setup (not timed): a temporary root, a copy of the flight_delay use-case folder (its spec and the module
its `derive` step names) with the schedule cut to N days from 2013-01-01 (N = AERODROME_BENCH_CATCHUP_DAYS,
default 365; --quick: 60, as the spec check refuses a schedule shorter than its longest window, 56
days), the day's drops in the landing zone: the flights and, beside them, the weather
(the spec's second source, ingested and validated by its own DAGs; the features of a day wait for both).
  scheduler  `make up` as a user runs it (`EmbeddedStack`: api-server, scheduler, dag-processor,
             triggerer, WarmLocalExecutor with parallelism 4, SQLite), unpause ingest, validate (of
             both sources) and features (training left paused: this is the data plane); wall time from
             unpause to the last featured partition; partitions lost (days without exactly one
             successful features run, must be 0; a day the weather gate quarantines, 2013-12-31 without
             observations, is never featured and is not counted); peak PSS of the whole process tree,
             sampled every 2 s.
  library    the platform's floor: the same work in one warm process on a second data root, in
             the order the scheduler does it (every day's flights and weather ingested and validated,
             then `publish_day` day by day: a day with others still computing leaves the online step to
             the last of them, Sundays always materialize). The materializing Sundays early vs late in
             the window show whether a day's cost grows with the partitions already stored.
  steady     one more day through the scheduler after the catch-up (a REST re-run of the last day's
             ingest of both sources, keyed by the day), 3 times: the first ingest run queued -> the
             features run ended (run times from the API, split by stage and hop), and the same day
             through the library.
"""

from __future__ import annotations

import os
import shutil
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
SOURCES = (UC, f"{UC}__weather")  # the datasets a features run waits for: the flights and their weather
FIRST = date(2013, 1, 1)
STEADY_REPEATS = 3
QUICK_DAYS = 60  # the spec's longest window (56 days) must fit the schedule, or the spec check refuses it
GOAL_YEAR_S = 600  # the goal: the 2013 year through the real scheduler under 10 minutes


def _prepare(root: Path, days: int):
    from aerodrome.ingest.run import landing_storage
    from aerodrome.landing import feed_for
    from aerodrome.storage import LocalStorage
    from aerodrome.usecase import load_usecase

    last = FIRST + timedelta(days=days - 1)
    folder = root / "usecases" / UC
    shutil.copytree(ROOT / "include" / "usecases" / UC, folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (folder / "usecase.yaml").read_text()
    (folder / "usecase.yaml").write_text(text.replace("end_date: 2013-12-31", f"end_date: {last}"))
    spec = load_usecase(folder)
    all_days = [FIRST + timedelta(days=i) for i in range(days)]
    for data in ("data", "library"):
        storage = LocalStorage(root / data)
        feed_for(spec.source.replay)(landing_storage(spec, storage), spec.source, all_days)
    return spec, [d.isoformat() for d in all_days]


def library_day(spec, settings, storage, ds: str) -> float:
    """The work of one day as direct library calls (no Airflow); seconds."""
    began = time.perf_counter()
    assert _land(spec, storage, ds), ds
    _publish(spec, settings, storage, ds)
    return time.perf_counter() - began


def _land(spec, storage, ds: str) -> bool:
    """Ingest and validate the day's flights and weather, as their four DAGs do; whether both passed."""
    from aerodrome.ingest import ingest_interval
    from aerodrome.ingest.datasets import dataset_spec
    from aerodrome.validate import validate_partition

    day = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    passed = True
    for source in (None, *spec.sources):
        data = dataset_spec(spec, source)
        ingest_interval(data, storage, day, day + timedelta(days=1))
        passed = validate_partition(data, storage, ds).passed and passed
    return passed


def _quarantined(storage, days: list[str]) -> set[str]:
    """Days a gate quarantined in either source: never featured, by design."""
    return {d for d in days for name in SOURCES if storage.list(f"quarantine/{name}/date={d}")}


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
    days = [ds for ds in days if _land(spec, storage, ds)]  # a quarantined day is never featured
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


def _newest_run(stack: EmbeddedStack, dag_id: str, key: str):
    runs = [r for r in stack.runs(dag_id) if r.partition_key == key]
    return max(runs, key=lambda r: r.queued_at)


def _steady_day(stack: EmbeddedStack, day: str) -> dict[str, float]:
    """One day again, keyed, from the REST client to its features; seconds per stage from run and task times.

    Both sources are re-run (the features run waits for the day's validated event of each); stages are named
    `<stage>` for the flights and `<stage> weather` for the weather.
    """
    before = _featured(stack).get(day, 0)
    for name in SOURCES:
        stack.trigger(f"ingest_{name}", partition_key=day)
    stack.wait_for(lambda: _featured(stack).get(day, 0) > before, 300, "the steady-state day", every_s=0.5)
    chains = {
        name: {stage: _newest_run(stack, f"{stage}_{name}", day) for stage in ("ingest", "validate")}
        for name in SOURCES
    }
    features = _newest_run(stack, f"features_{UC}", day)

    def span(a, b) -> float:
        return (b - a).total_seconds()

    def timed(label: str, run) -> None:
        tasks = stack.task_instances(run.dag_id, run.dag_run_id)
        first, last = min(t.start_date for t in tasks), max(t.end_date for t in tasks)
        split[f"{label} queued->task"] = span(run.queued_at, first)
        split[f"{label} tasks"] = span(first, last)
        split[f"{label} task->end"] = span(last, run.end_date)

    began = min(chain["ingest"].queued_at for chain in chains.values())
    split = {"total": span(began, features.end_date)}
    for name, chain in chains.items():
        suffix = "" if name == UC else " weather"
        timed(f"ingest{suffix}", chain["ingest"])
        split[f"hop validate{suffix}"] = span(chain["ingest"].end_date, chain["validate"].queued_at)
        timed(f"validate{suffix}", chain["validate"])
    # the features run is queued once the later of the two validated events arrived
    split["hop features"] = span(max(chain["validate"].end_date for chain in chains.values()), features.queued_at)
    timed("features", features)
    return split


def _scheduler(root: Path, days: list[str]) -> dict:
    from aerodrome.storage import LocalStorage

    data = LocalStorage(root / "data")
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
            stack.unpause(
                [*(f"{stage}_{name}" for name in SOURCES for stage in ("ingest", "validate")), f"features_{UC}"]
            )

            def settled() -> bool:  # every day featured, or stopped by a gate (never featured, by design)
                return len(set(_featured(stack)) | _quarantined(data, days)) >= len(days)

            budget = 120 + 12 * len(days)
            stack.wait_for(settled, budget, "every day featured or quarantined", every_s=5)
            wall = time.monotonic() - began
            featured, quarantined = _featured(stack), _quarantined(data, days)
            lost = [d for d in days if d not in quarantined and featured.get(d) != 1]
            last = max(d for d in days if d not in quarantined)
            steady = [_steady_day(stack, last) for _ in range(STEADY_REPEATS)]
        return {
            "wall": wall,
            "lost": lost,
            "quarantined": sorted(quarantined),
            "peak_mb": memory.peak,
            "steady": steady,
        }
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
    count = QUICK_DAYS if quick else int(os.environ.get("AERODROME_BENCH_CATCHUP_DAYS", "365"))
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
            "note": f"days without exactly one successful features run: {via_airflow['lost'][:10]}; quarantined "
            f"by a gate, so never featured: {via_airflow['quarantined'] or 'none'}",
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
