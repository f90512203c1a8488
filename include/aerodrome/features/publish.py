"""One day through the feature store: offline rows, Feast definitions, online store, freshness.

Days may be published in parallel and out of order (a catch-up); the online store must still receive
every day's rows. So the online step only ever materializes up to the **frontier**: the newest
validated day such that every validated day up to it has its offline rows. A day that leaves newer
or earlier days still computing defers the online step to whichever of them finishes last (the
incremental window from the watermark then covers them all); Sundays materialize up to the frontier
so the online store never lags a week behind. The online step (apply, materialize, freshness) runs
one at a time (a file lock next to the Feast registry file; on a SQL registry a PostgreSQL advisory
lock, so across hosts).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from aerodrome.features.builders import builder_for
from aerodrome.features.offline import FeatureWriteResult, compute_features, validated_days, view_prefix
from aerodrome.features.online import FreshnessResult, MaterializeResult, check_freshness, materialize
from aerodrome.features.repo import apply_definitions, features_of, project_name, registry_lock, repo_dir
from aerodrome.partitions import mark_featured
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class PublishedDay:
    """What publishing one day did, step by step (seconds per step in `seconds`).

    `materialized` and `freshness` are None when the online step was left to another day's run.
    """

    written: FeatureWriteResult
    applied: bool | None  # the Feast definitions changed and were applied (None: left to the online step)
    materialized: MaterializeResult | None
    freshness: FreshnessResult | None
    seconds: dict[str, float] = field(default_factory=dict)
    online_up_to: str | None = None  # the frontier day materialized (None: deferred)
    waiting_for: tuple[str, ...] = ()  # validated days still without offline rows (why it deferred)

    @property
    def fresh(self) -> bool | None:
        return None if self.freshness is None else self.freshness.ok

    def lines(self) -> list[str]:
        """A readable account for the task log."""
        spent = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        horizon = f"{self.written.horizon:%Y-%m-%d %H:%M}Z"
        checked = {True: "applied (changed)", False: "unchanged, apply skipped", None: "left to the online step"}
        out = [
            f"{self.written.ds}: offline rows per view {self.written.rows} (horizon {horizon})",
            f"Feast definitions {checked[self.applied]}",
        ]
        if self.materialized is None or self.freshness is None:
            shown = ", ".join(self.waiting_for[:5]) + (" ..." if len(self.waiting_for) > 5 else "")
            note = f"online store: left to the last of {len(self.waiting_for)} day(s) still computing ({shown})"
            return [*out, note, f"steps: {spent}"]
        out.append(f"online store brought up to {self.online_up_to} (every validated day up to it has its rows)")
        out += [
            f"materialized {v.view}: {v.start} .. {v.end}, {v.rows} rows -> {v.entities} entities"
            + (" (already up to date)" if v.skipped else "")
            for v in self.materialized.views
        ]
        return [*out, self.freshness.summary(), f"steps: {spent}"]


def offline_days(storage: Storage, spec: UseCase) -> set[str]:
    """Days whose offline rows are written: the last view's partition (views are written in order)."""
    last = features_of(spec).views[-1].name
    return {p.removeprefix("date=") for p in storage.partitions(view_prefix(spec, last))}


def online_frontier(storage: Storage, spec: UseCase) -> tuple[date | None, list[str]]:
    """The newest validated day with every validated day up to it written offline, and the days not written."""
    written = offline_days(storage, spec)
    frontier, waiting = None, []
    for day in validated_days(storage, spec):
        if day.isoformat() in written:
            if not waiting:
                frontier = day
        else:
            waiting.append(day.isoformat())
    return frontier, waiting


@contextlib.contextmanager
def materialize_lock(spec: UseCase, settings: Settings) -> Iterator[None]:
    """One materialization of a use case at a time: across hosts on a SQL registry, else on this host."""
    if settings.feature_registry:
        with registry_lock(settings.feature_registry, project_name(spec, settings)):
            yield
        return
    folder = repo_dir(spec, settings)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".materialize.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_day(spec: UseCase, settings: Settings, storage: Storage, ds: str) -> PublishedDay:
    """Features of day `ds` into the offline store, then the online store up to the frontier; records the day.

    Re-running a day gives the same offline rows; the online store only moves forward.
    """
    clock: dict[str, float] = {}
    began = time.perf_counter()
    written = compute_features(spec, storage, ds)
    clock["compute"] = time.perf_counter() - began
    frontier, waiting = online_frontier(storage, spec)
    sunday = date.fromisoformat(ds).weekday() == 6
    if frontier is None or (waiting and not sunday):
        mark_featured(storage, spec, ds, fresh=None, online="deferred")
        return PublishedDay(written, None, None, None, _rounded(clock), None, tuple(waiting))
    horizon = builder_for(spec).horizon(frontier)
    # one registry per use case: apply, materialize and the freshness read happen one run at a time
    with materialize_lock(spec, settings):
        applied = apply_definitions(spec, settings)
        clock["apply"] = time.perf_counter() - began - clock["compute"]
        with contextlib.redirect_stdout(io.StringIO()):  # Feast's progress bars
            materialized = materialize(spec, settings, horizon, day=date.fromisoformat(ds))
        clock["materialize"] = time.perf_counter() - began - clock["compute"] - clock["apply"]
        freshness = check_freshness(spec, settings, horizon)
        clock["freshness"] = time.perf_counter() - began - sum(clock.values())
    mark_featured(storage, spec, ds, fresh=freshness.ok, online=frontier.isoformat())
    return PublishedDay(
        written, applied, materialized, freshness, _rounded(clock), frontier.isoformat(), tuple(waiting)
    )


def _rounded(clock: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in clock.items()}
