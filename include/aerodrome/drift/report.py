"""The Evidently report of a checked batch: HTML for people, JSON for machines, next to our summary.

Evidently runs on a column sample (the `drift.report_columns` highest-scoring features, plus the
prediction) and on at most `drift.report_rows` rows per side: the served batch against the sample of
training rows stored with the reference. It uses the spec's methods and thresholds, so its per-column
verdicts read the same as ours; our verdict (on every feature and row) is the one that decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from aerodrome.drift.check import DriftResult
from aerodrome.drift.reference import PREDICTION
from aerodrome.storage import Storage
from aerodrome.usecase import DriftPolicy


@dataclass(frozen=True)
class ReportKeys:
    html: str | None
    evidently_json: str | None
    summary: str


def report_prefix(usecase: str, day: str) -> str:
    return f"drift/{usecase}/date={day}"


def evidently_snapshot(
    current: pd.DataFrame, reference: pd.DataFrame, numeric: list[str], categorical: list[str], policy: DriftPolicy
) -> Any:
    """Evidently's `DataDriftPreset` on `numeric` + `categorical`, with the policy's methods and thresholds."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)

    def dataset(frame: pd.DataFrame) -> Any:
        frame = frame.reindex(columns=columns)
        frame[categorical] = frame[categorical].astype("string")
        return Dataset.from_pandas(frame, data_definition=definition)

    preset = DataDriftPreset(
        columns=columns,
        drift_share=policy.max_drifted_share,
        num_method=policy.numeric.method,
        num_threshold=policy.numeric.threshold,
        cat_method=policy.categorical.method,
        cat_threshold=policy.categorical.threshold,
        per_column_method={PREDICTION: policy.prediction.method} if PREDICTION in numeric else None,
        per_column_threshold={PREDICTION: policy.prediction.threshold} if PREDICTION in numeric else None,
    )
    return Report([preset]).run(dataset(current), dataset(reference))


def write_reports(
    storage: Storage,
    result: DriftResult,
    day: str,
    batch: pd.DataFrame,
    reference_rows: pd.DataFrame | None,
    policy: DriftPolicy,
) -> ReportKeys:
    """Store `summary.json` (ours) and, with reference rows, Evidently's `report.html` + `report.json`
    under `drift/<use case>/date=<day>/`."""
    prefix = report_prefix(result.usecase, day)
    html = evidently = None
    if reference_rows is not None and result.rows:
        ranked = sorted(result.columns, key=lambda c: -c.score)[: policy.report_columns]
        numeric = [c.column for c in ranked if c.kind == "numeric"]
        categorical = [c.column for c in ranked if c.kind == "categorical"]
        if PREDICTION in batch and PREDICTION in reference_rows:
            numeric.append(PREDICTION)
        current = batch.sample(min(len(batch), policy.report_rows), random_state=0)
        snapshot = evidently_snapshot(current, reference_rows, numeric, categorical, policy)
        html, evidently = f"{prefix}/report.html", f"{prefix}/report.json"
        storage.write_bytes(html, snapshot.get_html_str(as_iframe=False).encode())
        storage.write_bytes(evidently, snapshot.json().encode())
    summary = f"{prefix}/summary.json"
    record = {**result.as_dict(), "reports": {"html": html, "evidently_json": evidently}}
    storage.write_bytes(summary, json.dumps(record, indent=1, default=str).encode())
    return ReportKeys(html, evidently, summary)
