"""Model quality on one split part, overall and per slice (e.g. per origin airport, per carrier).

Classification: ROC-AUC, PR-AUC (average precision) and log-loss, with the positive rate so PR-AUC can
be read against chance. Regression: MAE and RMSE, beside them relative to the mean |target| (`nmae`,
`nrmse`) and MAPE, so slices of different scale compare. A slice value with fewer than `min_rows` events, or
(for the ranking metrics) only one class, reports its row count only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aerodrome.usecase import HIGHER_IS_BETTER, TASK_METRICS

METRICS = TASK_METRICS  # per task, the first is the default promotion metric
SLICE_MIN_ROWS = 100
RELATIVE = {"mae": "nmae", "rmse": "nrmse"}  # an error metric's scale-free counterpart
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
        scale = float(np.abs(y).mean())
        if scale:  # relative errors: comparable between a large region and a small one
            out["nmae"] = out["mae"] / scale
            out["nrmse"] = out["rmse"] / scale
        nonzero = y != 0
        if nonzero.any():
            out["mape"] = float(np.abs(error[nonzero] / y[nonzero]).mean())
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

    def worst_slice(self, metric: str) -> tuple[str, float, str] | None:
        """The weakest slice `(column=value, figure, metric judged)`, if any: the lowest AUC, or for an error
        metric the highest *relative* error (`nmae`/`nrmse`), so a large region's larger absolute error
        does not make it the weakest by scale alone."""
        judged = metric if metric in HIGHER_IS_BETTER else RELATIVE.get(metric, metric)
        scored = [
            (f"{c}={v}", m[judged]) for c, values in self.slices.items() for v, m in values.items() if judged in m
        ]
        if not scored:
            return None
        pick = min if metric in HIGHER_IS_BETTER else max
        name, figure = pick(scored, key=lambda item: item[1])
        return name, figure, judged


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
