"""One day through the feature store: offline rows, Feast definitions, online store, freshness."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from datetime import date

from aerodrome.features.offline import FeatureWriteResult, compute_features, validated_days
from aerodrome.features.online import FreshnessResult, MaterializeResult, check_freshness, materialize
from aerodrome.features.repo import apply_definitions
from aerodrome.partitions import featured_days, mark_featured
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class PublishedDay:
    """What publishing one day did, step by step (seconds per step in `seconds`).

    `materialized` and `freshness` are None when the online step was deferred to a newer day (catch-up).
    """

    written: FeatureWriteResult
    applied: bool  # the Feast definitions changed and were applied
    materialized: MaterializeResult | None
    freshness: FreshnessResult | None
    seconds: dict[str, float] = field(default_factory=dict)
    deferred_to: str | None = None  # the newer validated day whose run brings the online store up

    @property
    def fresh(self) -> bool | None:
        return None if self.freshness is None else self.freshness.ok

    def lines(self) -> list[str]:
        """A readable account for the task log."""
        spent = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        horizon = f"{self.written.horizon:%Y-%m-%d %H:%M}Z"
        out = [
            f"{self.written.ds}: offline rows per view {self.written.rows} (horizon {horizon})",
            "Feast definitions " + ("applied (changed)" if self.applied else "unchanged, apply skipped"),
        ]
        if self.materialized is None or self.freshness is None:
            note = f"online store: deferred (catch-up) to the run of {self.deferred_to}, which materializes"
            return [*out, note + " incrementally from the watermark, this day included", f"steps: {spent}"]
        out += [
            f"materialized {v.view}: {v.start} .. {v.end}, {v.rows} rows -> {v.entities} entities"
            + (" (already up to date)" if v.skipped else "")
            for v in self.materialized.views
        ]
        return [*out, self.freshness.summary(), f"steps: {spent}"]


def catching_up_to(spec: UseCase, storage: Storage, ds: str) -> str | None:
    """The newest validated day after `ds` still waiting for its features, when `ds` may leave it the
    online step; None when `ds` must materialize itself.

    In a catch-up the online store only needs its final state: the newest day's incremental
    materialization covers every earlier day (the windows are contiguous from the watermark). The last
    day of each week (Sunday) always materializes, so the online store never lags a week behind.
    """
    day = date.fromisoformat(ds)
    if day.weekday() == 6:
        return None
    validated = validated_days(storage, spec)
    featured = featured_days(storage, spec)
    pending = [d.isoformat() for d in validated if d > day and d.isoformat() not in featured]
    return max(pending) if pending else None


def publish_day(
    spec: UseCase, settings: Settings, storage: Storage, ds: str, *, defer_online: bool = True
) -> PublishedDay:
    """Features of day `ds` into the offline store, then online up to its horizon; records the day as featured.

    With `defer_online`, a day with newer validated days still waiting (a catch-up) leaves the online
    step to them (see `catching_up_to`). Re-running a day gives the same offline rows; the online store
    only moves forward.
    """
    clock: dict[str, float] = {}
    began = time.perf_counter()
    written = compute_features(spec, storage, ds)
    clock["compute"] = time.perf_counter() - began
    applied = apply_definitions(spec, settings)
    clock["apply"] = time.perf_counter() - began - clock["compute"]
    newer = catching_up_to(spec, storage, ds) if defer_online else None
    if newer:
        mark_featured(storage, spec, ds, fresh=None, online_deferred_to=newer)
        return PublishedDay(written, applied, None, None, {k: round(v, 3) for k, v in clock.items()}, newer)
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars
        materialized = materialize(spec, settings, written.horizon)
    clock["materialize"] = time.perf_counter() - began - clock["compute"] - clock["apply"]
    freshness = check_freshness(spec, settings, written.horizon)
    clock["freshness"] = time.perf_counter() - began - sum(clock.values())
    mark_featured(storage, spec, ds, fresh=freshness.ok)
    return PublishedDay(written, applied, materialized, freshness, {k: round(v, 3) for k, v in clock.items()})
