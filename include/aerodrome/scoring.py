"""Batch scoring: a registered model (by alias, e.g. `champion`) over one partition's events.

The events of partition `ds` (its day in the use case's time zone) get their features by the same
point-in-time join as training (`aerodrome.features.build_training_set`), so a batch score and a
holdout score of the same row are the same number. The scores are written as one partition,
`scores/<usecase>/date=<ds>/part-0.parquet` plus a manifest (rows, sha256, model version): scoring
a day again replaces the partition, so a re-run gives the same file and never duplicates rows.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aerodrome.errors import AerodromeError
from aerodrome.ingest.partition import partition_key, write_partition
from aerodrome.partitions import latest_featured_day, parse_day
from aerodrome.settings import Settings, redacted_uri
from aerodrome.storage import Storage
from aerodrome.usecase import UseCase

SCORES_ZONE = "scores"
SCORE_COLUMN = "score"


class ModelNotFound(AerodromeError):
    """The registry has no version under the alias asked for (e.g. no champion yet)."""


@dataclass(frozen=True)
class RegisteredModel:
    """One loaded model version: its registry name, version, the alias it was found by, its predictor."""

    name: str
    version: str
    alias: str
    predictor: Any  # aerodrome.train.Predictor: .predict(frame) -> probabilities or values
    digest: str


@dataclass(frozen=True)
class ScoredPartition:
    """What `score_partition` wrote; small enough for XCom."""

    usecase: str
    ds: str
    model: str
    version: str
    alias: str
    rows: int
    unlabelled: int
    uri: str
    sha256: str
    mean_score: float | None
    seconds: float


def scores_key(usecase: str, ds: str) -> str:
    """Storage key of the scores partition of `ds`."""
    return partition_key(SCORES_ZONE, usecase, ds)


def partition_window(spec: UseCase, ds: str) -> tuple[datetime, datetime]:
    """[start, end) of partition `ds` in UTC: the day in the features' time zone (UTC without features)."""
    zone = ZoneInfo(spec.features.timezone if spec.features else "UTC")
    day = parse_day(ds)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def latest_partition(spec: UseCase, storage: Storage, zone: str = "features") -> date | None:
    """The newest day of a zone: `features` = the newest day recorded as featured; else the newest folder."""
    if zone == "features":
        return latest_featured_day(storage, spec)
    days = [p.removeprefix("date=") for p in storage.partitions(f"{zone}/{spec.name}") if p.startswith("date=")]
    return max((date.fromisoformat(d) for d in days), default=None)


def load_registered_model(spec: UseCase, settings: Settings, alias: str = "champion") -> RegisteredModel:
    """The version `alias` of the use case's model, downloaded and loaded; its artifact digest verified."""
    from aerodrome.registry.aliases import alias_version, registry_client
    from aerodrome.registry.promote import load_version
    from aerodrome.train.tracking import model_name

    client = registry_client(settings.tracking_uri)
    name = model_name(spec)
    version = alias_version(client, name, alias)
    if version is None:
        raise ModelNotFound(
            f"model {name!r} has no @{alias} in {redacted_uri(settings.tracking_uri)}: train a candidate "
            f"(train_{spec.name}) and let it pass promotion (promote_{spec.name}) first"
        )
    with tempfile.TemporaryDirectory(prefix="aerodrome-score-") as tmp:
        loaded = load_version(client, settings, name, version, Path(tmp))
    if loaded.predictor is None:
        raise AerodromeError(
            f"{name} v{version} (@{alias}): its artifact does not match the digest recorded at training; "
            "it was not loaded. Investigate the artifact store before serving or scoring this version"
        )
    return RegisteredModel(name, version, alias, loaded.predictor, loaded.digest)


def score_partition(
    spec: UseCase, settings: Settings, storage: Storage, ds: str, alias: str = "champion"
) -> ScoredPartition:
    """Score the events of partition `ds` with the model `alias` and replace `scores/<usecase>/date=<ds>/`.

    Rows: the partition's events whose features the point-in-time join gives training (events without a
    known outcome are counted in `unlabelled`). Columns: row id, event timestamp, the entity keys, the
    label, `score` (the positive-class probability or the predicted value) and the model version.
    """
    from aerodrome.features import build_training_set

    began = time.perf_counter()
    ds = parse_day(ds, spec).isoformat()
    model = load_registered_model(spec, settings, alias)
    start, end = partition_window(spec, ds)
    events = build_training_set(spec, settings, storage, start, end)
    frame = events.frame
    keep = ["row_id", "event_timestamp", *events.entity_columns, events.label]
    scores = frame[[c for c in keep if c in frame.columns]].copy()
    scores[SCORE_COLUMN] = model.predictor.predict(frame)
    scores["model_version"] = model.version
    info = write_partition(storage, scores_key(spec.name, ds), scores, source=f"models:/{model.name}/{model.version}")
    return ScoredPartition(
        usecase=spec.name,
        ds=ds,
        model=model.name,
        version=model.version,
        alias=alias,
        rows=info.rows,
        unlabelled=events.unlabelled,
        uri=info.uri,
        sha256=info.sha256,
        mean_score=float(scores[SCORE_COLUMN].mean()) if len(scores) else None,
        seconds=round(time.perf_counter() - began, 3),
    )
