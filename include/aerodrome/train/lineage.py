"""Lineage of a trained model: which validated partitions fed it and which code version built it.

The data fingerprint hashes the `_manifest.json` sha256 of every validated partition the training set
can read (the window plus the features' look-back), in date order: the same partitions give the same
fingerprint, and a re-ingested or corrected day changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta

from aerodrome.features.offline import VALIDATED_ZONE, validated_days
from aerodrome.ingest.partition import MANIFEST_FILE, partition_key
from aerodrome.settings import PROJECT_ROOT
from aerodrome.storage import Storage
from aerodrome.train.inputs import TrainingError
from aerodrome.usecase import UseCase

CODE_VERSION_ENV = "AERODROME_CODE_VERSION"  # baked into images that carry no .git
# set by the training operators (local subprocess or pod): the Airflow run that trained a model
AIRFLOW_ORIGIN_ENV = {
    "dag_id": "AERODROME_DAG_ID",
    "run_id": "AERODROME_DAG_RUN_ID",
    "try_number": "AERODROME_TASK_TRY",
}


def airflow_origin() -> dict[str, str]:
    """The Airflow DAG run and try that started this training (empty when run by hand)."""
    return {key: os.environ[env] for key, env in AIRFLOW_ORIGIN_ENV.items() if os.environ.get(env)}


@dataclass(frozen=True)
class DataFingerprint:
    sha256: str
    partitions: list[dict[str, object]]  # date, sha256, rows, uri of each validated partition

    @property
    def first(self) -> str:
        return str(self.partitions[0]["date"]) if self.partitions else ""

    @property
    def last(self) -> str:
        return str(self.partitions[-1]["date"]) if self.partitions else ""

    def manifest(self) -> dict[str, object]:
        return {"sha256": self.sha256, "partitions": self.partitions}


def data_fingerprint(spec: UseCase, storage: Storage, first: date, last: date) -> DataFingerprint:
    """Fingerprint of the validated partitions dated `first` to `last` (those that exist)."""
    partitions = []
    for day in validated_days(storage, spec):
        if not first <= day <= last:
            continue
        key = partition_key(VALIDATED_ZONE, spec.name, day.isoformat())
        manifest = json.loads(storage.read_bytes(f"{key}/{MANIFEST_FILE}"))
        partitions.append(
            {
                "date": day.isoformat(),
                "sha256": manifest["sha256"],
                "rows": manifest.get("rows"),
                "uri": storage.uri(key),
            }
        )
    if not partitions:
        raise TrainingError(
            f"use case {spec.name!r}: no validated partition between {first} and {last}; "
            f"run ingest and validate for the training window first"
        )
    digest = hashlib.sha256("".join(f"{p['date']} {p['sha256']}\n" for p in partitions).encode()).hexdigest()
    return DataFingerprint(digest, partitions)


def training_days(first_event_day: date, last_event_day: date, lookback_days: int) -> tuple[date, date]:
    """Partition dates a training set over these event days can read (events and feature history)."""
    return first_event_day - timedelta(days=lookback_days + 1), last_event_day + timedelta(days=1)


def code_version() -> str:
    """`AERODROME_CODE_VERSION` if set, else the git commit of the project (`-dirty` with local changes)."""
    pinned = os.environ.get(CODE_VERSION_ENV, "").strip()
    if pinned:
        return pinned
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            raise OSError(commit.stderr)
        status = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = "-dirty" if status.stdout.strip() else ""
        return f"git:{commit.stdout.strip()}{dirty}"
    except (OSError, subprocess.SubprocessError):
        from aerodrome import __version__

        return f"aerodrome=={__version__} (no git)"
