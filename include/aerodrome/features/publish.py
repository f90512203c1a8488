"""One day through the feature store: offline rows, Feast definitions, online store, freshness."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field

from aerodrome.features.offline import FeatureWriteResult, compute_features
from aerodrome.features.online import FreshnessResult, MaterializeResult, check_freshness, materialize
from aerodrome.features.repo import apply_definitions
from aerodrome.partitions import mark_featured
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


@dataclass(frozen=True)
class PublishedDay:
    """What publishing one day did, step by step (seconds per step in `seconds`)."""

    written: FeatureWriteResult
    applied: bool  # the Feast definitions changed and were applied
    materialized: MaterializeResult
    freshness: FreshnessResult
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A readable account for the task log."""
        spent = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        horizon = f"{self.written.horizon:%Y-%m-%d %H:%M}Z"
        out = [
            f"{self.written.ds}: offline rows per view {self.written.rows} (horizon {horizon})",
            "Feast definitions " + ("applied (changed)" if self.applied else "unchanged, apply skipped"),
        ]
        out += [
            f"materialized {v.view}: {v.start} .. {v.end}, {v.rows} rows -> {v.entities} entities"
            + (" (already up to date)" if v.skipped else "")
            for v in self.materialized.views
        ]
        return [*out, self.freshness.summary(), f"steps: {spent}"]


def publish_day(spec: UseCase, settings: Settings, storage: Storage, ds: str) -> PublishedDay:
    """Features of day `ds` into the offline store, then online up to its horizon; records the day as featured.

    Re-running a day gives the same offline rows; the online store only moves forward.
    """
    clock: dict[str, float] = {}
    began = time.perf_counter()
    written = compute_features(spec, storage, ds)
    clock["compute"] = time.perf_counter() - began
    applied = apply_definitions(spec, settings)
    clock["apply"] = time.perf_counter() - began - clock["compute"]
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints progress bars
        materialized = materialize(spec, settings, written.horizon)
    clock["materialize"] = time.perf_counter() - began - clock["compute"] - clock["apply"]
    freshness = check_freshness(spec, settings, written.horizon)
    clock["freshness"] = time.perf_counter() - began - sum(clock.values())
    mark_featured(storage, spec, ds, fresh=freshness.ok)
    return PublishedDay(written, applied, materialized, freshness, {k: round(v, 3) for k, v in clock.items()})
