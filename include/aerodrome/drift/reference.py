"""The champion's reference statistics: computed once per model version, stored as JSON.

`registry/<use case>/reference/v<version>.json` holds, per model feature, the bins and shares of its
training window (`stats`), the same for the version's predictions on those rows, and the holdout
metrics its MLflow run recorded. A sample of the rows (`...v<version>.sample.parquet`) is kept for the
Evidently report. The nightly check reads these two files, never the training set.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from aerodrome.drift.stats import categorical_profile, numeric_profile
from aerodrome.settings import Settings
from aerodrome.storage import Storage
from aerodrome.usecase import TASK_METRICS, UseCase

PREDICTION = "prediction"
SAMPLE_ROWS = 5000


@dataclass(frozen=True)
class Reference:
    usecase: str
    version: str
    rows: int
    numeric: dict[str, dict[str, Any]]
    categorical: dict[str, dict[str, Any]]
    prediction: dict[str, Any] | None
    holdout_metrics: dict[str, float] = field(default_factory=dict)
    window: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_key(usecase: str, version: str) -> str:
    return f"registry/{usecase}/reference/v{version}.json"


def sample_key(usecase: str, version: str) -> str:
    return f"registry/{usecase}/reference/v{version}.sample.parquet"


def profile(
    usecase: str,
    version: str,
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    predictions: Any = None,
    holdout_metrics: dict[str, float] | None = None,
    window: dict[str, str] | None = None,
) -> Reference:
    """The reference statistics of `frame` (the version's training rows) and its `predictions`."""
    return Reference(
        usecase=usecase,
        version=str(version),
        rows=len(frame),
        numeric={c: numeric_profile(frame[c]) for c in numeric if c in frame},
        categorical={c: categorical_profile(frame[c]) for c in categorical if c in frame},
        prediction=numeric_profile(pd.Series(predictions)) if predictions is not None else None,
        holdout_metrics=dict(holdout_metrics or {}),
        window=dict(window or {}),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def store_reference(storage: Storage, reference: Reference, rows: pd.DataFrame | None = None) -> str:
    """Write the statistics (and a sample of `rows` for the Evidently report); returns the JSON key."""
    key = reference_key(reference.usecase, reference.version)
    storage.write_bytes(key, json.dumps(reference.as_dict(), indent=1).encode())
    if rows is not None:
        sink = io.BytesIO()
        rows.sample(min(len(rows), SAMPLE_ROWS), random_state=0).to_parquet(sink, index=False)
        storage.write_bytes(sample_key(reference.usecase, reference.version), sink.getvalue())
    return key


def load_reference(storage: Storage, usecase: str, version: str) -> Reference | None:
    key = reference_key(usecase, version)
    return Reference(**json.loads(storage.read_bytes(key))) if storage.exists(key) else None


def load_sample(storage: Storage, usecase: str, version: str) -> pd.DataFrame | None:
    key = sample_key(usecase, version)
    return pd.read_parquet(io.BytesIO(storage.read_bytes(key))) if storage.exists(key) else None


def build_reference(spec: UseCase, settings: Settings, storage: Storage, version: str) -> Reference:
    """Compute and store the reference of registered `version`: its training window through the same
    point-in-time join as training, its predictions on those rows, its run's holdout metrics."""
    import tempfile
    from pathlib import Path

    from aerodrome.features.training import build_training_set
    from aerodrome.registry.aliases import registry_client
    from aerodrome.registry.promote import PromotionError, holdout_window, load_version
    from aerodrome.train.inputs import model_columns
    from aerodrome.train.tracking import model_name

    client = registry_client(settings.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="aerodrome-reference-") as tmp:
        loaded = load_version(client, settings, model_name(spec), str(version), Path(tmp))
    if loaded.predictor is None:
        raise PromotionError(f"{spec.name} v{version}: the artifact differs from the one registered")
    _, end = holdout_window(loaded.tags)
    start = datetime.fromisoformat(loaded.tags["window"].split(" .. ")[0])
    frame = build_training_set(spec, settings, storage, start, end).frame
    numeric, categorical = model_columns(spec)
    predictions = loaded.predictor.predict(frame)
    wanted = {*TASK_METRICS[spec.target.task], "positive_rate", "target_mean", "rows"}
    metrics = {k: float(v) for k, v in loaded.run_metrics.items() if k in wanted}
    window = {"start": start.isoformat(), "end": end.isoformat(), "holdout_start": loaded.tags["holdout_start"]}
    reference = profile(spec.name, str(version), frame, numeric, categorical, predictions, metrics, window)
    rows = frame[[c for c in (*numeric, *categorical) if c in frame]].assign(**{PREDICTION: predictions})
    store_reference(storage, reference, rows)
    return reference


def ensure_reference(spec: UseCase, settings: Settings, storage: Storage, version: str) -> Reference:
    """The stored reference of `version`, computed first when missing (e.g. a champion from before the hook)."""
    return load_reference(storage, spec.name, version) or build_reference(spec, settings, storage, version)
