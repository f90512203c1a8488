"""The nightly drift check of one use case: the served days ending with `day`, and the same days'
validated partitions, against the champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from aerodrome.drift.check import DriftResult, Realized, ValidatedDrift, check_batch, check_validated, realized_metric
from aerodrome.drift.reference import PREDICTION, Reference, ensure_reference, load_sample
from aerodrome.drift.report import ReportKeys, write_reports
from aerodrome.drift.retrain import RetrainRequest, request_retrain
from aerodrome.errors import AerodromeError
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase


class NoChampion(AerodromeError):
    """No version serves as `champion` yet: there is nothing to compare served data with."""


@dataclass(frozen=True)
class DriftRun:
    result: DriftResult
    reports: ReportKeys
    retrain: RetrainRequest | None
    decision: str

    def lines(self, uri: Any = str) -> list[str]:
        out = [*self.result.lines(), f"  decision: {self.decision}"]
        if self.reports.html:
            out.append(f"  Evidently report: {uri(self.reports.html)}")
        return [*out, f"  summary: {uri(self.reports.summary)}"]


def served_days(day: date, lookback_days: int) -> list[str]:
    return [(day - timedelta(days=n)).isoformat() for n in reversed(range(lookback_days))]


def latest_served_day(storage: Storage, usecase: str) -> date | None:
    """The newest event day in the prediction log (folder names only, nothing read)."""
    from aerodrome.serving.predlog import ZONE

    days = storage.partitions(f"{ZONE}/{usecase}")
    return date.fromisoformat(days[-1].removeprefix("date=")) if days else None


def served_batch(storage: Storage, usecase: str, days: list[str]) -> pd.DataFrame:
    """The logged predictions of `days` (event days), the last answer per (request id, row)."""
    from aerodrome.serving.predlog import read_day

    frames = [f for f in (read_day(storage, usecase, d) for d in days) if not f.empty]
    if not frames:
        return pd.DataFrame()
    batch = pd.concat(frames, ignore_index=True)
    return batch.sort_values("served_at").drop_duplicates(["request_id", "row"], keep="last")


def validated_batch(spec: UseCase, storage: Storage, days: list[str]) -> pd.DataFrame:
    """The validated partitions of `days` (those that exist; empty when none), read one by one."""
    from aerodrome.errors import SourceError
    from aerodrome.features.offline import read_validated

    try:
        return read_validated(storage, spec, date.fromisoformat(days[0]), date.fromisoformat(days[-1]))
    except SourceError:
        return pd.DataFrame()


def check_validated_days(spec: UseCase, storage: Storage, reference: Reference, days: list[str]) -> ValidatedDrift:
    """The validated rows of `days` on the reference's features that are raw columns of the spec."""
    return check_validated(reference, validated_batch(spec, storage, days), list(spec.columns), spec.drift, days)


def realized(
    spec: UseCase, storage: Storage, reference: Reference, batch: pd.DataFrame, days: list[str], now: datetime
) -> Realized:
    """The champion's metric on the batch's rows whose labels have arrived (joined by `read_outcomes`)."""
    from aerodrome.serving.abtest import LABELS, read_outcomes, written_days

    since = pd.to_datetime(batch["served_at"], utc=True).min().to_pydatetime()
    label_days = written_days(storage, spec.name, since, LABELS)  # labels land on their arrival day
    until = now + timedelta(seconds=1)
    outcomes = read_outcomes(storage, spec.name, days, label_days, since, until, [reference.version])
    mine = outcomes[reference.version]
    metric = str(spec.promotion.metric)
    return realized_metric(
        spec.target.task,
        metric,
        reference.holdout_metrics.get(metric),
        mine.predictions,
        mine.labels,
        mine.served,
        spec.drift,
    )


def check_day(
    spec: UseCase,
    settings: Settings,
    storage: Storage,
    day: date,
    *,
    version: str | None = None,
    now: datetime | None = None,
) -> DriftRun:
    """Check the served days ending with `day`, and their validated partitions, against the champion's (or
    `version`'s) reference, store the reports under `drift/<use case>/date=<day>/` and request a retrain
    when the policy is breached."""
    from aerodrome.registry.aliases import CHAMPION, alias_version, registry_client
    from aerodrome.train.tracking import model_name

    now = now or datetime.now(UTC)
    version = version or alias_version(registry_client(settings.tracking_uri), model_name(spec), CHAMPION)
    if not version:
        raise NoChampion(f"{spec.name} has no @champion yet: no drift to check")
    reference = ensure_reference(spec, settings, storage, str(version))
    policy, days = spec.drift, served_days(day, spec.drift.lookback_days)
    batch = served_batch(storage, spec.name, days)
    predictions, performance = None, None
    if not batch.empty:
        answered = batch[(batch["model_version"].astype(str) == reference.version) & ~batch["fallback"].astype(bool)]
        predictions = answered[PREDICTION].to_numpy(dtype=float)
        performance = realized(spec, storage, reference, batch, days, now)
    validated = check_validated_days(spec, storage, reference, days)
    result = check_batch(reference, batch, policy, days, predictions, performance, validated)
    reports = write_reports(
        storage, result, day.isoformat(), batch, load_sample(storage, spec.name, reference.version), policy
    )
    request, decision = (
        request_retrain(spec, storage, result.reasons(), day, now) if result.judged else (None, "not judged")
    )
    return DriftRun(result, reports, request, decision)
