"""The datasets of a use case: its main source and each second source under `sources:`.

A second source is ingested and validated exactly like the main one: `source_dataset` gives the use case
as that source sees it (named `<usecase>__<source>`, with the source's own columns, natural key, event
timestamp and expectations), so `ingest_interval`, `validate_partition` and `release_partition` write
`raw|validated|quarantine/<usecase>__<source>/date=YYYY-MM-DD/` with their own Data Docs, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

from aerodrome.errors import PermanentError, SourceError, SpecError
from aerodrome.features.checks import SOURCE_DATASET
from aerodrome.usecase import UseCase

if TYPE_CHECKING:
    from aerodrome.storage import Storage


def dataset_name(usecase: str, source: str | None = None) -> str:
    """`<usecase>` for the main source, `<usecase>__<source>` for a second one (its zone folders, DAGs, assets)."""
    return SOURCE_DATASET.format(usecase=usecase, source=source) if source else usecase


def source_dataset(spec: UseCase, source: str) -> UseCase:
    """The use case as its second source `source` is ingested and validated.

    Only what ingestion and validation read is the source's (name, source, columns, natural key, event
    timestamp, expectations); the schedule, and so the partition days, stay the use case's. It has no
    features, extensions or further sources.
    """
    declared = spec.sources.get(source)
    if declared is None:
        known = ", ".join(sorted(spec.sources)) or "none"
        raise SpecError(
            f"{spec.name}: sources: no second source {source!r} (declared: {known}). "
            f"Fix: declare it under 'sources:' in the use case's spec, or name a declared one"
        )
    return spec.model_copy(
        update={
            "name": dataset_name(spec.name, source),
            "source": declared.source,
            "columns": declared.columns,
            "natural_key": declared.natural_key,
            "event_timestamp": declared.event_timestamp,
            "expectations": declared.expectations,
            "sources": {},
            "features": None,
            "extensions": [],
        }
    )


def dataset_spec(spec: UseCase, source: str | None) -> UseCase:
    """The use case itself (`source` None) or its second source `source` as a dataset."""
    return source_dataset(spec, source) if source else spec


QUARANTINE_REASON = "reason.txt"  # aerodrome.validate.gate.REASON_FILE (importing the gate loads GX)


class SourcePartitionMissing(SourceError):
    """A second source's partition of a day is not validated yet. It may still arrive: a retry can pass."""


class SourcePartitionQuarantined(PermanentError):
    """A second source's partition of a day failed its gate: no retry passes until it is fixed and released."""


def require_validated(storage: Storage, spec: UseCase, source: str, days: Iterable[date]) -> None:
    """Fail unless second source `source` has a validated partition for each of `days`.

    A quarantined day raises `SourcePartitionQuarantined` (permanent until released) with its quarantine reason;
    a day not validated yet raises `SourcePartitionMissing` (retryable: it may arrive later). Both name the
    source's DAGs, the days and the fix.
    """
    from aerodrome.ingest.partition import DATA_FILE, partition_key

    name = dataset_name(spec.name, source)
    wanted = sorted(set(days))
    absent = [d for d in wanted if not storage.exists(f"{partition_key('validated', name, d.isoformat())}/{DATA_FILE}")]
    if not absent:
        return
    validate, ingest = f"validate_{name}", f"ingest_{name}"
    quarantined = [d for d in absent if storage.list(partition_key("quarantine", name, d.isoformat()))]
    if quarantined:
        day = quarantined[0].isoformat()
        reason = _quarantine_reason(storage, partition_key("quarantine", name, day))
        others = f" (quarantined too: {_listed(quarantined[1:])})" if len(quarantined) > 1 else ""
        raise SourcePartitionQuarantined(
            f"{spec.name}: second source {source!r} of {day} is quarantined: {validate} for {day} has not passed; "
            f"its quarantine reason: {reason}{others}. This is permanent until the partition is released: fix the "
            f"source's data, re-run {validate} for {day} with the form's 'release' ticked (or the REST API's "
            f'partition_key={day} and conf {{"release": true}}); the features of the day then run'
        )
    days_text = _listed(absent)
    in_raw = [d for d in absent if storage.list(partition_key("raw", name, d.isoformat()))]
    state = f"ingested but not validated yet ({_listed(in_raw)})" if in_raw else f"not ingested yet ({ingest})"
    raise SourcePartitionMissing(
        f"{spec.name}: no validated partition of second source {source!r} for {days_text} "
        f"({storage.uri(partition_key('validated', name, absent[0].isoformat()))}): {validate} for {days_text} "
        f"has not passed; {state}. The partition may still arrive, so this is retried; to hurry it, run {ingest} "
        f"and {validate} for the day (the features of a day need every source's validated partition of that day)"
    )


def _quarantine_reason(storage: Storage, key: str) -> str:
    """The first line of the gate's reason for quarantining a partition (or where to look when it is gone)."""
    try:
        text = storage.read_bytes(f"{key}/{QUARANTINE_REASON}").decode(errors="replace").strip()
    except SourceError:
        return f"none recorded (see {storage.uri(key)})"
    return text.splitlines()[0] if text else f"none recorded (see {storage.uri(key)})"


def _listed(days: list[date], most: int = 5) -> str:
    text = ", ".join(d.isoformat() for d in days[:most])
    return text + (f" and {len(days) - most} more" if len(days) > most else "")
