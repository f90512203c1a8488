"""Model quality on one split part, overall and per slice (e.g. per origin airport, per carrier).

Classification: ROC-AUC, PR-AUC (average precision) and log-loss, with the positive rate so PR-AUC can
be read against chance. Regression: MAE and RMSE. A slice value with fewer than `min_rows` events, or
(for the ranking metrics) only one class, reports its row count only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aerodrome.usecase import TASK_METRICS

METRICS = TASK_METRICS  # per task, the first is the default promotion metric
SLICE_MIN_ROWS = 100
_UNSAFE = re.compile(r"[^\w\-. /:]")  # characters MLflow refuses in a metric name


def score(task: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Overall metrics of `predictions` (probabilities or values) against `labels`."""
    from sklearn import metrics

    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    out: dict[str, float] = {"rows": float(len(y))}
    if len(y) == 0:
        return out
    if task == "classification":
        out["positive_rate"] = float(y.mean())
        if 0 < y.sum() < len(y):
            out["roc_auc"] = float(metrics.roc_auc_score(y, p))
            out["pr_auc"] = float(metrics.average_precision_score(y, p))
        out["log_loss"] = float(metrics.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    else:
        error = p - y
        out["mae"] = float(np.abs(error).mean())
        out["rmse"] = float(np.sqrt((error**2).mean()))
        out["target_mean"] = float(y.mean())
    return out


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one split part: `overall`, and `slices[column][value]` for each slice column."""

    overall: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def flat(self, prefix: str = "") -> dict[str, float]:
        """MLflow metric names: `<prefix><metric>` and `<prefix>slice.<column>.<value>.<metric>`."""
        out = {f"{prefix}{name}": value for name, value in self.overall.items()}
        for column, values in self.slices.items():
            for value, metrics in values.items():
                for name, number in metrics.items():
                    out[f"{prefix}slice.{column}.{_UNSAFE.sub('_', value)}.{name}"] = number
        return out

    def worst_slice(self, metric: str) -> tuple[str, float] | None:
        """The slice `column=value` with the lowest `metric` (for AUCs: the weakest group), if any."""
        scored = [
            (f"{c}={v}", m[metric]) for c, values in self.slices.items() for v, m in values.items() if metric in m
        ]
        return min(scored, key=lambda item: item[1]) if scored else None


def evaluate(
    task: str,
    frame: pd.DataFrame,
    labels: np.ndarray,
    predictions: np.ndarray,
    slices: list[str],
    min_rows: int = SLICE_MIN_ROWS,
) -> Evaluation:
    """Overall and per-slice metrics; slice values in descending row count, then by value."""
    by_slice: dict[str, dict[str, dict[str, float]]] = {}
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    for column in slices:
        values = frame[column].astype("string").fillna("missing").to_numpy()
        groups = pd.Series(values).value_counts(sort=False)
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))
        by_slice[column] = {}
        for value, rows in ordered:
            if rows < min_rows:
                by_slice[column][value] = {"rows": float(rows)}
                continue
            mask = values == value
            by_slice[column][value] = score(task, labels[mask], predictions[mask])
    return Evaluation(score(task, labels, predictions), by_slice)
